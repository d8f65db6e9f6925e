"""The bytes an alert is sent as (the same for webhooks and MQTT: `alert_body`) and the webhook's
signature over them (the scheme Stripe uses), for receivers to check:

    body      = the alert as compact JSON with sorted keys, UTF-8 (`alert_body`)
    timestamp = X-ALPR-Timestamp, Unix seconds as decimal digits, by Postgres's clock as the delivery
                is claimed (the chain's shared clock, not the alert worker host's)
    signed    = timestamp + "." + body                  (bytes)
    X-ALPR-Signature: sha256=<hex HMAC-SHA256(secret, signed)>

A receiver recomputes the HMAC over the exact body bytes it received, compares in constant time, and
refuses timestamps more than 5 minutes from its clock (replays): `verify_signature` does all three.
`Idempotency-Key` carries the alert id: a retry after a lost answer sends the same key. It is not signed:
a receiver de-duplicates on the signed body's `alert_id`. MQTT alerts carry no signature: that they come
from the alert pool rests on the broker's ACL (who may publish to the topic)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from common.alerts import Alert

SIGNATURE_HEADER = "X-ALPR-Signature"
"""Header of the webhook signature: `sha256=<hex HMAC-SHA256 of timestamp + "." + body>`."""

TIMESTAMP_HEADER = "X-ALPR-Timestamp"
"""Header of the Unix time (seconds) the request was signed at; part of the signed bytes."""

IDEMPOTENCY_HEADER = "Idempotency-Key"
"""Header carrying the alert id, the same on every attempt."""

SIGNATURE_SCHEME = "sha256="
"""Prefix of the signature header's value: the HMAC's hash function."""

SIGNATURE_TOLERANCE_S = 300
"""Default largest difference between a signature's timestamp and the receiver's clock (replays)."""


def alert_body(alert: Alert) -> bytes:
    """The alert as sent: compact JSON, keys sorted, UTF-8 (the same bytes for webhooks and MQTT)."""
    data = alert.model_dump(mode="json")
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sign(body: bytes, timestamp: str, secret: str) -> str:
    """The signature header's value for `body` sent at `timestamp` (Unix seconds, decimal digits)."""
    signed = timestamp.encode("ascii") + b"." + body
    return SIGNATURE_SCHEME + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify_signature(
    body: bytes,
    timestamp: str,
    signature_header: str,
    secret: str,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
    now_s: float | None = None,
) -> bool:
    """For receivers: whether `signature_header` (X-ALPR-Signature) signs exactly `body` (the raw request
    bytes, before any JSON parsing) at `timestamp` (X-ALPR-Timestamp) with `secret`, and the timestamp
    lies within `tolerance_s` of `now_s` (default: this clock). The comparison takes constant time."""
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    now = time.time() if now_s is None else now_s
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    expected = sign(body, timestamp, secret).encode()
    return hmac.compare_digest(expected, signature_header.encode("utf-8", "replace"))

"""Delivery of one alert to one receiver, once: an HTTP webhook POST signed with HMAC-SHA256, or an MQTT
publish with QoS 1 in MQTT 5. Each attempt either returns (the receiver acknowledged: a 2xx answer, a PUBACK
whose reason code says the broker took it) or raises `DeliveryRetryable` (worth another attempt later) or
`DeliveryRejected` (the receiver refused it: for good, or, `for_now`, perhaps only for a while). Messages
never hold a secret: a webhook is named by its scheme, host and port only (`receiver_origin`), as Slack- and
Discord-style hooks carry their token in the path.

Webhook signatures (the scheme Stripe uses), for receivers to check:

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

import contextlib
import email.utils
import hashlib
import hmac
import http.client
import json
import math
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC
from http.client import HTTPException
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from common import defaults
from common.alerts import MQTT_RESERVED_PREFIX, MQTT_WILDCARDS, Alert, MqttReceiver, WebhookReceiver
from common.credentials import escape_controls, mask_url, url_origin

SIGNATURE_HEADER = "X-ALPR-Signature"
"""Header of the webhook signature: `sha256=<hex HMAC-SHA256 of timestamp + "." + body>`."""

TIMESTAMP_HEADER = "X-ALPR-Timestamp"
"""Header of the Unix time (seconds) the request was signed at; part of the signed bytes."""

IDEMPOTENCY_HEADER = "Idempotency-Key"
"""Header carrying the alert id, the same on every attempt."""

SIGNATURE_SCHEME = "sha256="
"""Prefix of the signature header's value: the HMAC's hash function."""

USER_AGENT = "alpr-alerts/1"
"""User-Agent of webhook requests."""

SIGNATURE_TOLERANCE_S = 300
"""Default largest difference between a signature's timestamp and the receiver's clock (replays)."""

RETRYABLE_STATUS = frozenset({408, 425, 429})
"""4xx answers worth retrying (timeout, too early, too many requests); every 5xx is too."""

REFUSED_AS_SETTINGS = frozenset({401, 403, 407})
"""4xx answers that refuse the sender, not the alert (the secret, a proxy's credentials): every alert gets
the same, so a probe so refused does not show the receiver taking alerts (`DeliveryRejected.answered`)."""

REFUSED_FOR_NOW = frozenset({401, 403, 404, 405, 407, 410})
"""4xx answers that may be the receiver's state for a while, not the alert's (with every 3xx): a maintenance
window, a deploy, a secret or proxy credentials being rotated; a static maintenance page answers a POST 405.
Rejected at once, every alert raised in a 25 s window of 404 was lost (10 of 22, a review; with 503 all 22
came through): now retried within ALERT_UNKNOWN_RECEIVER_GRACE_S of the alert (`DeliveryRejected.for_now`),
the receiver resting and probed as a failing one. Other 4xx (400, 409, 413, 422...) are about the alert
itself: rejected at once."""

ATTEMPT_SAFETY_S = 1.5
"""An attempt ends this long before its delivery's lease (the receiver's timeout plus
defaults.ALERT_LEASE_MARGIN_S) runs out: its outcome is recorded before another worker may claim it."""

MAX_RETRY_AFTER_S = 3600.0
"""Longest Retry-After honoured as a hint; a receiver asking for more gets this."""

MQTT_KEEPALIVE_S = 60
"""MQTT keepalive announced on connect (a delivery lasts far less)."""

MQTT_POLL_S = 0.05
"""Longest single wait of the MQTT network loop, so a deadline is checked this often."""

MQTT_READ_BUDGET_BYTES = 64 * 1024
"""Most bytes one MQTT attempt reads from its broker: it needs a CONNACK and a PUBACK (4 bytes each).
paho takes any packet up to 256 MB and asks for its whole announced length at once: a hostile broker
took the worker to 890 MB an attempt (a review)."""

CONNACK_REFUSED_FOR_NOW = frozenset({0x86, 0x87, 0x8A, 0x9C, 0x9D})
"""CONNACK reason codes (MQTT 5's; paho gives a 3.1.1 return code its MQTT 5 equivalent: 4 is 0x86, 5 is
0x87) that may be the broker's state for a while, as a webhook's 401/403/3xx (REFUSED_FOR_NOW): Bad user
name or password and Not authorized (a password or an ACL being rotated), Banned (a ban lifted), Use another
server and Server moved (a broker being moved). Rejected at once, every alert raised while an operator
rotated a broker's password was lost; now retried within ALERT_UNKNOWN_RECEIVER_GRACE_S of the alert
(`DeliveryRejected.for_now`), the receiver resting and probed. Server unavailable (3.1.1's 3), Server busy,
Quota exceeded, Connection rate exceeded, Unspecified and Implementation specific error are retried as a
503 is (any code not named here or in CONNACK_REFUSED_FOR_GOOD is)."""

CONNACK_REFUSED_FOR_GOOD = frozenset({0x81, 0x82, 0x84, 0x85, 0x8C, 0x90, 0x95, 0x9A, 0x9B})
"""CONNACK reason codes that refuse the CONNECT itself, the same on every attempt (only a new paho or new
receiver settings could change it): Malformed packet, Protocol error, Unsupported protocol version (under
3.1.1, or `protocol: 5`: `auto` falls back to 3.1.1 on it), Client identifier not valid (paho's own, 3.1.1's
2), Bad authentication method (only user name and password are sent), and the will's Topic name invalid,
Packet too large, Retain and QoS not supported (no will is sent: a broker that says so never takes this
client)."""


class DeliveryError(Exception):
    """A delivery attempt failed; the message names the receiver (its origin, no path) and why, never a
    secret. What the receiver said in its own words (an HTTP reason phrase) is kept apart, in `words`:
    they may quote the alert's plate ("409 duplicate plate KPX4721"), so they go to the deliveries table's
    last error (`recorded`), never to a log line."""

    def __init__(self, message: str, words: str = "") -> None:
        super().__init__(message)
        self.words = words

    @property
    def recorded(self) -> str:
        """The message with the receiver's words, as the deliveries table keeps it."""
        return f"{self} {self.words}".rstrip()


class DeliveryRetryable(DeliveryError):  # noqa: N818 (the name says what to do with it)
    """The receiver may take the alert later: unreachable, overloaded, timed out, 408/425/429/5xx."""

    def __init__(self, message: str, retry_after_s: float | None = None, words: str = "") -> None:
        super().__init__(message, words)
        self.retry_after_s = retry_after_s
        """The receiver's Retry-After, in seconds, when it sent one: a hint for the next attempt."""


class DeliveryRejected(DeliveryError):  # noqa: N818
    """The receiver refused the alert (4xx, a redirect, bad credentials, a bad topic): for good, retrying
    cannot help, its settings or the receiver must change; or, `for_now`, perhaps only for a while."""

    def __init__(self, message: str, words: str = "", answered: bool = False, for_now: bool = False) -> None:
        super().__init__(message, words)
        self.answered = answered
        """Whether the refusal shows the receiver up and taking alerts, refusing this one (a 4xx of its own:
        409 a duplicate, 404, 422...), not its settings (a redirect; 401, 403, 407: the secret or a proxy's
        credentials) nor its load (408, 425, 429 are retried): a probe so refused hands its mark on."""
        self.for_now = for_now
        """Whether the refusal may be the receiver's state for a while rather than the alert's (REFUSED_FOR_NOW,
        a redirect, CONNACK_REFUSED_FOR_NOW): the worker retries it within ALERT_UNKNOWN_RECEIVER_GRACE_S of the
        alert, the receiver resting as a failing one, and rejects it after."""


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


def deliver(alert: Alert, receiver: WebhookReceiver | MqttReceiver, now_s: float | None = None) -> str | None:
    """Deliver `alert` to `receiver` once; raises DeliveryRetryable or DeliveryRejected when it fails.
    `now_s`: the time a webhook is signed at, by the chain's shared clock (default: this host's). Returns
    a caveat on the acknowledgement where there is one, for the worker to tell once (an MQTT broker that
    speaks 3.1.1 only: its PUBACK does not say whether it took the publish)."""
    if isinstance(receiver, WebhookReceiver):
        deliver_webhook(alert, receiver, now_s)
        return None
    return deliver_mqtt(alert, receiver)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answers, not followed: urllib would turn the POST into a bodiless GET."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def attempt_bound_s(timeout_s: float) -> float:
    """How long one attempt may take in all: the host name's lookup and the connection (each address tried
    for the timeout), then the exchange (the timeout), ending within the delivery's lease. An attempt
    bounded by the timeout alone never reached a receiver whose name took the timeout to look up (glibc's
    default with a dead first nameserver) or whose first address drops packets (a broken IPv6 route)."""
    return timeout_s + defaults.ALERT_LEASE_MARGIN_S - ATTEMPT_SAFETY_S


class _Deadline:
    """Ends an attempt in time: urllib's timeout bounds each socket operation, so a receiver that trickles
    its answer a byte at a time would hold a delivery (and its lease) for ever. The exchange has `seconds`
    from its connection, and the whole attempt `bound_s` from its start, whichever ends first; each
    connection's socket is known from its making (urllib lets go of it once the headers are in), and when
    the time is up it is shut, which wakes a read."""

    def __init__(self, seconds: float, bound_s: float) -> None:
        self.seconds, self.ends_at = seconds, time.monotonic() + bound_s
        self.sockets: list[socket.socket] = []
        self.expired = threading.Event()
        self.lock = threading.Lock()
        self.timer = self._timer(bound_s)

    def _timer(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(max(0.0, seconds), self._expire)
        timer.daemon = True
        timer.start()
        return timer

    def connected(self, sock: socket.socket) -> bool:
        """A connection is made: the exchange's time starts now, within the attempt's bound; False (and
        nothing started) when the attempt's time is up already. One critical section with `_expire`: a
        timer firing between a check and the socket's registration shut nothing, and a trickling receiver
        held the attempt 90 s past its bound (a review)."""
        with self.lock:
            if self.expired.is_set():
                return False
            self.sockets.append(sock)
            self.timer.cancel()
            self.timer = self._timer(min(self.seconds, self.ends_at - time.monotonic()))
            return True

    def cancel(self) -> None:
        with self.lock:
            self.timer.cancel()

    def track(self, connection_class: type[http.client.HTTPConnection]) -> Callable[..., http.client.HTTPConnection]:
        def connect(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
            connection = connection_class(*args, **kwargs)
            opened = connection.connect

            def connect_in_time() -> None:  # the host name's lookup cannot be cut short: a connection made
                opened()  # after the attempt's bound sent the alert as the lease ran out, and another worker
                if connection.sock is None or not self.connected(connection.sock):  # sent it again (a receiver
                    connection.close()  # saw it twice); now nothing is sent
                    raise TimeoutError("connected only after the attempt's time: nothing sent")

            connection.connect = connect_in_time  # type: ignore[method-assign]
            connection.response_class = _Answer
            return connection

        return connect

    def _expire(self) -> None:
        with self.lock:
            self.expired.set()
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def opener(self) -> urllib.request.OpenerDirector:
        """urllib's opener (proxies from the environment, verified TLS) without redirects, its
        connections tracked."""
        return urllib.request.build_opener(_NoRedirect, _TrackedHttp(self), _TrackedHttps(self))


class _AnsweredYes(Exception):  # noqa: N818 (what happened, not a failure)
    """The receiver's status line said 2xx, but what followed it could not be read."""


class _Answer(http.client.HTTPResponse):
    """http.client's response, its status line taken on its own: a receiver that answered `200 OK`, then
    headers http.client refuses (more than 100 of them, a line over 64 KiB) or a reset, took the alert all
    the same. Counted as a broken answer, the alert was sent again and again for a day (a review: 7 POSTs
    of the same alerts within minutes)."""

    def begin(self) -> None:
        try:
            super().begin()
        except (HTTPException, OSError):
            if isinstance(self.status, int) and 200 <= self.status <= 299:  # the status line was read
                raise _AnsweredYes from None
            raise


class _TrackedHttp(urllib.request.HTTPHandler):
    """urllib's HTTP handler, each connection it opens known to the exchange's deadline."""

    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self.deadline.track(http.client.HTTPConnection), req)


class _TrackedHttps(urllib.request.HTTPSHandler):
    """urllib's HTTPS handler (default verified context), each connection known to the deadline."""

    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(
            self.deadline.track(http.client.HTTPSConnection), req,
            context=self._context, check_hostname=self._check_hostname,  # type: ignore[attr-defined]
        )  # fmt: skip


def deliver_webhook(alert: Alert, receiver: WebhookReceiver, now_s: float | None = None) -> None:
    """POST `alert` to the receiver's URL, signed at `now_s` (Unix seconds, by the chain's shared clock:
    the alert worker passes Postgres's at the claim; default this host's); returns once it answered 2xx."""
    body = alert_body(alert)
    timestamp = str(int(time.time() if now_s is None else now_s))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(body, timestamp, receiver.secret.get_secret_value()),
        IDEMPOTENCY_HEADER: alert.alert_id,
    }
    request = urllib.request.Request(receiver.url, data=body, headers=headers, method="POST")
    where = f"webhook {receiver_origin(receiver.url)}"
    # the whole exchange, not each read, within timeout_s; the lookup and connection before it too, within the lease
    deadline = _Deadline(receiver.timeout_s, attempt_bound_s(receiver.timeout_s))
    try:
        # a 2xx status line is the receiver's yes: its body is not read (one sent a byte at a time held a
        # worker past its lease, the 200 thrown away and the alert sent again and again)
        with deadline.opener().open(request, timeout=receiver.timeout_s):
            deadline.cancel()
    except _AnsweredYes:  # its headers unreadable, but the yes is the status line
        return
    except urllib.error.HTTPError as error:
        with error:
            phrase = _hide_url(" ".join(str(error.reason).split()), receiver.url)
            raise _status_error(where, error.code, phrase, error.headers.get("Retry-After")) from None
    except ValueError as error:  # UnicodeEncodeError: a URL http.client cannot send (as the receivers file checks)
        raise DeliveryRejected(f"{where}: the URL cannot be sent: {type(error).__name__}") from None
    except (urllib.error.URLError, OSError, HTTPException) as error:  # unreachable, timeouts, broken answers
        if deadline.expired.is_set():
            raise DeliveryRetryable(f"{where}: timed out: no answer within {receiver.timeout_s:g} s") from None
        # a broken answer quotes the receiver (BadStatusLine: its status line, plate and all): its words,
        # recorded, never logged
        if isinstance(error, HTTPException):
            words = escape_controls(mask_url(_hide_url(" ".join(str(error).split()), receiver.url)))[:200]
            raise DeliveryRetryable(f"{where}: {type(error).__name__}", words=words) from None
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        raise DeliveryRetryable(f"{where}: {_describe(reason, receiver.url)}") from None
    finally:
        deadline.cancel()


def receiver_origin(url: str) -> str:
    """A webhook's URL as it may be shown: scheme, host and port only (common/credentials.url_origin).
    Its path, query, fragment and any user:password are left out: each may be the receiver's token
    (`https://hooks.slack.com/services/T0/B0/<token>`)."""
    return url_origin(url)


MIN_HIDDEN_WORD = 6
"""A path segment or query value this long or longer is hidden wherever a message quotes it: a token
(Slack's, Discord's) is far longer; shorter words (`hook`, `api`, `v1`) would garble the message."""


def _hide_url(text: str, url: str) -> str:
    """`text` (a library's or the receiver's words) with the receiver's URL replaced by its origin, and
    any piece of its path, query or fragment quoted by "…", longest first (http.client quotes a
    request's path in some errors; a receiver may echo its path, with or without the query, or just
    its token): the whole tail, path, query and fragment, and each path segment and query value of
    MIN_HIDDEN_WORD characters or more, as written and decoded."""
    parts = urlsplit(url)
    tail = url[len(f"{parts.scheme}://{parts.netloc}") :]
    text = text.replace(url, receiver_origin(url))
    pieces = {tail, tail.split("#")[0], parts.path, parts.query, parts.fragment}
    words = [*parts.path.split("/"), *(v for _, v in parse_qsl(parts.query, keep_blank_values=True))]
    words += [pair.partition("=")[2] for pair in parts.query.split("&")]
    pieces |= {w for word in words for w in (word, unquote(word)) if len(w) >= MIN_HIDDEN_WORD}
    for piece in sorted((p for p in pieces if len(p) > 1), key=len, reverse=True):  # a bare "/" hides nothing
        text = text.replace(piece, "…")
    return text


def _status_error(where: str, status: int, reason: str, retry_after: str | None) -> DeliveryError:
    """The error for a receiver's non-2xx answer (`reason`: its reason phrase, the URL hidden, kept as the
    error's `words`)."""
    message, words = f"{where}: HTTP {status}", mask_url(escape_controls(reason)[:80])
    if status in RETRYABLE_STATUS or 500 <= status <= 599:
        return DeliveryRetryable(message, retry_after_s=_retry_after_s(retry_after), words=words)
    if 300 <= status <= 399:
        return DeliveryRejected(f"{message} (redirects are not followed: give the final URL)", words, for_now=True)
    if status in (401, 403):  # what a receiver checking the signature answers (verify_signature failed)
        check = "the receiver's secret must be the receivers file's, its clock within its tolerance of Postgres's"
        return DeliveryRejected(f"{message} (the signature refused? {check}, which dates it)", words, for_now=True)
    answered = 400 <= status <= 499 and status not in REFUSED_AS_SETTINGS
    return DeliveryRejected(message, words, answered=answered, for_now=status in REFUSED_FOR_NOW)


def _retry_after_s(value: str | None, now_s: float | None = None) -> float | None:
    """A Retry-After as a wait in seconds, capped at MAX_RETRY_AFTER_S: ASCII digits, or an HTTP date (its
    distance from `now_s`, default this host's clock, none where past); anything else is no hint. It took
    `str.isdigit`, which says yes to `²` (one Latin-1 byte a receiver sent) where `float` says no: the
    ValueError escaped as an unexpected error, the receiver never rested, and it got 64 requests in 45 s
    where a plain 503 got 5 (a review)."""
    text = (value or "").strip()
    if text.isascii() and text.isdigit():
        digits = text.lstrip("0") or "0"  # int() refuses more than 4,300 digits: a long one is past the cap
        return MAX_RETRY_AFTER_S if len(digits) > 12 else min(float(digits), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):  # not a date (or an empty header)
        return None
    if when.tzinfo is None:  # "-0000": a date that names no zone, which HTTP's always is (GMT)
        when = when.replace(tzinfo=UTC)
    wait_s = when.timestamp() - (time.time() if now_s is None else now_s)
    return min(wait_s, MAX_RETRY_AFTER_S) if wait_s > 0 else None


def _describe(error: object, url: str | None = None) -> str:
    """An exception (or urllib's reason string) in a few words: its kind, then its message, with the
    receiver's `url` hidden (`_hide_url`) and any other URL's password masked."""
    if isinstance(error, TimeoutError):
        return "timed out"
    text = " ".join(str(error).split())
    text = escape_controls(mask_url(_hide_url(text, url) if url else text))
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {text}"[:200] if text else type(error).__name__
    return text[:200]


def deliver_mqtt(alert: Alert, receiver: MqttReceiver) -> str | None:
    """Publish `alert` to the receiver's topic with QoS 1; returns once the broker acknowledged it
    (PUBACK) and, under MQTT 5, said it took it (its reason code). The exchange (CONNACK, PUBACK) runs
    within `receiver.timeout_s` of the connection, the whole attempt within attempt_bound_s, on this
    thread (paho's synchronous loop: no network thread to leak), reading at most MQTT_READ_BUDGET_BYTES
    from the broker, and it always disconnects. With `protocol: auto`, a broker that refuses MQTT 5 (its
    CONNACK: unsupported protocol version) is spoken to in 3.1.1 in the same attempt: the caveat returned
    says that its refusals cannot be seen, for the worker to tell once."""
    where = f"mqtt {receiver.host}:{receiver.port}"
    if MQTT_WILDCARDS & set(receiver.topic) or not receiver.topic or receiver.topic.startswith(MQTT_RESERVED_PREFIX):
        raise DeliveryRejected(f"{where}: a topic to publish to may not be empty, hold the wildcards + or #, or"
                               " start with $ (the broker's own)")  # fmt: skip
    bound_at = time.monotonic() + attempt_bound_s(receiver.timeout_s)
    if receiver.protocol == "3.1.1":
        _publish(alert, receiver, MQTTProtocolVersion.MQTTv311, bound_at, where)
        return None
    try:
        _publish(alert, receiver, MQTTProtocolVersion.MQTTv5, bound_at, where)
        return None
    except _SpeaksNoMqtt5:
        if receiver.protocol == "5":
            raise DeliveryRejected(f"{where}: the broker does not speak MQTT 5 (its CONNACK: unsupported protocol"
                                   " version): set protocol: 3.1.1 or auto for it") from None  # fmt: skip
    _publish(alert, receiver, MQTTProtocolVersion.MQTTv311, bound_at, where)
    return f"{where} {MQTT_311_CAVEAT}"


MQTT_311_CAVEAT = (
    "speaks MQTT 3.1.1 only (it refused MQTT 5): a publish its ACL refuses is acknowledged all the same, and"
    " counted delivered; only MQTT 5's PUBACK says so. Each attempt connects twice: set `protocol: 3.1.1` for it"
    " to connect once, or upgrade the broker"
)
"""What the worker tells, once, of a receiver whose broker `auto` found speaking 3.1.1 only."""

PUBACK_REFUSED_FOR_GOOD = frozenset({0x87, 0x90})
"""MQTT 5 PUBACK reason codes that refuse a publish for good: Not authorized (the broker's ACL) and Topic
Name invalid. Other codes from 0x80 up (Quota exceeded, Unspecified error...) are retried; below it
(Success; 0x10, No matching subscribers) the broker took it."""


class _SpeaksNoMqtt5(Exception):  # noqa: N818 (what happened)
    """The broker's CONNACK to an MQTT 5 CONNECT: unsupported protocol version (a 3.1.1 broker's 0x01)."""


def _publish(alert: Alert, receiver: MqttReceiver, protocol: MQTTProtocolVersion, bound_at: float, where: str) -> None:
    """One connection of `deliver_mqtt`, in `protocol`, within the attempt's bound (`bound_at`, monotonic)."""
    client = _client(receiver, protocol, where)
    connack: list[ReasonCode] = []
    puback: list[tuple[ReasonCode, Properties | None]] = []
    client.on_connect = lambda _client, _userdata, _flags, code, _properties: connack.append(code)
    client.on_publish = lambda _client, _userdata, _mid, code, properties: puback.append((code, properties))
    try:
        # paho bounds the TLS handshake by the keepalive: no longer than the attempt may take
        keepalive = min(MQTT_KEEPALIVE_S, max(1, math.ceil(receiver.timeout_s)))
        client.connect(receiver.host, receiver.port, keepalive=keepalive)  # the lookup: unbounded, so checked
        if time.monotonic() >= bound_at:  # connected as the lease ran out: nothing published
            raise DeliveryRetryable(f"{where}: connected only after the attempt's time: nothing sent")
        deadline = min(time.monotonic() + receiver.timeout_s, bound_at)  # the exchange's time starts now
        _loop_until(client, lambda: bool(connack), deadline, f"{where}: no CONNACK")
        _check_connack(connack[0], protocol, where)
        info = client.publish(receiver.topic, alert_body(alert), qos=receiver.qos)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise DeliveryRetryable(f"{where}: publish failed: {mqtt.error_string(info.rc)}")
        _loop_until(client, info.is_published, deadline, f"{where}: no PUBACK")
    except (DeliveryError, _SpeaksNoMqtt5):
        raise
    except _PastReadBudget as error:  # a broker sending what no attempt needs: retried after the back-off
        raise DeliveryRetryable(f"{where}: {error}") from None
    except (OSError, ValueError, RuntimeError) as error:  # refused, reset, unresolvable, timed out
        raise DeliveryRetryable(mask_url(f"{where}: {_describe(error)}")) from None
    except Exception as error:  # an answer paho cannot parse (an MQTT 5 CONNACK without its properties)
        raise DeliveryRetryable(f"{where}: the broker's answer cannot be read ({type(error).__name__})") from None
    finally:
        _close(client)
    if puback:  # under 3.1.1, always Success
        _check_puback(*puback[0], where)


def _client(receiver: MqttReceiver, protocol: MQTTProtocolVersion, where: str) -> _BoundedClient:
    """paho's client for one connection to the receiver's broker: TLS and credentials as its settings say."""
    client = _BoundedClient(CallbackAPIVersion.VERSION2, protocol=protocol)
    client.connect_timeout = receiver.timeout_s
    if receiver.uses_tls:  # the broker's certificate and host name verified (paho's defaults)
        try:
            client.tls_set(ca_certs=receiver.ca_file)
        except (OSError, ValueError) as error:  # a ca_file that holds no certificate (the receivers file checks)
            raise DeliveryRejected(f"{where}: TLS cannot be set up: {_describe(error)}") from None
    if receiver.username is not None:
        password = receiver.password.get_secret_value() if receiver.password is not None else None
        client.username_pw_set(receiver.username, password)
    return client


def _check_connack(code: ReasonCode, protocol: MQTTProtocolVersion, where: str) -> None:
    """Raises unless the CONNACK accepted the connection: _SpeaksNoMqtt5 where an MQTT 5 CONNECT was refused
    for its version; DeliveryRejected, `for_now`, for CONNACK_REFUSED_FOR_NOW (credentials) and for good for
    CONNACK_REFUSED_FOR_GOOD; DeliveryRetryable for the rest (a busy or unavailable broker)."""
    if not code.is_failure:
        return
    if protocol == MQTTProtocolVersion.MQTTv5 and code.getName() == "Unsupported protocol version":
        raise _SpeaksNoMqtt5
    refusal = f"{where}: the broker refused the connection: {code.getName()} (0x{code.value:02X})"
    if code.value in CONNACK_REFUSED_FOR_NOW:  # the receiver's user name and password, perhaps being rotated
        raise DeliveryRejected(f"{refusal} (tried again for a while: the receiver's credentials or the broker's"
                               " settings may be changing)", for_now=True)  # fmt: skip
    if code.value in CONNACK_REFUSED_FOR_GOOD:
        raise DeliveryRejected(refusal)
    raise DeliveryRetryable(refusal)


def _check_puback(code: ReasonCode, properties: Properties | None, where: str) -> None:
    """Raises where an MQTT 5 PUBACK refused the publish: DeliveryRejected for PUBACK_REFUSED_FOR_GOOD,
    DeliveryRetryable for another code from 0x80 up. The broker's reason string is recorded, never logged."""
    if not code.is_failure:
        return
    refusal = f"{where}: the broker refused the publish: {code.getName()} (0x{code.value:02X})"
    said = getattr(properties, "ReasonString", None)
    words = escape_controls(" ".join(str(said).split()))[:200] if said else ""
    if code.value in PUBACK_REFUSED_FOR_GOOD:
        hint = " (its ACL does not let this client publish to the topic)" if code.value == 0x87 else ""
        raise DeliveryRejected(refusal + hint, words)
    raise DeliveryRetryable(refusal, words=words)


class _PastReadBudget(Exception):  # noqa: N818 (what happened)
    """The broker sent, or announced, more than an attempt reads (MQTT_READ_BUDGET_BYTES)."""


class _BoundedClient(mqtt.Client):
    """paho's client reading at most MQTT_READ_BUDGET_BYTES from its connection. paho reads a packet's
    fixed header a byte at a time, then asks `_sock_recv` for its whole announced remaining length: a
    request past what is left of the budget is refused before anything is allocated for it, and so is
    any read once the budget is spent (a broker streaming small packets). `_PastReadBudget` is no
    OSError, so paho does not take it for a lost connection: it ends the attempt. (`_sock_recv` is
    paho's own; the pinned paho-mqtt 2.1.0 reads through it alone, TLS included.)"""

    read_bytes = 0
    """Bytes read from the broker on this client's connections."""

    def _sock_recv(self, bufsize: int) -> bytes:
        left = MQTT_READ_BUDGET_BYTES - self.read_bytes
        if bufsize > left:
            raise _PastReadBudget(
                f"the broker sent or announced more than the {MQTT_READ_BUDGET_BYTES} bytes an attempt reads"
                f" (a CONNACK and a PUBACK are 4 each; {bufsize} bytes asked for, {left} left): cut off"
            )
        data = super()._sock_recv(bufsize)
        self.read_bytes += len(data)
        return data


def _loop_until(client: mqtt.Client, done: Callable[[], bool], deadline: float, late: str) -> None:
    """Run the client's network loop until `done()`; DeliveryRetryable(`late`) past the deadline or
    when the connection is lost."""
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeliveryRetryable(f"{late} within the timeout")
        rc = client.loop(timeout=min(remaining, MQTT_POLL_S))
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and not done():
            raise DeliveryRetryable(f"{late}: {mqtt.error_string(rc)}")


def _close(client: mqtt.Client) -> None:
    """Disconnect (sent at once: no loop thread) and release every socket the client holds."""
    try:
        if client.is_connected():
            client.disconnect()
    except OSError:  # the connection is already gone
        pass
    finally:
        client._reset_sockets()  # paho has no public close; this closes the connection and its wake-up pair

"""Alert ids (`alert_id`): deterministic, so that a match raises one alert however often it is matched, and
keyed with the chain's job key, so that an id tells no listed plate."""

from __future__ import annotations

import hashlib
import hmac

ALERT_ID_LABEL = b"alpr alert id v1"
"""What the job key is an HMAC key for, to make the key alert ids are keyed with (never a job's signature
nor the key's fingerprint: common/job_key.py)."""


def alert_id(kind: str, *parts: object, key: str | None = None) -> str:
    """A deterministic alert id: the same match always has the same id (idempotent), in every sighting
    worker holding the same job key. With the chain's job key (ALPR_JOB_KEY), an HMAC-SHA256 of the parts
    under a key made of it: a plain hash of a frame id, list and plate, logged and an RQ job's id, gave the
    listed plate to whoever knew the frame id, by trying each plate of its format offline (a review). Without
    a key, a SHA-256 of the parts, as before. Ids are kept as raised: an alert raised before a key was set
    keeps its id, and only a new match's id is compared (ON CONFLICT), so none of them changes."""
    message = "|".join(str(p) for p in parts).encode()
    if key is None:
        return f"{kind}-" + hashlib.sha256(message).hexdigest()[:32]
    id_key = hmac.new(key.encode(), ALERT_ID_LABEL, hashlib.sha256).digest()
    return f"{kind}-" + hmac.new(id_key, message, hashlib.sha256).hexdigest()[:32]

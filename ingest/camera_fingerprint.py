"""A camera's settings as an ingest node publishes them with its claim on it (ingest/claims.py): what a node
taking the camera over compares with its previous holder's. Two nodes' cameras files may give one camera id
other settings (another URL, rate, plate region): a node that took the camera over sampled another physical
camera under that id, with other plate formats, and nothing said so (a review).

The source is published as a digest, never as written: a URL may hold a password. The digest is keyed by
the chain's job key where one is set (every node of a chain has it; a reader of Redis without it cannot test
guessed URLs against the digest). Where no key is set, the digest is of the URL with its credentials masked
(common/credentials.mask_url): a plain digest of the whole URL let a reader of the queues' Redis test
guessed camera passwords against it offline (a review). A password changed alone is then not told as other
settings; host, port, path and every other setting still are."""

from __future__ import annotations

import hashlib
import hmac
import json

from common.credentials import mask_url
from common.redis_json import json_object
from ingest.cameras import CameraConfig
from ingest.claim_scripts import FIELD_BOUND

COMPARED = ("source", "sample_fps", "region", "roi", "enabled")
"""The settings compared, in the order a difference is told."""


def camera_fingerprint(camera: CameraConfig, key: str | None = None) -> str:
    """The camera's settings (COMPARED) as compact JSON, its source as a digest: keyed by `key`, or of the
    URL with its credentials masked where there is none."""
    source = camera.source.strip()
    if key:
        digest = hmac.new(key.encode(), source.encode(), hashlib.sha256).hexdigest()
    else:
        digest = hashlib.sha256(mask_url(source).encode()).hexdigest()
    roi = None if camera.roi is None else hashlib.sha256(json.dumps(camera.roi).encode()).hexdigest()[:16]
    fields = {"source": digest[:24], "sample_fps": camera.sample_fps, "region": camera.region,
              "roi": roi, "enabled": camera.enabled}  # fmt: skip
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def differing(mine: str, theirs: str) -> list[str]:
    """The names of the settings that differ between two fingerprints (COMPARED order); none where the other
    is empty or unreadable (a node of an earlier version publishes none; anyone who can reach Redis may
    write one: JSON nested past the recursion limit stopped the node comparing it)."""
    other, own = json_object(theirs, FIELD_BOUND), json_object(mine, FIELD_BOUND)
    if other is None or own is None:
        return []
    return [name for name in COMPARED if own.get(name) != other.get(name)]

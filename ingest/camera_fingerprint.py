"""A camera's settings as an ingest node publishes them with its claim on it (ingest/claims.py): what a node
taking the camera over compares with its previous holder's. Two nodes' cameras files may give one camera id
other settings (another URL, rate, plate region): a node that took the camera over sampled another physical
camera under that id, with other plate formats, and nothing said so (a review).

The source is published as a digest, never as written: a URL may hold a password. The digest is keyed by
the chain's job key where one is set (every node of a chain has it; a reader of Redis without it cannot test
guessed URLs against the digest). Where no key is set, the digest is of the URL with its credentials masked
(common/credentials.mask_url): a plain digest of the whole URL let a reader of the queues' Redis test
guessed camera passwords against it offline (a review). A password changed alone is then not told as other
settings; host, port, path and every other setting still are.

A fingerprint names its source digest's scheme (SCHEME_FIELD: keyed or masked, and its version): the
masked digest replaced a plain one, and the first node of the new version to claim a camera after a node of
the old found "settings differ: source" and counted alpr_camera_settings_changed_total, firing
AlprCameraSettingsChanged at every upgrade and rollback (a review; holder records live a day). Two
fingerprints of different schemes (an older one names none) leave the source unknown: not told as
differing; the other settings are still compared."""

from __future__ import annotations

import hashlib
import hmac
import json

from common.credentials import mask_url
from common.redis_json import json_object
from ingest.cameras import CameraConfig
from ingest.claim_scripts import FIELD_BOUND

COMPARED = ("source", "sample_fps", "region", "roi", "enabled", "footage")
"""The settings compared, in the order a difference is told."""

COMPARED_WHERE_BOTH_NAME = ("footage",)
"""Settings a node of an earlier release publishes none of: compared only where both fingerprints name them
(an upgraded node taking a camera over from an older one told no difference that is not one)."""

SCHEME_FIELD = "source_scheme"
"""The fingerprint's field naming how its source was digested; a fingerprint of an older version has none."""

KEYED_SCHEME, MASKED_SCHEME = "hmac-sha256-1", "masked-sha256-1"
"""The schemes of the source's digest: keyed by the job key, or of the URL with its credentials masked
(a new scheme is a new name: fingerprints of two schemes never compare their sources)."""


def camera_fingerprint(camera: CameraConfig, key: str | None = None) -> str:
    """The camera's settings (COMPARED) as compact JSON, its source as a digest: keyed by `key`, or of the
    URL with its credentials masked where there is none."""
    source = camera.source.strip()
    if key:
        digest, scheme = hmac.new(key.encode(), source.encode(), hashlib.sha256).hexdigest(), KEYED_SCHEME
    else:
        digest, scheme = hashlib.sha256(mask_url(source).encode()).hexdigest(), MASKED_SCHEME
    roi = None if camera.roi is None else hashlib.sha256(json.dumps(camera.roi).encode()).hexdigest()[:16]
    fields = {"source": digest[:24], SCHEME_FIELD: scheme, "sample_fps": camera.sample_fps, "region": camera.region,
              "roi": roi, "enabled": camera.enabled, "footage": camera.footage}  # fmt: skip
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def differing(mine: str, theirs: str) -> list[str]:
    """The names of the settings that differ between two fingerprints (COMPARED order); none where the other
    is empty or unreadable (a node of an earlier version publishes none; anyone who can reach Redis may
    write one: JSON nested past the recursion limit stopped the node comparing it). The sources are
    compared only where both fingerprints name one scheme (SCHEME_FIELD): else the source is unknown; so is
    `footage` where either names none (COMPARED_WHERE_BOTH_NAME)."""
    other, own = json_object(theirs, FIELD_BOUND), json_object(mine, FIELD_BOUND)
    if other is None or own is None:
        return []
    schemes = own.get(SCHEME_FIELD), other.get(SCHEME_FIELD)
    compared = [name for name in COMPARED if name != "source" or (schemes[0] is not None and len(set(schemes)) == 1)]
    compared = [name for name in compared if name not in COMPARED_WHERE_BOTH_NAME or (name in own and name in other)]
    return [name for name in compared if own.get(name) != other.get(name)]

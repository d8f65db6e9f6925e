"""The settings that change each role's results, one list per role, and their fingerprint: every member
of a pool publishes both with its heartbeat (an RQ worker in its registration, a sighting worker and an
ingest node beside their beats), `alpr status` shows the pools whose live members disagree, and each
process exports its fingerprint as `alpr_settings_info` (AlprPoolSettingsMixed). Sighting workers run
mid-upgrade with ALPR_ALERT_REPEAT_S 10 and 60 raised 1, 10 or 7 alerts for one scenario, and nothing
showed that the pool was mixed.

Only plain settings are listed: never a secret (a password, the job key), a URL (it may carry one), a
file of secrets (the receivers'), nor a host's own folders. A value is published as it is set (a path by
its file name), so the fingerprint is no digest of anything secret."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from common.config import Settings
from common.credentials import escape_controls
from common.deployment import Deployment, parse, parse_signature, signature
from common.redis_json import json_object
from common.setting_environment import ENV_PREFIX

ROLE_SETTINGS: dict[str, tuple[str, ...]] = {
    "ingest": ("sample_fps", "ocr_region", "jpeg_quality"),
    "detect": (
        "detector_backend", "detector_weights", "detector_imgsz", "detector_confidence", "detector_half",
        "detector_max_downscale", "ocr_crop_margin", "max_frame_age_s",
    ),
    "ocr": ("ocr_engine", "ocr_model", "ocr_max_candidates"),
    "redact": ("redact_method", "keep_frames", "keep_max_age_h", "jpeg_quality", "detector_confidence"),
    "sight": (
        "sighting_gap_s", "sighting_settle_s", "alert_repeat_s", "watch_max_distance", "watch_read_min_confidence",
        "watch_fuzzy_min_probability", "ocr_min_confidence",
    ),
    "alert": ("alert_give_up_s",),
}  # fmt: skip
"""Per role, the Settings fields (ALPR_ + the name in capitals) whose value changes what its members
produce from the same input: which plates are found and read, how reads group into sightings and alerts,
which frames are kept and how hidden. Not those that change only speed or where things go (threads,
batch sizes, devices, URLs, folders), nor one a role reads and its results do not depend on: the plate
region is the ingest node's (ALPR_OCR_REGION, for each camera without a `region` of its own, as
ALPR_SAMPLE_FPS for one without a `sample_fps`: ingest/cameras.py); each frame carries it, and an OCR
worker reads it with that region's formats whatever its own ALPR_OCR_REGION (which names only the reader
it loads at start), a sighting worker never reads it. It was listed for those two pools, where it changed
no result, and not for the ingest nodes, which ignored it (and ALPR_SAMPLE_FPS, listed) until then: `alpr
status` showed settings in force that were not (a review)."""

NEVER_PUBLISHED = ("database_url", "redis_url", "frame_store_url", "alert_receivers", "keep_dir", "model_dir",
                   "ledger_spool_dir", "sqlite_path", "datasets_dir")  # fmt: skip
"""Settings never in a heartbeat, besides the secrets (SecretStr): URLs may carry a password, the
receivers file holds webhook secrets, and folders are each host's own."""

FINGERPRINT_CHARS = 12
"""Hex characters of a fingerprint (48 bits of SHA-256: two settings never share one by chance)."""

FINGERPRINT = re.compile(f"[0-9a-f]{{{FINGERPRINT_CHARS}}}")
"""A fingerprint as the chain writes it (anything else read back is no entry of ours)."""

MAX_ENTRY_BYTES = 2048
"""Longest published entry read back (the chain writes about 300 bytes; a forged one is left unread)."""


def check_role_settings() -> None:
    """Every listed field exists and is publishable (run at import: a secret added to a list fails every
    role at start, in the tests first, never reaching Redis)."""
    for role, names in ROLE_SETTINGS.items():
        for name in names:
            field = Settings.model_fields.get(name)
            if field is None or name in NEVER_PUBLISHED or "password" in name or name == "job_key":
                raise RuntimeError(f"{role}: {name} is no publishable setting")
            if SecretStr in getattr(field.annotation, "__args__", (field.annotation,)):
                raise RuntimeError(f"{role}: {name} is a secret")


check_role_settings()


def published_value(value: Any) -> Any:
    """A setting's value as published: a path by its file name (the folder is the host's own)."""
    return value.name if isinstance(value, Path) else value


@dataclass(frozen=True)
class RoleSettings:
    """A pool member's settings that change its results, and their fingerprint."""

    role: str
    values: dict[str, Any]
    fingerprint: str
    deployment: Deployment | None = None
    """The deployment it belongs to (common/deployment.py), published beside its settings, not in them."""
    signature: str | None = None
    """`deployment` signed with the member's job key (common/deployment.py); None without a key."""

    def entry(self) -> str:
        """The JSON a member publishes: {"fingerprint": ..., "settings": {...}, "deployment": {...}}, the
        deployment's `signature` among its parts where the member has a job key."""
        fields: dict[str, Any] = {"fingerprint": self.fingerprint, "settings": self.values}
        if self.deployment is not None:
            signed = {"signature": self.signature} if self.signature is not None else {}
            fields["deployment"] = self.deployment.parts() | signed
        return json.dumps(fields, separators=(",", ":"))


def fingerprint(values: dict[str, Any]) -> str:
    """The first FINGERPRINT_CHARS hex characters of the SHA-256 of `values` as canonical JSON."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_CHARS]


def role_settings(
    settings: Settings, role: str, facts: dict[str, str] | None = None, deployment: Deployment | None = None
) -> RoleSettings:
    """`role`'s settings that change its results, as its members publish them, and `facts` its process
    found that do too (the detector's weights file's digest: two hosts' files of one name, one of them made
    by `alpr setup --calibrate` or replaced by hand, looked alike); with the `deployment` it belongs to,
    signed with the job key where one is set."""
    values = {name: published_value(getattr(settings, name)) for name in ROLE_SETTINGS[role]} | (facts or {})
    key = settings.secret("job_key")
    signed = signature(key, role, deployment) if key is not None and deployment is not None else None
    return RoleSettings(role, values, fingerprint(values), deployment, signed)


def parse_entry(role: str, raw: bytes | str | None) -> RoleSettings | None:
    """A published entry as read back from Redis; None for none, or for one the chain did not write
    (not JSON, oversized, no fingerprint). Text shown from it has its control characters written out."""
    fields = json_object(raw, MAX_ENTRY_BYTES)
    if fields is None:
        return None
    published, values = fields.get("fingerprint"), fields.get("settings")
    if not isinstance(values, dict) or not isinstance(published, str) or not FINGERPRINT.fullmatch(published):
        return None
    safe = {
        escape_controls(str(k))[:64]: v for k, v in values.items() if isinstance(v, str | int | float | bool | None)
    }
    values = {k: escape_controls(v) if isinstance(v, str) else v for k, v in safe.items()}
    deployment = fields.get("deployment")
    return RoleSettings(role, values, published, parse(deployment), parse_signature(deployment))


def variable(name: str) -> str:
    """The environment variable of setting `name`: ALPR_ALERT_REPEAT_S; a fact's name as it is."""
    return ENV_PREFIX + name.upper() if name in Settings.model_fields else name

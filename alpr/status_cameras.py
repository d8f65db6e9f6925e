"""The cameras' states as `alpr status` reads them (common/queues.CAMERA_STATE_KEY, written by each ingest node with
every depth refresh, ingest/job_packer.py): each one's state, since when, its source errors and, where its node
judges it silent (ingest/camera_silence.py: alpr_camera_silent, AlprCameraSilent), since when it has sampled
nothing: `alpr status` said nothing of a silent camera (a review). Any client of the queues' Redis may write the
hash: each value is read within MAX_STATE_BYTES, and only the fields and types ingest writes are taken."""

from __future__ import annotations

from typing import Any

import redis

from alpr.status_claims import read_claims
from alpr.status_reads import WrongTypes, camera_fields, format_age, number
from common import defaults, queues
from common.bounded_scan import Fields
from common.credentials import escape_controls
from common.redis_json import json_object

MAX_STATE_BYTES = 1024
"""Longest camera state read (ingest writes some 60 bytes: state, since, errors; some 85 with silent_since)."""

STATE_FIELDS = ("state", "since", "errors", "silent_since")
"""The fields of a camera's state ingest writes (silent_since only while its node judges it silent)."""

LIVE_STATES = ("connected", "reconnecting", "connecting")
"""A camera's states while its ingest node runs (the others, failed and ended, it leaves when done); `connecting`
is said only of a silent camera whose thread set no state (ingest/camera_silence.NO_STATE_YET)."""

NODE_GONE = "node gone"
"""The state shown for a camera left live by a node whose claim on it lapsed (a node killed)."""


def text(value: bytes | str) -> str:
    """A Redis key or value as text to print: bytes that are not UTF-8 shown with replacement characters,
    control characters written out (a camera named with a line break forged rows of the table, and
    escape codes reached the operator's terminal: a security audit)."""
    return escape_controls(value.decode(errors="replace") if isinstance(value, bytes) else value)


def camera_state(value: bytes | str) -> dict[str, Any]:
    """A camera's state as ingest writes it (JSON: STATE_FIELDS); {} for anything else."""
    parsed = json_object(value, MAX_STATE_BYTES)
    if parsed is None:
        return {}
    return {
        k: text(v) if isinstance(v, str) else v
        for k, v in parsed.items()
        if k in STATE_FIELDS and isinstance(v, str | int | float) and not isinstance(v, bool)  # (true: 1 s)
    }


def camera_states(connection: redis.Redis, types: WrongTypes) -> tuple[Fields, dict[bytes, dict[str, Any]]]:
    """The state hash as read (within its bounds), and each camera's state: NODE_GONE for a live one no node
    claims any more (`mark_cameras_without_node`)."""
    stored = camera_fields(connection, types, queues.CAMERA_STATE_KEY, MAX_STATE_BYTES)
    states = {k: camera_state(v) for k, v in stored.values.items()}
    mark_cameras_without_node(connection, states)
    return stored, states


def mark_cameras_without_node(connection: redis.Redis, states: dict[bytes, dict[str, Any]]) -> None:
    """A camera whose last state is live but that no node claims any more (ingest/claims.py: a claim
    lapses CAMERA_CLAIM_TTL_S after a killed node's last renewal) shows NODE_GONE: it showed `connected`
    for ever after its node was killed, the state having no expiry (a review). A claim no node could have
    written (no expiry, past the claims' TTL: alpr/status_claims.py) holds it no more than none does."""
    from ingest.claims import CLAIM_PREFIX

    live = [camera for camera, state in states.items() if state.get("state") in LIVE_STATES]
    claims = read_claims(connection, [CLAIM_PREFIX.encode() + camera for camera in live])
    for camera, claim in zip(live, claims, strict=True):
        if not claim.held:
            states[camera]["state"] = NODE_GONE


CLOCK_SKEW_S = 300.0
"""How far ahead of this host's clock an ingest host's may run: a silence said to begin later is no time."""


def silent_for(state: dict[str, Any], now: float) -> float | None:
    """How long a camera has sampled nothing, where its node (live, holding it) judges it silent; None where it
    does not say so, or says so of a camera not live (a node gone, failed, ended) or with no usable time."""
    since = number(state.get("silent_since"))
    if state.get("state") not in LIVE_STATES or since <= 0 or since > now + CLOCK_SKEW_S:  # (a forged future)
        return None
    return max(0.0, now - since)


def shown_state(state: dict[str, Any], now: float) -> str:
    """A camera's state in the table: `silent` and for how long where its node judges it silent, else its
    state and for how long it has been in it."""
    if (silent := silent_for(state, now)) is not None:
        return f"silent {format_age(silent)}"
    if "since" in state:
        return f"{state.get('state', '-')} {format_age(now - number(state['since']))}"
    return str(state.get("state", "-"))


def silent_meaning() -> str:
    """What `silent` means, as the alert's (AlprCameraSilent) does."""
    return (
        f"  silent: its ingest node holds it and has sampled nothing from it for {defaults.CAMERA_SILENT_S:g} s,"
        f" or {defaults.CAMERA_SILENT_INTERVALS} of its sample intervals where those are longer, neither failed"
        " nor ended (alpr_camera_silent: AlprCameraSilent)"
    )


def silent_document(states: dict[bytes, dict[str, Any]], now: float) -> dict[str, dict[str, Any]]:
    """`alpr status --json`'s `silent_cameras`: per camera its node judges silent, its state and for how long it
    has sampled nothing (`silent_for_s`)."""
    return {
        text(camera): {"state": state["state"], "silent_for_s": round(silent, 1)}
        for camera, state in sorted(states.items())
        if (silent := silent_for(state, now)) is not None
    }

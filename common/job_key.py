"""Whether every role holds the same job key (ALPR_JOB_KEY): each role publishes its key's fingerprint
in the queues' Redis as it starts, and compares it with those already there. A key differing between
roles (a secret file with a trailing space) went unnoticed until every frame was lost: the ingest node
said nothing, the detector refused every job, and `alpr replay` called them malformed.

A fingerprint is an HMAC of a fixed label with the key: it tells two keys apart, and gives nothing a
plain hash of the key would (whoever reads Redis cannot check a guessed key against a digest seen
elsewhere); the key itself is never written."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import socket
from dataclasses import dataclass

import redis

from common.bounded_hash import read_within_bounds
from common.credentials import escape_controls
from common.deployment import Deployment, parse
from common.queues import redis_now
from common.redis_json import json_object

FINGERPRINTS_KEY = "alpr:job-key:fingerprints"
"""Redis hash: role -> JSON {fingerprint, host, at, deployment} of the job key it started with, and of its
deployment (common/deployment.py; none from an older version), the last to start of each role: a role
restarted replaces its entry."""

ROLES = ("ingest", "detect", "ocr", "redact", "sight", "alert")
"""The roles that queue or run jobs, each with its entry: only these are read back (a forged field of
another name is never fetched)."""

FINGERPRINT_LABEL = b"alpr job key fingerprint v1"
"""What the key is an HMAC key for, to make its fingerprint (never the jobs' own message format)."""

NO_KEY = "none"
"""The fingerprint of a role without a job key: its jobs are unsigned, and keyed workers refuse them."""

FINGERPRINT_CHARS = 16
"""Hex characters of a fingerprint shown and compared (64 bits: two keys never share one by chance)."""

MAX_ENTRY_BYTES = 1024
"""Longest entry read back (the chain writes about 100 bytes; a forged one is left unread)."""


def key_fingerprint(key: str | None) -> str:
    """The fingerprint of job key `key` (NO_KEY without one)."""
    if key is None:
        return NO_KEY
    return hmac.new(key.encode(), FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:FINGERPRINT_CHARS]


@dataclass(frozen=True)
class Published:
    """A role's fingerprint as it published it: which host, when (Redis's clock, seconds)."""

    role: str
    fingerprint: str
    host: str
    at_s: float
    deployment: Deployment | None = None

    def describe(self, now_s: float) -> str:
        """`ingest on cam-host (key 1a2b3c4d5e6f7a8b, 3 min ago)`; `(no job key, ...)` for NO_KEY."""
        key = "no job key" if self.fingerprint == NO_KEY else f"key {self.fingerprint}"
        return f"{self.role} on {self.host} ({key}, {format_ago(now_s - self.at_s)})"


def format_ago(seconds: float) -> str:
    """How long ago, roughly: `40 s ago`, `3 min ago`, `5 h ago`, `2 days ago`."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago" if seconds < 172800 else f"{seconds / 86400:.0f} days ago"


def published(connection: redis.Redis) -> list[Published]:
    """Every role's entry that reads back as the chain writes it (a forged or oversized one is left)."""
    found = read_within_bounds(connection, FINGERPRINTS_KEY, dict.fromkeys(ROLES, MAX_ENTRY_BYTES))
    entries = []
    for role, value in found.values.items():
        if (entry := parse_entry(role, value)) is not None:
            entries.append(entry)
    return entries


def parse_entry(role: str, value: bytes | str | None) -> Published | None:
    """An entry as read back; None for one the chain did not write (common/redis_json.py)."""
    fields = json_object(value, MAX_ENTRY_BYTES)
    if fields is None:
        return None
    try:
        fingerprint, host, at_s = str(fields["fingerprint"]), str(fields["host"]), float(fields["at"])
    except (TypeError, ValueError, KeyError):
        return None
    if not math.isfinite(at_s):
        return None
    fingerprint, host = escape_controls(fingerprint[:FINGERPRINT_CHARS]), escape_controls(host[:64])
    return Published(role, fingerprint, host, at_s, parse(fields.get("deployment")))


def others_disagreeing(
    connection: redis.Redis, key: str | None, role: str | None = None, host: str | None = None
) -> list[Published]:
    """The roles whose published key is not `key`: this process's own earlier entry (the same role on
    the same host: its previous run, perhaps with the key now fixed) left out."""
    host = host or socket.gethostname()
    mine = key_fingerprint(key)
    return [
        entry
        for entry in published(connection)
        if entry.fingerprint != mine and not (entry.role == role and entry.host == escape_controls(host[:64]))
    ]


def publish(
    connection: redis.Redis, role: str, key: str | None, deployment: Deployment | None = None
) -> list[Published]:
    """Publish `role`'s fingerprint of `key`, with its `deployment`; returns the other roles' entries whose
    key differs, as they were before this one was written."""
    host = socket.gethostname()
    disagreeing = others_disagreeing(connection, key, role, host)
    entry: dict[str, object] = {"fingerprint": key_fingerprint(key), "host": host[:64], "at": redis_now(connection)}
    if deployment is not None:
        entry["deployment"] = deployment.parts()
    connection.hset(FINGERPRINTS_KEY, role, json.dumps(entry))
    return disagreeing


def disagreement(connection: redis.Redis) -> str | None:
    """The published entries described, when they do not all hold one key (`alpr status`), else None."""
    entries = published(connection)
    if len({entry.fingerprint for entry in entries}) < 2:
        return None
    now_s = redis_now(connection)
    return ", ".join(entry.describe(now_s) for entry in entries)

"""What `alpr status` reads from keys anyone with access to the queues' Redis may write, read so that no
forgery ends it or floods it (a review): a key of the chain's holding another type than the chain writes
is named on stderr in one line and what status would have read there is left out, the rest shown (one such
key ended the chain's part with WRONGTYPE); a queue's registered workers, the cameras counted and those no
node claims are read up to a count, each name and field within a bound, and listed up to a count (100,000
forged worker names took 23 s; 300,000 forged camera names 17 s, 500 MB and 300,000 lines; three 150 MB
holder records 450 MB printed)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import redis
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.utils import utcparse
from rq.worker import Worker
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from alpr.status_claims import read_claims
from common.bounded_hash import BoundedFields, read_many_within_bounds
from common.bounded_scan import Fields, hash_within_bounds, scan_within_bounds
from common.credentials import escape_controls
from common.queues import MAX_MEMBERS_READ, QUEUE_NAMES, StageJob, stage_queue

T = TypeVar("T")
U = TypeVar("U")

TYPE_WORDS = {"zset": "sorted set"}
"""Redis's TYPE names as said to the operator (the others as they are: hash, set, list, string, stream)."""


class WrongTypes:
    """The chain's keys found holding another type than the chain writes, each told once on stderr."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection
        self.found: dict[str, str] = {}
        """Key (as shown) -> the type it holds."""

    def read(self, keys: Mapping[str | bytes, str], reader: Callable[[], T], fallback: U) -> T | U:
        """`reader()`, which reads `keys` (key -> the type the chain writes there); `fallback` where one of
        them holds another type (WRONGTYPE), that key told. Any other error is the caller's."""
        try:
            return reader()
        except redis.ResponseError as error:
            if "WRONGTYPE" not in str(error):
                raise
        if not self.check(keys):  # changed back meanwhile: still told, by the keys read
            self.tell(", ".join(shown(key) for key in keys), "another type", "types")
        return fallback

    def check(self, keys: Mapping[str | bytes, str]) -> bool:
        """Tell each of `keys` that holds another type than its own; whether one did."""
        with self.connection.pipeline(transaction=False) as pipeline:
            for key in keys:
                pipeline.type(key)
            found = [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in pipeline.execute()]
        wrong = [
            (key, kind) for (key, wanted), kind in zip(keys.items(), found, strict=True) if kind not in (wanted, "none")
        ]
        for key, kind in wrong:
            self.tell(shown(key), TYPE_WORDS.get(kind, kind), TYPE_WORDS.get(keys[key], keys[key]))
        return bool(wrong)

    def tell(self, key: str, kind: str, wanted: str) -> None:
        if key not in self.found:
            self.found[key] = kind
            print(f"alpr: {key} holds a {kind}, not the {wanted} the chain writes there (written by another client?):"
                  " what status reads there is left out", file=sys.stderr)  # fmt: skip


def shown(key: str | bytes) -> str:
    """A key as text to print: control characters written out, at most 100 characters."""
    text = key.decode(errors="replace") if isinstance(key, bytes) else key
    return escape_controls(text[:100] + ("..." if len(text) > 100 else ""))


MAX_WORKER_KEY_BYTES = 512
"""Longest worker key read from a queue's worker set (`rq:worker:` and a name of stage, host, pid, run, token)."""

MAX_MEMBERS_LOOKED_AT = 100_000
"""The most members of a queue's worker set looked at (in Redis: only those naming a hash are sent)."""

WORKER_FIELDS: dict[str, Callable[[str], Any]] = {
    "pid": int, "last_heartbeat": utcparse, "birth": utcparse, "failed_job_count": int,
    "successful_job_count": int, "total_working_time": float, "current_job_working_time": float,
}  # fmt: skip
"""The fields of a worker's registration RQ parses as it reads one, each with its parser."""

WORKER_FIELD_BYTES = 64
"""Longest value of a WORKER_FIELDS field read (a date or a number)."""


@dataclass(frozen=True)
class Registered:
    """A queue's registered workers whose registrations read as RQ writes them (their keys, sorted), and
    how many members its worker set holds when that is more than were looked at (else None)."""

    keys: list[str]
    members_unread: int | None


def registered_workers(connection: redis.Redis, queue_name: str) -> Registered:
    """The workers registered on queue `queue_name` whose registrations read as RQ's: one that does not
    (forged, a foreign app's, a name that is not UTF-8) is no worker of ours, and made `alpr status` end in
    a traceback (a review). Of at most MAX_MEMBERS_LOOKED_AT members, those naming a hash are sent (forged
    names with no registration stay in Redis), at most MAX_MEMBERS_READ; their fields read within
    WORKER_FIELD_BYTES, in a round trip. Raises ResponseError (WRONGTYPE) where the set is not one."""
    set_key = WORKERS_BY_QUEUE_KEY % queue_name
    prefix = Worker.redis_worker_namespace_prefix
    listed = scan_within_bounds(connection, prefix + "*", MAX_WORKER_KEY_BYTES, MAX_MEMBERS_READ, set_key, "hash",
                                MAX_MEMBERS_LOOKED_AT)  # fmt: skip
    names = []
    for name in listed.names:
        try:
            names.append(name.decode())
        except UnicodeDecodeError:
            continue
    read = read_many_within_bounds(connection, names, dict.fromkeys(WORKER_FIELDS, WORKER_FIELD_BYTES))
    keys = sorted(name for name, fields in zip(names, read, strict=True) if registration_read(fields))
    return Registered(keys, None if listed.complete else int(connection.scard(set_key)))


def registration_read(fields: BoundedFields | None) -> bool:
    """Whether a worker's registration exists and each field RQ parses does parse (a forged one ended
    RQ's reading of it in a traceback)."""
    if fields is None or not fields.exists or fields.over:
        return False
    try:
        for name, value in fields.values.items():
            if value:
                WORKER_FIELDS[name](value.decode())
    except (ValueError, UnicodeDecodeError, OverflowError):
        return False
    return True


@dataclass(frozen=True)
class QueueRow:
    """A queue's row: its jobs waiting, running and failed (None: a key of it holds another type), and
    its registered workers (None: its worker set is not a set)."""

    counts: tuple[int, int, int] | None
    workers: Registered | None

    @property
    def worker_count(self) -> int | str:
        return "?" if self.workers is None else len(self.workers.keys)


def queue_row(connection: redis.Redis, types: WrongTypes, stage: str) -> QueueRow:
    """Stage `stage`'s queue row, each part read apart (a key of the wrong type leaves out its part)."""
    queue = stage_queue(connection, stage)
    started = StartedJobRegistry(queue=queue, job_class=StageJob)
    failed = FailedJobRegistry(queue=queue, job_class=StageJob)

    def counts() -> tuple[int, int, int]:
        return queue.count, started.get_job_count(cleanup=False), failed.get_job_count(cleanup=False)

    found = types.read({queue.key: "list", started.key: "zset", failed.key: "zset"}, counts, None)
    workers_key = WORKERS_BY_QUEUE_KEY % queue.name
    return QueueRow(found, types.read({workers_key: "set"}, partial(registered_workers, connection, queue.name), None))


def tell_unread_members(rows: dict[str, QueueRow]) -> None:
    """A queue's worker set holding more members than are read (forged, or a leak) told on stderr: its
    workers counted may be short."""
    for stage, row in rows.items():
        if row.workers is not None and row.workers.members_unread is not None:
            print(f"alpr: warning: the {stage} queue's worker set ({WORKERS_BY_QUEUE_KEY % QUEUE_NAMES[stage]}) holds"
                  f" {row.workers.members_unread} members (forged?): not all were read (at most {MAX_MEMBERS_READ}"
                  f" workers, {MAX_MEMBERS_LOOKED_AT} names), the workers counted may be short",
                  file=sys.stderr)  # fmt: skip


MAX_CAMERAS_READ = 10_000
"""Most camera names read of each kind of key that names one (wanted, holder record)."""

STAT_BYTES = 32
"""Longest count or time read from the chain's statistics hashes (a float as Redis writes one)."""

MAX_UNCLAIMED_SHOWN = 20
"""Unclaimed cameras listed by name; the rest counted."""

CAMERA_ID_BYTES = 64
"""Longest camera id (ingest/cameras.py): a key naming a longer one is none of a node's."""

HOLDER_BOUNDS = {"node": 128, "renewed": 32, "released": 8}
"""A holder record's fields read, each within its bound (a node's id is at most some 90 bytes)."""


@dataclass(frozen=True)
class Unclaimed:
    """The cameras no live node claims, each with its last holder in words; whether every key naming a
    camera was looked at, and how many named one longer than a camera id (passed over)."""

    cameras: list[tuple[str, str]]
    complete: bool
    too_long: int

    def lines(self) -> list[str]:
        """The listing as printed: at most MAX_UNCLAIMED_SHOWN cameras, the rest counted."""
        lines = [f"  {camera:<20} {last}" for camera, last in self.cameras[:MAX_UNCLAIMED_SHOWN]]
        if len(self.cameras) > MAX_UNCLAIMED_SHOWN:
            lines.append(f"  and {len(self.cameras) - MAX_UNCLAIMED_SHOWN} more")
        if not self.complete:
            lines.append(f"  (only the first {MAX_CAMERAS_READ} camera names found were looked at: forged keys?)")
        if self.too_long:
            lines.append(
                f"  ({self.too_long} keys naming no camera id, longer than {CAMERA_ID_BYTES} bytes, passed over)"
            )
        return lines


def unclaimed_cameras(connection: redis.Redis, types: WrongTypes) -> Unclaimed:
    """The cameras a node's cameras file names (enabled) or a node has held within HOLDER_TTL_S that no live
    node claims now (ingest/claims.py), each with its last holder in words: a camera only a node refused
    named, or whose node died with no standby, was sampled by none and listed nowhere (a review); so was one
    whose claim key no node could have written (no expiry, past the claims' TTL), said so instead."""
    from ingest.claims import CLAIM_PREFIX, HOLDER_PREFIX, WANTED_PREFIX

    known: dict[bytes, None] = {}
    complete, too_long = True, 0
    for prefix in (WANTED_PREFIX, HOLDER_PREFIX):
        listed = scan_within_bounds(connection, prefix + "*", len(prefix) + CAMERA_ID_BYTES, MAX_CAMERAS_READ)
        known.update(dict.fromkeys(name[len(prefix) :] for name in listed.names))
        complete, too_long = complete and listed.complete, too_long + listed.too_long
    cameras = sorted(known)
    claims = read_claims(connection, [CLAIM_PREFIX.encode() + camera for camera in cameras])
    free = [(camera, claim) for camera, claim in zip(cameras, claims, strict=True) if not claim.held]
    holders = read_many_within_bounds(connection, [HOLDER_PREFIX.encode() + c for c, _ in free], HOLDER_BOUNDS)
    unclaimed = []
    for (camera, claim), holder in zip(free, holders, strict=True):
        if holder is None:
            types.check({HOLDER_PREFIX.encode() + camera: "hash"})
        # a claim key no node could have written (alpr/status_claims.py) said first
        last = claim.words() or ("its holder record is not a hash" if holder is None else last_holder(holder))
        unclaimed.append((shown(camera), last))
    return Unclaimed(unclaimed, complete, too_long)


def camera_fields(connection: redis.Redis, types: WrongTypes, key: str, max_value_bytes: int) -> Fields:
    """Hash `key` of camera id -> value (a count, a state): ids longer than a camera's and values over
    `max_value_bytes` passed over, at most MAX_CAMERAS_READ; none where it holds another type (told). Each
    was read whole: 300,000 forged fields printed as many rows, a 150 MB state was sent (a review)."""
    read = partial(hash_within_bounds, connection, key, CAMERA_ID_BYTES, max_value_bytes, MAX_CAMERAS_READ)
    return types.read({key: "hash"}, read, Fields({}, 0, True))


def cut_short(tables: list[Fields], cameras: int) -> list[str]:
    """The lines that tell a camera table cut short: cameras over MAX_CAMERAS_READ, fields not read."""
    lines = [f"  and {cameras - MAX_CAMERAS_READ} more cameras"] if cameras > MAX_CAMERAS_READ else []
    if not all(table.complete for table in tables):
        lines.append(f"  (only the first {MAX_CAMERAS_READ} cameras of each count were read: forged fields?)")
    if passed := sum(table.too_long for table in tables):
        lines.append(f"  ({passed} field{'s' if passed > 1 else ''} passed over: a camera id or a value longer than"
                     " the chain writes)")  # fmt: skip
    return lines


def last_holder(holder: BoundedFields) -> str:
    """A camera's last holder in words, from its holder record."""
    node, renewed = holder.values.get("node"), holder.values.get("renewed")
    if node is None:
        return "last held by a node whose id is too long to be one" if "node" in holder.over else "never claimed"
    how = "gave it up" if holder.values.get("released") == b"1" else "stopped renewing"
    return f"last held by ingest node {shown(node)}, which {how} {format_age(time.time() - number(renewed))} ago"


MAX_NUMBER = 1e15
"""Largest count or time (seconds) status takes from Redis: a billion frames a day for 2,700 years, or Unix time
in the year 31 million. A forged 1e308, finite, overflowed the pools' sizing to infinity and ended `alpr
status` in a traceback (a review)."""


def number(value: Any) -> float:
    """A count or time as the chain writes it to Redis (0 to MAX_NUMBER); 0 for anything else, negative or
    past it too (a garbled or hand-set value must not take the whole status down)."""
    try:
        parsed = float(value.decode() if isinstance(value, bytes) else value) if value is not None else 0.0
    except (TypeError, ValueError, UnicodeDecodeError):
        return 0.0
    return parsed if 0 <= parsed <= MAX_NUMBER else 0.0  # NaN too: no comparison holds


def format_age(seconds: float) -> str:
    return (
        f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.0f}h"
    )

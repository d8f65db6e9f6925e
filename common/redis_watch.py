"""Whether a role process's Redis answers, and what it refuses. `alpr_redis_up{redis}`: 1 from its last
command that Redis answered, 0 from one that could not be sent or answered (refused connection, reset,
timed out, Redis loading its data, authentication failing). `alpr_redis_refused_total{redis,reason}`: the
commands Redis answered with a refusal for its own state, not the command's (REFUSAL_REASONS: out of
memory, a read-only replica, a replica cut off from its master, its disk failing, a script past its time,
an ACL denying). A refusal is counted and never reset, as a gauge of the last outcome was: a full or
read-only Redis still answers reads, and every scrape's queue depths (common/metrics.py) set that gauge
back to 1 (a review: 0 in 18 of 200 samples while every write was refused). Every command of the
connection counts, a pipeline's and RQ's alike: the watch sits in the connections of its pool
(redis-py's), and makes no command of its own. A role waits a Redis outage out and loses nothing (recorded
footage, `realtime: false`, waits for it): nothing showed it (a review), as alpr_database_up{pool} shows
Postgres's (common/db_watch.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import redis
from redis.connection import AbstractConnection

from common.metrics import Metrics

REDIS_NAMES = ("queues", "frame_store")
"""The values of the `redis` label: the queues' Redis, and the frame store's where it is another."""

REFUSAL_CLASSES: tuple[tuple[type[redis.ResponseError], str], ...] = (
    (redis.exceptions.OutOfMemoryError, "out_of_memory"),  # OOM: maxmemory reached, noeviction
    (redis.exceptions.ReadOnlyError, "read_only"),  # READONLY: a replica (a failover under way)
    (redis.exceptions.MasterDownError, "master_down"),  # MASTERDOWN: replica-serve-stale-data no, master away
    (redis.exceptions.NoPermissionError, "no_permission"),  # NOPERM: the ACL user may not run it
)
"""Refusals redis-py gives a class of their own (and strips of their first word: match the class)."""

REFUSAL_CODES = {"MISCONF": "misconf", "BUSY": "busy", "NOREPLICAS": "no_replicas"}
"""Refusals redis-py keeps as a plain ResponseError, by their first word: its snapshot failing on disk
(writes stopped), a script or function past busy-reply-threshold (every command refused), fewer replicas in
reach than min-replicas-to-write (every write refused, a review: counted nowhere, `alpr_redis_up` 1). BUSYKEY and
BUSYGROUP are a command's own errors: the whole word is compared."""

REFUSAL_REASONS = frozenset(reason for _, reason in REFUSAL_CLASSES) | frozenset(REFUSAL_CODES.values())
"""The values of alpr_redis_refused_total's `reason` label."""

BACK_PRESSURE = {"frame_store": frozenset({"out_of_memory"})}
"""Refusals an ingest node meets as designed back-pressure, not a fault, by the `redis` name: a frame store
at its maxmemory (noeviction) holds its frames back (README, "No frame lost in silence": skipped as
backpressure, or held and tried again). Not so for the workers (`watch_redis`'s `back_pressure`): a
detector refused room for its plate crops stalled the chain until the frames expired, counted nowhere (a
soak review). Where the frame store is the queues' Redis it is watched as the queues', and full it refuses
their jobs too: counted."""


def refusal_reason(error: redis.ResponseError) -> str | None:
    """The REFUSAL_REASONS value of an error reply refusing a command for Redis's state, else None (a
    command's own error: a wrong type, a syntax error)."""
    for error_class, reason in REFUSAL_CLASSES:
        if isinstance(error, error_class):
            return reason
    return REFUSAL_CODES.get(str(error).split(" ", 1)[0])


class _WatchedConnection(AbstractConnection):
    """A redis-py connection telling each outcome to `answered` (set on a subclass made per pool): whether
    Redis answered, and the reason of a refusal (None for none)."""

    answered: ClassVar[Callable[[bool, str | None], None]]

    def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().connect_check_health(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            type(self).answered(False, None)
            raise

    def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().send_packed_command(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            type(self).answered(False, None)
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = super().read_response(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            type(self).answered(False, None)
            raise
        except redis.ResponseError as error:  # answered: up, and counted where it refuses for its own state
            type(self).answered(True, refusal_reason(error))
            raise
        type(self).answered(True, None)
        return response


def watch_redis(
    connection: redis.Redis, metrics: Metrics, name: str = "queues", *, back_pressure: bool = False
) -> None:
    """Export whether `connection`'s Redis answers as alpr_redis_up{redis=name}, at 1 from now (the role
    has just reached it), and its refusals as alpr_redis_refused_total{redis=name,reason}, each reason at
    0 from now (an alert on their increase sees the first), but for the BACK_PRESSURE ones where the role
    meets them as `back_pressure` (the ingest node). Call it before the connection is shared with
    another thread: the pool's idle connections are closed, and made again watched."""
    pool = connection.connection_pool
    base = pool.connection_class
    if issubclass(base, _WatchedConnection):  # one Redis for the queues and the frame store: watched once
        return
    gauge = metrics.redis_up.labels(redis=name)
    counted = REFUSAL_REASONS - (BACK_PRESSURE.get(name, frozenset()) if back_pressure else frozenset())
    refused = {reason: metrics.redis_refused.labels(redis=name, reason=reason) for reason in sorted(counted)}

    def answered(up: bool, refusal: str | None) -> None:
        gauge.set(1 if up else 0)
        if refusal in refused:
            refused[refusal].inc()

    pool.disconnect()
    pool.connection_class = type(f"Watched{base.__name__}", (_WatchedConnection, base), {
        "answered": staticmethod(answered)})  # fmt: skip
    pool.reset()
    gauge.set(1)

"""Whether a role process's Redis answers, as its `alpr_redis_up{redis}` says: 1 from its last command that
Redis answered, 0 from one that could not be sent or answered (refused, reset, timed out, Redis loading its
data) or that Redis refused for its own state (out of memory, a read-only replica, its disk failing: it takes
no writes). Every command of the connection counts, a pipeline's and RQ's alike: the watch sits in the
connections of its pool (redis-py's), and makes no command of its own. A role waits a Redis outage out and
loses nothing (recorded footage, `realtime: false`, waits for it): nothing showed it (a review), as
alpr_database_up{pool} shows Postgres's (common/db_watch.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import redis
from redis.connection import AbstractConnection

from common.metrics import Metrics

REDIS_NAMES = ("queues", "frame_store")
"""The values of alpr_redis_up's `redis` label: the queues' Redis, and the frame store's where it is another."""

REFUSING_STATES = (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError)
"""Error replies by which Redis refuses a command for its own state, not the command's: counted as down
(redis-py gives them their own class; LOADING is a ConnectionError), as are REFUSING_PREFIXES."""

REFUSING_PREFIXES = ("MISCONF", "MASTERDOWN")
"""The same, where redis-py keeps the reply's words: its snapshot failing on disk, a replica cut off."""


class _WatchedConnection(AbstractConnection):
    """A redis-py connection telling each outcome to `answered` (set on a subclass made per pool)."""

    answered: ClassVar[Callable[[bool], None]]

    def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().connect_check_health(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            type(self).answered(False)
            raise

    def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().send_packed_command(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            type(self).answered(False)
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = super().read_response(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            type(self).answered(False)
            raise
        except redis.ResponseError as error:  # answered: up, unless it refuses for its own state
            refused = isinstance(error, REFUSING_STATES) or str(error).startswith(REFUSING_PREFIXES)
            type(self).answered(not refused)
            raise
        type(self).answered(True)
        return response


def watch_redis(connection: redis.Redis, metrics: Metrics, name: str = "queues") -> None:
    """Export whether `connection`'s Redis answers as alpr_redis_up{redis=name}, at 1 from now (the role
    has just reached it). Call it before the connection is shared with another thread: the pool's idle
    connections are closed, and made again watched."""
    pool = connection.connection_pool
    base = pool.connection_class
    if issubclass(base, _WatchedConnection):  # one Redis for the queues and the frame store: watched once
        return
    gauge = metrics.redis_up.labels(redis=name)
    pool.disconnect()
    pool.connection_class = type(f"Watched{base.__name__}", (_WatchedConnection, base), {
        "answered": staticmethod(lambda up: gauge.set(1 if up else 0))})  # fmt: skip
    pool.reset()
    gauge.set(1)

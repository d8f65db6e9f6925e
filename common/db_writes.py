"""The chain's writes to Postgres: a write that waits out an outage (`write_through_outage`, every log's),
a write Postgres refused said by its class, SQLSTATE and the schema's names, never the row's data
(`DatabaseWriteError`), and the cameras an ingest node registers (`register_cameras`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from common import defaults
from common.backoff import Backoff

log = logging.getLogger(__name__)

T = TypeVar("T")


def write_through_outage(
    pool: ConnectionPool, write: Callable[[psycopg.Connection], T], patience_s: float, what: str = "write"
) -> T:
    """Run `write` in one transaction. While Postgres is unreachable (restarting, failing over), try
    again with backoff for up to `patience_s`, then raise: the job fails and RQ retries it. Errors
    other than a lost connection (a constraint, bad SQL) raise at once, DatabaseWriteError saying
    Postgres refused `what` (a read run so, a replay's dry run, said "refused the write")."""
    deadline = time.monotonic() + patience_s
    backoff = Backoff(*defaults.DB_OUTAGE_BACKOFF_S)
    while True:
        try:
            with pool.connection(timeout=defaults.DB_ATTEMPT_S) as connection, connection.transaction():
                return write(connection)
        except (psycopg.OperationalError, PoolTimeout) as error:
            wait = backoff.next_delay()
            if time.monotonic() + wait > deadline:
                raise
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            log.warning("Postgres unavailable (%s); retrying in %.1f s", reason, wait)
            time.sleep(wait)
        except psycopg.Error as error:
            raise DatabaseWriteError.of(error, what) from None


class DatabaseWriteError(RuntimeError):
    """A write Postgres refused (a constraint, bad data), told by its class, SQLSTATE and the schema's
    names alone: psycopg's text quotes the data (`Failing row contains (KPX4721, …)`, `invalid input
    syntax for type integer: "…"`), which would reach the worker's ERROR log and RQ's failed-job
    registry, kept a week."""

    sqlstate: str | None = None

    @classmethod
    def of(cls, error: psycopg.Error, what: str = "write") -> DatabaseWriteError:
        diag = error.diag
        where = ", ".join(f"{name} {value}" for name, value in (
            ("table", diag.table_name), ("column", diag.column_name), ("constraint", diag.constraint_name),
        ) if value)  # fmt: skip
        refused = cls(f"Postgres refused the {what}: {type(error).__name__} (SQLSTATE {error.sqlstate})"
                      + (f" at {where}" if where else ""))  # fmt: skip
        if error.sqlstate == "42501" and diag.message_primary:  # names a table or schema, never a row's data
            refused = cls(f"{refused}: {diag.message_primary}")
        refused.sqlstate = error.sqlstate
        return refused

    @property
    def of_the_data(self) -> bool:
        """Refused for what a row holds (a data exception or a constraint: SQLSTATE classes 22, 23), so
        the same row is refused again; not for the schema or the rights, which a migration or grant mends."""
        return (self.sqlstate or "")[:2] in ("22", "23")


def register_cameras(pool: ConnectionPool, cameras: list[tuple[str, str, bool]]) -> None:
    """Insert or update (camera_id, region, enabled) rows of the cameras table."""
    with pool.connection() as connection, connection.transaction(), connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO cameras (camera_id, region, enabled) VALUES (%s, %s, %s) ON CONFLICT (camera_id)"
            " DO UPDATE SET region = excluded.region, enabled = excluded.enabled, updated_at = now()",
            cameras,
        )

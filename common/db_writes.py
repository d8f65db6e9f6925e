"""The chain's writes to Postgres: a write that waits out an outage (`write_through_outage`, every log's;
what counts as one, `OUTAGES`: read-only and a lock waited past lock_timeout too),
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
from common.db import WatchedPool

log = logging.getLogger(__name__)

T = TypeVar("T")


OUTAGES: tuple[type[Exception], ...] = (
    psycopg.OperationalError,  # connection lost or refused, a statement cancelled, a lock waited past lock_timeout
    PoolTimeout,  # no pooled connection within DB_ATTEMPT_S
    psycopg.errors.ReadOnlySqlTransaction,  # 25006: a primary demoted (a failover), a standby reached
    psycopg.errors.IdleInTransactionSessionTimeout,  # 25P03: Postgres ended the session idle in its transaction
)
"""What a write waits out, as Postgres being away, rather than a refusal of the write itself. The two InternalErrors
were taken for refusals: a primary made read-only for 60 s failed every OCR and redaction job in hand for good
within milliseconds, three attempts back to back (a review: 79 + 115 jobs in RQ's failed registry)."""


def outage_reason(error: BaseException, what: str = "write") -> str:
    """What an outage error (OUTAGES) says, in the log's words: its kind where told apart (read-only, a lock,
    a session ended), else "Postgres unavailable" and the error's first line (libpq's and Postgres's texts
    name no row's data)."""
    if isinstance(error, psycopg.errors.ReadOnlySqlTransaction):
        return "Postgres read-only: it takes no writes (a failover or demotion? default_transaction_read_only?)"
    if isinstance(error, psycopg.errors.LockNotAvailable):
        return (f"Postgres: the {what} waited {defaults.DB_LOCK_TIMEOUT_S:g} s for a lock held by another session"
                " (lock_timeout; see pg_locks)")  # fmt: skip
    if isinstance(error, psycopg.errors.IdleInTransactionSessionTimeout):
        return "Postgres ended the session idle in its transaction (idle_in_transaction_session_timeout)"
    line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"Postgres unavailable ({line})"


def write_through_outage(
    pool: ConnectionPool, write: Callable[[psycopg.Connection], T], patience_s: float, what: str = "write"
) -> T:
    """Run `write` in one transaction. While Postgres is unreachable (restarting, failing over), read-only
    (a primary demoted), or a table is locked past lock_timeout (OUTAGES), try again with backoff for up to
    `patience_s`, then raise: the job fails and RQ retries it. Logged at WARNING once a call and kind (then
    at DEBUG), and at INFO when the write goes through after. A read-only server's connections are dropped
    (the pool's `drain`), so the next attempt connects afresh: to the new primary behind the same name.
    Errors other than these (a constraint, bad SQL) raise at once, DatabaseWriteError saying Postgres
    refused `what` (a read run so, a replay's dry run, said "refused the write"). Each attempt tells the pool
    (`WatchedPool.answered`) whether it went through or met an outage: the role's alpr_database_up."""
    started = time.monotonic()
    deadline = started + patience_s
    answered = pool.answered if isinstance(pool, WatchedPool) else lambda up: None  # (its alpr_database_up)
    backoff = Backoff(*defaults.DB_OUTAGE_BACKOFF_S)
    told: set[str] = set()
    while True:
        try:
            with pool.connection(timeout=defaults.DB_ATTEMPT_S) as connection, connection.transaction():
                result = write(connection)
        except OUTAGES as error:
            answered(False)
            if isinstance(error, psycopg.errors.ReadOnlySqlTransaction):
                pool.drain()  # every pooled session is on the server that became read-only
            wait = backoff.next_delay()
            if time.monotonic() + wait > deadline:
                raise
            level = logging.DEBUG if type(error).__name__ in told else logging.WARNING
            told.add(type(error).__name__)
            log.log(level, "%s; the %s is tried again with backoff for up to %.0f s", outage_reason(error, what),
                    what, max(deadline - time.monotonic(), 0))  # fmt: skip
            time.sleep(wait)
        except psycopg.Error as error:
            answered(True)  # refused, but it answers: the refusal is the caller's (AlprJobsFailing's) to tell
            raise DatabaseWriteError.of(error, what) from None
        else:
            answered(True)
            if told:
                log.info("Postgres took the %s after %.1f s", what, time.monotonic() - started)
            return result


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


def register_cameras(pool: ConnectionPool, cameras: list[tuple[str, str, bool]], overwrite: bool = True) -> None:
    """Insert or update (camera_id, region, enabled) rows of the cameras table; with `overwrite` False, insert
    only those it lacks (a camera disabled in one node's file must not rewrite the row of a node sampling it)."""
    conflict = "DO UPDATE SET region = excluded.region, enabled = excluded.enabled, updated_at = now()"
    with pool.connection() as connection, connection.transaction(), connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO cameras (camera_id, region, enabled) VALUES (%s, %s, %s) ON CONFLICT (camera_id) "
            + (conflict if overwrite else "DO NOTHING"),
            cameras,
        )

"""A camera's cursor claimed for one round's transaction (`CursorClaims.claim`), and how that transaction
fails: its cursor row locked by a session that is no sighting worker (`CursorHeldError`, told with the
session's pid, user, application and client by `CursorClaims.report`), ended by Postgres
(`ENDED_BY_POSTGRES`) or closed under it (`CameraSessionEndedError`).

Sighting workers take turns at a camera by a per-camera advisory lock, held by the camera's transaction
(`CLAIM`): a worker that does not get it leaves the camera to the worker that has it, quietly. Only then is
the cursor row locked, without waiting (NOWAIT): a lock on it then is another session's, not a sighting
worker's. It used to be locked FOR UPDATE SKIP LOCKED, which was the whole claim, so a DBA's open
transaction on `sighting_cursors` (`SELECT ... FOR UPDATE` in a psql or DBeaver session left open) was taken
for another worker: 150 s held, the camera had no sighting, no alert, no log line and no metric, and a
session forgotten open would have silenced it for good (a review). Now each round fails that camera
(`camera_failed`, AlprSightingCameraFailing) with an ERROR naming the session, at once rather than after a
wait, which would hold up the round's other cameras as long each round.

A sighting worker of an earlier release locks the row FOR UPDATE SKIP LOCKED and takes no advisory lock:
beside one (never a rolling upgrade of this pool) a camera is still grouped by one worker at a time, but a
camera it holds is a failed round here, its ERROR naming that worker's session."""

from __future__ import annotations

import logging
import time

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from common import defaults
from common.db import autocommitting
from common.log_throttle import Throttle
from common.sighting_log import SightingCursor, lock_cursor

log = logging.getLogger(__name__)

CLAIM = (
    "SELECT pg_try_advisory_xact_lock(hashtextextended(%(camera)s::text, 'sighting_cursors'::regclass::oid::bigint))"
)
"""A camera claimed by a sighting worker until its transaction ends; false when another worker has it. The key
is the camera's id hashed with the table's oid as seed: advisory locks are the database's, and schemas of
their own (another deployment, each test) hold cursors of one name, each table its own oid. Taken in the
statement that locks the cursor row (common/sighting_log.lock_cursor) as an uncorrelated subquery: an
InitPlan, evaluated once before the row is read, whose one-time filter reads and locks no row when it is
false. Three statements (the transaction's statement timeout, the claim, the row's lock) were three round
trips of a camera's eleven, every round (a scale review: 500 cameras, rounds of 4.6–12.8 s)."""

STATEMENT_TIMEOUT_MS = round(defaults.SIGHTING_STATEMENT_TIMEOUT_S * 1000)
"""Each statement of a camera's transaction, which holds its cursor locked, is bounded (set with the claim, for
the transaction's later statements; not the watch-lists' load, made outside any transaction,
`SightingStage.refresh_watch`: a long list takes seconds, and holds no camera)."""

HOLDER = """
SELECT l.pid, a.usename, a.application_name, host(a.client_addr), a.state,
    extract(epoch FROM now() - a.xact_start)::float8
FROM sighting_cursors c
JOIN pg_locks l ON l.locktype = 'transactionid' AND l.transactionid = c.xmax AND l.granted AND l.mode = 'ExclusiveLock'
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE c.camera_id = %s
"""
"""The session holding a camera's cursor row locked: the row's xmax is the locking transaction, whose own
id's lock that session holds (several sessions sharing a lock, a multixact, match none). A session of
another role shows its pid, user and application to any role; its client, state and transaction's start only
to a superuser or a member of pg_read_all_stats."""

ENDED_BY_POSTGRES = (psycopg.errors.QueryCanceled, psycopg.errors.IdleInTransactionSessionTimeout)
"""What Postgres raises on a camera's transaction it ended (a statement past SIGHTING_STATEMENT_TIMEOUT_S, a
worker stalled in it past SIGHTING_IDLE_IN_TRANSACTION_S); a session it ended otherwise (pg_terminate_backend,
AdminShutdown) or found closed is a `CameraSessionEndedError`."""


class CameraSessionEndedError(Exception):
    """A camera's connection closed under its transaction: the session ended by Postgres (AdminShutdown,
    pg_terminate_backend, an error read earlier and passed over), or Postgres gone, which the next camera's
    connection tells (PoolTimeout: the round ends there). That camera's failure alone: an OperationalError
    ('the connection is closed') counted the whole round as a Postgres outage, its other cameras not grouped."""


class CursorHeldError(Exception):
    """A camera's cursor row locked by a session that is no sighting worker of this release: the camera is not
    grouped this round, nothing of its transaction committed."""

    def __init__(self, camera_id: str) -> None:
        super().__init__(f"camera {camera_id}: its cursor row is locked by another session")
        self.camera_id = camera_id


class CursorClaims:
    """A worker's claims of its cameras' cursors, and the cameras found held by another session (since when,
    and the ERROR told once a minute a camera)."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[float, Throttle]] = {}
        """The cameras whose cursor another session holds: since when (monotonic), and their ERROR's throttle."""

    def claim(self, connection: psycopg.Connection, camera_id: str) -> SightingCursor | None:
        """The camera's cursor, locked until the transaction ends; None when another sighting worker has the
        camera. CursorHeldError when a session that is no sighting worker holds its row."""
        try:
            cursor = lock_cursor(connection, camera_id, CLAIM, STATEMENT_TIMEOUT_MS)
        except psycopg.errors.LockNotAvailable:
            raise CursorHeldError(camera_id) from None
        if cursor is None:
            return None
        if camera_id in self.held:
            held_s = time.monotonic() - self.held.pop(camera_id)[0]
            log.warning("camera %s: its cursor row is free again after %.0f s; grouped from where it stood",
                        camera_id, held_s)  # fmt: skip
        return cursor

    def report(self, pool: ConnectionPool, error: CursorHeldError) -> None:
        """An ERROR naming the session that holds the camera's cursor row: at once, then once a minute while it
        holds it (with how many rounds failed since)."""
        since, throttle = self.held.setdefault(error.camera_id, (time.monotonic(), Throttle()))
        if not (rounds := throttle.note()):
            return
        log.error(
            "camera %s: its cursor row is locked by a session that is no sighting worker (%s), for %.0f s so far"
            " (%d round(s) failed since the last line): its reads are not grouped and raise no alert until that"
            " transaction ends; commit or roll it back, or end it with pg_terminate_backend (a sighting worker"
            " of an earlier release? stop it: never run two releases of the sighting pool at once)",
            error.camera_id, holder(pool, error.camera_id), time.monotonic() - since, rounds,
        )  # fmt: skip


def holder(pool: ConnectionPool, camera_id: str) -> str:
    """Who holds the camera's cursor row locked (HOLDER), in words; never a query's text."""
    try:
        with pool.connection(timeout=defaults.DB_ATTEMPT_S) as connection, autocommitting(connection):
            row = connection.execute(HOLDER, (camera_id,)).fetchone()
    except (psycopg.Error, PoolTimeout) as error:
        return f"not looked up: {type(error).__name__}"
    if row is None:
        return "not found in pg_locks: several sessions share its lock, or it was let go just now"
    pid, user, application, client, state, open_s = row
    if pid is None:
        return "a prepared transaction: see pg_prepared_xacts, end it with COMMIT PREPARED or ROLLBACK PREPARED"
    words = [f"pid {pid}", f"user {user}", f"application {application!r}"]
    words += [f"client {client}"] if client else []
    words += [f"{state}, in a transaction open {open_s:.0f} s"] if state and open_s is not None else []
    return ", ".join(words)

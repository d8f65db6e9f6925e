"""The schema's record (the schema_migrations table: which migrations are applied) read by `alpr db upgrade` and its
dry run, the wait for it bounded (`read_record`, --lock-wait): another login's `LOCK TABLE schema_migrations` (or
a `VACUUM FULL` of it) held both behind it without limit and without a word (a review). Also how the sessions a
wait is behind are named, here and for the upgrade's turn (common/schema_upgrade.py): pid, user, application,
how long; never their query, which may hold plate text or a secret."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import psycopg
from psycopg_pool import ConnectionPool

from common import defaults
from common.credentials import escape_controls
from common.errors import ConfigError

log = logging.getLogger(__name__)

RECORD = "schema_migrations"
"""The table of the migrations applied (common/schema_upgrade.py makes it)."""

UNBOUNDED = "SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0"
"""Before the record is waited for: its wait bounded by nothing the session, the role or the database sets (a
database's `lock_timeout = '200ms'` failed the read with a bare LockNotAvailable), by --lock-wait alone."""

FIRST_TOLD_S = 1.0
"""How long a wait for the record lasts before a WARNING names who holds it (then every TOLD_EVERY_S)."""

TOLD_EVERY_S = 10.0
"""How often a WARNING names the record's holders again while the wait goes on."""

RECORD_HOLDERS = """
    SELECT l.pid, a.usename, a.application_name, extract(epoch FROM clock_timestamp() - a.xact_start),
           extract(epoch FROM clock_timestamp() - a.backend_start)
    FROM pg_locks AS l LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
    WHERE l.locktype = 'relation' AND l.relation = to_regclass(%(table)s) AND l.mode = 'AccessExclusiveLock'
      AND l.pid IS DISTINCT FROM pg_backend_pid()
    ORDER BY l.granted DESC, l.pid"""
"""The sessions holding (or queued for, ahead of a read) the one lock a read of the record waits for, ACCESS
EXCLUSIVE (`LOCK TABLE`, `VACUUM FULL`, `ALTER TABLE`): as LOCK_HOLDERS of common/schema_upgrade.py says them."""

Holders = list[tuple[int | None, str]]
"""The sessions a wait is behind: each one's pid (None: a prepared transaction), as said (`holders_said`)."""


class SchemaRecord(NamedTuple):
    """The schema's record: the migrations applied, and the schema's version (the highest; None: none)."""

    applied: frozenset[int]
    version: int | None


class RecordLockedError(ConfigError):
    """`read_record` gave up: the record stayed locked past the wait it was given (`waited_s`), by `holders`.
    `said_with` is the message for `command`, with what it had done (`kept`)."""

    def __init__(self, waited_s: float, holders: Holders, command: str, kept: str) -> None:
        super().__init__(self.said_with(waited_s, holders, command, kept))
        self.waited_s, self.holders = waited_s, holders

    @staticmethod
    def said_with(waited_s: float, holders: Holders, command: str, kept: str) -> str:
        """What `command` says when it gives up the record: how long it waited, for what, held by whom, what it
        had done (`kept`), and what to do (as common/schema_upgrade.TurnNotTakenError says it of the turn)."""
        pids = [pid for pid, _ in holders if pid is not None]
        ending = f"SELECT pg_terminate_backend({pids[0]}), as a superuser or its user" if pids else "its session"
        return (
            f"{command}: gave up after {waited_s:g} s waiting to read the schema's record ({RECORD}, which another"
            f" session has locked: LOCK TABLE, VACUUM FULL?): held by {said_holders(holders)}; {kept}. Run it"
            f" again once that has ended, or with a longer --lock-wait SECONDS (0: no limit); or end it ({ending}),"
            " then run it again"
        )


def read_record(pool: ConnectionPool, wait_s: float | None, command: str, kept: str) -> SchemaRecord:
    """The migrations applied and the schema's version, read in one transaction (none where there is no record
    yet), waiting `wait_s` seconds at most (defaults.UPGRADE_TURN_WAIT_S unless given; 0: no limit) for a lock
    another session holds on the record, whatever lock or statement timeout the session, the role or the
    database sets (UNBOUNDED); after FIRST_TOLD_S, then every TOLD_EVERY_S, a WARNING names who holds it, and
    past `wait_s` RecordLockedError does (for `command`, having done `kept`). The wait is the lock's own, in
    slices bounded by lock_timeout up to the next word or the end, each in a savepoint (as wait_for_turn's)."""
    wait_s = defaults.UPGRADE_TURN_WAIT_S if wait_s is None else wait_s
    with pool.connection() as connection, connection.transaction():
        connection.execute(UNBOUNDED)
        started, tell_at = time.monotonic(), FIRST_TOLD_S
        while True:
            slice_s = min(tell_at, wait_s or math.inf) - (time.monotonic() - started)
            connection.execute(f"SET LOCAL lock_timeout = {max(1, math.ceil(slice_s * 1000))}")  # in ms
            try:
                with connection.transaction():  # a savepoint: a slice timed out rolls back to it
                    return _read(connection)
            except psycopg.errors.LockNotAvailable:
                waited = time.monotonic() - started
                holders = record_holders(connection)
                if wait_s and waited >= wait_s:
                    raise RecordLockedError(wait_s, holders, command, kept) from None
                if waited >= tell_at:
                    left = f"giving up in {wait_s - waited:.0f} s" if wait_s else "without limit (--lock-wait 0)"
                    log.warning("%s: waiting %.0f s to read the schema's record (%s), locked by %s; %s",
                                command, waited, RECORD, said_holders(holders), left)  # fmt: skip
                    tell_at = waited + TOLD_EVERY_S


def _read(connection: psycopg.Connection) -> SchemaRecord:
    """The record read on `connection`, in its transaction (empty where there is no record table yet)."""
    exists = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (RECORD,)).fetchone()
    if not exists or not exists[0]:
        return SchemaRecord(frozenset(), None)
    applied = frozenset(int(version) for (version,) in connection.execute(f"SELECT version FROM {RECORD}"))
    return SchemaRecord(applied, max(applied, default=None))


def record_holders(connection: psycopg.Connection) -> Holders:
    """Who holds (or is queued for) the lock that a read of the record waits for (RECORD_HOLDERS), said as
    `holders_said` says them; the statistics snapshot taken afresh (Postgres keeps one per transaction)."""
    connection.execute("SELECT pg_stat_clear_snapshot()")
    return holders_said(connection.execute(RECORD_HOLDERS, {"table": RECORD}).fetchall())


def holders_said(rows: Sequence[Sequence[Any]]) -> Holders:
    """Sessions (pid, user, application, seconds in a transaction, seconds connected: NULL where this role may not
    see them, pg_read_all_stats) as said: their user, application and how long their transaction has been open
    (or, a lock held outside any, how long the session has been connected), or that this is hidden from this
    role: the wait says how long the lock has been held at least. A pid of NULL is a prepared transaction."""
    holders: Holders = []
    for pid, user, application, in_transaction_s, connected_s in rows:
        if pid is None:
            holders.append((None, "a prepared transaction (pg_prepared_xacts: COMMIT or ROLLBACK PREPARED ends it)"))
            continue
        if in_transaction_s is not None:
            since = f"its transaction open {float(in_transaction_s):.0f} s"
        elif connected_s is not None:
            since = f"held by the session outside a transaction, connected {float(connected_s):.0f} s"
        else:
            since = "how long hidden from this role (pg_read_all_stats)"
        holders.append((pid, f"pid {pid} (user {escape_controls(user or '(gone)')}, application"
                             f" {escape_controls(application or '(none)')}, {since})"))  # fmt: skip
    return holders


def said_holders(holders: Holders) -> str:
    """`holders` in one phrase (none: the holder let go between the wait and the look)."""
    return ", ".join(said for _, said in holders) or "a session gone since (try again)"

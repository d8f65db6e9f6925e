"""The schema upgrade (`alpr db upgrade`): the migrations of common/migrations.py applied in order, each in
a transaction of its own under an advisory lock (several processes may upgrade at once), giving up a table a
long reader holds and trying again later (`TableInUseError`, UPGRADE_*), its first read of what is applied
bounded as its turn is (common/schema_record.py); and the check every role makes at start that the schema is
current (`require_schema`), with a WARNING where it is newer than this release's (`newer_schema`); both refuse
a server older than the schema needs (`check_server_version`) before anything is applied or run."""

from __future__ import annotations

import logging
import math
import time

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from common import defaults
from common.backoff import Backoff
from common.errors import ConfigError
from common.migrations import LOCK_MODES, MIGRATION_LOCKS, MIGRATIONS
from common.schema_record import Holders, holders_said, read_record, said_holders

log = logging.getLogger(__name__)

ADVISORY_LOCK_ID = 720_417
"""Postgres advisory lock held while migrating (and granting: common/grants.py, common/pruner_role.py)."""

TAKE_TURN = "SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0"
"""Before the advisory lock is waited for (`wait_for_turn`): its wait bounded by nothing the session, the
role or the database sets (`ALTER DATABASE alpr SET lock_timeout = '200ms'`, as managed Postgres often
has), by UPGRADE_TURN_WAIT_S alone (common/defaults_services.py): a grant cut at 200 ms failed with a
bare LockNotAvailable, an upgrade was told "a table is in use" and gave up (a review)."""

TURN_FIRST_TOLD_S = 1.0
"""How long a wait for the turn lasts before a WARNING names who holds the lock (then every TURN_TOLD_EVERY_S)."""

TURN_TOLD_EVERY_S = 10.0
"""How often a WARNING names the lock's holder again while the wait for the turn goes on."""

LOCK_HOLDERS = """
    SELECT l.pid, a.usename, a.application_name, extract(epoch FROM clock_timestamp() - a.xact_start),
           extract(epoch FROM clock_timestamp() - a.backend_start)
    FROM pg_locks AS l LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid::bigint = %(high)s AND l.objid::bigint = %(low)s
    ORDER BY l.pid"""
"""The sessions holding the advisory lock (`lock_holders`): pid, user, application, how long their transaction
and session have been open (NULL where this role may not see them: pg_read_all_stats); never their query, which
may hold plate text or a secret. One bigint key is held as classid (its high 32 bits) and objid, objsubid 1."""


UPGRADE_LOCK_TIMEOUT = "5s"
"""How long a migration waits for one table's lock (and each of its statements for theirs): one queued
behind a long reader (an export, a count) held every worker's write to that table behind it; past this
the attempt gives up, rolls back, and is tried again after a wait (UPGRADE_BACKOFF_S)."""

UPGRADE_BACKOFF_S = (1.0, 30.0)
"""The wait before the next attempt of a migration whose tables are in use: doubling from the first to
the last (1, 2, 4, 8, 16, 30, 30 s). Tried again after 1 s each time, a long reader's table was asked
for (and every writer of it queued behind the request) five seconds in every six."""

UPGRADE_ATTEMPTS = 8
"""How many attempts one migration gets before `upgrade` gives up with a ConfigError: with the waits
of UPGRADE_BACKOFF_S between them, about two minutes (91 s of waits and up to 5 s a try)."""


MINIMUM_SERVER_VERSION = 150000
"""The oldest PostgreSQL the schema runs on, as server_version_num gives it (15.0): migration 21's per-minute
frame counts are keyed UNIQUE NULLS NOT DISTINCT (PostgreSQL 15) and its triggers bin minutes with date_bin
(14). On 14 the upgrade failed midway with a syntax error naming neither (a review)."""


UPGRADE_SESSION = "SET LOCAL statement_timeout = 0"
"""A migration's transaction runs unbounded by a statement timeout set for the role or the database (`ALTER ROLE
alpr SET statement_timeout`, a guard against runaway queries): migration 15's scans of a 3-million-row frames
log were canceled at 150 ms, and the upgrade stopped with `QueryCanceled`, nothing applied, no migration named
(a review). Its waits are bounded by UPGRADE_LOCK_TIMEOUT instead."""


class MigrationCanceledError(Exception):
    """A migration's statement canceled by Postgres (pg_cancel_backend), its transaction rolled back."""

    def __init__(self, version: int | None, cause: str) -> None:
        super().__init__(f"{f'migration {version}' if version else 'the upgrade'} was canceled ({cause})")
        self.version = version


class TableInUseError(Exception):
    """A migration's attempt gave up waiting for a table's lock (or was chosen by Postgres to end a
    deadlock), its transaction rolled back: which migration, and the table it was asking for, where
    known (None: one of its own statements waited)."""

    def __init__(self, version: int | None, table: str | None) -> None:
        super().__init__(f"{f'migration {version}' if version else 'the upgrade'} waits for {table or 'a table'}")
        self.version, self.table = version, table


def upgrade(pool: ConnectionPool, turn_wait_s: float | None = None) -> list[int]:
    """Apply the migrations not yet applied, each in a transaction of its own with its schema_migrations
    row; returns their versions. A current schema is only read (a role that may not create in the schema,
    a worker's, runs `alpr run` on it).

    All the migrations used to run in one transaction, tried again whole: a lock an earlier migration took
    (14's SHARE lock on `alerts`) was held while a later one (15) waited for a table a long reader held,
    so the chain's alert inserts waited 5 s at a time, 60 s of a 72 s upgrade, and then the upgrade gave
    up having applied nothing (a review). Now each migration commits on its own: an attempt that cannot
    have its tables holds nothing of the migrations before it, and one interrupted midway (given up,
    killed) leaves the schema at the last version applied, from which the next upgrade goes on, redoing
    nothing committed. An attempt waits at most UPGRADE_LOCK_TIMEOUT for a table (so does every write
    queued behind it), then the migration is tried again after a wait that doubles (UPGRADE_BACKOFF_S)
    and reset once one is applied, UPGRADE_ATTEMPTS times, then a ConfigError says which table and what
    was applied. A server older than MINIMUM_SERVER_VERSION is refused first, nothing applied. Each migration
    waits `turn_wait_s` at most for its turn (`wait_for_turn`), then a ConfigError names who holds it; so does
    the first read of what is applied (`read_record`) for a lock on the record."""
    check_server_version(pool)
    record = read_record(pool, turn_wait_s, "alpr db upgrade", "nothing was applied")
    if record.applied >= {version for version, _ in MIGRATIONS}:
        return []
    applied: list[int] = []
    backoff, started, attempts = Backoff(*UPGRADE_BACKOFF_S), time.monotonic(), 0
    while True:
        try:
            version = _apply_next(pool, turn_wait_s)
        except TurnNotTakenError as held:
            kept = f"migrations {applied} were applied and stay" if applied else "nothing was applied"
            raise ConfigError(TurnNotTakenError.said_with(held.waited_s, held.holders, kept)) from None
        except MigrationCanceledError as canceled:
            kept = f"migrations {applied} were applied and stay" if applied else "nothing was applied"
            raise ConfigError(
                f"alpr db upgrade: {canceled}, rolled back: canceled by another session (pg_cancel_backend) or an"
                f" operator; {kept}; run it again"
            ) from None
        except psycopg.errors.InsufficientPrivilege as refused:
            raise ConfigError(not_the_owner(pool, refused, applied)) from None
        except TableInUseError as busy:
            attempts += 1
            if attempts >= UPGRADE_ATTEMPTS:
                kept = (f"migrations {applied} were applied and stay: the schema is at version {applied[-1]},"
                        " where the next upgrade goes on" if applied else "nothing was changed")  # fmt: skip
                raise ConfigError(
                    f"alpr db upgrade: could not lock the tables in {attempts} attempts over"
                    f" {time.monotonic() - started:.0f} s ({busy}: a long query holds it, an export or a count?);"
                    f" {kept}; try again when it has ended"
                ) from None
            wait = backoff.next_delay()
            log.warning("schema upgrade: %s (in use by a long query?); trying again in %.0f s (%d of %d)",
                        busy, wait, attempts, UPGRADE_ATTEMPTS)  # fmt: skip
            time.sleep(wait)
            continue
        if version is None:
            return applied
        applied.append(version)
        backoff.reset()
        attempts = 0


class TurnNotTakenError(ConfigError):
    """`wait_for_turn` gave up: the advisory lock stayed held past the wait it was given (`waited_s`), by
    `holders`. `said_with` is the message with what the upgrade had done before (`kept`)."""

    def __init__(self, waited_s: float, holders: Holders) -> None:
        super().__init__(self.said_with(waited_s, holders, "nothing was changed by this step"))
        self.waited_s, self.holders = waited_s, holders

    @staticmethod
    def said_with(waited_s: float, holders: Holders, kept: str) -> str:
        """What `alpr db upgrade` says when it gives up its turn: how long it waited, for what, held by whom,
        what it had done (`kept`), and what to do."""
        pids = [pid for pid, _ in holders if pid is not None]
        ending = f"SELECT pg_terminate_backend({pids[0]}), as a superuser or its user" if pids else "its session"
        return (
            f"alpr db upgrade: gave up after {waited_s:g} s waiting for its turn (Postgres advisory lock"
            f" {ADVISORY_LOCK_ID}, which upgrades and grants take turns by; any login may take it): held by"
            f" {said_holders(holders)}; {kept}. Another `alpr db upgrade` or grant? Run it again once that has"
            f" ended, or with a longer --lock-wait SECONDS (0: no limit); anything else: end it ({ending}), then"
            " run it again"
        )


def wait_for_turn(connection: psycopg.Connection, wait_s: float | None = None) -> None:
    """Take the advisory lock (ADVISORY_LOCK_ID) for the transaction in hand: an upgrade or a grant of another
    process has it, or any other login (advisory locks need no right). Waited for `wait_s` seconds at most
    (defaults.UPGRADE_TURN_WAIT_S unless given; 0: no limit), whatever lock or statement timeout the session,
    the role or the database sets (TAKE_TURN: they are unbounded after it, until the transaction sets its
    own); after TURN_FIRST_TOLD_S, then every TURN_TOLD_EVERY_S, a WARNING names who holds it
    (`lock_holders`), and past `wait_s` TurnNotTakenError does, the transaction left usable (to be rolled
    back: nothing done in it yet).

    The wait is the lock's own (queued behind its holder, taken the moment it lets go), in slices bounded by
    lock_timeout up to the next word or the end, each in a savepoint: a slice that times out is rolled back
    to it, the transaction's lock, once a slice has it, kept to the transaction's end."""
    wait_s = defaults.UPGRADE_TURN_WAIT_S if wait_s is None else wait_s
    connection.execute(TAKE_TURN)
    started, tell_at = time.monotonic(), TURN_FIRST_TOLD_S
    while True:
        waited = time.monotonic() - started
        slice_s = min(tell_at, wait_s or math.inf) - waited
        connection.execute(f"SET LOCAL lock_timeout = {max(1, math.ceil(slice_s * 1000))}")  # in ms
        try:
            with connection.transaction():  # a savepoint: a slice timed out rolls back to it
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_ID,))
        except psycopg.errors.LockNotAvailable:
            waited = time.monotonic() - started
            holders = lock_holders(connection)
            if wait_s and waited >= wait_s:
                raise TurnNotTakenError(wait_s, holders) from None
            if waited >= tell_at:
                left = f"giving up in {wait_s - waited:.0f} s" if wait_s else "without limit (--lock-wait 0)"
                log.warning("alpr db upgrade: waiting for its turn (Postgres advisory lock %d) %.0f s, held by %s;"
                            " %s", ADVISORY_LOCK_ID, waited, said_holders(holders), left)  # fmt: skip
                tell_at = waited + TURN_TOLD_EVERY_S
            continue
        connection.execute(TAKE_TURN)  # the transaction's own waits unbounded again, as before the slices
        return


def lock_holders(connection: psycopg.Connection) -> Holders:
    """Who holds the advisory lock (LOCK_HOLDERS): each session's pid, with its user, application and how long
    its transaction has been open (or, a lock the session holds outside any, how long it has been connected)
    said; where this role may not see that (pg_read_all_stats, a superuser, or a member of the holder's role
    may), that it is hidden: the wait says how long the lock has been held at least. The statistics snapshot is
    taken afresh (Postgres keeps one per transaction). Never the query: it may hold plate text or a secret."""
    connection.execute("SELECT pg_stat_clear_snapshot()")
    rows = connection.execute(
        LOCK_HOLDERS, {"high": ADVISORY_LOCK_ID >> 32, "low": ADVISORY_LOCK_ID & 0xFFFFFFFF}
    ).fetchall()
    return holders_said(rows)


def not_the_owner(pool: ConnectionPool, refused: psycopg.Error, applied: list[int]) -> str:
    """What to say when the role logged in may not migrate (InsufficientPrivilege): run it as the schema's owner,
    named where the migrations' record shows it. The workers' role, on a schema behind, was told to "log in as
    the workers' role ... or the schema's owner", which it was (a review)."""
    with pool.connection() as connection:
        row = connection.execute(
            "SELECT current_user, (SELECT pg_get_userbyid(relowner) FROM pg_class"
            " WHERE oid = to_regclass('schema_migrations'))"
        ).fetchone()
    who, owner = (row[0], row[1]) if row else ("?", None)
    kept = f"migrations {applied} were applied and stay" if applied else "nothing was applied"
    first = (str(refused).strip().splitlines() or [type(refused).__name__])[0]
    return (
        f"alpr db upgrade: Postgres role {who} may not migrate the schema ({first}); {kept}: run `alpr db upgrade`"
        f" as the schema's owner{f' ({owner})' if owner and owner != who else ''}, the role that created its tables"
    )


def check_server_version(pool: ConnectionPool, needed: int | None = None) -> None:
    """ConfigError naming the server's PostgreSQL version and the one `needed` (MINIMUM_SERVER_VERSION unless
    given, as server_version_num counts: 150000 is 15.0) when the server is older."""
    needed = MINIMUM_SERVER_VERSION if needed is None else needed
    with pool.connection() as connection:
        found = connection.info.server_version
    if found < needed:
        raise ConfigError(
            f"PostgreSQL {server_version_shown(needed)} or later is needed (the schema's per-minute frame counts,"
            f" migration 21, use UNIQUE NULLS NOT DISTINCT and date_bin); this server is PostgreSQL"
            f" {server_version_shown(found)}: upgrade it (pg_upgrade, or the Compose file's postgres:15), nothing"
            " was changed"
        )


def server_version_shown(number: int) -> str:
    """A server_version_num as PostgreSQL names its releases: 150004 is 15.4, 90624 is 9.6.24."""
    if number >= 100000:
        return f"{number // 10000}.{number % 10000}"
    return f"{number // 10000}.{number // 100 % 100}.{number % 100}"


def _apply_next(pool: ConnectionPool, turn_wait_s: float | None = None) -> int | None:
    """Apply the first migration not yet applied, with its schema_migrations row, in one transaction;
    returns its version, or None when there is none left. TableInUseError, the transaction rolled back, when
    one of its tables stays held past UPGRADE_LOCK_TIMEOUT.

    Processes upgrading at once (Compose starts its services together) take turns: the transaction takes
    the advisory lock first and only then reads which migrations are applied, so each is applied once.
    The lock is the transaction's, not the session's: it ends with the transaction however that ends
    (rolled back, the process killed, a frozen process's session ended by the server after
    idle_in_transaction_session_timeout), and never rides on a pooled connection back into the pool, as
    a session lock left behind by an exception would, holding every later upgrade and grant. The wait for
    it is bounded by `turn_wait_s` alone (`wait_for_turn`: UPGRADE_TURN_WAIT_S unless given), not by any lock
    timeout, the database's included: its holder is a migration that is itself bounded, a grant, or any
    login, named when given up; the table locks after it are bounded, and only their wait past
    UPGRADE_LOCK_TIMEOUT is told as a table in use.

    Before the migration's SQL runs, each table it locks (MIGRATION_LOCKS) is asked for in turn, in a
    fixed order, in the mode the migration takes it, and let go again at once (a savepoint rolled back):
    a table held by a long reader fails the attempt before any of the migration's work is done, so
    migration 15's full scans of the frames log and the plate reads are not run for nothing while one
    is held, and no table is held while another is waited for then. The locks are let go rather than
    kept because the migrations read before they alter (15 scans four tables, then adds their checks):
    kept, they would stop the chain's writes to those tables for the whole of the scans. So a reader
    that begins after the check, during the migration's own statements, can still make the attempt wait
    (UPGRADE_LOCK_TIMEOUT at most) holding the tables it has locked so far, and the attempt's work is
    then done again (a review; not mended: rare, and bounded by the timeout)."""
    with pool.connection() as connection:
        version, asking_for = None, None
        try:
            with connection.transaction():
                connection.execute(UPGRADE_SESSION)
                wait_for_turn(connection, turn_wait_s)
                connection.execute(f"SET LOCAL lock_timeout = '{UPGRADE_LOCK_TIMEOUT}'")
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations"
                    " (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                )
                done = {row[0] for row in connection.execute("SELECT version FROM schema_migrations")}
                pending = [(number, statements) for number, statements in MIGRATIONS if number not in done]
                if not pending:
                    return None
                version, statements = pending[0]
                for table, mode in sorted(MIGRATION_LOCKS.get(version, {}).items()):
                    if mode not in LOCK_MODES:
                        raise ValueError(f"migration {version}: no lock mode {mode!r}")
                    asking_for = table
                    with connection.transaction(force_rollback=True):  # a savepoint: the lock let go
                        connection.execute(sql.SQL("LOCK TABLE {} IN {} MODE").format(
                            sql.Identifier(table), sql.SQL(mode)))  # fmt: skip
                asking_for = None
                connection.execute(statements.encode())
                connection.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
            raise TableInUseError(version, asking_for) from None
        except psycopg.errors.QueryCanceled as error:
            raise MigrationCanceledError(version, str(error).strip().splitlines()[0]) from None
    return version


def schema_version(pool: ConnectionPool) -> int | None:
    """The schema's version: the highest migration applied (None: none, or no schema_migrations table)."""
    with pool.connection() as connection:
        return version_in(connection)


def version_in(connection: psycopg.Connection) -> int | None:
    """`schema_version` read on `connection` (in its transaction, where one is open)."""
    exists = connection.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return None
    row = connection.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0]) if row and row[0] is not None else None


def newer_schema(version: int | None) -> str | None:
    """What to say of a schema at `version` newer than this release's last migration (None: it is not): a
    newer release migrated it, and this one, rolled back or not yet upgraded, runs on it as the roles of the
    release before an upgrade do during one (`alpr db upgrade` first, then the roles). It used to pass
    without a word, `alpr db upgrade` printing "schema already up to date" (a review)."""
    latest = MIGRATIONS[-1][0]
    if version is None or version <= latest:
        return None
    return (
        f"the database schema is at version {version}, newer than this release's {latest} (a newer release"
        " migrated it: this one rolled back, or not upgraded yet?)"
    )


def require_schema(pool: ConnectionPool) -> None:
    """Fail clearly when `alpr db upgrade` has not been run against this database; a WARNING naming both
    versions when the schema is newer than this release's (`newer_schema`): the roles of a release run on the
    schema of the next during a rolling upgrade, so a newer schema is not refused. A server older than
    MINIMUM_SERVER_VERSION is refused first (`check_server_version`)."""
    check_server_version(pool)
    latest = MIGRATIONS[-1][0]
    version = schema_version(pool)
    if version is None or version < latest:
        raise ConfigError(f"the database schema is not at version {latest}; run `alpr db upgrade`")
    if ahead := newer_schema(version):
        log.warning("%s; this process runs on it as during a rolling upgrade: upgrade it to that release", ahead)

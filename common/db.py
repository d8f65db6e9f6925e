"""Postgres: the schema upgrade (`alpr db upgrade`, applying common/migrations.py), the connection
pool every role shares, and the workers' role's grant (the writes made through the pool are
common/db_writes.py's, the CSV export of a log common/csv_files.py's). Upgrades take an advisory lock,
so several processes may run them at once."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from common import defaults
from common.audit import AUDIT_TABLES, OWNER_ONLY_TABLES
from common.backoff import Backoff
from common.credentials import mask_url
from common.db_rights import rights_in_schema
from common.errors import ConfigError
from common.migrations import LOCK_MODES, MIGRATION_LOCKS, MIGRATIONS
from common.server_urls import split_password, url_problem

log = logging.getLogger(__name__)

ADVISORY_LOCK_ID = 720_417
"""Postgres advisory lock held while migrating."""


SESSION_SETTINGS = (
    "SET idle_in_transaction_session_timeout = '120s'; SET tcp_keepalives_idle = 60;"
    " SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3"
)
"""Every pooled session's: a process frozen or cut off mid-transaction (a host paused, a partition)
held its row locks until the server's TCP keepalive noticed, about two hours — a sighting worker's
cameras then had no sightings and no alerts, with no error, as the others skip locked cameras; the
server now ends such a session within two minutes."""


SIGHTING_SESSION_SETTINGS = (
    f"SET idle_in_transaction_session_timeout = '{round(defaults.SIGHTING_IDLE_IN_TRANSACTION_S * 1000)}ms';"
    f" SET tcp_user_timeout = {round(defaults.SIGHTING_TCP_USER_TIMEOUT_S * 1000)}; SET tcp_keepalives_idle = 60;"
    " SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3"
)
"""The sighting pool's sessions: a camera's transaction holds its cursor row (FOR UPDATE), which every other
sighting worker skips, so a worker frozen inside one (SIGSTOP, a paused VM) held that camera's sightings and
alerts back for SESSION_SETTINGS' two minutes (a listed car alerted on 117 s late, a review); its session is
now ended after SIGHTING_IDLE_IN_TRANSACTION_S, and after SIGHTING_TCP_USER_TIMEOUT_S where what Postgres
sent it goes unacknowledged (a host gone, a statement's rows unread). A round's own Python work between two
statements is kept under it (`SightingStage.keep_alive`), and its reads outside a camera's transaction are
made in autocommit (`autocommitting`): no transaction stays open while Python builds the watch-lists."""


@contextlib.contextmanager
def autocommitting(connection: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """`connection`, out of any transaction, in autocommit for the block: each statement is its own
    transaction, ended before its rows come back, so none is open while Python works on them. The sighting
    pool's reads at a round's start, then the watch-lists built from them (1.5 million entries, or the CPUs
    busy, took past SIGHTING_IDLE_IN_TRANSACTION_S): Postgres ended the session idle in the transaction, and
    the worker exited (a review). Put back after; a connection that cannot be is closed (the pool drops it)."""
    was = connection.autocommit
    connection.autocommit = True
    try:
        yield connection
    finally:
        if not connection.closed:
            try:
                connection.autocommit = was
            except psycopg.Error:
                connection.close()


def configure_session(connection: psycopg.Connection, settings: str = SESSION_SETTINGS) -> None:
    """`settings` (SESSION_SETTINGS unless given) on a new pooled connection, in one round trip."""
    connection.execute(settings)
    connection.commit()


RECONNECT_GIVE_UP_S = 5.0
"""How long the pool's own attempt to replace a lost connection goes on (its waits double: 1, 2, 4...)
before it gives up; the next caller asking for a connection starts a fresh one at once. Left at
psycopg_pool's 300 s, a pool served again up to the outage's length after Postgres was back (58 s
after a 70 s outage: frames' reads and redactions expired meanwhile, found by an audit)."""


def open_pool(
    url: str,
    max_size: int = 4,
    wait_s: float = 10.0,
    password: str | None = None,
    session_settings: str = SESSION_SETTINGS,
) -> ConnectionPool:
    """A connection pool, opened and checked: a wrong URL fails here with a clear message. `password`
    is used when the URL carries none (from ALPR_DATABASE_PASSWORD[_FILE]). The password goes to
    psycopg apart from the URL, so that neither libpq's messages nor the pool's warnings can quote it.
    `session_settings`: each connection's (SESSION_SETTINGS; the sighting pool's, SIGHTING_SESSION_SETTINGS)."""
    if problem := url_problem(url, "postgres"):
        raise ConfigError(f"the Postgres URL is malformed: {problem}")
    bare_url, url_password = split_password(url)
    options: dict[str, object] = {"autocommit": False}
    if (password := url_password or password) is not None:
        options["password"] = password
    pool = ConnectionPool(
        bare_url, min_size=1, max_size=max_size, open=False, kwargs=options,
        configure=lambda connection: configure_session(connection, session_settings),
        check=ConnectionPool.check_connection,  # a connection broken by a server restart is replaced, not used
        reconnect_timeout=RECONNECT_GIVE_UP_S,
    )  # fmt: skip
    pool_log, attempts = logging.getLogger("psycopg.pool"), OpeningAttempts(pool.name)
    pool_log.addFilter(attempts)
    try:
        pool.open(wait=True, timeout=wait_s)
    except Exception as error:  # psycopg_pool raises PoolTimeout, the cause only in its log: said here
        pool.close()
        cause = attempts.last_error or str(error)
        raise CannotConnectError(
            f"cannot connect to Postgres at {mask_url(url)}: {mask_url(cause)}", refused_for_good(cause)
        ) from None
    finally:
        pool_log.removeFilter(attempts)
    return pool


class CannotConnectError(ConfigError):
    """No connection could be opened; `for_good` where Postgres answered and refused the login in a way no
    wait mends (refused_for_good), rather than not answering (down, restarting, not reachable yet)."""

    def __init__(self, message: str, for_good: bool) -> None:
        super().__init__(message)
        self.for_good = for_good


REFUSED_FOR_GOOD = re.compile(
    r'(database|role) ".*" does not exist'  # 3D000, 28000: a mistyped name in the URL
    r"|authentication failed for user"  # 28P01 password (or peer, ident, scram...): a wrong password
    r"|no password supplied"  # libpq: the server asks for one, none was given
    r"|no pg_hba\.conf entry|pg_hba\.conf rejects connection"  # 28000: the server admits no such login
    r"|is not permitted to log in"  # 28000: a NOLOGIN role
    r"|permission denied for database"  # 42501: CONNECT not granted
)
"""What libpq says of a login Postgres refused for good. Such errors carry no SQLSTATE on connection (libpq
reports them as text), so they are told by Postgres's English messages; a server that speaks another
language (lc_messages) is not recognised, and its refusal is taken for an outage, as every refusal was."""


def refused_for_good(cause: str) -> bool:
    """Whether a connection error's text (libpq's) says Postgres refused the login for good: a database or
    role that does not exist, a wrong or missing password, a login the server does not admit. Connection
    refused, timeouts, a host name not resolved, "the database system is starting up", too many clients:
    not for good (Postgres may be starting, restarting, failing over, or its address not known yet)."""
    return REFUSED_FOR_GOOD.search(cause) is not None


class OpeningAttempts(logging.Filter):
    """Keeps quiet the pool's warnings while it opens (four or five lines, then an error that hid the cause:
    "pool initialization incomplete after 10.0 sec") and keeps the last attempt's error, first line, for
    the one line that says why."""

    def __init__(self, pool_name: str) -> None:
        super().__init__()
        self.pool_name, self.last_error = pool_name, ""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if not args or args[0] != self.pool_name:
            return True  # another pool's
        if isinstance(record.msg, str) and record.msg.startswith("error connecting") and len(args) > 1:
            self.last_error = (str(args[1]).strip().splitlines() or [""])[0]
        return False


def open_upgraded_pool(url: str, password: str | None = None) -> ConnectionPool:
    """A pool on `url` with the schema upgraded on the way (the standalone run, which may be the first
    to meet a database)."""
    pool = open_pool(url, password=password)
    upgrade(pool)
    return pool


def open_current_pool(url: str, password: str | None = None) -> ConnectionPool:
    """A pool on `url` whose schema must already be current (ConfigError naming `alpr db upgrade`
    otherwise): for commands that only read, so they neither change a schema workers still use nor
    need the rights to."""
    pool = open_pool(url, password=password)
    try:
        require_schema(pool)
    except BaseException:
        pool.close()
        raise
    return pool


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


class TableInUseError(Exception):
    """A migration's attempt gave up waiting for a table's lock (or was chosen by Postgres to end a
    deadlock), its transaction rolled back: which migration, and the table it was asking for, where
    known (None: one of its own statements waited)."""

    def __init__(self, version: int | None, table: str | None) -> None:
        super().__init__(f"{f'migration {version}' if version else 'the upgrade'} waits for {table or 'a table'}")
        self.version, self.table = version, table


def upgrade(pool: ConnectionPool) -> list[int]:
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
    was applied."""
    if _applied(pool) >= {version for version, _ in MIGRATIONS}:
        return []
    applied: list[int] = []
    backoff, started, attempts = Backoff(*UPGRADE_BACKOFF_S), time.monotonic(), 0
    while True:
        try:
            version = _apply_next(pool)
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


def pending_migrations(pool: ConnectionPool) -> list[int]:
    """The versions of the migrations not yet applied, in order (what `upgrade` would apply), read only."""
    applied = _applied(pool)
    return [version for version, _ in MIGRATIONS if version not in applied]


def _applied(pool: ConnectionPool) -> set[int]:
    """The migrations applied (none where there is no schema_migrations table yet)."""
    with pool.connection() as connection:
        row = connection.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return set()
        return {version for (version,) in connection.execute("SELECT version FROM schema_migrations")}


def _apply_next(pool: ConnectionPool) -> int | None:
    """Apply the first migration not yet applied, with its schema_migrations row, in one transaction;
    returns its version, or None when there is none left. TableInUseError, the transaction rolled back, when
    one of its tables stays held past UPGRADE_LOCK_TIMEOUT.

    Processes upgrading at once (Compose starts its services together) take turns: the transaction takes
    the advisory lock first and only then reads which migrations are applied, so each is applied once.
    The lock is the transaction's, not the session's: it ends with the transaction however that ends
    (rolled back, the process killed, a frozen process's session ended by the server after
    idle_in_transaction_session_timeout), and never rides on a pooled connection back into the pool, as
    a session lock left behind by an exception would, holding every later upgrade and grant. The wait for
    it is not bounded by the lock timeout: the holder is a migration that is itself bounded, or done.

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
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_ID,))
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
    return version


ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
"""A Postgres role the workers may log in as (lower case, as unquoted SQL names are)."""


DELETED_FROM = ("camera_watermarks", "watchlist")
"""The tables the chain deletes rows from (a camera's watermark once passed, `alpr watchlist remove`):
the logs of reads, frames, sightings and alerts are only ever added to (and a frame's outcome updated)."""

UPDATED = ("alert_deliveries", "sighting_cursors", "camera_watermarks", "cameras", "watchlist")
"""The tables whose rows the chain updates whole: a delivery's state, a camera's grouping cursor and
watermark, its settings, a listed plate's reason and expiry."""

FRAMES_UPDATED = ("plates", "stage_ms", "kept_path", "outcome", "detail", "done_at", "read_outcome")
"""The columns of a frame's row the chain updates: how it ended. Its id, camera and capture time are
written once. The workers' role updated every column of every table: a worker broken into back-dated
the plate log's reads, a frame's capture time, an alert's body (a review), and the next prune deleted
the evidence that the logs "cannot be erased" by it was to keep."""


def grant_to(pool: ConnectionPool, role: str) -> None:
    """Give `role` what the chain's processes need and nothing more: read and add the rows of every table
    of the schema (and use its sequences), update only those of UPDATED and a frame's FRAMES_UPDATED,
    delete only those of DELETED_FROM, only add to the audit records (AUDIT_TABLES), never write the
    migrations' record nor create in the schema; run by `alpr db upgrade --grant` after the migrations, so
    tables added later are granted too. The migrating role owns the tables; a worker that is broken into
    cannot drop them or run as a superuser. ConfigError (nothing changed) when the role may still create
    in the schema (through PUBLIC, as PostgreSQL 14 and before let every role, or a role it is a member
    of): an operator or function it planted there (`&&` on text arrays, which Postgres prefers to
    pg_catalog's) ran as whoever searched or pruned, the owner."""
    check_role_name(role, "--grant")
    with pool.connection() as connection, connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_ID,))  # grants at once: refused
        check_role_exists(connection, role)  # ("tuple concurrently updated"), and Compose waits on `migrate`
        schema_name = current_schema(connection)
        schema, name = sql.Identifier(schema_name), sql.Identifier(role)
        for statement in (
            "GRANT USAGE ON SCHEMA {} TO {}",
            "REVOKE CREATE ON SCHEMA {} FROM {}",
            "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA {} TO {}",
            "REVOKE UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {} FROM {}",  # as granted before
            "REVOKE SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {} FROM {}",  # setval: a rewound id failed every insert
            "GRANT USAGE ON ALL SEQUENCES IN SCHEMA {} TO {}",  # nextval, all an insert needs
        ):
            connection.execute(sql.SQL(statement).format(schema, name))
        frames = sql.Identifier(schema_name, "frames")
        connection.execute(sql.SQL("REVOKE UPDATE ({}) ON {} FROM {}").format(  # column grants of an earlier run
            sql.SQL(", ").join(map(sql.Identifier, frame_columns(connection, schema_name))), frames, name))  # fmt: skip
        connection.execute(sql.SQL("GRANT UPDATE ({}) ON {} TO {}").format(
            sql.SQL(", ").join(map(sql.Identifier, FRAMES_UPDATED)), frames, name))  # fmt: skip
        for table in UPDATED:
            connection.execute(sql.SQL("GRANT UPDATE ON {} TO {}").format(sql.Identifier(schema_name, table), name))
        # the migrations' record is read (start checks), never written: a row deleted made the next upgrade
        # run migration 1 again and fail (every service waits on it), a row added skipped a migration
        migrations = sql.Identifier(schema_name, "schema_migrations")
        connection.execute(sql.SQL("REVOKE INSERT, UPDATE ON {} FROM {}").format(migrations, name))
        # the audit records (alpr search's look-ups, alpr export's dumps) are added to, never read or changed:
        # who looked for which plate, who took the log away, is the owner's to audit
        # and only the columns an operator fills: an id chosen by the inserter took the ids the sequence
        # would give next, and every export and search after failed to be recorded (so refused)
        for table in AUDIT_TABLES:
            audited = sql.Identifier(schema_name, table)
            connection.execute(sql.SQL("REVOKE SELECT, INSERT, UPDATE ON {} FROM {}").format(audited, name))
            columns = [str(column) for (column,) in connection.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                " AND NOT attisdropped AND attname <> 'id' ORDER BY attnum",
                (f"{sql.Identifier(schema_name, table).as_string(connection)}",),
            )]  # fmt: skip
            connection.execute(sql.SQL("GRANT INSERT ({}) ON {} TO {}").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), audited, name))  # fmt: skip
        for table in OWNER_ONLY_TABLES:  # the record of watch-list changes: written by its triggers, as the owner
            connection.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.Identifier(schema_name, table), name))
            qualified = sql.Identifier(schema_name, table).as_string(connection)  # a schema named "Alpr" too
            row = connection.execute("SELECT pg_get_serial_sequence(%s, 'id')", (qualified,)).fetchone()
            if row and row[0]:  # nor its ids drawn (gaps in the record)
                connection.execute(sql.SQL("REVOKE ALL ON SEQUENCE {} FROM {}").format(sql.SQL(row[0]), name))
        for table in DELETED_FROM:
            connection.execute(sql.SQL("GRANT DELETE ON {} TO {}").format(sql.Identifier(schema_name, table), name))
        refuse_schema_creators(connection, role, schema_name)
        refuse_extra_writes(connection, role, schema_name)


def frame_columns(connection: psycopg.Connection, schema_name: str) -> list[str]:
    """The columns of the frames table."""
    return [str(column) for (column,) in connection.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (sql.Identifier(schema_name, "frames").as_string(connection),),
    )]  # fmt: skip


def refuse_extra_writes(connection: psycopg.Connection, role: str, schema_name: str) -> None:
    """ConfigError unless `role`, and each role it is a member of (SET ROLE reaches it, inherited or not),
    may update, delete or empty only what the grant gives: given more through PUBLIC or a membership (a
    role of an earlier set-up, pg_write_all_data), it still back-dated and deleted the plate log, the
    grant said done all the same (a review)."""
    allowed = {(t, "UPDATE") for t in (*UPDATED, "frames")} | {(t, "DELETE") for t in DELETED_FROM}
    extra: set[str] = set()
    for (who,) in connection.execute(
        "SELECT rolname FROM pg_roles WHERE rolname = %s OR pg_has_role(%s, oid, 'MEMBER')", (role, role)
    ).fetchall():
        shown = "" if who == role else f" as {who}"
        extra |= {f"{right} {table}{shown}" for table, right in rights_in_schema(connection, str(who), schema_name)
                  if right in ("UPDATE", "DELETE", "TRUNCATE") and (table, right) not in allowed}  # fmt: skip
        frames = sql.Identifier(schema_name, "frames").as_string(connection)
        for column in set(frame_columns(connection, schema_name)) - set(FRAMES_UPDATED):
            row = connection.execute(
                "SELECT has_column_privilege(%s, %s::regclass, %s, 'UPDATE')", (who, frames, column)
            )
            if row.fetchone() == (True,):
                extra.add(f"UPDATE frames.{column}{shown}")
    if extra:
        shown = ", ".join(sorted(extra)[:6]) + (" ..." if len(extra) > 6 else "")
        raise ConfigError(
            f"--grant: role {role} may still {shown} (a superuser, the tables' owner, or given it through PUBLIC"
            " or a role it is a member of): the logs it could rewrite or erase; name a role of its own"
        )


def refuse_schema_creators(connection: psycopg.Connection, role: str, schema_name: str) -> None:
    """ConfigError unless neither `role` nor a role it is a member of (SET ROLE reaches it, inherited or
    not) may create in the schema."""
    creators = [str(who) for (who,) in connection.execute(
        "SELECT rolname FROM pg_roles WHERE pg_has_role(%s, oid, 'MEMBER')"
        " AND has_schema_privilege(oid, %s, 'CREATE') ORDER BY rolname <> %s, rolname",
        (role, schema_name, role),
    )]  # fmt: skip
    if creators:
        through = "" if creators == [role] else f" (as {', '.join(c for c in creators if c != role)})"
        raise ConfigError(
            f"--grant: role {role} may still create in schema {schema_name}{through}, through PUBLIC (PostgreSQL"
            f" 14 and before let every role) or a role it is a member of: run REVOKE CREATE ON SCHEMA"
            f" {schema_name} FROM PUBLIC as its owner, or name a role of its own"
        )


def check_role_name(role: str, flag: str) -> None:
    """ConfigError naming `flag` unless `role` is a name Postgres keeps as written (ROLE_NAME)."""
    if not ROLE_NAME.fullmatch(role):
        raise ConfigError(f"{flag} takes a role name of 1-63 lower-case letters, digits and _, not {role[:70]!r}")


def check_role_exists(connection: psycopg.Connection, role: str) -> None:
    """ConfigError unless the role exists: grants are given to a role the operator made, never made here."""
    if connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
        raise ConfigError(  # a password on a command line is shown by `ps` to every local user, kept in history
            f"no Postgres role {role}: create it first (CREATE ROLE {role} LOGIN), then set its password with psql's"
            f" \\password {role}, which asks for it: never on a command line"
        )


def current_schema(connection: psycopg.Connection) -> str:
    row = connection.execute("SELECT current_schema()").fetchone()
    if row is None or row[0] is None:
        raise ConfigError("the database has no current schema (search_path names none that exists)")
    return str(row[0])


def require_schema(pool: ConnectionPool) -> None:
    """Fail clearly when `alpr db upgrade` has not been run against this database."""
    latest = MIGRATIONS[-1][0]
    with pool.connection() as connection:
        exists = connection.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        version = (
            connection.execute("SELECT max(version) FROM schema_migrations").fetchone()
            if exists and exists[0]
            else None
        )
    if not version or version[0] is None or version[0] < latest:
        raise ConfigError(f"the database schema is not at version {latest}; run `alpr db upgrade`")

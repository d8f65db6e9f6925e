"""Postgres: the connection pool every role shares, and the workers' role's grant (`alpr db upgrade
--grant`). The schema upgrade is common/schema_upgrade.py's, the writes made through the pool
common/db_writes.py's, the CSV export of a log common/csv_files.py's."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from common import defaults
from common.audit import AUDIT_TABLES, OWNER_ONLY_TABLES
from common.credentials import mask_url
from common.db_rights import rights_in_schema
from common.errors import ConfigError
from common.schema_upgrade import ADVISORY_LOCK_ID, require_schema, upgrade
from common.server_urls import split_password, url_problem

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

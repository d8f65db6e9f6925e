"""Postgres connections: the pool every role shares (`open_pool`), each pooled session's settings (the
sighting pool's, the migrating pool's and `alpr status`'s their own) and name (`application_name`), why a
pool could not open, said in one line (`CannotConnectError`, told apart where Postgres refused the login for
good), whom a pool tells whether Postgres answered (`WatchedPool`: a role's alpr_database_up), and a pool
opened with its schema checked current (common/schema_upgrade.py; only `alpr db upgrade` migrates). The
writes made through it are common/db_writes.py's, the workers' grant common/grants.py's."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from common import defaults
from common.credentials import mask_url
from common.errors import ConfigError
from common.schema_upgrade import require_schema
from common.server_urls import split_password, url_problem

KEEPALIVES = "SET tcp_keepalives_idle = 60; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3"
"""TCP keepalives of every pooled session: a peer gone is noticed within a few minutes, not TCP's two hours."""

LOCK_TIMEOUT = "SET lock_timeout = '{lock_timeout_ms}ms'"
"""A statement waits DB_LOCK_TIMEOUT_S at most for a lock, then fails (LockNotAvailable, an OperationalError):
a table an operator locked (`LOCK TABLE frames IN ACCESS EXCLUSIVE MODE`, a long maintenance) held every
OCR and redaction job silently until RQ's job timeout (120 s), nothing in the logs naming a lock (a
review). A write then waits it out as an outage, its log line naming the lock (common/db_writes.py)."""

NO_JIT = "SET jit = off"
"""No LLVM compilation of a statement's plan: the chain's statements are short and planned on estimates of a
city's tables, which put their cost past jit_above_cost, so Postgres compiled them every time (a scale review,
8 million reads: the sighting pool's cameras-with-work query took 415-470 ms with JIT, 275-410 of it compiling,
and 18-26 ms without, against a round of 0.2 s; a search paid 770 ms, a prune batch the same)."""

EVERY_SESSION = f"SET idle_in_transaction_session_timeout = '120s'; {KEEPALIVES}; {NO_JIT}"
"""What every pooled session sets, whatever its lock waits (MIGRATION_SESSION_SETTINGS, SESSION_SETTINGS)."""

UNBOUNDED_LOCK_WAITS = "SET lock_timeout = 0"
"""A session's lock waits not bounded, whatever lock_timeout the role or the database sets (managed Postgres
often does: `ALTER DATABASE alpr SET lock_timeout = '200ms'`), which every session started with: left to
it, a grant waiting for an upgrade's advisory lock failed after 200 ms with a bare LockNotAvailable, an
upgrade waiting its turn behind another was told a table was in use and gave up after 8 attempts, and a
prune failed at once behind a table a long query held (a review)."""

MIGRATION_SESSION_SETTINGS = f"{EVERY_SESSION}; {UNBOUNDED_LOCK_WAITS}"
"""The sessions of a pool that migrates (`alpr db upgrade`'s) and prunes: their lock waits
not bounded (UNBOUNDED_LOCK_WAITS), so a migration or a grant waits its turn at the advisory lock for as
long as the one before it takes, as common/schema_upgrade.py intends (it bounds its own table locks with
SET LOCAL lock_timeout), and a prune waits for the tables it deletes from rather than failing its round."""

SESSION_SETTINGS = f"{EVERY_SESSION}; {LOCK_TIMEOUT}"
"""Every other pooled session's: a process frozen or cut off mid-transaction (a host paused, a partition)
held its row locks until the server's TCP keepalive noticed, about two hours — a sighting worker's
cameras then had no sightings and no alerts, with no error, as the others skip locked cameras; the
server now ends such a session within two minutes. A lock waited for past LOCK_TIMEOUT fails the statement."""

STATUS_SESSION_SETTINGS = SESSION_SETTINGS + "; SET statement_timeout = '{status_statement_timeout_ms}ms'"
"""`alpr status`'s sessions: no statement of its frames-log part runs past STATUS_STATEMENT_TIMEOUT_S (behind
an operator's lock on the frames table it hung until killed, a review); it says so instead (alpr/status.py)."""


SIGHTING_SESSION_SETTINGS = (
    "SET idle_in_transaction_session_timeout = '{sighting_idle_ms}ms';"
    f" SET tcp_user_timeout = {{sighting_tcp_user_timeout_ms}}; {KEEPALIVES}; {LOCK_TIMEOUT}; {NO_JIT}"
)
"""The sighting pool's sessions: a camera's transaction holds its cursor row (FOR UPDATE), which every other
sighting worker skips, so a worker frozen inside one (SIGSTOP, a paused VM) held that camera's sightings and
alerts back for SESSION_SETTINGS' two minutes (a listed car alerted on 117 s late, a review); its session is
now ended after SIGHTING_IDLE_IN_TRANSACTION_S, and after SIGHTING_TCP_USER_TIMEOUT_S where what Postgres
sent it goes unacknowledged (a host gone, a statement's rows unread). A round's own Python work between two
statements is kept under it (`SightingStage.keep_alive`), and its reads outside a camera's transaction are
made in autocommit (`autocommitting`): no transaction stays open while Python builds the watch-lists. Its
lock waits are bounded as every session's (LOCK_TIMEOUT; a camera's statements by their statement_timeout
sooner)."""


APPLICATION_NAME_MAX = 63
"""Postgres keeps an application_name to this many bytes (NAMEDATALEN - 1)."""


def application_name(role: str) -> str:
    """What a pool's sessions call themselves in pg_stat_activity: `alpr-<role>@<host>` (the host name's first
    label), so that a DBA at max_connections can tell which role on which host holds the slots (every
    session's was empty, a review). Neither the URL nor a credential goes into it."""
    host = socket.gethostname().split(".")[0]
    name = f"alpr-{role}@{host}" if host else f"alpr-{role}"
    return name.encode("ascii", "replace").decode()[:APPLICATION_NAME_MAX]


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


def session_statements(settings: str) -> str:
    """`settings` (SESSION_SETTINGS and the like) with the timeouts of common/defaults.py in their places
    ({lock_timeout_ms} and the others), read as each session starts: a test shortens them as any default."""
    return settings.format(
        lock_timeout_ms=round(defaults.DB_LOCK_TIMEOUT_S * 1000),
        status_statement_timeout_ms=round(defaults.STATUS_STATEMENT_TIMEOUT_S * 1000),
        sighting_idle_ms=round(defaults.SIGHTING_IDLE_IN_TRANSACTION_S * 1000),
        sighting_tcp_user_timeout_ms=round(defaults.SIGHTING_TCP_USER_TIMEOUT_S * 1000),
    )


def configure_session(connection: psycopg.Connection, settings: str = SESSION_SETTINGS) -> None:
    """`settings` (SESSION_SETTINGS unless given; session_statements) on a new pooled connection, in one round
    trip."""
    connection.execute(session_statements(settings))
    connection.commit()


RECONNECT_GIVE_UP_S = 5.0
"""How long the pool's own attempt to replace a lost connection goes on (its waits double: 1, 2, 4...)
before it gives up; the next caller asking for a connection starts a fresh one at once. Left at
psycopg_pool's 300 s, a pool served again up to the outage's length after Postgres was back (58 s
after a 70 s outage: frames' reads and redactions expired meanwhile, found by an audit)."""


class WatchedPool(ConnectionPool):
    """open_pool's pool: a ConnectionPool the paths that meet Postgres's outages tell whether Postgres answered
    (`answered`: common/db_writes.write_through_outage, the sighting rounds), passed on to its `watcher` where
    the role set one (its `alpr_database_up`: common/db_watch.py)."""

    watcher: Callable[[bool], None] | None = None

    def answered(self, up: bool) -> None:
        """A statement went through (`up`), or met an outage (common/db_writes.OUTAGES)."""
        if self.watcher is not None:
            self.watcher(up)


def open_pool(
    url: str,
    max_size: int = 4,
    wait_s: float | None = None,
    password: str | None = None,
    session_settings: str = SESSION_SETTINGS,
    role: str = "run",
) -> ConnectionPool:
    """A connection pool, opened and checked: a wrong URL fails here with a clear message. `password`
    is used when the URL carries none (from ALPR_DATABASE_PASSWORD[_FILE]). The password goes to
    psycopg apart from the URL, so that neither libpq's messages nor the pool's warnings can quote it.
    `wait_s`: the longest wait for the first connection (DB_OPEN_WAIT_S unless given).
    `session_settings`: each connection's (SESSION_SETTINGS; the sighting pool's, SIGHTING_SESSION_SETTINGS).
    `role`: named in the sessions' application_name (`application_name`), unless the URL or PGAPPNAME names
    one (libpq's fallback_application_name)."""
    if problem := url_problem(url, "postgres"):
        raise ConfigError(f"the Postgres URL is malformed: {problem}")
    bare_url, url_password = split_password(url)
    options: dict[str, object] = {"autocommit": False, "fallback_application_name": application_name(role)}
    if (password := url_password or password) is not None:
        options["password"] = password
    target = psycopg.conninfo.conninfo_to_dict(bare_url)
    if "connect_timeout" not in target and "PGCONNECT_TIMEOUT" not in os.environ:  # libpq's default: none
        options["connect_timeout"] = defaults.DB_CONNECT_TIMEOUT_S
    pool = WatchedPool(
        bare_url, min_size=1, max_size=max_size, open=False, kwargs=options,
        configure=lambda connection: configure_session(connection, session_settings),
        check=ConnectionPool.check_connection,  # a connection broken by a server restart is replaced, not used
        reconnect_timeout=RECONNECT_GIVE_UP_S,
    )  # fmt: skip
    quiet_pipeline_echo()
    pool_log, attempts = logging.getLogger("psycopg.pool"), OpeningAttempts(pool.name)
    pool_log.addFilter(attempts)
    try:
        pool.open(wait=False)
        wait_until_open(pool, attempts, defaults.DB_OPEN_WAIT_S if wait_s is None else wait_s)
    except Exception as error:  # psycopg_pool raises PoolTimeout, the cause only in its log: said here
        seen = attempts.last_error  # before the close, which waits out an attempt under way
        pool.close()  # its worker may still wait on a server that never answers: OpeningAttempts quiets that
        cause = attempts.last_error or str(error)
        if not seen or "timeout expired" in seen:  # a port where no Postgres answers (Redis's)
            where = f"{target.get('host') or 'localhost'}:{target.get('port') or 5432}"
            waited = defaults.DB_OPEN_WAIT_S if wait_s is None else wait_s
            within = options.get("connect_timeout", waited) if seen else waited
            cause = f"no Postgres answered at {where} within {within} s (is it a Postgres server?)"
        raise CannotConnectError(
            f"cannot connect to Postgres at {mask_url(url)}: {mask_url(cause)}", refused_for_good(cause)
        ) from None
    finally:
        pool_log.removeFilter(attempts)
    return pool


OPEN_POLL_S = 0.02
"""How often an opening pool is looked at: ready, or refused for good."""


def wait_until_open(pool: ConnectionPool, attempts: OpeningAttempts, wait_s: float) -> None:
    """Return once the pool holds its first connections; PoolTimeout after `wait_s`, or as soon as an attempt
    was refused for good (refused_for_good: a wrong password or database name is not mended by waiting, and a
    careless operator's command waited the full DB_OPEN_WAIT_S to say so)."""
    deadline = time.monotonic() + wait_s
    while pool.get_stats().get("pool_available", 0) < pool.min_size:
        if refused_for_good(attempts.last_error):
            raise PoolTimeout("the login was refused")
        if time.monotonic() >= deadline:
            raise PoolTimeout(f"pool initialization incomplete after {wait_s} sec")
        time.sleep(OPEN_POLL_S)


class PipelineAbortedEcho(logging.Filter):
    """Drops psycopg's `error ignored terminating <psycopg.Pipeline [INERROR]>: pipeline aborted` WARNING, and
    that alone: an `executemany` (its statements pipelined) one of whose statements failed leaves the ones
    queued after it unrun, and psycopg, ending the pipeline, warns that they were (PipelineAborted) while the
    error that aborted them is raised to the caller, who handles it. An ingest node logged ten a read-only
    incident, besides its own line (a review). Any other error on ending a pipeline is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        echo = record.msg == "error ignored terminating %r: %s" and len(args) == 2
        return not (
            echo and isinstance(args[0], psycopg.Pipeline) and isinstance(args[1], psycopg.errors.PipelineAborted)
        )


def quiet_pipeline_echo() -> None:
    """PipelineAbortedEcho on psycopg's logger, once."""
    psycopg_log = logging.getLogger("psycopg")
    if not any(isinstance(each, PipelineAbortedEcho) for each in psycopg_log.filters):
        psycopg_log.addFilter(PipelineAbortedEcho())


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
    the one line that says why; and its "couldn't stop thread" warning as a failed pool closes, its worker
    still waiting on a server that does not answer."""

    def __init__(self, pool_name: str) -> None:
        super().__init__()
        self.pool_name, self.last_error = pool_name, ""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg == "couldn't stop thread %r within %s seconds" and args and args[0] is not None:
            return not str(getattr(args[0], "name", args[0])).startswith(f"{self.pool_name}-worker")
        if not args or args[0] != self.pool_name:
            return True  # another pool's
        if isinstance(record.msg, str) and record.msg.startswith("error connecting") and len(args) > 1:
            self.last_error = (str(args[1]).strip().splitlines() or [""])[0]
        return False


def open_current_pool(url: str, password: str | None = None, role: str = "run") -> ConnectionPool:
    """A pool on `url` whose schema must already be current (ConfigError naming `alpr db upgrade`
    otherwise): for every command but `alpr db upgrade`, `alpr run` among them, so none changes a schema
    workers still use, out of order and without re-granting the roles (`alpr run` did, a review), nor needs
    the rights to."""
    pool = open_pool(url, password=password, role=role)
    try:
        require_schema(pool)
    except BaseException:
        pool.close()
        raise
    return pool

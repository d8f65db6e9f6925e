"""The Postgres sessions alpr/connections.py opens, on the real Postgres: each names its role and host in
pg_stat_activity (a DBA at max_connections saw only empty names), the chain's bound their lock waits
(lock_timeout) while the migrating pool does not (its advisory lock is waited for as long as the migration
before it takes), and `alpr status` behind a locked frames table says so within seconds (it hung)."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import psycopg
from psycopg_pool import ConnectionPool

from alpr.cli import main
from alpr.connections import database_pool, ingest_pool, unchecked_pool
from common import defaults
from common.config import Settings
from common.db import SIGHTING_SESSION_SETTINGS
from tests.helpers import alpr_command


def session(pool: ConnectionPool) -> tuple[str, str]:
    """The pool's session's application_name (as pg_stat_activity shows it) and lock_timeout (ms)."""
    with pool.connection() as connection:
        row = connection.execute(
            "SELECT application_name, (SELECT setting FROM pg_settings WHERE name = 'lock_timeout')"
            " FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_every_pool_names_its_role_and_host_and_only_the_migrating_ones_wait_for_locks_unbounded(postgres_url):
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    settings = Settings.load({"ALPR_DATABASE_URL": postgres_url})
    host = socket.gethostname().split(".")[0]
    bounded = str(round(defaults.DB_LOCK_TIMEOUT_S * 1000))
    chain = {
        "ocr": lambda: database_pool(settings, "OCR worker"),
        "redact": lambda: database_pool(settings, "redactor"),
        "alert": lambda: database_pool(settings, "alert worker"),
        "sight": lambda: database_pool(settings, "sighting worker", session_settings=SIGHTING_SESSION_SETTINGS),
        "status": lambda: database_pool(settings, "status"),
        "ingest": lambda: ingest_pool(settings),
    }
    migrating = {  # schema_upgrade bounds its table locks itself; the advisory lock's wait is not bounded
        "upgrade": lambda: unchecked_pool(settings, "upgrade"),
        "prune": lambda: unchecked_pool(settings, "prune"),
    }
    for roles, lock_timeout in ((chain, bounded), (migrating, "0")):
        for role, open_pool in roles.items():
            pool = open_pool()
            try:
                assert session(pool) == (f"alpr-{role}@{host}"[:63], lock_timeout), role
            finally:
                pool.close()
    named = ingest_pool(Settings.load({"ALPR_DATABASE_URL": f"{postgres_url}&application_name=dashboard"}))
    try:  # a name the URL gives (or PGAPPNAME) is kept: libpq's fallback_application_name
        assert session(named)[0] == "dashboard"
    finally:
        named.close()


def test_status_behind_a_locked_frames_table_says_so_within_seconds(redis_url, postgres_url):
    """An operator's `LOCK TABLE frames IN ACCESS EXCLUSIVE MODE` held `alpr status` in its frames-log part
    until killed (a review). Now it shows the chain's part, then says the frames log did not answer."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    env.update({"ALPR_REDIS_URL": redis_url, "ALPR_DATABASE_URL": postgres_url})
    locker = psycopg.connect(postgres_url)
    locker.execute("LOCK TABLE frames IN ACCESS EXCLUSIVE MODE")
    limit = 1.0  # STATUS_STATEMENT_TIMEOUT_S, 5 s unless set: the process's, set for it
    started = time.monotonic()
    try:
        status = subprocess.run(alpr_command(["status", "--interval", "0.1"], {"STATUS_STATEMENT_TIMEOUT_S": limit}),
                                env=env, capture_output=True, text=True, timeout=40)  # fmt: skip
    finally:
        locker.close()
    took_s = time.monotonic() - started
    assert status.returncode == 2, (status.stdout, status.stderr)
    assert status.stderr.strip() == f"alpr: error: frames log not answered in {limit:g} s (a lock? see pg_locks)"
    assert status.stdout.startswith("queue") and took_s < limit + 20


def test_status_with_a_frames_log_it_cannot_read_shows_the_chain_then_says_why_and_exits_2(
    redis_url, postgres_url, capsys
):
    """Postgres down, or its schema not current: the chain's part (from Redis) is shown, then one line says
    why the frames log is not, and the exit status is 2, as where Redis cannot be read: a check that read
    half of what it was asked for does not pass (README's exit statuses of `alpr status`)."""
    from tests.helpers import free_port

    down = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    for url, why in [(down, "alpr: error: cannot connect to Postgres at "),
                     (postgres_url, "alpr: error: the database schema is not at version ")]:  # fmt: skip
        assert main(["status", "--interval", "0.1", "--redis-url", redis_url, "--database-url", url]) == 2
        out, err = capsys.readouterr()
        assert out.startswith("queue ") and "oldest waiting frame" in out
        [line] = err.strip().splitlines()
        assert line.startswith(why), line

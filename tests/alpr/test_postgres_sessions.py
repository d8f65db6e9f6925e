"""The Postgres sessions alpr/connections.py opens, on the real Postgres: each names its role and host in
pg_stat_activity (a DBA at max_connections saw only empty names), the chain's bound their lock waits
(lock_timeout) while the migrating pool does not, whatever the database sets (its advisory lock is waited
for as long as the migration before it takes, a prune waits for its tables), and `alpr status` behind a
locked frames table says so within seconds (it hung)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg_pool import ConnectionPool

from alpr.cli import main
from alpr.connections import database_pool, ingest_pool, unchecked_pool
from common import defaults
from common.config import Settings
from common.db import SIGHTING_SESSION_SETTINGS
from tests.common.test_retention import add_frame, remaining
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


DATABASE_LOCK_TIMEOUT = "%20-clock_timeout%3D200ms"
"""A lock_timeout every session starts with, as `ALTER DATABASE alpr SET lock_timeout = '200ms'` (managed
Postgres often has one) or a role's setting gives it: here in the URL's options, which reach no other test."""


def test_the_migrating_pools_wait_unbounded_whatever_lock_timeout_the_database_sets(postgres_url):
    """The database's lock_timeout cut the migrating pools' waits: a prune behind a table in use failed at
    once (below), a grant at the upgrade's advisory lock after 200 ms (tests/common/test_grants.py), an upgrade
    was told a table was in use (tests/common/test_schema_upgrade.py; a review)."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    url = postgres_url + DATABASE_LOCK_TIMEOUT
    settings = Settings.load({"ALPR_DATABASE_URL": url})
    chain = database_pool(settings, "OCR worker")
    try:  # the chain's pools bound theirs with their own (DB_LOCK_TIMEOUT_S)
        assert session(chain)[1] == str(round(defaults.DB_LOCK_TIMEOUT_S * 1000))
    finally:
        chain.close()
    for role in ("upgrade", "prune"):
        pool = unchecked_pool(settings, role)
        try:
            assert session(pool)[1] == "0", role  # was 200
        finally:
            pool.close()


def test_a_prune_waits_for_its_tables_whatever_lock_timeout_the_database_sets(postgres_url):
    """Behind a table in use (an index built), `alpr db prune` failed at once with the database's lock_timeout
    (a review): it waits, as its pool's sessions are meant to."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    url = postgres_url + DATABASE_LOCK_TIMEOUT
    with psycopg.connect(postgres_url) as db:
        add_frame(db, "gate", "gate:old:0", datetime.now(UTC) - timedelta(days=40))  # to be pruned
    locked, done = threading.Event(), threading.Event()

    def hold_the_pruned_tables() -> None:  # an index built, say: writes wait, reads do not
        with psycopg.connect(postgres_url) as locker, locker.transaction():
            locker.execute("LOCK TABLE plate_reads, sightings, frames IN SHARE MODE")
            locked.set()
            done.wait(1.5)

    holder = threading.Thread(target=hold_the_pruned_tables)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        assert main(["db", "prune", "--database-url", url]) == 0  # failed at once: LockNotAvailable
        assert time.monotonic() - started > 1.0  # it waited for them
        assert remaining(postgres_url) == {"frames": [], "plate_reads": [], "sightings": []}
    finally:
        done.set()
        holder.join()


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

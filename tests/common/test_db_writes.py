"""common/db_writes.py on the real Postgres, each test in a schema of its own (or a private cluster made
read-only): a write waits out a lost connection, a read-only primary, a session Postgres ended and a lock
held past lock_timeout, but not a constraint violation, which is told by the schema's names, never the
row's data."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from common import defaults
from common.db import open_pool
from common.db_writes import DatabaseWriteError, write_through_outage
from common.schema_upgrade import upgrade


@pytest.fixture()
def pool(postgres_url: str) -> Iterator[ConnectionPool]:
    opened = open_pool(postgres_url)
    yield opened
    opened.close()


def test_a_constraint_violation_raises_at_once_and_rolls_back(pool):
    upgrade(pool)
    calls = []

    def write(connection: psycopg.Connection) -> None:
        calls.append(1)
        connection.execute("INSERT INTO cameras (camera_id, region, enabled) VALUES ('KPX4721', 'us', true)")
        connection.execute("INSERT INTO cameras (camera_id, region, enabled) VALUES ('KPX4721', 'us', true)")

    started = time.monotonic()
    with pytest.raises(DatabaseWriteError) as refused:
        write_through_outage(pool, write, patience_s=30)
    assert calls == [1] and time.monotonic() - started < 1  # not retried: it would fail the same way
    # told by the schema's names, never the data (psycopg's text: "Key (camera_id)=(KPX4721) already exists")
    assert str(refused.value) == ("Postgres refused the write: UniqueViolation (SQLSTATE 23505) at table cameras,"
                                  " constraint cameras_pkey")  # fmt: skip
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    with pool.connection() as connection:
        assert connection.execute("SELECT count(*) FROM cameras").fetchone() == (0,)  # the first insert too


def test_a_lost_connection_is_retried_until_the_write_goes_through(pool):
    """The positive control of the test above: the same call does retry a connection error."""
    upgrade(pool)
    calls = []

    def write(connection: psycopg.Connection) -> str:
        calls.append(1)
        connection.execute(
            "INSERT INTO cameras (camera_id, region, enabled) VALUES (%s, 'us', true)", (f"c{len(calls)}",)
        )
        if len(calls) < 3:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return "written"

    started = time.monotonic()
    assert write_through_outage(pool, write, patience_s=30) == "written"
    assert calls == [1, 1, 1] and time.monotonic() - started >= 0.5 + 1.0  # backed off 0.5 s, then 1 s
    with pool.connection() as connection:  # each failed attempt rolled back: only the last one's row
        assert connection.execute("SELECT camera_id FROM cameras").fetchall() == [("c3",)]

    def always_down(connection: psycopg.Connection) -> None:
        raise psycopg.OperationalError("connection refused")

    with pytest.raises(psycopg.OperationalError, match="connection refused"):
        write_through_outage(pool, always_down, patience_s=0.2)  # past its patience, it gives up


def test_a_read_only_primary_is_waited_out_on_fresh_connections(private_postgres, caplog):
    """A primary demoted (a failover: read-only, SQLSTATE 25006, an InternalError) failed the write at once,
    DatabaseWriteError, and every OCR and redaction job for good (a review). Now it is waited out, said once,
    each attempt on a fresh session (the pool drained: the new primary may be behind the same name), and
    psycopg's "pipeline aborted" echo of the executemany's unrun statements is not logged."""
    pool = open_pool(private_postgres.url)
    admin = psycopg.connect(private_postgres.url, autocommit=True)
    try:
        upgrade(pool)
        sessions: list[int] = []

        def write(connection: psycopg.Connection) -> None:
            sessions.append(connection.info.backend_pid)
            with connection.cursor() as cursor:  # pipelined: past the first statement's error, the rest unrun
                cursor.executemany("INSERT INTO cameras (camera_id, region, enabled) VALUES (%s, 'us', true)",
                                   [(f"cam{i}",) for i in range(200)])  # fmt: skip

        admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        admin.execute("SELECT pg_reload_conf()")
        for _ in range(100):  # a session takes the reload between two commands: the pool's has, once it says so
            with pool.connection() as connection:
                if connection.execute("SHOW default_transaction_read_only").fetchone() == ("on",):
                    break
            time.sleep(0.05)
        back = threading.Timer(3.0, read_write, (admin,))
        back.start()
        started = time.monotonic()
        with caplog.at_level(logging.INFO):
            write_through_outage(pool, write, patience_s=30)
        waited = time.monotonic() - started
        back.join()
        assert 2.5 < waited < 15 and len(sessions) >= 3
        assert len(set(sessions)) == len(sessions)  # no attempt on a session of the read-only server's
        with pool.connection() as connection:
            assert connection.execute("SELECT count(*) FROM cameras").fetchone() == (200,)
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and warnings[0].startswith("Postgres read-only"), warnings
        assert "Postgres took the write after" in caplog.text and "pipeline aborted" not in caplog.text
    finally:
        read_write(admin)
        admin.close()
        pool.close()


def read_write(admin: psycopg.Connection) -> None:
    admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
    admin.execute("SELECT pg_reload_conf()")


def test_a_session_postgres_ended_idle_in_its_transaction_is_tried_again(pool):
    """25P03 (idle_in_transaction_session_timeout), an InternalError too, was a refusal of the write."""
    calls: list[int] = []

    def write(connection: psycopg.Connection) -> int:
        calls.append(connection.info.backend_pid)
        if len(calls) == 1:  # this attempt stalls in its transaction past the server's limit
            connection.execute("SET LOCAL idle_in_transaction_session_timeout = '200ms'")
            time.sleep(0.6)
        return len(connection.execute("SELECT 1").fetchall())

    assert write_through_outage(pool, write, patience_s=30) == 1
    assert len(calls) == 2 and calls[0] != calls[1]  # the ended session was dropped, a new one used


@pytest.fixture()
def short_lock_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """DB_LOCK_TIMEOUT_S of 1 s (10 s), for the sessions of a pool opened after it."""
    monkeypatch.setattr(defaults, "DB_LOCK_TIMEOUT_S", 1.0)


def test_a_write_behind_a_table_lock_gives_up_at_lock_timeout_and_says_so(short_lock_timeout, pool, caplog):
    """An operator's `LOCK TABLE ... IN ACCESS EXCLUSIVE MODE` held every OCR and redaction job silently until
    RQ's job timeout (120 s; a review). Now each attempt waits DB_LOCK_TIMEOUT_S at most (LockNotAvailable),
    the log names the lock, and the write goes through once it is let go."""
    upgrade(pool)
    with pool.connection() as connection:  # the pool's sessions began under the shortened limit
        assert connection.execute("SHOW lock_timeout").fetchone() == ("1s",)
    locker = psycopg.connect(pool.conninfo)
    locker.execute("LOCK TABLE cameras IN ACCESS EXCLUSIVE MODE")
    let_go = threading.Timer(defaults.DB_LOCK_TIMEOUT_S + 3, locker.rollback)
    let_go.start()
    attempts: list[float] = []

    def write(connection: psycopg.Connection) -> None:
        attempts.append(time.monotonic())
        connection.execute("INSERT INTO cameras (camera_id, region, enabled) VALUES ('c1', 'us', true)")

    try:
        with caplog.at_level(logging.WARNING):
            write_through_outage(pool, write, patience_s=60)
    finally:
        let_go.join()
        locker.close()
    assert len(attempts) >= 2 and attempts[1] - attempts[0] < defaults.DB_LOCK_TIMEOUT_S + 1.5
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert f"waited {defaults.DB_LOCK_TIMEOUT_S:g} s for a lock held by another session" in warning


def test_a_pipelined_write_refused_is_told_once_not_echoed_by_psycopg(pool, caplog):
    """executemany pipelines its statements: one refused leaves those queued after it unrun, and psycopg
    warned so on ending the pipeline (`error ignored terminating <psycopg.Pipeline [INERROR]>: pipeline
    aborted`) beside the error raised: an ingest node logged ten an incident (a review)."""
    upgrade(pool)
    rows = [("cam0",), ("cam0",)] + [(f"cam{i}",) for i in range(1, 1000)]  # the second row refused

    def write(connection: psycopg.Connection) -> None:
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO cameras (camera_id, region, enabled) VALUES (%s, 'us', true)", rows)

    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            with pytest.raises(DatabaseWriteError, match="UniqueViolation"):
                write_through_outage(pool, write, patience_s=30)
    assert "pipeline aborted" not in caplog.text and caplog.records == []

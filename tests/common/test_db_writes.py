"""common/db_writes.py on the real Postgres, each test in a schema of its own: a write waits out a lost
connection but not a constraint violation, which is told by the schema's names, never the row's data."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg_pool import ConnectionPool

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

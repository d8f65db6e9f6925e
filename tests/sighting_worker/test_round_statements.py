"""What a sighting round sends Postgres, on the real Postgres and a private Redis (the helpers and fixture of
tests/sighting_worker/chain_scenes.py). Every statement is counted where psycopg sends it (Cursor.execute on
the pool's own connections): a camera's round costs the same few statements however many cars it closes, so
a round's statements grow with its cameras alone (a scale review: 500 cameras, 4,000–6,500 statements and
4.6–12.8 s a round, a statement for each sighting among them). The statements merged keep their meaning: the
claim, the cursor's lock and the transaction's statement timeout in one; the horizon and the reads up to it
in another, the same horizon and reads as the two statements they were."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from alpr.wiring import build_sighting_stage
from common import defaults
from common.db import open_pool
from common.frame_log import FrameLog, FrameRecord
from common.metrics import Metrics
from common.queues import connect_redis
from common.sighting_log import HORIZON, insert_sightings, reads_to_group, reads_to_horizon
from common.types import Sighting
from sighting_worker.camera_claim import CursorClaims
from tests.sighting_worker.chain_scenes import frame, log_frames, plate, table


@contextmanager
def counted_connection() -> Iterator[list[str]]:
    """The statements sent over psycopg meanwhile."""
    sent: list[str] = []
    execute = psycopg.Cursor.execute

    def counting_execute(cursor: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(" ".join(str(query).split())[:60])
        return execute(cursor, query, *args, **kwargs)

    psycopg.Cursor.execute = counting_execute  # type: ignore[method-assign, assignment]
    try:
        yield sent
    finally:
        psycopg.Cursor.execute = execute  # type: ignore[method-assign]


@contextmanager
def counted(stage: Any) -> Iterator[list[str]]:
    """The statements the `stage`'s rounds send but the watch-lists' refresh (made outside the cameras'
    transactions, due by the clock, not by the work)."""
    refresh = stage.refresh_watch
    with counted_connection() as sent:

        def uncounted_refresh(connection: psycopg.Connection[Any]) -> None:
            before = len(sent)
            refresh(connection)
            del sent[before:]

        stage.refresh_watch = uncounted_refresh
        try:
            yield sent
        finally:
            stage.refresh_watch = refresh


def cars(camera: str, first: int, count: int, start_s: float) -> list[Any]:
    """`count` cars passing `camera` one after another (5 reads each, 3 s apart: each its own sighting)."""
    frames = []
    for car in range(count):
        for i in range(5):
            index = first + car * 5 + i
            frames.append(
                (frame(index, start_s + car * 3 + i * 0.2, camera), [plate(f"C{camera[:2]}{index:04d}", 100 + 20 * i)])
            )
    return frames


def round_of(pool: Any, stage: Any, cameras: list[str], per_camera: int, start_s: float) -> tuple[int, list[str]]:
    """A round over `cameras`, met before (their cursors at `start_s`), each closing `per_camera` cars."""
    with pool.connection() as connection:
        for camera in cameras:
            connection.execute(
                "INSERT INTO sighting_cursors (camera_id, grouped_until_s) VALUES (%s, %s)", (camera, start_s)
            )
    for camera in cameras:
        log_frames(pool, cars(camera, 0, per_camera, start_s + 1))
    with counted(stage) as sent:
        result = stage.poll()
    return len(result.sightings), sent


def test_a_cameras_round_costs_the_same_few_statements_however_many_cars_it_closes(chain, redis_url):  # type: ignore[no-untyped-def]
    pool, settings = chain
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    start_s = time.time() - 60
    one_each = round_of(pool, stage, ["east", "north", "west"], 1, start_s)
    six_each = round_of(pool, stage, ["dock", "gate", "yard"], 6, start_s)
    assert (one_each[0], six_each[0]) == (3, 18)
    assert len(one_each[1]) == len(six_each[1]), six_each[1]  # a statement a sighting was 15 more here
    # a camera: its connection's check, claim and lock, frame interval (its first lookup), early reads, reads,
    # insert, cursor; the round: its connection's check and its cameras. 9 a camera and one a sighting before
    assert len(six_each[1]) <= 7 * 3 + 2, six_each[1]
    assert len(table(pool, "SELECT 1 FROM sightings")) == 21


def test_a_cameras_transaction_is_bounded_by_the_statement_timeout_and_its_session_is_not(chain, redis_url):  # type: ignore[no-untyped-def]
    """SIGHTING_STATEMENT_TIMEOUT_S is set for the camera's transaction alone, in its claim: its statements
    after the claim are bounded by it, and the connection's session (which loads the watch-lists, for seconds
    with a long list) is back to its own setting after it."""
    pool, settings = chain
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    log_frames(pool, cars("east", 0, 1, time.time() - 30))
    seen: list[tuple[str, str]] = []
    reads_due = stage.reads_due

    def showing(connection: psycopg.Connection[Any], cursor: Any) -> Any:
        seen.append(("in", connection.execute("SHOW statement_timeout").fetchone()[0]))  # type: ignore[index]
        return reads_due(connection, cursor)

    stage.reads_due = showing  # type: ignore[method-assign]
    assert len(stage.poll().sightings) == 1
    with stage.pool.connection() as connection:
        seen.append(("after", connection.execute("SHOW statement_timeout").fetchone()[0]))  # type: ignore[index]
    expected = f"{round(defaults.SIGHTING_STATEMENT_TIMEOUT_S)}s"
    assert seen[0] == ("in", expected) and seen[1][1] != expected, seen


def test_a_camera_another_worker_claimed_is_neither_read_nor_locked(chain, postgres_url):  # type: ignore[no-untyped-def]
    """The claim is taken before the row is read: a camera another worker holds yields no cursor, quietly (its
    row, which that worker holds locked, is not locked again: that would be a CursorHeldError)."""
    pool, _ = chain
    with pool.connection() as connection:
        connection.execute("INSERT INTO sighting_cursors (camera_id) VALUES ('east')")
    other = open_pool(postgres_url)
    try:
        with other.connection() as holder, holder.transaction():
            assert CursorClaims().claim(holder, "east") is not None  # a worker grouping east
            with pool.connection() as worker, worker.transaction():
                assert CursorClaims().claim(worker, "east") is None  # not CursorHeldError: its row was never locked
        with pool.connection() as worker, worker.transaction():
            assert CursorClaims().claim(worker, "east") is not None  # free again
    finally:
        other.close()


@pytest.mark.parametrize("limit", [defaults.SIGHTING_BATCH_READS, 3, None])
def test_the_horizon_and_its_reads_in_one_statement_are_those_of_the_two(chain, limit):  # type: ignore[no-untyped-def]
    """Within one transaction (one now()), `reads_to_horizon` gives the horizon and reads that HORIZON and
    `reads_to_group` gave: a frame pending holds the horizon back, a watermark too, a horizon behind the
    cursor is the cursor, and a camera with no reads has its horizon all the same."""
    pool, _ = chain
    now_s = time.time()
    log_frames(pool, cars("east", 0, 2, now_s - 40))
    log_frames(pool, cars("east", 50, 1, now_s - 20), settled=False)  # pending: holds the horizon back
    log_frames(pool, cars("north", 0, 2, now_s - 40))
    with pool.connection() as connection:
        connection.execute("INSERT INTO camera_watermarks (camera_id, recorded_until_s) VALUES ('north', %s)"
                           " ON CONFLICT (camera_id) DO UPDATE SET recorded_until_s = excluded.recorded_until_s",
                           (now_s - 35,))  # fmt: skip
    FrameLog(pool, 0).record_final([FrameRecord(frame(0, now_s - 40, "gone"), "done", plates=0)])
    cases = [("east", 0.0), ("east", now_s - 38.5), ("north", 0.0), ("east", now_s - 10), ("gone", now_s - 60)]
    for camera, from_s in cases:
        with pool.connection() as connection, connection.transaction():
            values = {"settle_s": 2.0, "camera": camera, "stale_s": 600.0, "from_s": from_s}
            old_horizon_s = max(from_s, float(connection.execute(HORIZON, values).fetchone()[0]))  # type: ignore[index]
            old_reads = reads_to_group(connection, camera, from_s, old_horizon_s, limit)
            horizon_s, reads = reads_to_horizon(connection, camera, 2.0, 600.0, from_s, limit)
        assert (horizon_s, reads) == (old_horizon_s, old_reads), (camera, from_s)
        assert reads or camera == "gone" or from_s > now_s - 20


def test_sightings_inserted_in_chunks_count_the_new_ones_and_keep_the_first_of_an_id(chain, monkeypatch):  # type: ignore[no-untyped-def]
    """One statement a chunk of INSERT_CHUNK sightings: one logged already, or twice in the list (a group done
    again), adds nothing and is not counted; the first given of an id is the one kept, as one at a time."""
    pool, _ = chain
    monkeypatch.setattr("common.sighting_log.INSERT_CHUNK", 2)
    at_s = time.time() - 60

    def sighting(index: int, plate_text: str) -> Sighting:
        return Sighting(f"gate:f{index}:0", "gate", plate_text, 0.9, at_s + index, at_s + index + 1, 5,
                        f"gate:f{index}", (1.0, 2.0, 3.0, 4.0), 0.9, ((plate_text, 5),))  # fmt: skip

    with pool.connection() as connection:
        assert insert_sightings(connection, [(sighting(0, "AAA0000"), None)]) == 1
    given = [sighting(0, "OLD0000"), sighting(1, "AAA1111"), sighting(2, "AAA2222"), sighting(1, "DUP1111")]
    with pool.connection() as connection, counted_connection() as sent:
        assert insert_sightings(connection, [(s, "snap.jpg") for s in [*given, sighting(3, "AAA3333")]]) == 3
    assert len(sent) == 3  # 5 sightings, 2 a statement
    assert table(pool, "SELECT sighting_id, plate FROM sightings ORDER BY sighting_id") == [
        ("gate:f0:0", "AAA0000"), ("gate:f1:0", "AAA1111"), ("gate:f2:0", "AAA2222"), ("gate:f3:0", "AAA3333"),
    ]  # fmt: skip

"""What a sighting round costs at city scale, on the real Postgres: CAMERAS cameras each pass a car in
front of the camera between rounds (FRAMES frames at 5 frames/s, one read each; every LISTED-th camera's car
is on the watch-list), logged and settled as the chain logs them (frames log, plate log). Then rounds of
the sighting pool's own stage (`build_sighting_stage`, `SightingStage.poll`) group them: the first round
meets every camera for the first time, the next rounds group the cars passed since.

Every statement a round sends Postgres is counted and timed where it is sent (psycopg's Cursor.execute on
the pool's real connections), by its first words, and the pool's connection checks (psycopg_pool's
`check_connection`) as well; the table shows each kind's count per round and its seconds.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_sighting_rounds.py [--cameras 500] [--rounds 3]

It makes a schema of its own in ALPR_BENCH_DATABASE_URL (default this machine's `test` database) and drops
it after; Redis (ALPR_REDIS_URL, default 127.0.0.1:6379) is only connected to: no receiver, no job queued.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from alpr.cli import main as cli
from alpr.wiring import build_sighting_stage
from common.config import Settings
from common.db import open_pool
from common.frame_log import FrameLog, FrameRecord
from common.frame_store import frame_key
from common.jobs import FrameRef
from common.metrics import Metrics
from common.plate_log import PostgresPlateLog
from common.queues import connect_redis
from common.types import PlateCandidate, PlateRead

BASE_URL = os.environ.get("ALPR_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
FRAMES = 10
"""Frames a car is read in between two rounds (2 s at 5 frames/s)."""
LISTED = 25
"""Every LISTED-th camera's car is listed: its pass raises an alert."""


class Statements:
    """Every statement sent over psycopg in this process, counted and timed by its first words."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.on = False

    @contextmanager
    def counting(self) -> Iterator[None]:
        execute, check = psycopg.Cursor.execute, ConnectionPool.check_connection
        statements = self

        def counted(cursor: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return execute(cursor, query, *args, **kwargs)
            finally:
                statements.note(" ".join(str(query).split())[:70], started)

        def checked(connection: psycopg.Connection[Any]) -> None:
            started = time.perf_counter()
            try:
                check(connection)
            finally:
                statements.note("(pool check_connection)", started)

        psycopg.Cursor.execute = counted  # type: ignore[method-assign, assignment]
        ConnectionPool.check_connection = staticmethod(checked)  # type: ignore[method-assign, assignment]
        try:
            yield
        finally:
            psycopg.Cursor.execute = execute  # type: ignore[method-assign]
            ConnectionPool.check_connection = check  # type: ignore[method-assign]

    def note(self, key: str, started: float) -> None:
        if self.on:
            self.count[key] += 1
            self.seconds[key] += time.perf_counter() - started

    def reset(self) -> None:
        self.count.clear()
        self.seconds.clear()


def frames_of(camera: int, first: int, start_s: float, listed: bool) -> list[tuple[FrameRef, list[PlateRead]]]:
    """A car passing camera `camera` in FRAMES frames from `start_s`, one read a frame."""
    text = f"LST{camera:04d}" if listed else f"C{camera:03d}{first:04d}"[:8]
    frames = []
    for i in range(first, first + FRAMES):
        frame_id = f"cam{camera:04d}:run1:{i}"
        at_s = start_s + (i - first) * 0.2
        ref = FrameRef(frame_id=frame_id, camera_id=f"cam{camera:04d}", seq=i, frame_index=i, captured_at_s=at_s,
                       source_time_s=i / 5, key=frame_key(frame_id), region="us", roi=None)  # fmt: skip
        x = 100.0 + 20 * (i - first)
        frames.append((ref, [PlateRead((x, 400.0, x + 90.0, 440.0), 0.9, (PlateCandidate(text, 0.95, "us"),))]))
    return frames


def log_cars(pool: ConnectionPool, cameras: int, first: int, start_s: float) -> None:
    frames = [f for c in range(cameras) for f in frames_of(c, first, start_s, c % LISTED == 0)]
    frame_log = FrameLog(pool, 0)
    frame_log.record_sampled([FrameRecord(ref, "pending") for ref, _ in frames])
    PostgresPlateLog(pool).record_many(frames)
    frame_log.record_reads([(ref, "done") for ref, _ in frames])
    frame_log.record_final([FrameRecord(ref, "done", plates=len(reads)) for ref, reads in frames])


PROFILE = os.environ.get("BENCH_PROFILE") == "1"


def profiled(call: Any) -> Any:
    import cProfile
    import pstats

    profile = cProfile.Profile()
    result = profile.runcall(call)
    pstats.Stats(profile).sort_stats("cumulative").print_stats(45)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(BASE_URL, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    url = f"{BASE_URL}?options=-csearch_path%3D{schema}"
    try:
        run(url, args.cameras, args.rounds)
    finally:
        with psycopg.connect(BASE_URL, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def run(url: str, cameras: int, rounds: int) -> None:
    assert cli(["db", "upgrade", "--database-url", url]) == 0
    for camera in range(0, cameras, LISTED):
        assert cli(["watchlist", "add", f"LST{camera:04d}", "--reason", "bench", "--database-url", url]) == 0
    os.environ.update(
        ALPR_DATABASE_URL=url, ALPR_REDIS_URL=os.environ.get("ALPR_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    os.environ.pop("ALPR_ALERT_RECEIVERS", None)
    settings = Settings.load()
    pool = open_pool(url)
    stage = build_sighting_stage(settings, connect_redis(settings.redis_url), Metrics())
    statements = Statements()
    horizon_s = 0.0  # the last round's horizon (its start less the settle time): new cars come after it
    print(f"{cameras} cameras, a car each ({FRAMES} reads) between rounds, every {LISTED}th listed")
    with statements.counting():
        for round_no in range(rounds):
            while (start_s := time.time() - settings.sighting_settle_s - FRAMES * 0.2 - 0.5) < horizon_s + 0.1:
                time.sleep(0.1)
            log_cars(pool, cameras, round_no * FRAMES, start_s)
            statements.reset()
            statements.on = True
            started = time.perf_counter()
            result = profiled(stage.poll) if PROFILE else stage.poll()
            took_s = time.perf_counter() - started
            horizon_s = time.time() - settings.sighting_settle_s  # the last camera's, at the latest
            statements.on = False
            total = sum(statements.count.values())
            in_sql_s = sum(statements.seconds.values())
            print(f"round {round_no + 1}: {took_s:.2f} s, {len(result.sightings)} sightings,"
                  f" {len(result.alerts)} alerts, {total} statements ({total / cameras:.1f} a camera),"
                  f" {in_sql_s:.2f} s in them")  # fmt: skip
            for key, count in statements.count.most_common():
                print(f"    {count:6d}  {statements.seconds[key]:6.3f} s  {key}")
    pool.close()


if __name__ == "__main__":
    main()

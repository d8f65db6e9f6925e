"""`alpr search` on a city's sightings: seconds per search through migration 12's search keys (a GIN
index; searches within 1.5) against reading every sighting of the window (what a wider search does,
and what the keys replaced), side by side in one run, on random plates of the US alphabet, each
sighting with its plate and one other text read. The results of both are checked to agree.

    .venv/bin/python benchmarks/bench_search.py [--database-url URL] [--sightings 300000] [--searches 20]

It works in a schema of its own (bench_search_<pid>), dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from datetime import UTC, datetime

import psycopg

from alpr.cli import main as alpr
from common.db import open_pool
from common.plate_search import PlateSearch, search_postgres

ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
FRAMES_PER_SIGHTING = 4
"""Frame records per sighting: the frames log outgrows the sightings (a join to it read it all)."""
COLUMNS = "sighting_id, camera_id, plate, confidence, first_seen, last_seen, reads, best_frame_id, best_confidence"


def fill(url: str, count: int, rng: random.Random) -> list[str]:
    """`count` sightings of 50 cameras, one every 2.5 s; returns their plates."""
    plates = ["".join(rng.choices(ALPHABET, k=7)) for _ in range(count)]
    start = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    sightings = f"COPY sightings ({COLUMNS}, x1, y1, x2, y2, texts) FROM STDIN"
    frames = "COPY frames (frame_id, camera_id, seq, frame_index, captured_at, plates, stage_ms, kept_path) FROM STDIN"
    with psycopg.connect(url, autocommit=True) as db, db.cursor() as cursor:
        with cursor.copy(sightings) as copy:
            for index, plate in enumerate(plates):
                seen = datetime.fromtimestamp(start + index * 2.5, UTC)
                texts = f'[["{plate}", 4], ["{"".join(rng.choices(ALPHABET, k=7))}", 1]]'
                copy.write_row((f"s{index}", f"cam{index % 50}", plate, 0.9, seen, seen, 5, f"f{index}", 0.9,
                                1, 1, 2, 2, texts))  # fmt: skip
        with cursor.copy(frames) as copy:  # a row per sampled frame: far more than sightings
            for index in range(count * FRAMES_PER_SIGHTING):
                seen = datetime.fromtimestamp(start + index * 2.5 / FRAMES_PER_SIGHTING, UTC)
                copy.write_row((f"f{index}", f"cam{index % 50}", index, index, seen, 1, "{}", f"/kept/f{index}.jpg"))
        cursor.execute("ANALYZE")
    return plates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--sightings", type=int, default=300_000)
    parser.add_argument("--searches", type=int, default=20)
    args = parser.parse_args()
    schema = f"bench_search_{os.getpid()}"
    with psycopg.connect(args.database_url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    url = f"{args.database_url}?options=-csearch_path%3D{schema}"
    try:
        assert alpr(["db", "upgrade", "--database-url", url]) == 0
        rng = random.Random(0)
        started = time.perf_counter()
        plates = fill(url, args.sightings, rng)
        print(f"{args.sightings} sightings written and indexed in {time.perf_counter() - started:.1f} s")
        wanted = [rng.choice(plates) if i % 2 else "".join(rng.choices(ALPHABET, k=7)) for i in range(args.searches)]
        pool = open_pool(url)
        keyed_s = scanned_s = 0.0
        for number, plate in enumerate(wanted):
            camera = f"cam{number % 50}" if number % 4 == 0 else None  # a search in four is of one camera
            keyed = PlateSearch(plate=plate, reason="bench", searched_by="bench", within=1.5, limit=100_000,
                                camera_id=camera)  # fmt: skip
            started = time.perf_counter()
            by_keys = search_postgres(pool, keyed)
            keyed_s += time.perf_counter() - started
            scan = keyed.model_copy(update={"within": 1.50001})  # past the keys' reach: every sighting read
            started = time.perf_counter()
            by_scan = [row for row in search_postgres(pool, scan) if row["distance"] <= 1.5]
            scanned_s += time.perf_counter() - started
            assert [r["sighting_id"] for r in by_keys] == [r["sighting_id"] for r in by_scan], plate
        pool.close()
        per_keyed, per_scan = keyed_s / len(wanted), scanned_s / len(wanted)
        print(
            f"search within 1.5, {len(wanted)} searches (half of plates seen): by keys {per_keyed * 1000:.1f} ms,"
            f" reading every sighting {per_scan * 1000:.0f} ms ({per_scan / per_keyed:.0f}x); results equal"
        )
    finally:
        with psycopg.connect(args.database_url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()

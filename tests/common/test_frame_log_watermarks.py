"""The frames log's watermark write against a real Postgres: a node with hundreds of cameras writes all
their watermarks in one statement (one round trip each was 1.57 s a write over a 2.5 ms link: the node's
buffer grew past its capacity), with the semantics of one upsert a camera kept."""

import time
from pathlib import Path

from psycopg import pq

from common.db import open_pool
from common.frame_log import FrameLog, FrameRecord
from common.frame_store import frame_key
from common.jobs import FrameRef

CAMERAS = 500


def record(camera_id: str, index: int) -> FrameRecord:
    ref = FrameRef(frame_id=f"{camera_id}:1:{index}", camera_id=camera_id, seq=index, frame_index=index,
                   captured_at_s=time.time(), source_time_s=0.0, key=frame_key(f"{camera_id}:1:{index}"),
                   region="us")  # fmt: skip
    return FrameRecord(ref, "pending")


def round_trips(trace: str) -> int:
    """The times the client waited on the server in libpq's trace (`F`: sent by the client): a Sync ends
    each statement or pipeline of statements (psycopg's executemany pipelines its rows), a simple Query
    waits alone; the transaction's BEGIN and COMMIT and the pool's empty check left out."""
    sent = [line.split("\t") for line in trace.splitlines() if line.startswith("F\t")]
    syncs = [fields for fields in sent if fields[2] == "Sync"]
    queries = [
        fields for fields in sent if fields[2] == "Query" and fields[3].strip() not in ('""', '"BEGIN"', '"COMMIT"')
    ]
    return len(syncs) + len(queries)


def test_a_write_for_500_cameras_is_a_few_statements_with_each_watermark_upserted(postgres_url, tmp_path: Path):
    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url, max_size=1)
    try:
        log = FrameLog(pool, patience_s=0)
        cameras = [f"cam{number:03d}" for number in range(CAMERAS)]
        log.record_sampled([], {camera: 100.0 for camera in cameras})  # every camera has a watermark
        marks: dict[str, float | None] = {camera: 200.0 + number for number, camera in enumerate(cameras)}
        marks["cam007"] = None  # no longer sampled here: its watermark goes
        marks["cam008"] = 50.0  # a watermark is the node's word as it is now, even an earlier one
        trace_path = tmp_path / "libpq.trace"
        with trace_path.open("w") as trace:  # open while libpq writes to it
            with pool.connection() as connection:  # the pool's one connection
                connection.pgconn.trace(trace.fileno())
                connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            try:
                log.record_sampled([record("cam001", 1), record("cam002", 1)], marks)
            finally:
                with pool.connection() as connection:
                    connection.pgconn.untrace()
        assert "camera_watermarks" in trace_path.read_text()  # the trace holds the write
        trips = round_trips(trace_path.read_text())
        assert trips <= 3, f"{trips} round trips for one write of {CAMERAS} cameras' watermarks"
        with pool.connection() as connection:
            found = dict(connection.execute("SELECT camera_id, recorded_until_s FROM camera_watermarks").fetchall())
            frames = connection.execute("SELECT count(*) FROM frames").fetchone()
        assert found == {camera: until for camera, until in marks.items() if until is not None}
        assert frames == (2,)
        log.record_sampled([], {"cam009": None, "new": 5.0})  # only deletes and inserts, each alone
        with pool.connection() as connection:
            rows = dict(connection.execute("SELECT camera_id, recorded_until_s FROM camera_watermarks").fetchall())
        assert "cam009" not in rows and rows["new"] == 5.0 and len(rows) == CAMERAS - 2 + 1
    finally:
        pool.close()

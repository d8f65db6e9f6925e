"""The redactor's and the OCR pool's writes to the frames log (common/frame_log.py's record_final and
record_reads) as one statement a batch, against a real Postgres: the frames table and the per-minute
counts (migration 21) left exactly as a statement a record left them (as executemany sent them), for
frames absent or already there in every state, and frames named more than once in a batch."""

from __future__ import annotations

import itertools
import time
from typing import Any

from psycopg_pool import ConnectionPool

from common.db import open_pool
from common.frame_log import RECORD_READS, ROWS_GIVEN, UPSERT_FINAL, FrameLog, FrameRecord, ReadOutcome
from common.frame_store import frame_key
from common.jobs import FrameOutcome, FrameRef

ONE_ROW = " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
"""The statements as they were sent before, a record each."""

FINAL_ONE_ROW = UPSERT_FINAL.replace(f"{ROWS_GIVEN} ORDER BY given.frame_id", ONE_ROW)
READS_ONE_ROW = RECORD_READS.replace(f"{ROWS_GIVEN} ORDER BY given.frame_id", ONE_ROW)

SEEDED_AT = "2020-01-01 00:00+00"
"""The seeded rows' done_at: a row the write touched has the write's own."""

STATES: list[tuple[FrameOutcome, ReadOutcome | None] | None] = [
    None,  # no row yet
    ("pending", None), ("pending", "done"), ("pending", "expired"), ("lost", None), ("lost", "corrupt"),
    ("skipped", None), ("done", None), ("done", "pending"), ("done", "refused"), ("expired", None),
    ("corrupt", "corrupt"),
]  # fmt: skip
"""What the log holds of a frame before the batch: (outcome, read outcome), or nothing."""

FINALS: list[FrameOutcome] = ["done", "expired", "skipped", "corrupt", "lost", "pending"]
READS: list[ReadOutcome] = ["done", "expired", "corrupt", "refused", "pending", "skipped", "lost"]


def ref(number: int, captured_at_s: float) -> FrameRef:
    frame_id = f"gate:1:{number}"
    return FrameRef(frame_id=frame_id, camera_id="gate", seq=number, frame_index=number,
                    captured_at_s=captured_at_s + number, source_time_s=0.0, key=frame_key(frame_id),
                    region="us")  # fmt: skip


def batches(now: float) -> tuple[list[tuple[int, tuple]], list[FrameRecord], list[FrameRecord]]:
    """Seeded rows, and a batch of finals and one of reads naming frames in every state once, twice and
    three times (interleaved: a frame's records apart in the batch), each record with timings of its own."""
    seeded: list[tuple[int, tuple]] = []
    finals: list[list[FrameRecord]] = []
    reads: list[list[FrameRecord]] = []
    number = 0
    for state in STATES:
        for sequence in (*itertools.product(FINALS, repeat=1), *itertools.product(FINALS, repeat=2),
                         ("skipped", "done", "expired"), ("pending", "skipped", "done")):  # fmt: skip
            number += 1
            if state is not None:
                seeded.append((number, state))
            frame = ref(number, now)
            finals.append([
                FrameRecord(frame.model_copy(update={"stage_ms": {f"redact{i}": float(i + 1)}}), outcome,
                            detail=f"detail {i}", plates=i + 1, kept_path=f"/kept/{number}-{i}.jpg")
                for i, outcome in enumerate(sequence)
            ])  # fmt: skip
        for sequence in (*itertools.product(READS, repeat=1), *itertools.product(READS, repeat=2),
                         ("corrupt", "expired", "done"), ("done", "expired", "refused")):  # fmt: skip
            number += 1
            if state is not None:
                seeded.append((number, state))
            frame = ref(number, now)
            reads.append([
                FrameRecord(frame.model_copy(update={"stage_ms": {f"ocr{i}": float(i + 1)}}), "pending",
                            read_outcome=read)
                for i, read in enumerate(sequence)
            ])  # fmt: skip
    return seeded, interleaved(finals), interleaved(reads)


def interleaved(groups: list[list[FrameRecord]]) -> list[FrameRecord]:
    """Every group's first record, then every group's second, ...: a frame's records apart, in order."""
    return [record for layer in itertools.zip_longest(*groups) for record in layer if record is not None]


def seed(pool: ConnectionPool, seeded: list[tuple[int, tuple]], now: float) -> None:
    with pool.connection() as connection:
        connection.execute("TRUNCATE frames")
        connection.execute(
            "INSERT INTO frames (frame_id, camera_id, seq, frame_index, captured_at, plates, stage_ms, outcome,"
            " read_outcome, detail, kept_path, done_at)"
            " SELECT 'gate:1:' || n, 'gate', n, n, to_timestamp(%s + n), 7, '{\"ingest\": 1.5}', outcome, reads,"
            " 'seeded', '/kept/seeded.jpg', %s FROM unnest(%s::int[], %s::text[], %s::text[]) AS s(n, outcome, reads)",
            (now, SEEDED_AT, [n for n, _ in seeded], [s[0] for _, s in seeded], [s[1] for _, s in seeded]),
        )


def contents(pool: ConnectionPool) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every frame's row (done_at as whether the write set it) and the merged per-minute counts."""
    with pool.connection() as connection:
        connection.execute("SELECT frame_counts_merged()")
        rows = connection.execute(
            "SELECT frame_id, camera_id, seq, frame_index, captured_at, plates, stage_ms, kept_path, outcome,"
            " detail, read_outcome, done_at > %s FROM frames ORDER BY frame_id",
            (SEEDED_AT,),
        ).fetchall()
        counts = connection.execute(
            "SELECT minute, camera_id, outcome, read_outcome, frames FROM frame_counts ORDER BY 1, 2, 3, 4"
        ).fetchall()
    return rows, counts


def test_a_batch_in_one_statement_leaves_the_log_as_a_statement_a_record_did(postgres_url):
    """The finals then the reads, each batch naming frames in every state, some twice or three times:
    the per-record path and the batched one leave the same rows (outcomes, read outcomes, merged timings,
    plates, kept paths, details, which rows were touched) and the same per-minute counts."""
    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url, max_size=2)
    try:
        now = time.time() - 3600
        seeded, finals, reads = batches(now)
        seed(pool, seeded, now)
        with pool.connection() as connection, connection.cursor() as cursor:  # as record_final, record_reads did
            cursor.executemany(FINAL_ONE_ROW, [record.row() for record in finals])
            cursor.executemany(READS_ONE_ROW, [record.row() for record in reads])
        one_by_one = contents(pool)

        seed(pool, seeded, now)
        log = FrameLog(pool, patience_s=0)
        log.record_final(finals)
        log.record_reads([(record.frame, record.read_outcome or "pending") for record in reads])
        assert contents(pool) == one_by_one
        rows = {row[0]: row for row in one_by_one[0]}
        # the cases the batch had to get right were there: a skip then done (both timings), done kept
        assert rows[finals[0].frame.frame_id][8] == "done"
        merged = [row for row in rows.values() if {"redact0", "redact1"} <= set(row[6])]
        assert merged and any(row[8] == "done" for row in merged)
    finally:
        pool.close()

"""The frames log: the one durable record of every sampled frame (Postgres table `frames`). The
ingest node writes a row when it samples a frame (`pending`, or `skipped` with the reason); the
redactor writes how the frame ended (done, expired, corrupt, skipped as too old); a sweep marks as
`lost` what no stage finished while its bytes could still exist (a Redis restart without AOF). The
OCR pool adds its time on the frame (OCR and redaction run side by side; each stage's time is merged
into the row, whichever comes first). Every write is idempotent: a frame logged twice keeps its
first final outcome."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from common.db import write_through_outage
from common.jobs import FrameOutcome, FrameRef


@dataclass(frozen=True)
class FrameRecord:
    """How one sampled frame ended (or that it is still in the chain: `pending`); the frame carries
    the stage timings."""

    frame: FrameRef
    outcome: FrameOutcome
    detail: str | None = None
    plates: int = 0
    kept_path: str | None = None

    def row(self) -> tuple[Any, ...]:
        ref = self.frame
        captured_at = datetime.fromtimestamp(ref.captured_at_s, UTC)
        timings = Jsonb({k: round(v, 2) for k, v in ref.stage_ms.items()})
        return (
            ref.frame_id, ref.camera_id, ref.seq, ref.frame_index, captured_at, self.plates, timings,
            self.kept_path, self.outcome, self.detail,
        )  # fmt: skip


COLUMNS = "frame_id, camera_id, seq, frame_index, captured_at, plates, stage_ms, kept_path, outcome, detail"

INSERT_SAMPLED = (
    f"INSERT INTO frames ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
"""A sampled frame: a new row, or nothing when the frame is known already (a re-read after a restart)."""

UPSERT_FINAL = f"""
INSERT INTO frames ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (frame_id) DO UPDATE SET
    plates = excluded.plates, stage_ms = frames.stage_ms || excluded.stage_ms, kept_path = excluded.kept_path,
    outcome = excluded.outcome, detail = excluded.detail, done_at = now()
WHERE frames.outcome IN ('pending', 'lost') OR (frames.outcome = 'skipped' AND excluded.outcome = 'done')
"""
"""How a frame ended: replaces `pending`, a `lost` that turned up late, or a skip that a re-read after
a restart processed after all; never another final outcome."""

MERGE_TIMINGS = f"""
INSERT INTO frames ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (frame_id) DO UPDATE SET stage_ms = frames.stage_ms || excluded.stage_ms
"""
"""A stage's time on a frame, merged into its row (a `pending` row when the frame is not logged yet:
the ingest node's ledger is asynchronous)."""

SWEEP_LOST = """
UPDATE frames SET outcome = 'lost', detail = 'no stage finished it in time', done_at = now()
WHERE outcome = 'pending' AND done_at < now() - make_interval(secs => %s)
"""
"""A pending row's done_at is when it was recorded (Postgres's clock: no skew between hosts)."""

OUTCOME_COUNTS = "SELECT camera_id, outcome, count(*) FROM frames GROUP BY camera_id, outcome"

PENDING_COUNTS = "SELECT camera_id, count(*) FROM frames WHERE outcome = 'pending' GROUP BY camera_id"


class FrameLog:
    """Writes and counts the frames table through a shared pool, waiting out Postgres outages."""

    def __init__(self, pool: ConnectionPool, patience_s: float) -> None:
        self.pool, self.patience_s = pool, patience_s

    def record_sampled(self, records: Sequence[FrameRecord]) -> None:
        """Rows for frames just sampled (pending or skipped); a frame seen before keeps its row."""
        self._write(INSERT_SAMPLED, records)

    def record_final(self, records: Sequence[FrameRecord]) -> None:
        """How frames ended; a final outcome already recorded stays as it is (idempotent)."""
        self._write(UPSERT_FINAL, records)

    def record_timings(self, frames: Sequence[FrameRef]) -> None:
        """Merge the stage timings the frames carry into their rows; outcomes are left as they are."""
        self._write(MERGE_TIMINGS, [FrameRecord(frame, "pending") for frame in frames])

    def _write(self, statement: str, records: Sequence[FrameRecord]) -> None:
        if not records:
            return
        rows = [record.row() for record in records]

        def write(connection: psycopg.Connection) -> None:
            with connection.cursor() as cursor:
                cursor.executemany(statement, rows)

        write_through_outage(self.pool, write, self.patience_s)

    def sweep_lost(self, older_than_s: float) -> int:
        """Mark as lost the frames still pending `older_than_s` after they were recorded; returns how many.
        One attempt: a sweep that meets an outage waits for the next round."""

        def sweep(connection: psycopg.Connection) -> int:
            with connection.cursor() as cursor:
                cursor.execute(SWEEP_LOST, (older_than_s,))
                return max(cursor.rowcount, 0)

        return write_through_outage(self.pool, sweep, 0.0)

    def pending_counts(self) -> dict[str, int]:
        """camera -> frames sampled without a final outcome yet (cheap: a partial index)."""
        with self.pool.connection() as connection:
            return {camera_id: int(number) for camera_id, number in connection.execute(PENDING_COUNTS)}

    def outcome_counts(self) -> dict[str, dict[str, int]]:
        """camera -> outcome -> frames."""
        counts: dict[str, dict[str, int]] = {}
        with self.pool.connection() as connection:
            for camera_id, outcome, number in connection.execute(OUTCOME_COUNTS):
                counts.setdefault(camera_id, {})[outcome] = int(number)
        return counts

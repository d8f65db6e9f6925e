"""The frames log: the one durable record of every sampled frame (Postgres table `frames`). The
ingest node writes a row when it samples a frame (`pending`, or `skipped` with the reason); the
redactor writes how the frame ended (done, expired, corrupt, skipped as too old); a sweep marks as
`lost` what no stage finished while its bytes could still exist (a Redis restart without AOF). OCR and
redaction run side by side, and each records its own outcome: the frame's (the redactor's) and its
reads' (`read_outcome`: `pending` once the redactor has seen plates to read, `done` or `expired` from
the OCR pool, whichever writes first, `refused` when the OCR pool does not know the frame's plate
region, `corrupt` when a crop is there but cannot be read, `skipped` when its OCR job ran out of time
before it, `lost` when the sweep finds them still pending), and each merges
its time on the frame into the row. Every write is idempotent: a frame logged twice keeps its first
final outcome, and reads once done stay done. Here too: the look-ups a restarted ingest node makes of its
frames, and of the frames alerts cite (the redactor's keep sweep). Counting the log per camera (`alpr
status`, the per-minute counts of migration 21): common/frame_counts.py."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from common.db_writes import write_through_outage
from common.jobs import FrameOutcome, FrameRef

ReadOutcome = Literal["pending", "done", "expired", "lost", "refused", "corrupt", "skipped"]
"""How a frame's plate reads ended: to be read, read and logged, not read (their crops expired), lost
(no OCR job finished them in time), refused (a plate region the OCR pool does not know), corrupt (a crop
there but not readable: not a JPEG, too large; migration 11), skipped (not begun within its OCR job's
time budget: defaults.JOB_TIME_BUDGET_SHARE; migration 18). None: nothing to read (no plate inside the
camera's ROI)."""

RoiDropped = Literal["held", "unknown"]
"""Where a record's frame's region of interest went, when it was taken out of it (FrameRecord.roi_dropped)."""


@dataclass(frozen=True)
class LoggedFrame:
    """A frame the log holds, as a restarted node resuming its footage asks (FrameLog.logged)."""

    frame_index: int
    """The frame's index in its source."""
    captured_s: float
    """Its capture time (Unix s), as the node that sampled it dated it."""
    finished: bool
    """Whether it ended for good (LOGGED): reading it again would add nothing."""


@dataclass(frozen=True)
class FrameRecord:
    """How one sampled frame ended (or that it is still in the chain: `pending`); the frame carries
    the stage timings."""

    frame: FrameRef
    outcome: FrameOutcome
    detail: str | None = None
    plates: int = 0
    kept_path: str | None = None
    read_outcome: ReadOutcome | None = None
    roi_dropped: RoiDropped | None = None
    """Whether its frame's region of interest was taken out of `frame` (None: not; it is as its detect job
    carried it): `held` by the ingest node's ledger, which buffers it without (FrameLedger.add) and puts it
    back as the row is written; `unknown`, read from a spool file, whose lines hold none (a frame of a camera
    with no ROI reads alike). Never written to a spool line. A pending frame's row keeps no reference while it
    is dropped (`queued_ref`): a frame queued again from it was detected over the whole frame."""

    def row(self) -> tuple[Any, ...]:
        ref = self.frame
        captured_at = datetime.fromtimestamp(ref.captured_at_s, UTC)
        timings = Jsonb({k: round(v, 2) for k, v in ref.stage_ms.items()})
        return (
            ref.frame_id, ref.camera_id, ref.seq, ref.frame_index, captured_at, self.plates, timings,
            self.kept_path, self.outcome, self.detail, self.read_outcome,
        )  # fmt: skip


COLUMNS = (
    "frame_id, camera_id, seq, frame_index, captured_at, plates, stage_ms, kept_path, outcome, detail, read_outcome"
)

ROWS_GIVEN = f"""
SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::timestamptz[], %s::integer[],
    %s::jsonb[], %s::text[], %s::text[], %s::text[], %s::text[]) AS given({COLUMNS})"""
"""A batch's rows as one array a column (FrameRecord.row's order: COLUMNS)."""

SAMPLED_GIVEN = f"""
SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::timestamptz[], %s::integer[],
    %s::jsonb[], %s::text[], %s::text[], %s::text[], %s::text[], %s::jsonb[]) AS given({COLUMNS}, frame_ref)"""
"""As ROWS_GIVEN, and each frame's reference (`queued_ref`) last."""

INSERT_SAMPLED = f"""
INSERT INTO frames ({COLUMNS}, frame_ref){SAMPLED_GIVEN} ORDER BY given.frame_id
ON CONFLICT DO NOTHING
"""
"""Sampled frames, one array a column (and each frame's reference, `frame_ref`: `queued_ref`): a new row each,
or nothing for a frame known already (a re-read after
a restart), in frame-id order as every writer of frames takes them (in sampling order, an ingest batch and an OCR
or redactor batch naming two of its frames waited each on the other: a deadlock, retried as an outage). One
statement for the batch: the frame counts' trigger (migration 21) runs once a statement, and once a row it cost
an ingest batch of 2,500 frames 60% more (a row's statement each, as executemany sends them)."""

UPSERT_FINAL = f"""
INSERT INTO frames ({COLUMNS}){ROWS_GIVEN} ORDER BY given.frame_id
ON CONFLICT (frame_id) DO UPDATE SET
    plates = excluded.plates, stage_ms = frames.stage_ms || excluded.stage_ms, kept_path = excluded.kept_path,
    outcome = excluded.outcome, detail = excluded.detail, done_at = now(),
    read_outcome = COALESCE(frames.read_outcome, excluded.read_outcome)
WHERE frames.outcome IN ('pending', 'lost') OR (frames.outcome = 'skipped' AND excluded.outcome = 'done')
"""
"""How a frame ended: replaces `pending`, a `lost` that turned up late, or a skip that a re-read after
a restart processed after all; never another final outcome. Its reads become `pending` unless the OCR
pool has already recorded them; its reference for `alpr replay --orphans` is dropped by Postgres (migration
24's trigger: an ended frame is never queued again). A batch's rows at once (FrameLog._write), in frame-id
order: the rows locked in one order by every writer."""

RECORD_READS = f"""
INSERT INTO frames ({COLUMNS}){ROWS_GIVEN} ORDER BY given.frame_id
ON CONFLICT (frame_id) DO UPDATE SET stage_ms = frames.stage_ms || excluded.stage_ms,
    read_outcome = CASE
        WHEN frames.read_outcome = 'done' THEN 'done'
        WHEN excluded.read_outcome = 'expired' AND frames.read_outcome IN ('corrupt', 'refused')
            THEN frames.read_outcome
        ELSE excluded.read_outcome END
"""
"""How the OCR pool ended a frame's reads, and its time on the frame, merged into the row (a `pending`
row when the frame is not logged yet: the ingest node's ledger is asynchronous). Reads once done stay
done (a replayed job finds its crops deleted), and a job run again that finds the crops gone says
nothing new of reads found corrupt (a crop swapped: an attack's trace) or refused: they stay so."""

UPSERT_WATERMARKS = """
INSERT INTO camera_watermarks (camera_id, recorded_until_s)
SELECT marks.camera_id, marks.recorded_until_s
FROM unnest(%s::text[], %s::double precision[]) AS marks(camera_id, recorded_until_s)
ORDER BY marks.camera_id
ON CONFLICT (camera_id) DO UPDATE SET recorded_until_s = excluded.recorded_until_s, updated_at = now()
"""
"""An ingest node's word, for each of its cameras (one statement for them all: a node with 500 cameras sent
500 round trips a write, 1.57 s over a 2.5 ms link, a scale review), that every frame the camera sampled
before `recorded_until_s` has its row: the sighting pool groups no read past it (a frame queued but not yet
recorded could still bring reads). Rows taken in camera order, as nodes sharing cameras lock them."""

DELETE_WATERMARKS = "DELETE FROM camera_watermarks WHERE camera_id = ANY(%s)"
"""The watermarks of cameras no longer sampled here, in one statement."""

SWEEP_LOST = """
UPDATE frames SET outcome = 'lost', detail = 'no stage finished it in time', done_at = now()
WHERE outcome = 'pending' AND done_at < now() - make_interval(secs => %s)
"""
"""A pending row's done_at is when it was recorded (Postgres's clock: no skew between hosts); its reference is
dropped by migration 24's trigger, as UPSERT_FINAL's. Neither statement names frame_ref: set by the workers, it
needed a grant of UPDATE (frame_ref) that the release before's `alpr db upgrade --grant` (Compose's `migrate`,
run on a rollback before the services are recreated) revoked, and every final record and sweep of this
release's redactors still running was refused (permission denied for table frames, a review)."""

SWEEP_READS_LOST = """
UPDATE frames SET read_outcome = 'lost'
WHERE read_outcome = 'pending' AND done_at < now() - make_interval(secs => %s)
"""
"""Reads still pending that long after the redactor finished the frame (its done_at): their OCR job
failed for good, or its crops were lost."""

LOGGED = """
SELECT frame_id, frame_index, captured_at, COALESCE(
    (outcome IN ('done', 'expired', 'corrupt') OR (outcome = 'skipped' AND detail IN ('too large', 'unencodable')))
    AND (read_outcome IS NULL OR read_outcome NOT IN ('pending', 'lost', 'skipped')), false)
FROM frames WHERE frame_id = ANY(%s)
"""
"""Which of these frames have a row, and whether each ended for good: processed (and their reads, if
any, ended too), expired, or unreadable. A frame still pending (in the chain, or never queued by a node
that was killed), lost, or skipped for a passing reason (back-pressure, a stop, its job out of time; its
reads too) has not: reading it again may yet process it."""

LATEST_CAPTURE = "SELECT extract(epoch FROM max(captured_at)) FROM frames WHERE camera_id = %s"
"""The capture time of the camera's latest frame (an index's last entry: frames_by_camera_time)."""

FINISHED_CHUNK = 5000
"""Frame ids asked about per statement (each found by the primary key)."""

ALERTED_FRAMES = """
SELECT camera_id, body ->> 'frame_id', extract(epoch FROM created_at) FROM alerts
WHERE created_at >= to_timestamp(%s) AND body ->> 'frame_id' IS NOT NULL
"""
"""The frames alerts raised since a time cite (alerts_by_created: a few rows a sweep, once all are loaded)."""

ALERTS_COUNTED = "SELECT count(*) FROM alerts"
"""How many alerts there are: fewer than at the last load, one was deleted (by hand: alerts are never pruned)."""

ALERTED_CHUNK = 10_000
"""Rows of ALERTED_FRAMES fetched at a time: a first load of a million alerts is streamed, not held."""


def queued_ref(record: FrameRecord) -> Jsonb | None:
    """What a sampled frame's row keeps of its reference (`frame_ref`, migration 23): the FrameRef its
    detect job carries, for a pending frame (queued), that `alpr replay --orphans` queues again should no job
    hold it (common/orphan_replay.py); None for one skipped or corrupt, never queued, and for one whose ROI
    was taken out of it (`roi_dropped`): queued again without it, it was detected over the whole frame, the
    plates outside the camera's ROI read and logged (such a frame is counted, `no reference`, and left)."""
    if record.outcome != "pending" or record.roi_dropped is not None:
        return None
    return Jsonb(record.frame.model_dump(mode="json"))


def rounds_by_frame(records: Sequence[FrameRecord]) -> list[list[FrameRecord]]:
    """`records` in rounds: each frame's first record in the first, its second in the second, and so on.
    One statement cannot update a row twice (ON CONFLICT DO UPDATE refuses it), and a frame's records
    written one after the other each meet what the one before left (a skip then done: done; done then
    expired: done; reads done then expired: done; both frames' stage timings merged), as a statement a
    record did: the rounds written in order leave every row as they did. A batch names each frame once
    (the usual case): one round."""
    rounds: list[list[FrameRecord]] = []
    seen: dict[str, int] = {}
    for record in records:
        times = seen.get(record.frame.frame_id, 0)
        seen[record.frame.frame_id] = times + 1
        if times == len(rounds):
            rounds.append([])
        rounds[times].append(record)
    return rounds


class FrameLog:
    """Writes the frames table through a shared pool, waiting out Postgres outages, and looks frames up in it."""

    def __init__(self, pool: ConnectionPool, patience_s: float) -> None:
        self.pool, self.patience_s = pool, patience_s

    def record_sampled(self, records: Sequence[FrameRecord], watermarks: dict[str, float | None] | None = None) -> None:
        """Rows for frames just sampled (pending or skipped; a frame seen before keeps its row), and in the
        same transaction each camera's watermark: every frame it sampled before then has its row (None:
        the camera is no longer sampled here)."""
        rows = [(*record.row(), queued_ref(record)) for record in records]
        marks = sorted((watermarks or {}).items())

        def write(connection: psycopg.Connection) -> None:
            with connection.cursor() as cursor:
                if rows:
                    cursor.execute(INSERT_SAMPLED, [list(column) for column in zip(*rows, strict=True)])
                if gone := [camera_id for camera_id, until_s in marks if until_s is None]:
                    cursor.execute(DELETE_WATERMARKS, (gone,))
                if kept := [(camera_id, until_s) for camera_id, until_s in marks if until_s is not None]:
                    cursor.execute(UPSERT_WATERMARKS, ([camera_id for camera_id, _ in kept], [s for _, s in kept]))

        if rows or marks:
            write_through_outage(self.pool, write, self.patience_s)

    def record_final(self, records: Sequence[FrameRecord]) -> None:
        """How frames ended; a final outcome already recorded stays as it is (idempotent)."""
        self._write(UPSERT_FINAL, records)

    def record_reads(self, frames: Sequence[tuple[FrameRef, ReadOutcome]]) -> None:
        """How the OCR pool ended each frame's reads, with the stage timings the frames carry; the frames'
        own outcomes are left as they are."""
        self._write(RECORD_READS, [FrameRecord(frame, "pending", read_outcome=reads) for frame, reads in frames])

    def _write(self, statement: str, records: Sequence[FrameRecord]) -> None:
        """`statement` (UPSERT_FINAL, RECORD_READS) for every record, in one transaction: a statement for
        the batch (each fires the frame counts' trigger once: migration 21), or one for each round of
        rounds_by_frame where a frame comes more than once."""
        if not records:
            return
        rounds = [[record.row() for record in part] for part in rounds_by_frame(records)]

        def write(connection: psycopg.Connection) -> None:
            with connection.cursor() as cursor:
                for rows in rounds:
                    cursor.execute(statement, [list(column) for column in zip(*rows, strict=True)])

        write_through_outage(self.pool, write, self.patience_s)

    def sweep_lost(self, older_than_s: float) -> tuple[int, int]:
        """Mark as lost the frames still pending `older_than_s` after they were recorded, and the reads
        still pending that long after their frame was finished; returns (frames, frames' reads) marked.
        One attempt: a sweep that meets an outage waits for the next round."""

        def sweep(connection: psycopg.Connection) -> tuple[int, int]:
            with connection.cursor() as cursor:
                cursor.execute(SWEEP_LOST, (older_than_s,))
                frames = max(cursor.rowcount, 0)
                cursor.execute(SWEEP_READS_LOST, (older_than_s,))
                return frames, max(cursor.rowcount, 0)

        return write_through_outage(self.pool, sweep, 0.0)

    def logged(self, frame_ids: Iterable[str]) -> dict[str, LoggedFrame]:
        """Of `frame_ids` (taken FINISHED_CHUNK at a time), those the log holds (LOGGED): frame id -> its
        index in its source, its capture time and whether it ended for good. One attempt: raises when
        Postgres is away."""
        found: dict[str, LoggedFrame] = {}
        ids = iter(frame_ids)
        with self.pool.connection() as connection:
            while chunk := list(islice(ids, FINISHED_CHUNK)):
                for frame_id, index, captured_at, finished in connection.execute(LOGGED, (chunk,)):
                    found[frame_id] = LoggedFrame(int(index), captured_at.timestamp(), bool(finished))
        return found

    def finished(self, frame_ids: Iterable[str]) -> dict[str, tuple[int, float]]:
        """Of `frame_ids`, those that ended for good: frame id -> (its index in its source, its capture
        time). One attempt: raises when Postgres is away."""
        return {
            frame_id: (frame.frame_index, frame.captured_s)
            for frame_id, frame in self.logged(frame_ids).items()
            if frame.finished
        }

    def latest_capture(self, camera_id: str) -> float | None:
        """The capture time (Unix s) of the camera's latest frame in the log; None when it has none. One
        attempt: raises when Postgres is away."""
        with self.pool.connection() as connection:
            row = connection.execute(LATEST_CAPTURE, (camera_id,)).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def alerted_frames(self, since_s: float, take: Callable[[list[tuple[str, str]]], None]) -> float:
        """Hand `take`, ALERTED_CHUNK at a time, (camera, frame id) of every frame a watch-list alert
        recorded since `since_s` (Unix seconds, its `created_at`) cites: its kept image is the alert's
        evidence, kept with the alert (common/retention.py keeps the frame's record so). Returns the
        newest such alert's `created_at` (`since_s` when none)."""
        newest = since_s
        with self.pool.connection() as connection, connection.cursor(name="alerted_frames") as cursor:  # streamed
            cursor.execute(ALERTED_FRAMES, (since_s,))
            while rows := cursor.fetchmany(ALERTED_CHUNK):
                take([(str(camera_id), str(frame_id)) for camera_id, frame_id, _ in rows])
                newest = max(newest, max(float(created_s) for _, _, created_s in rows))
        return newest

    def alerts_counted(self) -> int:
        """How many alerts there are (ALERTS_COUNTED)."""
        with self.pool.connection() as connection:
            row = connection.execute(ALERTS_COUNTED).fetchone()
        return int(row[0]) if row else 0

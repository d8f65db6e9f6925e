"""Counting the frames log (Postgres table `frames`), per camera: by outcome and read outcome over the
whole log or a window of capture time (`alpr status`), and the frames still in the chain (the redactor pool's
metric). A window's whole minutes come from the per-minute counts Postgres keeps (migration 21: the table
`frame_counts`, kept by triggers through `frame_count_changes`), which the redactor and OCR pools' duties and
`alpr db prune` merge (MERGE_COUNTS); its part-minutes from the frames themselves, each camera's range of an
index found by a loose index scan (recent_per_camera, which `alpr status` uses for sightings too). Writing
the frames log, and the per-frame look-ups a resuming ingest node makes: common/frame_log.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg_pool import ConnectionPool

from common.db_writes import write_through_outage

OUTCOME_COUNTS = "SELECT camera_id, outcome, count(*) FROM frames GROUP BY camera_id, outcome"

READ_OUTCOME_COUNTS = """
SELECT camera_id, read_outcome, count(*) FROM frames WHERE read_outcome IS NOT NULL GROUP BY camera_id, read_outcome
"""


def cameras_of(table: str) -> str:
    """A WITH clause naming `cameras`, every camera_id of `table`, found one index probe each (a loose index
    scan of an index led by camera_id), not by reading every row. `table` is the chain's own constant."""
    return f"""WITH RECURSIVE cameras(camera_id) AS (
    (SELECT camera_id FROM {table} ORDER BY camera_id LIMIT 1)
    UNION ALL
    SELECT (SELECT t.camera_id FROM {table} t WHERE t.camera_id > cameras.camera_id ORDER BY t.camera_id LIMIT 1)
    FROM cameras WHERE cameras.camera_id IS NOT NULL
)"""


def recent_per_camera(table: str, time_column: str, counted: str | None = None, only: str = "") -> str:
    """A query of `table`'s rows per camera (and per value of the column `counted`, if any) whose `time_column`
    lies within a window (its one parameter: seconds back from the statement's time), `only` those where
    that condition holds: every camera found one index probe each (a loose index scan of an index led by
    camera_id), then each camera's range of its (camera_id, time) index. Counting the whole log read every
    row: 0.46 s a 2 million, and a city's 30 days hold billions (`alpr status`, a soak review). The names
    are the chain's own constants, never input."""
    column = f"recent.{counted}, " if counted else ""
    return f"""
{cameras_of(table)}
SELECT cameras.camera_id, {column}count(*) FROM cameras CROSS JOIN LATERAL (
    SELECT {counted or "1"} FROM {table}
    WHERE camera_id = cameras.camera_id AND {time_column} >= statement_timestamp() - make_interval(secs => %s)
    {f"AND {only}" if only else ""}
) recent GROUP BY 1{", 2" if counted else ""}"""


WINDOW_BOUNDS = """
SELECT since, greatest(next_minute, counted_from), counted_from > next_minute FROM (
    SELECT since, date_bin('1 minute', since, '1970-01-01 00:00+00') + interval '1 minute' AS next_minute,
        (SELECT counted_from FROM frame_counts_since) AS counted_from
    FROM (SELECT statement_timestamp() - make_interval(secs => %s) AS since) AS window_start
) AS bounds
"""
"""A window's start by Postgres's clock (its parameter: seconds back), where its whole minutes counted in
frame_counts begin: the next minute, or where the counts begin (frame_counts_since) if later; and whether
later: the window reaches back past the window's first part-minute to frames no per-minute count holds (a log
upgraded to migration 21 with frames: the hour after the upgrade)."""

OLDER_FRAMES = f"""
{cameras_of("frames")}
SELECT count(*) FROM (
    SELECT FROM cameras CROSS JOIN LATERAL (
        SELECT FROM frames WHERE camera_id = cameras.camera_id AND captured_at >= %(since)s
            AND captured_at < %(whole_from)s
    ) AS older LIMIT %(limit)s
) AS counted
"""
"""Frames captured within a window before its per-minute counts begin, counted up to a limit (each camera's
range of frames_by_camera_time, read no further than the limit)."""

OLDER_FRAMES_COUNTED = 200_000
"""Most frames before the per-minute counts begin (frame_counts_since) that `alpr status` counts one by one:
past it, its counts begin where the per-minute counts do, and it says so. Counted so, 500 cameras x 5
frames/s, upgraded to migration 21 with frames, read 9 million frames the first hour (4.6 us each: past
the statement's 5 s)."""

RECENT_OUTCOME_COUNTS = f"""
{cameras_of("frames")}
SELECT counted.camera_id, counted.outcome, counted.read_outcome, sum(counted.frames) FROM (
    SELECT camera_id, outcome, read_outcome, frames FROM frame_counts WHERE minute >= %(whole_from)s
    UNION ALL
    SELECT camera_id, outcome, read_outcome, frames FROM frame_count_changes WHERE minute >= %(whole_from)s
    UNION ALL
    SELECT cameras.camera_id, edge.outcome, edge.read_outcome, edge.frames FROM cameras CROSS JOIN LATERAL (
        SELECT outcome, read_outcome, count(*) AS frames FROM frames
        WHERE camera_id = cameras.camera_id AND captured_at >= %(since)s AND captured_at < %(whole_from)s
        GROUP BY 1, 2
    ) AS edge
) AS counted GROUP BY 1, 2, 3 HAVING sum(counted.frames) <> 0
"""
"""Frames per camera, outcome and read outcome captured within a window (its bounds from WINDOW_BOUNDS,
given as values: a bound the planner could not see read all 4.3 million rows of a day's counts, 0.9 s, and
a month's would pass the 5 s): its whole minutes from the per-minute counts Postgres keeps (migration 21:
frame_counts, and the changes frame_count_changes holds not yet merged into them); the part-minute at the
window's start, and any part before the counts begin (frame_counts_since: an upgrade of a log with frames
already), from the frames themselves (each camera's range of frames_by_camera_time). Counting every frame
of the window visited each, 4.6 us a frame: past the statement's 5 s at 500 cameras x 5 frames/s for an
hour (a scale review)."""

MERGE_COUNTS = "SELECT frame_counts_merged()"
"""Moves the per-minute count changes into frame_counts (migration 21); returns how many it moved."""

UNMERGED_CHANGES = """
SELECT coalesce(sum(n_live_tup), 0) FROM pg_stat_user_tables WHERE relid = to_regclass('frame_count_changes')
"""
"""About how many per-minute count changes wait to be merged, as Postgres's statistics have it: no row read
(they follow the writes within a second or so)."""

UNMERGED_CHANGES_WARNED = 1_000_000
"""Count changes waiting to be merged past which `alpr status` warns: it reads each (2 million: 0.7-0.9 s;
about 12 million pass its 5 s), and only the redactor and OCR pools' duties and `alpr db prune`'s rounds merge
them, so both pools down for an hour or two at a city's rate ends in a status that times out (a review)."""

PENDING_COUNTS = "SELECT camera_id, count(*) FROM frames WHERE outcome = 'pending' GROUP BY camera_id"


@dataclass(frozen=True)
class RecentCounts:
    """A window's frames as FrameCounts.recent_outcome_counts counted them."""

    outcomes: dict[str, dict[str, int]]
    """camera -> outcome -> frames."""
    reads: dict[str, dict[str, int]]
    """camera -> read outcome -> frames (frames with plates to read only)."""
    counted_from: datetime | None = None
    """Where the counts begin when not at the window's start: more than OLDER_FRAMES_COUNTED frames within the
    window were captured before the per-minute counts began (frame_counts_since), and are not counted."""


class FrameCounts:
    """Counts the frames table through a shared pool, and merges its per-minute count changes."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def pending_counts(self) -> dict[str, int]:
        """camera -> frames sampled without a final outcome yet (cheap: a partial index)."""
        with self.pool.connection() as connection:
            return {camera_id: int(number) for camera_id, number in connection.execute(PENDING_COUNTS)}

    def outcome_counts(self) -> dict[str, dict[str, int]]:
        """camera -> outcome -> frames."""
        return self._counts(OUTCOME_COUNTS)

    def read_outcome_counts(self) -> dict[str, dict[str, int]]:
        """camera -> read outcome -> frames (frames with plates to read only)."""
        return self._counts(READ_OUTCOME_COUNTS)

    def recent_outcome_counts(self, window_s: float, older_counted: int | None = None) -> RecentCounts:
        """The frames captured in the last `window_s` seconds, per camera and outcome and per camera and read
        outcome (`alpr status`: RECENT_OUTCOME_COUNTS); those captured before the per-minute counts begin
        (migration 21's upgrade of a log with frames) counted one by one up to `older_counted` of them
        (OLDER_FRAMES_COUNTED unless given), and past it not at all: the counts then begin at
        RecentCounts.counted_from."""
        older_counted = OLDER_FRAMES_COUNTED if older_counted is None else older_counted
        counts: dict[str, dict[str, int]] = {}
        reads: dict[str, dict[str, int]] = {}
        counted_from: datetime | None = None
        with self.pool.connection() as connection:
            since, whole_from, reaches_older = connection.execute(WINDOW_BOUNDS, (window_s,)).fetchone() or (
                None, None, False
            )  # fmt: skip
            if reaches_older:
                values = {"since": since, "whole_from": whole_from, "limit": older_counted + 1}
                row = connection.execute(OLDER_FRAMES, values).fetchone()
                if row and int(row[0]) > older_counted:
                    since = counted_from = whole_from
            for camera_id, outcome, read_outcome, number in connection.execute(
                RECENT_OUTCOME_COUNTS, {"since": since, "whole_from": whole_from}
            ):
                by_outcome = counts.setdefault(camera_id, {})
                by_outcome[outcome] = by_outcome.get(outcome, 0) + int(number)
                if read_outcome is not None:
                    by_read = reads.setdefault(camera_id, {})
                    by_read[read_outcome] = by_read.get(read_outcome, 0) + int(number)
        return RecentCounts(counts, reads, counted_from)

    def merge_counts(self) -> int:
        """Move the per-minute count changes the frames' writes left into the counts `alpr status` reads
        (MERGE_COUNTS); returns how many. One attempt: a merge that meets an outage waits for the next round."""

        def merge(connection: psycopg.Connection) -> int:
            row = connection.execute(MERGE_COUNTS).fetchone()
            return int(row[0]) if row else 0

        return write_through_outage(self.pool, merge, 0.0)

    def unmerged_changes(self) -> int:
        """About how many per-minute count changes wait to be merged (UNMERGED_CHANGES)."""
        with self.pool.connection() as connection:
            row = connection.execute(UNMERGED_CHANGES).fetchone()
        return int(row[0]) if row else 0

    def _counts(self, query: str, values: tuple[float, ...] = ()) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        with self.pool.connection() as connection:
            for camera_id, outcome, number in connection.execute(query, values or None):
                counts.setdefault(camera_id, {})[outcome] = int(number)
        return counts

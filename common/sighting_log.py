"""The sightings log: one row per vehicle pass in front of one camera (the voted plate, its confidence,
first and last seen, read count, the best read's frame and box, the distinct texts read), in
Postgres (table `sightings`, migration 7) or in `alpr run`'s SQLite file beside the reads. A sighting
is keyed by its id (that of its earliest read), so writing it twice adds nothing. Also the sighting
pool's cursor per camera (table `sighting_cursors`) and the queries that feed it reads."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, LiteralString, Protocol, TextIO

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from common.csv_files import write_csv
from common.db import open_current_pool
from common.db_writes import write_through_outage
from common.private_files import make_private_folders
from common.sqlite_log import connect_log, reporting_locks
from common.types import Observation, Sighting

COLUMNS = (
    "sighting_id", "camera_id", "plate", "confidence", "first_seen", "last_seen", "reads", "best_frame_id",
    "best_confidence", "x1", "y1", "x2", "y2", "texts", "snapshot_path",
)  # fmt: skip
"""The columns of a sighting, in export order."""

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS sightings (
    sighting_id TEXT PRIMARY KEY, camera_id TEXT NOT NULL, plate TEXT NOT NULL, confidence REAL NOT NULL,
    first_seen TEXT NOT NULL, last_seen TEXT NOT NULL, reads INTEGER NOT NULL, best_frame_id TEXT NOT NULL,
    best_confidence REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    texts TEXT NOT NULL, snapshot_path TEXT, closed_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS sightings_by_plate ON sightings (plate);
CREATE INDEX IF NOT EXISTS sightings_by_camera_time ON sightings (camera_id, first_seen);
"""


def sighting_row(sighting: Sighting, snapshot_path: str | None = None) -> tuple[Any, ...]:
    """The sighting in COLUMNS order (times as UTC datetimes, texts as JSON [[text, count], ...])."""
    x1, y1, x2, y2 = sighting.best_box_xyxy
    return (
        sighting.sighting_id, sighting.camera_id, sighting.plate, sighting.confidence,
        datetime.fromtimestamp(sighting.first_seen_s, UTC), datetime.fromtimestamp(sighting.last_seen_s, UTC),
        sighting.reads, sighting.best_frame_id, sighting.best_confidence, x1, y1, x2, y2,
        json.dumps([list(pair) for pair in sighting.texts]), snapshot_path,
    )  # fmt: skip


INSERT_COLUMNS = ", ".join(COLUMNS)

EXPORT_POSTGRES = f"""
SELECT {", ".join(f"s.{column}" for column in COLUMNS[:-1])},
       COALESCE(s.snapshot_path, (SELECT f.kept_path FROM frames f WHERE f.frame_id = s.best_frame_id))
FROM sightings s ORDER BY s.first_seen, s.sighting_id
"""
"""Every sighting in first-seen order (sightings_by_first_seen, migration 20: streamed from the first row),
with its snapshot: the kept (blurred) frame of its best read, looked up for each sighting as it is given.
Joined to the frames log, and sorted, the export hashed every frame before its first row (1.58 million
sightings, 16.9 million frames: 14.9 s, a scale review)."""


class SightingLog(Protocol):
    def record_many(self, sightings: Sequence[tuple[Sighting, str | None]]) -> int:
        """Log closed sightings (each with its snapshot's path, if kept); returns how many were new."""
        ...

    def sightings(self) -> Iterator[dict[str, Any]]:
        """Every logged sighting, earliest first, as column -> value."""
        ...

    def close(self) -> None: ...


class SqliteSightingLog:
    """`alpr run`'s sightings, in the same SQLite file as its reads (opened as they are: in WAL mode,
    with a long busy timeout, common/sqlite_log.connect_log)."""

    def __init__(self, path: Path) -> None:
        make_private_folders(path.parent)
        self.path = path
        self.connection = connect_log(path)  # reads are plates, times and places: for the owner only
        try:
            self.connection.executescript(SQLITE_SCHEMA)
        except BaseException:  # not left open: `alpr run` refused, its log held open by a connection no one had
            self.connection.close()
            raise

    def record_many(self, sightings: Sequence[tuple[Sighting, str | None]]) -> int:
        rows = [
            tuple(v.isoformat() if isinstance(v, datetime) else v for v in sighting_row(s, path))
            for s, path in sightings
        ]
        with reporting_locks(self.path, f"{len(sightings)} sighting(s) were"), self.connection:  # a lock: says by what
            before = self.connection.total_changes
            placeholders = ", ".join("?" for _ in COLUMNS)
            self.connection.executemany(
                f"INSERT OR IGNORE INTO sightings ({INSERT_COLUMNS}) VALUES ({placeholders})", rows
            )
            return self.connection.total_changes - before

    def sightings(self) -> Iterator[dict[str, Any]]:
        cursor = self.connection.execute(f"SELECT {INSERT_COLUMNS} FROM sightings ORDER BY first_seen, sighting_id")
        for row in cursor:
            yield dict(zip(COLUMNS, row, strict=True))

    def close(self) -> None:
        self.connection.close()


INSERT_CHUNK = 1000
"""Most sightings one INSERT statement writes (`insert_sightings`): 15,000 parameters, under Postgres's 65,535."""


def insert_sightings(connection: psycopg.Connection, sightings: Sequence[tuple[Sighting, str | None]]) -> int:
    """Log sightings inside the caller's transaction (the sighting pool commits them with its state); how
    many were new (one logged already, by a retried or replayed group, adds nothing). One statement for up
    to INSERT_CHUNK of them, in their order: a statement each was a round trip for every car a camera's
    round closed (a scale review: 500 cameras, rounds of 4.6–12.8 s)."""
    new = 0
    for start in range(0, len(sightings), INSERT_CHUNK):
        chunk = sightings[start : start + INSERT_CHUNK]
        rows = ", ".join(f"({', '.join('%s' for _ in COLUMNS)})" for _ in chunk)
        values = [value for sighting, path in chunk for value in sighting_row(sighting, path)]
        query = f"INSERT INTO sightings ({INSERT_COLUMNS}) VALUES {rows} ON CONFLICT DO NOTHING"
        new += max(connection.execute(query.encode(), values).rowcount, 0)
    return new


class PostgresSightingLog:
    """The chain's sightings (and `alpr run`'s, when a database URL is set)."""

    def __init__(self, pool: ConnectionPool, owns_pool: bool = False, patience_s: float = 0.0) -> None:
        self.pool, self.owns_pool, self.patience_s = pool, owns_pool, patience_s

    def record_many(self, sightings: Sequence[tuple[Sighting, str | None]]) -> int:
        if not sightings:
            return 0
        return write_through_outage(
            self.pool, lambda connection: insert_sightings(connection, sightings), self.patience_s
        )

    def sightings(self) -> Iterator[dict[str, Any]]:
        """Every sighting; its snapshot is the kept (blurred) frame of its best read, when one was kept."""
        with self.pool.connection() as connection, connection.cursor(name="export") as cursor:  # streamed
            cursor.execute(EXPORT_POSTGRES)  # type: ignore[arg-type]
            for row in cursor:
                record = dict(zip(COLUMNS, row, strict=True))
                record["texts"] = json.dumps(record["texts"])
                for name in ("first_seen", "last_seen"):
                    record[name] = record[name].astimezone(UTC).isoformat()
                yield record

    def close(self) -> None:
        if self.owns_pool:
            self.pool.close()


def open_sighting_log(database_url: str | None, sqlite_path: Path, password: str | None = None) -> SightingLog:
    """Postgres when a database URL is set, its schema already current (ConfigError naming `alpr db
    upgrade` otherwise: as open_plate_log), else the SQLite file."""
    if database_url:
        return PostgresSightingLog(open_current_pool(database_url, password), owns_pool=True)
    return SqliteSightingLog(sqlite_path)


def export_sightings_csv(log: SightingLog, path: Path | TextIO) -> int:
    """Write every sighting to a CSV file (a `plate` column among others); returns the number of rows."""
    return write_csv(log.sightings(), COLUMNS, path)


# The sighting pool's place in each camera's reads (table sighting_cursors): which reads it has grouped
# (captured before `grouped_until_s`), which confident reads it has matched early (ids up to
# `early_read_id`) and its open tracks (`state`). A pool worker claims a camera and holds its row locked for
# the transaction that groups it (sighting_worker/camera_claim.py), so each camera is grouped by one worker
# at a time, in capture order.

REGISTER_CAMERAS = "INSERT INTO sighting_cursors (camera_id) VALUES (%s) ON CONFLICT DO NOTHING"
"""A camera with reads to group (the plate log adds it with the reads)."""


@dataclass
class SightingCursor:
    """A camera's grouping state, as locked for one transaction."""

    camera_id: str
    grouped_until_s: float
    early_read_id: int
    state: dict[str, Any]
    now_s: float = 0.0
    """Postgres's clock as it was locked (its transaction's now()): what the sighting pool dates and judges
    by, never its host's clock."""


@dataclass(frozen=True)
class LoggedRead:
    """A logged read, as the sighting pool takes it."""

    read_id: int
    observation: Observation
    logged_at_s: float = 0.0
    """When it was logged (Postgres's clock, Unix s)."""


CAMERAS_WITH_WORK = """
SELECT c.camera_id FROM sighting_cursors c
WHERE c.grouped_until_s = 0
    OR c.grouped_until_s > extract(epoch FROM now())::float8
    OR jsonb_path_exists(c.state, '$.tracker.cameras.*.tracks[0]')
    OR jsonb_path_exists(c.state, '$.late.tracks[0]')
    OR (SELECT count(*) FROM plate_reads r WHERE r.camera_id = c.camera_id AND r.id > c.early_read_id)
       > coalesce((c.state->'early'->>'taken')::bigint, jsonb_array_length(coalesce(c.state->'early'->'seen', '[]')))
    OR EXISTS (SELECT 1 FROM plate_reads r WHERE r.camera_id = c.camera_id
               AND r.captured_at >= to_timestamp(c.grouped_until_s))
    OR jsonb_path_exists(c.state, '$.alerted.*[*] ? (@.span[1] < $ended && @.span[2] < $untouched)',
                         jsonb_build_object('ended', extract(epoch FROM now()) - %(pass_kept_s)s,
                                            'untouched', extract(epoch FROM now()) - %(pass_untouched_s)s))
ORDER BY c.camera_id
"""
"""The cameras a round has work for: met for the first time, with a cursor past Postgres's now (saved by a
worker whose host clock ran ahead: set right, SightingStage.set_cursor_right), with an open track (closed
once the gap has passed) or a late track held open (closed once no late read joined it for
LATE_SIGHTING_HOLD_S: sighting_worker/late_tracks.py), with reads the early scan has not taken (more of its
reads above the scan's mark than the scan has seen: it keeps exactly those ids, as runs, and their number as
`taken`; a search of each id in that list grew with the square of a busy camera's reads), or with reads not
yet grouped (their frames not settled yet), or with a pass of a listed plate alerted on that no read may
join any more (its last read `pass_kept_s` ago, none met it for `pass_untouched_s`): the round lets it go
(sighting_worker/passes.prune), where a quiet or retired camera's cursor kept the plate and its car's track
for good (a review). An idle camera costs the round nothing: with 300 cameras and no car the round took
0.3 s of queries, over the 0.2 s between rounds, so early alerts waited on idle cameras."""


def camera_ids(connection: psycopg.Connection, pass_kept_s: float, pass_untouched_s: float) -> list[str]:
    """The cameras with work for a round (CAMERAS_WITH_WORK)."""
    values = {"pass_kept_s": pass_kept_s, "pass_untouched_s": pass_untouched_s}
    return [row[0] for row in connection.execute(CAMERAS_WITH_WORK, values)]


LOCK_CURSOR = """
SELECT grouped_until_s, early_read_id, state, extract(epoch FROM now())::float8,
    set_config('statement_timeout', %(timeout_ms)s, true)
FROM sighting_cursors
WHERE camera_id = %(camera)s AND ({claimed})
FOR UPDATE NOWAIT
"""


def lock_cursor(
    connection: psycopg.Connection, camera_id: str, claimed: LiteralString, statement_timeout_ms: int
) -> SightingCursor | None:
    """The camera's cursor, locked until the transaction ends, with Postgres's clock (`now_s`, in the same
    statement); None when it has no row, or when the `claimed` condition (an uncorrelated subquery on
    %(camera)s, evaluated once before any row is read: sighting_worker/camera_claim.CLAIM) is false.
    LockNotAvailable, without a wait, when another session holds the row. The transaction's later statements
    are bounded by `statement_timeout_ms` (SET LOCAL, in the same statement)."""
    query = LOCK_CURSOR.format(claimed=claimed)
    row = connection.execute(query, {"camera": camera_id, "timeout_ms": str(statement_timeout_ms)}).fetchone()
    return SightingCursor(camera_id, float(row[0]), int(row[1]), dict(row[2]), float(row[3])) if row else None


def save_cursor(connection: psycopg.Connection, cursor: SightingCursor) -> None:
    """The cursor saved, its `grouped_until_s` never past Postgres's now (a cursor dated ahead by a worker's
    host clock left every read captured before it ungrouped, for good: a review)."""
    connection.execute(
        "UPDATE sighting_cursors SET grouped_until_s = LEAST(%s, extract(epoch FROM now())::float8),"
        " early_read_id = %s, state = %s, updated_at = now() WHERE camera_id = %s",
        (cursor.grouped_until_s, cursor.early_read_id, Jsonb(cursor.state), cursor.camera_id),
    )


def grouped_until(connection: psycopg.Connection, camera_id: str) -> float:
    """The capture time (Unix s) up to which the sighting pool has grouped the camera's reads (0: none
    yet): a read dated before it is never grouped. One past Postgres's now is none (0): saved by a worker
    whose host clock ran ahead, it is set right at the camera's next round; an ingest node restarted meanwhile
    dated the camera's frames after it, 18 minutes ahead (a review)."""
    row = connection.execute(
        "SELECT grouped_until_s FROM sighting_cursors WHERE camera_id = %s"
        " AND grouped_until_s <= extract(epoch FROM now())::float8",
        (camera_id,),
    ).fetchone()
    return float(row[0]) if row else 0.0


HORIZON = """
SELECT extract(epoch FROM LEAST(
    now() - make_interval(secs => %(settle_s)s),
    (SELECT min(captured_at) FROM frames
     WHERE camera_id = %(camera)s AND (outcome = 'pending' OR read_outcome = 'pending')
         AND captured_at >= to_timestamp(%(from_s)s)),
    (SELECT to_timestamp(recorded_until_s) - interval '1 millisecond' FROM camera_watermarks
     WHERE camera_id = %(camera)s AND updated_at > now() - make_interval(secs => %(stale_s)s))
))
"""


READS_TO_HORIZON = f"""
SELECT h.horizon_s, r.* FROM (SELECT greatest(%(from_s)s::float8, ({HORIZON})::float8) AS horizon_s) AS h
LEFT JOIN LATERAL (
    SELECT {{columns}}, captured_at AS at, frame_id AS frame, plate_index AS plate FROM plate_reads
    WHERE camera_id = %(camera)s AND captured_at >= to_timestamp(%(from_s)s) AND captured_at < to_timestamp(h.horizon_s)
    ORDER BY captured_at, frame_id, plate_index LIMIT %(limit)s
) AS r ON true
ORDER BY r.at, r.frame, r.plate
"""
"""The camera's HORIZON (never before `from_s`) and its reads up to it, in one statement: two were two round
trips of every camera's every round (a scale review: 500 cameras, rounds of 4.6–12.8 s). The horizon is the
float8 that Python's float() made of HORIZON's numeric (both round the same decimal to the nearest)."""


def reads_to_horizon(
    connection: psycopg.Connection, camera_id: str, settle_s: float, stale_s: float, from_s: float, limit: int | None
) -> tuple[float, list[LoggedRead]]:
    """The camera's grouping horizon, at least `from_s`, and its reads captured in [from_s, horizon), in capture
    order (frame, then plate), at most `limit` (None: all). The horizon is the capture time before which every
    frame of the camera is settled, so no read older than it can still arrive: finished by the redactor with
    its reads recorded (or found lost), and recorded by its ingest node (the node's watermark, unless not
    renewed for `stale_s`: a node that died; less a millisecond, as Postgres and Python round a float's
    microseconds apart); at most `settle_s` ago. Frames captured before `from_s` (grouped already) hold
    nothing back: one swept lost, then unsettled again by its late redaction, held the camera's sightings back
    until its reads came, up to 12 minutes (a sighting pool audit); its reads could never be grouped anyway."""
    values = {"settle_s": settle_s, "camera": camera_id, "stale_s": stale_s, "from_s": from_s, "limit": limit}
    rows = connection.execute(READS_TO_HORIZON.format(columns=READ_COLUMNS), values).fetchall()
    horizon_s = float(rows[0][0]) if rows else from_s
    return horizon_s, [_logged(row[1:-3]) for row in rows if row[1] is not None]


FRAME_INTERVAL = """
SELECT percentile_disc(0.1) WITHIN GROUP (ORDER BY gap_s) FROM (
    SELECT extract(epoch FROM captured_at - lag(captured_at) OVER (ORDER BY captured_at)) AS gap_s
    FROM (SELECT captured_at FROM frames WHERE camera_id = %s ORDER BY captured_at DESC LIMIT %s) AS recent
) AS gaps WHERE gap_s > 0
"""

INTERVAL_FRAMES = 17
"""The camera's newest frames whose gaps (16) `frame_interval` looks at."""


def frame_interval(connection: psycopg.Connection, camera_id: str) -> float | None:
    """The camera's time between sampled frames (s), from the gaps between its newest frames in the
    frames log, which holds every frame sampled, read or not, skipped or not (the reads alone lie further
    apart where a plate went unread); None when it has fewer than two. The sighting pool stretches the
    camera's gap to two of it (sighting_worker/grouping.FRAME_GAPS): a camera's sample rate is its ingest
    node's setting, kept nowhere in Postgres. The second shortest of the gaps is taken, not a median: a
    longer gap merges cars (a vehicle and its alert hidden), a shorter one at worst splits a slow
    camera's parked car as before, so the estimate errs short — a restart's pause or a stalled stream
    never lengthens it, and one frame dated out of step does not shorten it."""
    row = connection.execute(FRAME_INTERVAL, (camera_id, INTERVAL_FRAMES)).fetchone()
    return float(row[0]) if row and row[0] is not None else None


READ_COLUMNS = (
    "id, frame_id, plate_index, extract(epoch FROM captured_at), x1, y1, x2, y2, plate_text, confidence, camera_id,"
    " extract(epoch FROM logged_at)"
)


def _logged(row: tuple[Any, ...]) -> LoggedRead:
    read_id, frame_id, plate_index, captured_at_s, x1, y1, x2, y2, text, confidence, camera_id, logged_at_s = row
    box = (float(x1), float(y1), float(max(x1, x2)), float(max(y1, y2)))
    observation = Observation(camera_id, frame_id, int(plate_index), float(captured_at_s), box, text,
                              min(1.0, max(0.0, float(confidence))))  # fmt: skip
    return LoggedRead(int(read_id), observation, float(logged_at_s))


def reads_to_group(
    connection: psycopg.Connection, camera_id: str, from_s: float, before_s: float, limit: int | None
) -> list[LoggedRead]:
    """The camera's reads captured in [from_s, before_s), in capture order (frame, then plate); at most
    `limit` (None: all)."""
    rows = connection.execute(
        f"SELECT {READ_COLUMNS} FROM plate_reads WHERE camera_id = %s AND captured_at >= to_timestamp(%s)"
        " AND captured_at < to_timestamp(%s) ORDER BY captured_at, frame_id, plate_index LIMIT %s",
        (camera_id, from_s, before_s, limit),
    )
    return [_logged(row) for row in rows]


def early_reads(
    connection: psycopg.Connection, camera_id: str, after_id: int, seen: Collection[int], limit: int
) -> list[LoggedRead]:
    """The camera's reads logged with an id above `after_id`, but those in `seen`, in log order (an index
    range: the caller keeps `after_id` a little behind, as commits land out of id order). `seen` is
    hashed once (NOT IN a subquery): `NOT (id = ANY(...))` compared each row with the whole list, and a
    car park's 15,000 ids took 0.45 s a round, against rounds 0.2 s apart (a sighting pool audit)."""
    rows = connection.execute(
        f"SELECT {READ_COLUMNS} FROM plate_reads WHERE camera_id = %s AND id > %s"
        " AND id NOT IN (SELECT unnest(%s::bigint[])) ORDER BY id LIMIT %s",
        (camera_id, after_id, list(seen), limit),
    )
    return [_logged(row) for row in rows]


def sighted_reads(connection: psycopg.Connection, camera_id: str, reads: Sequence[LoggedRead]) -> set[int]:
    """The ids of `reads` (one camera's, logged late) that a logged sighting holds already: its span holds
    the read's capture time and its texts the read's text (a frame swept lost, then redacted late: its car
    was sighted by its other frames). One query: the camera's sightings over the reads' capture times."""
    texted = [read for read in reads if read.observation.text]
    if not texted:
        return set()
    times = [read.observation.captured_at_s for read in texted]
    rows = connection.execute(
        "SELECT extract(epoch FROM first_seen), extract(epoch FROM last_seen), texts FROM sightings"
        " WHERE camera_id = %s AND first_seen <= to_timestamp(%s) AND last_seen >= to_timestamp(%s)"
        " AND first_seen >= to_timestamp(%s)",
        (camera_id, max(times), min(times), min(times) - SIGHTED_REACH_S),
    ).fetchall()
    spans = [(float(first), float(last), {str(pair[0]) for pair in texts}) for first, last, texts in rows]
    return {
        read.read_id
        for read in texted
        if any(first <= read.observation.captured_at_s <= last and read.observation.text in texts
               for first, last, texts in spans)
    }  # fmt: skip


SIGHTED_REACH_S = 3600.0
"""How long before a late read a sighting that holds it may have begun (`sighted_reads`): the camera's
sightings are read from this far back, not from the first (a car parked in view longer is sighted again)."""


def last_read_id(connection: psycopg.Connection, camera_id: str, logged_before_s: float) -> int:
    """The highest id of the camera's reads logged more than `logged_before_s` ago (0: none)."""
    row = connection.execute(
        "SELECT coalesce(max(id), 0) FROM plate_reads WHERE camera_id = %s"
        " AND logged_at < now() - make_interval(secs => %s)",
        (camera_id, logged_before_s),
    )
    found = row.fetchone()
    return int(found[0]) if found else 0

"""The plate log: where every read is recorded. One interface, two stores: SQLite (the standalone
default) and Postgres (when a database URL is set; schema in common/migrations.py), plus CSV export. Writes
are batched and idempotent: a read is keyed by (frame_id, plate_index), so logging the same frame
twice adds nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

import psycopg
from psycopg_pool import ConnectionPool

from common.csv_files import write_csv
from common.db import open_current_pool
from common.db_writes import write_through_outage
from common.jobs import FrameRef
from common.private_files import make_private_folders
from common.sighting_log import REGISTER_CAMERAS
from common.sqlite_log import connect_log, reporting_locks
from common.types import PlateRead

COLUMNS = (
    "camera_id", "frame_id", "frame_index", "source_time_s", "captured_at", "plate_index", "plate_text",
    "confidence", "format_name", "format_match", "candidates", "x1", "y1", "x2", "y2",
    "detection_confidence", "stage_ms",
)  # fmt: skip
"""The columns of a logged read, in export order."""

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS plate_reads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera_id TEXT NOT NULL, frame_id TEXT NOT NULL, frame_index INTEGER NOT NULL,
    source_time_s REAL NOT NULL, captured_at TEXT NOT NULL, plate_index INTEGER NOT NULL,
    plate_text TEXT NOT NULL, confidence REAL NOT NULL, format_name TEXT, format_match BOOLEAN NOT NULL,
    candidates TEXT NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    detection_confidence REAL NOT NULL, stage_ms TEXT NOT NULL,
    logged_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (frame_id, plate_index)
);
CREATE INDEX IF NOT EXISTS plate_reads_by_plate ON plate_reads (plate_text);
CREATE INDEX IF NOT EXISTS plate_reads_by_camera_time ON plate_reads (camera_id, captured_at);
"""

INSERT_COLUMNS = ", ".join(COLUMNS)

EXPORT_POSTGRES = f"SELECT {INSERT_COLUMNS} FROM plate_reads ORDER BY id"
"""Every read, in the order logged: the primary key's order, streamed from the first row. In capture order
Postgres sorted the whole log before its first row (7.9 million reads: 24.5 s and 4 GB of temporary files,
a scale review); reads are logged within seconds of their capture, per camera in capture order."""

EXPORT_SQLITE = f"SELECT {INSERT_COLUMNS} FROM plate_reads ORDER BY id"
"""Every read of `alpr run`'s file, in the order logged (its rowid: no sort), as from Postgres."""


def read_rows(frame: FrameRef, reads: Sequence[PlateRead]) -> list[tuple[Any, ...]]:
    """One row per read plate, in COLUMNS order (plates without any candidate are left out)."""
    rows = []
    captured_at = datetime.fromtimestamp(frame.captured_at_s, UTC)
    timings = json.dumps({k: round(v, 2) for k, v in frame.stage_ms.items()})
    for plate_index, read in enumerate(reads):
        best = read.best
        if best is None:
            continue
        candidates = json.dumps(
            [{"text": c.text, "confidence": c.confidence, "format": c.format_name} for c in read.candidates]
        )
        x1, y1, x2, y2 = read.box_xyxy
        rows.append((
            frame.camera_id, frame.frame_id, frame.frame_index, frame.source_time_s, captured_at,
            plate_index, best.text, best.confidence, best.format_name, best.matches_format, candidates,
            x1, y1, x2, y2, read.detection_confidence, timings,
        ))  # fmt: skip
    return rows


class PlateLog(Protocol):
    def record_many(self, frames: Sequence[tuple[FrameRef, Sequence[PlateRead]]]) -> int:
        """Log several frames' reads in one transaction; returns how many rows were new."""
        ...

    def reads(self) -> Iterator[dict[str, Any]]:
        """Every logged read, oldest capture first, as column -> value."""
        ...

    def close(self) -> None: ...


def record(log: PlateLog, frame: FrameRef, reads: Sequence[PlateRead]) -> int:
    """Log one frame's reads."""
    return log.record_many([(frame, reads)])


class SqlitePlateLog:
    """The standalone pipeline's default log: one SQLite file, in WAL mode with a long busy timeout
    (common/sqlite_log.connect_log): an export or a prune of the file while `alpr run` writes it ended the
    run with `database is locked` (a review)."""

    def __init__(self, path: Path) -> None:
        make_private_folders(path.parent)
        self.path = path
        self.connection = connect_log(path)  # reads are plates, times and places: for the owner only
        try:
            columns = {row[1] for row in self.connection.execute("PRAGMA table_info(plate_reads)")}
            if "frame_time_s" in columns:  # a log written before the column's rename
                self.connection.execute("ALTER TABLE plate_reads RENAME COLUMN frame_time_s TO source_time_s")
            self.connection.executescript(SQLITE_SCHEMA)
        except BaseException:  # not left open (the sighting log's, alike)
            self.connection.close()
            raise

    def record_many(self, frames: Sequence[tuple[FrameRef, Sequence[PlateRead]]]) -> int:
        rows = [
            tuple(v.isoformat() if isinstance(v, datetime) else v for v in row)
            for frame, reads in frames
            for row in read_rows(frame, reads)
        ]
        placeholders = ", ".join("?" for _ in COLUMNS)
        what = f"the reads of {len(frames)} frame(s) were"
        with reporting_locks(self.path, what), self.connection:  # a lock held past the timeout: says by what
            before = self.connection.total_changes
            self.connection.executemany(
                f"INSERT OR IGNORE INTO plate_reads ({INSERT_COLUMNS}) VALUES ({placeholders})", rows
            )
            return self.connection.total_changes - before

    def reads(self) -> Iterator[dict[str, Any]]:
        cursor = self.connection.execute(EXPORT_SQLITE)
        for row in cursor:
            record = dict(zip(COLUMNS, row, strict=True))
            record["format_match"] = bool(record["format_match"])
            yield record

    def close(self) -> None:
        self.connection.close()


REMEMBERED_CAMERAS = 5000
"""Cameras a log remembers having handed to the sighting pool; past them it forgets them all and hands
each on again with its next read (harmless: the hand-over is idempotent). A job naming a new camera id
each time grew the set without end (a review)."""


class PostgresPlateLog:
    """The shared log of a city's deployment: Postgres through a psycopg 3 connection pool."""

    def __init__(self, pool: ConnectionPool, owns_pool: bool = False, patience_s: float = 0.0) -> None:
        self.pool = pool
        self.owns_pool = owns_pool
        self.patience_s = patience_s
        self.registered: set[str] = set()
        """Cameras this log has handed to the sighting pool (once each, not with every job)."""

    def record_many(self, frames: Sequence[tuple[FrameRef, Sequence[PlateRead]]]) -> int:
        rows = [row for frame, reads in frames for row in read_rows(frame, reads)]
        if not rows:
            return 0
        placeholders = ", ".join("%s" for _ in COLUMNS)
        statement = f"INSERT INTO plate_reads ({INSERT_COLUMNS}) VALUES ({placeholders}) ON CONFLICT DO NOTHING"

        cameras = sorted({frame.camera_id for frame, _ in frames} - self.registered)

        def insert(connection: psycopg.Connection) -> int:
            with connection.cursor() as cursor:
                cursor.executemany(statement, rows, returning=False)
                new = max(cursor.rowcount, 0)
                if cameras:  # the sighting pool groups their reads
                    cursor.executemany(REGISTER_CAMERAS, [(camera_id,) for camera_id in cameras])
                return new

        new = write_through_outage(self.pool, insert, self.patience_s)
        if len(self.registered) + len(cameras) > REMEMBERED_CAMERAS:
            self.registered.clear()
        self.registered.update(cameras)
        return new

    def reads(self) -> Iterator[dict[str, Any]]:
        with self.pool.connection() as connection, connection.cursor(name="export") as cursor:  # streamed
            cursor.execute(EXPORT_POSTGRES)  # type: ignore[arg-type]
            for row in cursor:
                record = dict(zip(COLUMNS, row, strict=True))
                record["candidates"] = json.dumps(record["candidates"])
                record["stage_ms"] = json.dumps(record["stage_ms"])
                record["captured_at"] = record["captured_at"].astimezone(UTC).isoformat()
                yield record

    def close(self) -> None:
        if self.owns_pool:
            self.pool.close()


def open_plate_log(database_url: str | None, sqlite_path: Path, password: str | None = None) -> PlateLog:
    """Postgres when a database URL is set, its schema already current (ConfigError naming `alpr db upgrade`
    otherwise: no command but that one migrates; `alpr run` did, out of order and without re-granting the
    roles, a review), else the SQLite file."""
    if database_url:
        return PostgresPlateLog(open_current_pool(database_url, password), owns_pool=True)
    return SqlitePlateLog(sqlite_path)


def export_csv(log: PlateLog, path: Path | TextIO) -> int:
    """Write every read to a CSV file; returns the number of rows."""
    return write_csv(log.reads(), COLUMNS, path)

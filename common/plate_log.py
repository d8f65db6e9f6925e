"""The plate log: where every read is recorded. One interface, two stores: SQLite (the standalone
default) and Postgres (when a database URL is set), plus CSV export. Writes are idempotent: a read
is keyed by (frame_id, plate_index), so logging the same frame twice adds nothing."""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from common.types import PlateRead

COLUMNS = (
    "camera_id",
    "frame_id",
    "frame_index",
    "frame_time_s",
    "captured_at",
    "plate_index",
    "plate_text",
    "confidence",
    "format_name",
    "format_match",
    "candidates",
    "x1",
    "y1",
    "x2",
    "y2",
    "detection_confidence",
)
"""The columns of a logged read, in export order."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS plate_reads (
    id {id_type},
    camera_id TEXT NOT NULL,
    frame_id TEXT NOT NULL,
    frame_index BIGINT NOT NULL,
    frame_time_s DOUBLE PRECISION NOT NULL,
    captured_at {time_type} NOT NULL,
    plate_index INTEGER NOT NULL,
    plate_text TEXT NOT NULL,
    confidence REAL NOT NULL,
    format_name TEXT,
    format_match BOOLEAN NOT NULL,
    candidates {json_type} NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    detection_confidence REAL NOT NULL,
    logged_at {time_type} NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (frame_id, plate_index)
);
CREATE INDEX IF NOT EXISTS plate_reads_by_plate ON plate_reads (plate_text);
CREATE INDEX IF NOT EXISTS plate_reads_by_camera_time ON plate_reads (camera_id, captured_at);
"""


@dataclass(frozen=True)
class FrameInfo:
    """Where a frame came from: camera, a unique frame id, its index and time in the source."""

    camera_id: str
    frame_id: str
    frame_index: int
    frame_time_s: float
    captured_at: datetime


def read_rows(frame: FrameInfo, reads: Sequence[PlateRead]) -> list[tuple[Any, ...]]:
    """One row per read plate, in COLUMNS order (plates without any candidate are left out)."""
    rows = []
    for plate_index, read in enumerate(reads):
        best = read.best
        if best is None:
            continue
        candidates = json.dumps(
            [{"text": c.text, "confidence": c.confidence, "format": c.format_name} for c in read.candidates]
        )
        x1, y1, x2, y2 = read.box_xyxy
        rows.append(
            (
                frame.camera_id,
                frame.frame_id,
                frame.frame_index,
                frame.frame_time_s,
                frame.captured_at,
                plate_index,
                best.text,
                best.confidence,
                best.format_name,
                best.matches_format,
                candidates,
                x1,
                y1,
                x2,
                y2,
                read.detection_confidence,
            )
        )
    return rows


class PlateLog(Protocol):
    def record(self, frame: FrameInfo, reads: Sequence[PlateRead]) -> int:
        """Log a frame's reads; returns how many rows were new."""
        ...

    def reads(self) -> Iterator[dict[str, Any]]:
        """Every logged read, oldest capture first, as column -> value."""
        ...

    def close(self) -> None: ...


class SqlitePlateLog:
    """The standalone pipeline's default log: one SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(path)
        self.connection.executescript(
            SCHEMA.format(id_type="INTEGER PRIMARY KEY AUTOINCREMENT", time_type="TEXT", json_type="TEXT")
        )

    def record(self, frame: FrameInfo, reads: Sequence[PlateRead]) -> int:
        rows = [tuple(v.isoformat() if isinstance(v, datetime) else v for v in row) for row in read_rows(frame, reads)]
        placeholders = ", ".join("?" for _ in COLUMNS)
        with self.connection:
            before = self.connection.total_changes
            self.connection.executemany(
                f"INSERT OR IGNORE INTO plate_reads ({', '.join(COLUMNS)}) VALUES ({placeholders})", rows
            )
            return self.connection.total_changes - before

    def reads(self) -> Iterator[dict[str, Any]]:
        cursor = self.connection.execute(f"SELECT {', '.join(COLUMNS)} FROM plate_reads ORDER BY captured_at, id")
        for row in cursor:
            record = dict(zip(COLUMNS, row, strict=False))
            record["format_match"] = bool(record["format_match"])
            yield record

    def close(self) -> None:
        self.connection.close()


class PostgresPlateLog:
    """The shared log of a city's deployment: a Postgres table, written with psycopg 3."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.connection = psycopg.connect(url, autocommit=False)
        with self.connection.transaction():
            self.connection.execute(
                SCHEMA.format(id_type="BIGSERIAL PRIMARY KEY", time_type="TIMESTAMPTZ", json_type="JSONB").encode()
            )

    def record(self, frame: FrameInfo, reads: Sequence[PlateRead]) -> int:
        rows = read_rows(frame, reads)
        placeholders = ", ".join("%s" for _ in COLUMNS)
        new = 0
        with self.connection.transaction(), self.connection.cursor() as cursor:
            for row in rows:
                cursor.execute(
                    f"INSERT INTO plate_reads ({', '.join(COLUMNS)}) VALUES ({placeholders}) ON CONFLICT DO NOTHING",
                    row,
                )
                new += cursor.rowcount
        return new

    def reads(self) -> Iterator[dict[str, Any]]:
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT {', '.join(COLUMNS)} FROM plate_reads ORDER BY captured_at, id")
            for row in cursor:
                record = dict(zip(COLUMNS, row, strict=False))
                record["candidates"] = json.dumps(record["candidates"])
                record["captured_at"] = record["captured_at"].astimezone(UTC).isoformat()
                yield record
        self.connection.commit()

    def close(self) -> None:
        self.connection.close()


def open_plate_log(database_url: str | None, sqlite_path: Path) -> PlateLog:
    """Postgres when a database URL is set, else the SQLite file."""
    if database_url:
        return PostgresPlateLog(database_url)
    return SqlitePlateLog(sqlite_path)


def export_csv(log: PlateLog, path: Path) -> int:
    """Write every read to a CSV file; returns the number of rows."""
    count = 0
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for record in log.reads():
            writer.writerow(record)
            count += 1
    return count

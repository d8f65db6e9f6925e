"""The sightings log: one row per vehicle pass in front of one camera (the voted plate, its confidence,
first and last seen, read count, the best read's frame and box, the distinct texts read), in
Postgres (table `sightings`, migration 7) or in `alpr run`'s SQLite file beside the reads. A sighting
is keyed by its id (that of its earliest read), so writing it twice adds nothing."""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg_pool import ConnectionPool

from common.db import write_through_outage
from common.types import Sighting

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

POSTGRES_SCHEMA = """
CREATE TABLE sightings (
    sighting_id TEXT PRIMARY KEY,
    camera_id TEXT NOT NULL,
    plate TEXT NOT NULL,
    confidence REAL NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    reads INTEGER NOT NULL,
    best_frame_id TEXT NOT NULL,
    best_confidence REAL NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    texts JSONB NOT NULL,
    snapshot_path TEXT,
    closed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX sightings_by_plate ON sightings (plate);
CREATE INDEX sightings_by_camera_time ON sightings (camera_id, first_seen);
"""
"""The Postgres table (common/db.py applies it as migration 7)."""


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

INSERT_POSTGRES = (
    f"INSERT INTO sightings ({INSERT_COLUMNS}) VALUES ({', '.join('%s' for _ in COLUMNS)}) ON CONFLICT DO NOTHING"
)
"""A closed sighting; nothing when it is logged already (a retried or replayed group)."""


class SightingLog(Protocol):
    def record_many(self, sightings: Sequence[tuple[Sighting, str | None]]) -> int:
        """Log closed sightings (each with its snapshot's path, if kept); returns how many were new."""
        ...

    def sightings(self) -> Iterator[dict[str, Any]]:
        """Every logged sighting, earliest first, as column -> value."""
        ...

    def close(self) -> None: ...


class SqliteSightingLog:
    """`alpr run`'s sightings, in the same SQLite file as its reads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(path)
        self.connection.executescript(SQLITE_SCHEMA)

    def record_many(self, sightings: Sequence[tuple[Sighting, str | None]]) -> int:
        rows = [
            tuple(v.isoformat() if isinstance(v, datetime) else v for v in sighting_row(s, path))
            for s, path in sightings
        ]
        with self.connection:
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


def insert_sightings(connection: psycopg.Connection, sightings: Sequence[tuple[Sighting, str | None]]) -> int:
    """Log sightings inside the caller's transaction (the sighting pool commits them with its state)."""
    with connection.cursor() as cursor:
        new = 0
        for sighting, path in sightings:  # one statement each: rowcount says which were new
            cursor.execute(INSERT_POSTGRES, sighting_row(sighting, path))
            new += max(cursor.rowcount, 0)
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
        columns = ", ".join(f"s.{c}" for c in COLUMNS[:-1])
        query = (
            f"SELECT {columns}, COALESCE(s.snapshot_path, f.kept_path) FROM sightings s"
            " LEFT JOIN frames f ON f.frame_id = s.best_frame_id ORDER BY s.first_seen, s.sighting_id"
        )
        with self.pool.connection() as connection, connection.cursor() as cursor:
            cursor.execute(query)  # type: ignore[arg-type]
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
    """Postgres when a database URL is set (schema upgraded on the way), else the SQLite file."""
    if database_url:
        from common.db import open_pool, upgrade

        pool = open_pool(database_url, password=password)
        upgrade(pool)
        return PostgresSightingLog(pool, owns_pool=True)
    return SqliteSightingLog(sqlite_path)


def export_sightings_csv(log: SightingLog, path: Path) -> int:
    """Write every sighting to a CSV file (a `plate` column among others); returns the number of rows."""
    count = 0
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in log.sightings():
            writer.writerow(row)
            count += 1
    return count

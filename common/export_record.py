"""The record of every `alpr export` (table `plate_exports`: when, the database login, who, why, what —
reads or sightings — and the CSV file's absolute path), written and committed before the export's
first row, in Postgres (migration 13) or in `alpr run`'s SQLite file beside the log. An export whose
record cannot be written exports nothing. An export that fails later stays recorded: the record is of
what was asked for. The record is append-only (a trigger), and the workers' role may add to it but not
read it (common/audit.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

import psycopg

from common.audit import Operator, Reason, RecordedPath, record_refused
from common.db import open_current_pool
from common.errors import OutputError
from common.jobs import Strict

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS plate_exports (
    id INTEGER PRIMARY KEY, exported_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, exported_by TEXT NOT NULL,
    reason TEXT NOT NULL, exported TEXT NOT NULL CHECK (exported IN ('reads', 'sightings')), csv_path TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS plate_exports_kept BEFORE UPDATE ON plate_exports
BEGIN SELECT RAISE(ABORT, 'the record of exports is append-only'); END;
CREATE TRIGGER IF NOT EXISTS plate_exports_not_erased BEFORE DELETE ON plate_exports
BEGIN SELECT RAISE(ABORT, 'the record of exports is append-only'); END;
"""

RECORD = "INSERT INTO plate_exports (exported_by, reason, exported, csv_path)"


class PlateExport(Strict):
    """One export: why and by whom, what it dumps and the file it goes to (an absolute path)."""

    reason: Reason
    exported_by: Operator
    exported: Literal["reads", "sightings"]
    csv_path: RecordedPath

    def record_row(self) -> tuple[str, str, str, str]:
        return (self.exported_by, self.reason, self.exported, self.csv_path)


def record_export(database_url: str | None, sqlite_path: Path, password: str | None, export: PlateExport) -> None:
    """Record `export` in Postgres when a database URL is set (its schema must be current), else in the
    SQLite file; ConfigError or OutputError, one line, when it cannot be recorded."""
    if database_url:
        record_postgres(database_url, password, export)
    else:
        record_sqlite(sqlite_path, export)


def record_postgres(database_url: str, password: str | None, export: PlateExport) -> None:
    """The record, committed in a transaction of its own before the export reads a row."""
    pool = open_current_pool(database_url, password, role="export")
    try:
        with pool.connection() as connection:
            role = connection.info.user
            try:
                connection.execute(f"{RECORD} VALUES (%s, %s, %s, %s)", export.record_row())
            except psycopg.errors.InsufficientPrivilege:
                raise record_refused("export", role) from None
            except psycopg.Error as error:
                raise OutputError(
                    f"alpr export: the export could not be recorded ({type(error).__name__}, SQLSTATE"
                    f" {error.sqlstate}); nothing was exported"
                ) from None
    finally:
        pool.close()


def record_sqlite(path: Path, export: PlateExport) -> None:
    """The record, in the SQLite log itself (its table made when missing), opened as every command opens
    it (common/sqlite_log.connect_log: private, in WAL mode, waiting for a running `alpr run`'s write)."""
    from common.sqlite_log import connect_log

    connection = connect_log(path)
    try:
        connection.executescript(SQLITE_SCHEMA)
        with connection:
            connection.execute(f"{RECORD} VALUES (?, ?, ?, ?)", export.record_row())
    except sqlite3.Error as error:
        raise OutputError(
            f"alpr export: the export could not be recorded in {path} ({error}); nothing was exported"
        ) from None
    finally:
        connection.close()

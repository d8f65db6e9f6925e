"""Postgres: the schema as numbered migrations (`alpr db upgrade`), the connection pool every
role shares, and writes that wait out an outage. Upgrades take an advisory lock, so several
processes may run them at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from common import defaults
from common.backoff import Backoff
from common.credentials import mask_url
from common.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE cameras (
            camera_id TEXT PRIMARY KEY,
            region TEXT NOT NULL,
            enabled BOOLEAN NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE frames (
            frame_id TEXT PRIMARY KEY,
            camera_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            frame_index BIGINT NOT NULL,
            captured_at TIMESTAMPTZ NOT NULL,
            plates INTEGER NOT NULL,
            stage_ms JSONB NOT NULL,
            kept_path TEXT,
            done_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE INDEX frames_by_camera_time ON frames (camera_id, captured_at);
        CREATE TABLE plate_reads (
            id BIGSERIAL PRIMARY KEY,
            camera_id TEXT NOT NULL,
            frame_id TEXT NOT NULL,
            frame_index BIGINT NOT NULL,
            frame_time_s DOUBLE PRECISION NOT NULL,
            captured_at TIMESTAMPTZ NOT NULL,
            plate_index INTEGER NOT NULL,
            plate_text TEXT NOT NULL,
            confidence REAL NOT NULL,
            format_name TEXT,
            format_match BOOLEAN NOT NULL,
            candidates JSONB NOT NULL,
            x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
            detection_confidence REAL NOT NULL,
            stage_ms JSONB NOT NULL,
            logged_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            UNIQUE (frame_id, plate_index)
        );
        CREATE INDEX plate_reads_by_plate ON plate_reads (plate_text);
        CREATE INDEX plate_reads_by_camera_time ON plate_reads (camera_id, captured_at);
        """,
    ),
    (
        2,
        """
        ALTER TABLE frames ADD COLUMN outcome TEXT NOT NULL DEFAULT 'done';
        CREATE INDEX frames_not_done ON frames (camera_id, captured_at) WHERE outcome <> 'done';
        """,
    ),
    (
        3,
        """
        ALTER TABLE frames ADD COLUMN detail TEXT;
        UPDATE frames SET outcome = 'expired', detail = substr(outcome, 9) WHERE outcome LIKE 'expired %';
        ALTER TABLE frames ADD CONSTRAINT frames_outcome_known
            CHECK (outcome IN ('pending', 'done', 'skipped', 'expired', 'corrupt', 'lost'));
        CREATE INDEX frames_pending ON frames (captured_at) WHERE outcome = 'pending';
        """,
    ),
    (
        4,
        """
        ALTER TABLE plate_reads RENAME COLUMN frame_time_s TO source_time_s;
        """,
    ),
    (
        5,
        """
        ALTER TABLE frames ADD COLUMN read_outcome TEXT
            CONSTRAINT frames_read_outcome_known CHECK (read_outcome IN ('pending', 'done', 'expired', 'lost'));
        CREATE INDEX frames_reads_pending ON frames (done_at) WHERE read_outcome = 'pending';
        """,
    ),
    (
        6,
        """
        CREATE TABLE watchlist (
            list_name TEXT NOT NULL DEFAULT 'default' CONSTRAINT watchlist_list_name_valid
                CHECK (list_name ~ '^[A-Za-z0-9_.-]{1,64}$'),
            plate TEXT NOT NULL CONSTRAINT watchlist_plate_normalised CHECK (plate ~ '^[A-Z0-9]{1,16}$'),
            reason TEXT NOT NULL CONSTRAINT watchlist_reason_length CHECK (length(reason) BETWEEN 1 AND 200),
            expires_at TIMESTAMPTZ,
            added_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (list_name, plate)
        );
        """,
    ),
    (
        7,
        """
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
        CREATE INDEX frames_unsettled ON frames (camera_id, captured_at)
            WHERE outcome = 'pending' OR read_outcome = 'pending';
        CREATE TABLE sighting_cursors (
            camera_id TEXT PRIMARY KEY,
            grouped_until_s DOUBLE PRECISION NOT NULL DEFAULT 0,
            early_read_id BIGINT NOT NULL DEFAULT 0,
            state JSONB NOT NULL DEFAULT '{}',
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE alerts (
            alert_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CONSTRAINT alerts_kind_known CHECK (kind IN ('read', 'sighting')),
            camera_id TEXT NOT NULL,
            captured_at TIMESTAMPTZ NOT NULL,
            body JSONB NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE alert_deliveries (
            alert_id TEXT NOT NULL REFERENCES alerts ON DELETE CASCADE,
            receiver TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending' CONSTRAINT alert_deliveries_status_known
                CHECK (status IN ('pending', 'sending', 'delivered', 'failed', 'rejected')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            queued_at TIMESTAMPTZ,
            last_error TEXT,
            delivered_at TIMESTAMPTZ,
            PRIMARY KEY (alert_id, receiver)
        );
        CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at) WHERE status IN ('pending', 'sending');
        """,
    ),
]
"""(version, SQL) in order; a deployed migration is never edited, only followed by a new one."""

ADVISORY_LOCK_ID = 720_417
"""Postgres advisory lock held while migrating."""


def open_pool(url: str, max_size: int = 4, wait_s: float = 10.0, password: str | None = None) -> ConnectionPool:
    """A connection pool, opened and checked: a wrong URL fails here with a clear message. `password`
    is used when the URL carries none (from ALPR_DATABASE_PASSWORD[_FILE])."""
    options: dict[str, object] = {"autocommit": False}
    if password is not None:
        options["password"] = password
    pool = ConnectionPool(
        url, min_size=1, max_size=max_size, open=False, kwargs=options,
        check=ConnectionPool.check_connection,  # a connection broken by a server restart is replaced, not used
    )  # fmt: skip
    try:
        pool.open(wait=True, timeout=wait_s)
    except Exception as error:  # psycopg_pool raises PoolTimeout with the cause in the log only
        pool.close()
        raise ConfigError(f"cannot connect to Postgres at {mask_url(url)}: {mask_url(str(error))}") from None
    return pool


def upgrade(pool: ConnectionPool) -> list[int]:
    """Apply the migrations not yet applied; returns their versions."""
    applied: list[int] = []
    with pool.connection() as connection, connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_ID,))
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in connection.execute("SELECT version FROM schema_migrations")}
        for version, sql in MIGRATIONS:
            if version not in done:
                connection.execute(sql.encode())
                connection.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied.append(version)
    return applied


def register_cameras(pool: ConnectionPool, cameras: list[tuple[str, str, bool]]) -> None:
    """Insert or update (camera_id, region, enabled) rows of the cameras table."""
    with pool.connection() as connection, connection.transaction(), connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO cameras (camera_id, region, enabled) VALUES (%s, %s, %s) ON CONFLICT (camera_id)"
            " DO UPDATE SET region = excluded.region, enabled = excluded.enabled, updated_at = now()",
            cameras,
        )


def require_schema(pool: ConnectionPool) -> None:
    """Fail clearly when `alpr db upgrade` has not been run against this database."""
    latest = MIGRATIONS[-1][0]
    with pool.connection() as connection:
        exists = connection.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        version = (
            connection.execute("SELECT max(version) FROM schema_migrations").fetchone()
            if exists and exists[0]
            else None
        )
    if not version or version[0] is None or version[0] < latest:
        raise ConfigError(f"the database schema is not at version {latest}; run `alpr db upgrade`")


def write_through_outage(pool: ConnectionPool, write: Callable[[psycopg.Connection], T], patience_s: float) -> T:
    """Run `write` in one transaction. While Postgres is unreachable (restarting, failing over), try
    again with backoff for up to `patience_s`, then raise: the job fails and RQ retries it. Errors
    other than a lost connection (a constraint, bad SQL) raise at once."""
    deadline = time.monotonic() + patience_s
    backoff = Backoff(*defaults.DB_OUTAGE_BACKOFF_S)
    while True:
        try:
            with pool.connection(timeout=defaults.DB_ATTEMPT_S) as connection, connection.transaction():
                return write(connection)
        except (psycopg.OperationalError, PoolTimeout) as error:
            wait = backoff.next_delay()
            if time.monotonic() + wait > deadline:
                raise
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            log.warning("Postgres unavailable (%s); retrying in %.1f s", reason, wait)
            time.sleep(wait)

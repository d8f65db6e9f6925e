"""Where a plate was seen: the sightings whose voted plate, or any text read in them, is within a
look-alike-aware edit distance of the plate searched (`plate_distance`: O for 0 costs half an edit),
narrowed by time and camera, newest first. Every search is recorded before its results are given
(table `plate_searches`: who, why, what and how many found), in Postgres or in `alpr run`'s SQLite
file beside the sightings; a search whose record cannot be written gives nothing. The record is
append-only: Postgres refuses to change or delete its rows (a trigger; the workers' role may not
even try), as police and city policies on plate data require an audit of every look-up."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool
from pydantic import Field, ValidationInfo, field_validator

from common.audit import Operator, Reason, record_refused
from common.jobs import CAMERA_ID_PATTERN, Strict
from common.plate_text import character_counts, distance_lower_bound, plate_distance
from common.redis_json import json_list
from common.watchlist_entry import normalise_plate

RESULT_COLUMNS = ("first_seen", "last_seen", "camera_id", "plate", "distance", "confidence", "reads",
                  "snapshot_path", "sighting_id")  # fmt: skip
"""A search result's columns, as printed and written to CSV."""

MAX_WITHIN = 3.0
"""The widest search: at three edits most plates match a few others."""

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS plate_searches (
    id INTEGER PRIMARY KEY, searched_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, searched_by TEXT NOT NULL,
    reason TEXT NOT NULL, plate TEXT NOT NULL, within REAL NOT NULL, since TEXT, until TEXT, camera_id TEXT,
    found INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS plate_searches_kept BEFORE UPDATE ON plate_searches
BEGIN SELECT RAISE(ABORT, 'the record of plate searches is append-only'); END;
CREATE TRIGGER IF NOT EXISTS plate_searches_not_erased BEFORE DELETE ON plate_searches
BEGIN SELECT RAISE(ABORT, 'the record of plate searches is append-only'); END;
"""

RECORD = "INSERT INTO plate_searches (searched_by, reason, plate, within, since, until, camera_id, found)"

CANDIDATES_POSTGRES = """
SELECT s.sighting_id, s.camera_id, s.plate, s.confidence, s.first_seen, s.last_seen, s.reads, s.texts::text,
       s.snapshot_path, s.best_frame_id
FROM {sightings} s
WHERE s.first_seen <= %(until)s AND s.last_seen >= %(since)s AND (%(camera)s::text IS NULL OR s.camera_id = %(camera)s)
ORDER BY s.first_seen DESC
"""
"""The sightings of the window and camera, newest first (a window without a camera: sightings_by_last_seen,
migration 20; a last hour read every sighting before). Its texts as JSON text, read by `texts_read`:
psycopg's jsonb loader raised RecursionError on texts nested 5,000 deep, which ended the search."""

SNAPSHOTS = "SELECT frame_id, kept_path FROM frames WHERE frame_id = ANY(%s) AND kept_path IS NOT NULL"
"""The kept frames of the best reads of the sightings found (a sighting's snapshot when it has none of its
own): looked up for those alone. Looked up for every candidate, a search within 2 of a plate probed the
frames log 1.58 million times (10.0 s, 1.9 s without; a scale review), and joined, read all of it."""

BY_KEY = """(WITH hits AS MATERIALIZED (
    SELECT * FROM sightings WHERE plate_search_keys(plate, texts) && %(keys)s::text[]
) SELECT * FROM hits)"""
"""Only the sightings sharing a search key with the plate (migration 12's index), found first: those
within KEYED_WITHIN. Left to weigh the keys against the window and camera, Postgres read a camera's
sightings one by one (11.6 s among 2 million) where the keys find a handful (1.6 ms)."""

KEYED_WITHIN = 1.5
"""The widest search the keys answer: one edit besides look-alikes. A wider one reads every sighting of
its window and camera (300,000 took 8 s on this machine)."""

LOOKALIKE_SKELETON = str.maketrans("0DQ1L852647", "OOOIIBSZGAT")
"""Each look-alike to the first of its group (LOOKALIKE_GROUPS), as migration 12's plate_search_keys does."""

CANDIDATES_SQLITE = """
SELECT sighting_id, camera_id, plate, confidence, first_seen, last_seen, reads, texts, snapshot_path
FROM sightings WHERE first_seen <= :until AND last_seen >= :since AND (:camera IS NULL OR camera_id = :camera)
ORDER BY first_seen DESC
"""


class PlateSearch(Strict):
    """One look-up: the plate (normalised as listed and read), how far a text may be from it, the
    window and camera it is narrowed to, why it is made and by whom."""

    plate: str
    reason: Reason
    searched_by: Operator
    within: float = Field(1.0, ge=0.0, le=MAX_WITHIN, allow_inf_nan=False)
    since: datetime | None = None
    until: datetime | None = None
    camera_id: str | None = Field(None, pattern=CAMERA_ID_PATTERN)
    limit: int = Field(100, ge=1, le=100_000)

    @field_validator("plate")
    @classmethod
    def a_plate(cls, text: str) -> str:
        return normalise_plate(text)

    @field_validator("since", "until")
    @classmethod
    def in_utc(cls, moment: datetime | None) -> datetime | None:
        if moment is None:
            return None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    @field_validator("until")
    @classmethod
    def not_before_since(cls, until: datetime | None, info: ValidationInfo) -> datetime | None:
        since = info.data.get("since")
        if until is not None and since is not None and until < since:
            raise ValueError(
                f"ends ({until.isoformat()}) before --since begins ({since.isoformat()}): nothing can be found"
            )
        return until

    def window(self) -> tuple[datetime, datetime]:
        return self.since or datetime(1970, 1, 1, tzinfo=UTC), self.until or datetime(9999, 12, 30, tzinfo=UTC)

    def record_row(self, found: int) -> tuple[Any, ...]:
        return (self.searched_by, self.reason, self.plate, self.within, self.since, self.until, self.camera_id, found)


def search_keys(text: str) -> list[str]:
    """The keys of a text, as migration 12 computes a sighting's: its look-alikes made one, whole and
    with each character left out in turn. Texts within one edit besides look-alikes share one."""
    skeleton = text.translate(LOOKALIKE_SKELETON)
    return sorted({skeleton, *(skeleton[:i] + skeleton[i + 1 :] for i in range(len(skeleton)))})


def distance_to(search: PlateSearch, plate: str, texts: Iterable[str]) -> float | None:
    """The least distance of the sighting's plate or texts read to the plate searched, when within reach."""
    wanted = character_counts(search.plate)
    best: float | None = None
    for text in (plate, *texts):
        if distance_lower_bound(wanted, character_counts(text)) > search.within:
            continue  # cheap: most sightings are nowhere near
        distance = plate_distance(search.plate, text)
        if distance <= search.within and (best is None or distance < best):
            best = distance
    return best


def matching(
    search: PlateSearch, candidates: Iterable[tuple[Any, ...]], best_frames: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The candidates (CANDIDATES_* rows, newest first) within reach, up to the search's limit, each
    with its distance. Rows that end with the frame of their best read (CANDIDATES_POSTGRES) put it in
    `best_frames` (sighting -> frame) for the matches without a snapshot of their own."""
    found: list[dict[str, Any]] = []
    for sighting_id, camera_id, plate, confidence, first, last, reads, texts, snapshot, *best_frame in candidates:
        distance = distance_to(search, str(plate), texts_read(texts))
        if distance is None:
            continue
        if snapshot is None and best_frame and best_frame[0] is not None and best_frames is not None:
            best_frames[sighting_id] = best_frame[0]
        found.append({
            "first_seen": _iso(first), "last_seen": _iso(last), "camera_id": camera_id, "plate": plate,
            "distance": distance, "confidence": round(float(confidence), 3), "reads": reads,
            "snapshot_path": snapshot, "sighting_id": sighting_id,
        })  # fmt: skip
        if len(found) >= search.limit:
            break
    return found


MAX_TEXTS_BYTES = 65_536
"""Longest `texts` read: a sighting counts at most 50 distinct texts (some 2 KB); a longer one is none of ours."""


def texts_read(texts: object) -> list[str]:
    """The texts a sighting's `texts` holds (`[[text, count], ...]`, as JSON text); one of another shape
    (written by hand, or forged by whoever may write the log) holds none, and the sighting is searched by its
    plate alone: it ended the search in a traceback (a review), and so did texts nested past the parser's
    depth (RecursionError, not a ValueError): read by the chain's one parser (common/redis_json.py)."""
    found = json_list(texts, MAX_TEXTS_BYTES) if isinstance(texts, str | bytes) else texts
    if not isinstance(found, list):
        return []
    return [item[0] for item in found if isinstance(item, list) and item and isinstance(item[0], str)]


def _iso(moment: datetime | str) -> str:
    return moment if isinstance(moment, str) else moment.astimezone(UTC).isoformat()


def search_postgres(pool: ConnectionPool, search: PlateSearch) -> list[dict[str, Any]]:
    """The search on the chain's sightings, recorded in the same transaction: no record, no results."""
    since, until = search.window()
    keyed = search.within <= KEYED_WITHIN
    query = CANDIDATES_POSTGRES.format(sightings=BY_KEY if keyed else "sightings")
    values = {"since": since, "until": until, "camera": search.camera_id, "keys": search_keys(search.plate)}
    best_frames: dict[str, str] = {}  # sighting found -> the frame of its best read, where it has no snapshot
    with pool.connection() as connection:
        with connection.cursor(name="plate_search") as cursor:  # streamed: a month of sightings is millions
            cursor.execute(query, values)  # type: ignore[call-overload]
            found = matching(search, cursor, best_frames)
        if best_frames:  # one statement: the frames log probed for the sightings found alone
            kept: dict[str, str] = dict(connection.execute(SNAPSHOTS, (sorted(set(best_frames.values())),)).fetchall())
            for row in found:
                if row["sighting_id"] in best_frames:
                    row["snapshot_path"] = kept.get(best_frames[row["sighting_id"]])
        try:
            connection.execute(f"{RECORD} VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", search.record_row(len(found)))
        except psycopg.errors.InsufficientPrivilege:
            raise record_refused("search", connection.info.user) from None
    return found


def search_sqlite(connection: sqlite3.Connection, search: PlateSearch) -> list[dict[str, Any]]:
    """The search on `alpr run`'s SQLite sightings, recorded in the same file (created when missing)."""
    since, until = search.window()
    connection.executescript(SQLITE_SCHEMA)
    window = {"since": since.isoformat(), "until": until.isoformat(), "camera": search.camera_id}
    found = matching(search, connection.execute(CANDIDATES_SQLITE, window))
    row = tuple(value.isoformat() if isinstance(value, datetime) else value for value in search.record_row(len(found)))
    with connection:
        connection.execute(f"{RECORD} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
    return found

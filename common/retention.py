"""How long plate data is kept in Postgres: `prune_logs` deletes the watch-list alerts captured before their
own cutoff (ALPR_ALERT_RETENTION_DAYS; one still being delivered stays, its deliveries go with it), then the
reads, sightings and frame records captured before a cutoff, camera by camera, in batches (short
transactions: the chain writes on meanwhile), except what an alert left cites (its frame's record, the read
alerted on, its sighting): its evidence, kept as long as the alert is. A frame still `pending` is left to the
chain's sweep. The audit records (plate searches and exports) are pruned apart (common/audit_retention.py).
Run by `alpr db prune` as the pruner's role (common/pruner_role.py: it may read what this reads and
delete these rows, nothing more) or the schema's owner; the workers' role may delete none of them.
`prune_sqlite_log` does the same for `alpr run`'s SQLite log (`alpr db prune --sqlite`). Either deletes the
snapshot files the sightings it deletes name (`alpr run`'s, written where it ran: the chain's sightings name
none), under the same rules (`snapshot_to_delete`)."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from common.audit_retention import AUDIT_TIMES, prune_audit, sqlite_audit_before, sqlite_audit_prunable
from common.errors import AlprError
from common.frame_counts import MERGE_COUNTS
from common.sqlite_log import connect_log

log = logging.getLogger(__name__)

BATCH_ROWS = 5000
"""Rows deleted per statement (and transaction)."""

CAMERAS = """
WITH RECURSIVE cameras AS (
    SELECT min(camera_id) AS camera_id FROM {table}
    UNION ALL
    SELECT (SELECT min(camera_id) FROM {table} WHERE camera_id > cameras.camera_id) FROM cameras
    WHERE cameras.camera_id IS NOT NULL
)
SELECT camera_id FROM cameras WHERE camera_id IS NOT NULL
"""
"""The cameras a table holds rows of, one index probe each (a DISTINCT read the whole table)."""

NOT_CITED_FRAME = "NOT EXISTS (SELECT 1 FROM alerts a WHERE a.body ->> 'frame_id' = t.frame_id)"
"""A frame's record is kept where an alert cites the frame."""

NOT_CITED_READ = (
    "NOT EXISTS (SELECT 1 FROM alerts a WHERE a.body ->> 'frame_id' = t.frame_id AND (t.plate_text = a.body ->> 'plate'"
    " OR EXISTS (SELECT 1 FROM sightings s WHERE s.sighting_id = a.body ->> 'sighting_id'"
    " AND s.texts @> jsonb_build_array(jsonb_build_array(t.plate_text)))))"
)
"""A read is kept where an alert cites its frame and it is the read alerted on (its text: a read's alert)
or one of the alerted sighting's texts; the frame's other cars' reads go as any do."""

NOT_SPANNING_AN_ALERT = (
    "NOT EXISTS (SELECT 1 FROM alerts a WHERE a.body ->> 'sighting_id' = t.sighting_id)"
    " AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.kind = 'read' AND a.camera_id = t.camera_id"
    " AND a.captured_at BETWEEN t.first_seen AND t.last_seen"
    " AND plate_search_keys(t.plate, t.texts) && plate_search_keys(a.body ->> 'plate', '[]'::jsonb))"
)
"""A sighting is kept where an alert names it, or where an early alert on a single read of its pass (which
names no sighting: it is raised before the pass closes) was raised during it on a text within an edit of
its plate or texts (look-alikes free: common/plate_text.py). Every sighting at the camera spanning the
alert was kept before: the car in the next lane, one parked in view, for ever."""

PRUNED = {
    "plate_reads": ("id", "captured_at", NOT_CITED_READ),
    "sightings": ("sighting_id", "first_seen", f"t.last_seen < %(cutoff)s AND {NOT_SPANNING_AN_ALERT}"),
    "frames": ("frame_id", "captured_at", f"outcome <> 'pending' AND {NOT_CITED_FRAME}"),
}
"""Per table: its key, its time column (indexed with the camera) and what is kept however old (a
sighting also while any of it is newer: a car parked in view since before the cutoff, its pass still
going an hour ago, was deleted whole by its start; each
probe of the alerts by an index of migration 12: NOT IN over them read every alert for every row once
they outgrew the working memory, 100 s a batch with 200,000 alerts)."""

ALERT_KEPT_WHILE_DELIVERED = (
    "NOT EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.alert_id = t.alert_id AND d.status IN ('pending', 'sending'))"
)
"""An alert past its retention is kept while a delivery of it is pending or being sent: deleted under the alert
worker, the receiver was told of a hit no longer on record."""

ALERTS = ("alerts", ("alert_id", "captured_at", ALERT_KEPT_WHILE_DELIVERED))
"""The alerts as PRUNED's tables (alerts_by_camera_time, migration 12, finds a camera's old ones), each pruned
past its own cutoff: first, so the evidence of those deleted goes with the tables after them, the same round."""

ALERT_BATCH_TRIES = 5
"""Tries of an alerts batch that a concurrent write to one of its alerts' deliveries failed (ALERT_BATCH_ISOLATION)."""

ALERT_RETRY_S = 0.2
"""The wait before an alerts batch's next try, times the tries made."""

ALERT_BATCH_ISOLATION = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"
"""An alerts batch runs in one snapshot: a delivery set back to pending (`alpr replay --stage alert`) or added
(the alert pool's receiver added) while the batch ran was deleted by the cascade with its alert, the batch's
ALERT_KEPT_WHILE_DELIVERED having read it before the write (READ COMMITTED's statement snapshot; a review).
Postgres now fails the batch (SerializationFailure) where such a write touches its rows, and it is tried again,
ALERT_BATCH_TRIES times, seeing the write. No row is locked to read it (FOR UPDATE: the pruner may update none)."""


class PruneContendedError(AlprError):
    """An alerts batch failed ALERT_BATCH_TRIES times, deliveries of its alerts being written each time: the
    round ends, what it deleted before staying so."""


ALERT_STAYS = (
    "NOT (a.captured_at < %(alerts_before)s AND NOT EXISTS (SELECT 1 FROM alert_deliveries d"
    " WHERE d.alert_id = a.alert_id AND d.status IN ('pending', 'sending')))"
)
"""An alert a dry run leaves in place that the prune would not delete: what only the alerts it would delete
cite is counted as the prune would delete it."""


def with_alerts_staying(kept_unless: str) -> str:
    """A rule of PRUNED whose alerts are those ALERT_STAYS keeps (a dry run's count, the alerts still there)."""
    return kept_unless.replace("FROM alerts a WHERE ", f"FROM alerts a WHERE {ALERT_STAYS} AND ")


DELETE_BATCH = """
DELETE FROM {table} WHERE {key} IN (
    SELECT {key} FROM {table} t WHERE camera_id = %(camera)s AND {time} < %(cutoff)s AND {kept_unless}
    LIMIT %(rows)s
) RETURNING {returned}
"""

RETURNED = {"sightings": "snapshot_path"}
"""What a batch's deleted rows hand back, per table: a sighting's snapshot file (`alpr run` with a database
URL logs its sightings in Postgres with the snapshots it wrote), deleted once the batch commits. The Postgres
prune deleted the rows only, and the files stayed on disk for good, no row naming them (a review: 3 files,
277 KB); `alpr db prune --sqlite` deleted them."""

COUNT = "SELECT count(*) FROM {table} t WHERE camera_id = %(camera)s AND {time} < %(cutoff)s AND {kept_unless}"


@dataclass
class Pruned:
    """Rows deleted (or, on a dry run, that would be) per table."""

    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*PRUNED, "alerts", *AUDIT_TIMES), 0))
    snapshots_left: list[str] = field(default_factory=list)
    """Snapshot files of deleted sightings left on disk, each with why."""
    stopped: bool = False
    """Whether a stop request ended the prune between two batches (what was deleted before stays so)."""
    counts_merged: int = 0
    """The frames log's per-minute count changes merged into its counts at the round's end (_merge_frame_counts)."""
    old_pages_left: str | None = None
    """`prune_sqlite_log`: the log whose write-ahead log its closing checkpoint could not empty (another process
    held it: the deleted rows' old pages, plates and all, may still be read from the file or its -wal), or None."""

    def __str__(self) -> str:
        return ", ".join(f"{count} {table}" for table, count in self.rows.items())


def _probe_by_index(connection: psycopg.Connection) -> None:
    """This transaction's statements check each row against the alerts by an index probe: Postgres chose
    to hash the camera's alerts and compare every row of a batch with every one of them (a review: 300,000
    sightings, 10,000 alerts at the camera, 50 million comparisons, 4.3 s a batch of 5,000; by the index
    0.46 s, and the reads' batch 0.14 -> 0.06 s)."""
    connection.execute("SET LOCAL enable_hashjoin = off")
    connection.execute("SET LOCAL enable_mergejoin = off")


def prune_logs(
    pool: ConnectionPool,
    cutoff: datetime | None,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    alerts_before: datetime | None = None,
    audit_before: datetime | None = None,
) -> Pruned:
    """Delete the alerts captured before `alerts_before` (but those still being delivered), then the rows
    captured before `cutoff` (or count them, `dry_run`), but what the alerts left cite, and the snapshot
    files of the sightings deleted, batch by batch as each commits (`_delete_snapshots`: those it keeps or
    cannot delete are named in `Pruned.snapshots_left`); then the audit records made before `audit_before`
    (common/audit_retention.py). A cutoff of None: that data kept. `stop` set ends it after the batch in
    hand (`Pruned.stopped`): a prune of millions of rows started by mistake went on to the end whatever
    signal it was sent (a review)."""
    pruned = Pruned()
    tables = [(*ALERTS, alerts_before)] if alerts_before is not None else []
    tables += [(table, rule, cutoff) for table, rule in PRUNED.items() if cutoff is not None]
    for table, (key, time_column, kept_unless), before in tables:
        if dry_run and alerts_before is not None and table in PRUNED:
            kept_unless = with_alerts_staying(kept_unless)
        parts = {"table": sql.Identifier(table), "key": sql.Identifier(key), "time": sql.Identifier(time_column),
                 "kept_unless": sql.SQL(kept_unless), "returned": sql.Identifier(RETURNED.get(table, key))}  # fmt: skip
        with pool.connection() as connection:
            cameras = [row[0] for row in connection.execute(sql.SQL(CAMERAS).format(**parts))]
        for camera in cameras:
            values = {"camera": camera, "cutoff": before, "rows": BATCH_ROWS, "alerts_before": alerts_before}
            if dry_run:
                with pool.connection() as connection:
                    _probe_by_index(connection)
                    row = connection.execute(sql.SQL(COUNT).format(**parts), values).fetchone()
                pruned.rows[table] += int(row[0]) if row else 0
            elif not _delete_camera(pool, table, parts, values, pruned, stop):
                pruned.stopped = True
                return pruned
    if audit_before is not None:
        pruned.stopped = not prune_audit(pool, audit_before, pruned.rows, dry_run, stop)
        if pruned.stopped:
            return pruned
    if not dry_run:
        pruned.counts_merged = _merge_frame_counts(pool)
    return pruned


def _delete_camera(
    pool: ConnectionPool,
    table: str,
    parts: dict[str, sql.Composable],
    values: dict[str, object],
    pruned: Pruned,
    stop: threading.Event | None,
) -> bool:
    """Delete a camera's rows of `table` (DELETE_BATCH of `parts`, `values`) batch by batch, into `pruned`, and
    the snapshots of the sightings deleted as each batch commits; False where `stop` ended it between two."""
    while True:
        if stop is not None and stop.is_set():
            return False
        gone = _delete_batch(pool, table, parts, values)
        deleted = len(gone)  # committed: the snapshots they name may go
        pruned.rows[table] += deleted
        if table in RETURNED:
            _delete_snapshots([path for (path,) in gone if isinstance(path, str) and path], pruned, True)
        if deleted < BATCH_ROWS:
            return True


def _delete_batch(
    pool: ConnectionPool, table: str, parts: dict[str, sql.Composable], values: dict[str, object]
) -> list[tuple[object, ...]]:
    """One DELETE_BATCH of `table`, a transaction (its locks held briefly), committed; the rows it returned. An
    alerts batch runs at ALERT_BATCH_ISOLATION, tried again where a delivery's write failed it (PruneContendedError
    past ALERT_BATCH_TRIES)."""
    for tries in range(1, ALERT_BATCH_TRIES + 1):
        try:
            with pool.connection() as connection:
                if table in PRUNED:  # checked against the alerts
                    _probe_by_index(connection)
                else:
                    connection.execute(ALERT_BATCH_ISOLATION)
                return connection.execute(sql.SQL(DELETE_BATCH).format(**parts), values).fetchall()
        except psycopg.errors.SerializationFailure:
            if table in PRUNED:
                raise
            if tries < ALERT_BATCH_TRIES:
                log.info("an alerts batch met a delivery being written (try %d): tried again", tries)
                time.sleep(ALERT_RETRY_S * tries)
    raise PruneContendedError(
        f"alpr db prune: the alerts of camera {values['camera']} could not be pruned: their deliveries were written"
        f" (`alpr replay --stage alert`, the alert worker) during each of {ALERT_BATCH_TRIES} tries: none of them"
        " deleted in that batch; the round ended there (the next round, or prune, tries again)"
    )


def _merge_frame_counts(pool: ConnectionPool) -> int:
    """The frames log's per-minute count changes merged into its counts (common/frame_counts.py's MERGE_COUNTS,
    migration 21), as the redactor and OCR pools' duties do: a log that ingest wrote with no redactor running kept
    every statement's changes unmerged, and `alpr status` read more of them the longer it ran. The merge is
    Postgres's own function (SECURITY DEFINER: it moves counts, and the pruner's role may do nothing else
    with them); returns the changes merged."""
    with pool.connection() as connection:
        row = connection.execute(MERGE_COUNTS).fetchone()
    return int(row[0]) if row else 0


SQLITE_PRUNED = {"plate_reads": "captured_at", "sightings": "last_seen"}
"""`alpr run`'s log: its tables of plate data and the time each row is pruned by (times stored as UTC
ISO 8601 text, `datetime.isoformat()`'s: compared as text with the cutoff in the same form; a cutoff in
SQLite's own form, a space for the T, kept a day's rows past it). Its audit records go by their own cutoff
(common/audit_retention.py)."""

SNAPSHOT_FOLDER = "sightings"
"""The folder `alpr run` writes its sightings' snapshots in (alpr/standalone_output.Snapshots)."""


def snapshot_to_delete(named: str) -> str | None:
    """Why the snapshot file a deleted sighting names is left where it is, or None where it is one `alpr
    run` wrote and may go: a regular .jpg file of this user's in a `sightings` folder, named by an absolute
    path whose links are this user's or root's, in folders only they may write (as `alpr run --out`
    accepts them: common/shared_folders.link_others_control). The log's text alone chose what was deleted:
    any .jpg anywhere, through another user's link, whoever's it was (a review)."""
    from common.shared_folders import link_others_control

    file = Path(named)
    if not file.is_absolute() or file.suffix != ".jpg":
        return "not a snapshot of `alpr run`'s (an absolute …/sightings/NAME.jpg)"
    if (link := link_others_control(file.parent)) is not None:
        return f"another user's link on its path ({link})"
    file = Path(os.path.realpath(file))
    if file.suffix != ".jpg" or file.parent.name != SNAPSHOT_FOLDER:
        return "not a snapshot of `alpr run`'s (an absolute …/sightings/NAME.jpg)"
    try:
        status = file.lstat()
    except FileNotFoundError:
        return None
    except OSError as error:
        return error.strerror or str(error)
    if not stat.S_ISREG(status.st_mode):
        return "not a regular file"
    if status.st_uid != os.geteuid():
        return f"another user's file (uid {status.st_uid})"
    return None


SQLITE_BATCH_ROWS = 5000
"""Rows of `alpr run`'s log a prune deletes per transaction (`prune_sqlite_log`): what a writer waits
for at most. The whole backlog in one transaction, as before, held the log's write lock 14.8 s for 2
million reads (a month of a busy camera, the first prune after an upgrade), and the running `alpr run`
failed its next write and ended (a review)."""

SQLITE_BATCH_PAUSE_S = 0.15
"""The prune's pause between two batches, the write lock free: longer than the longest sleep of
SQLite's busy handler between two tries of a waiting writer (100 ms), so a writer that waits for a batch
takes the lock before the next one; without it the prune's next BEGIN could win every time, and a
writer wait for many batches. 2 million reads: 400 batches, a minute of pauses: a cron job's."""


def prune_sqlite_log(
    path: Path,
    cutoff: datetime,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    checkpoint_tries_s: float | None = None,
    audit_before: datetime | None = None,
) -> Pruned:
    """Delete `alpr run`'s reads and sightings captured before `cutoff` (a sighting once all of it is),
    and the snapshot files of the sightings deleted (`snapshot_to_delete`: others are left and named in
    `Pruned.snapshots_left`, as are those that could not be deleted; the next file is tried all the same);
    or count them (`dry_run`). The log is opened as `alpr run` opens it (common/sqlite_log.connect_log:
    WAL mode, a long busy timeout) and the rows go in batches (`_delete_in_batches`), each committed on
    its own: a running `alpr run` writes between them, where it failed `database is locked` behind one
    transaction of the whole backlog (a review). A prune that fails part way keeps what it deleted; the
    snapshots of the sightings it deleted are deleted batch by batch, as each commits (once after the
    last batch, a prune killed between two left the snapshots of the batches done for good: the next
    prune never saw their rows; a review), and the next prune goes on. Its closing checkpoint is tried for
    `checkpoint_tries_s` (CHECKPOINT_TRIES_S when None); given up, the write-ahead log it left is named in
    `Pruned.old_pages_left` (what it deleted stays deleted), where it deleted rows: one that deleted none
    left no old pages (a WARNING only; it exited 1 with "the deleted rows' old pages may still be read" while
    an export read the log: a review). Its audit records made before `audit_before`
    go the same way, after them (None: kept)."""
    pruned = Pruned(dict.fromkeys((*SQLITE_PRUNED, *(AUDIT_TIMES if audit_before is not None else ())), 0))
    before = cutoff.astimezone(UTC).isoformat()
    connection = connect_log(path)
    try:
        connection.execute("PRAGMA secure_delete = ON")  # whatever SQLite was built with: a deleted row's bytes zeroed
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        pruned_by = [(table, column, before) for table, column in SQLITE_PRUNED.items()]
        if audit_before is not None:  # SQLite's own CURRENT_TIMESTAMP form, a space for the T
            pruned_by += [(table, column, sqlite_audit_before(audit_before)) for table, column in AUDIT_TIMES.items()]
        for table, column, older in pruned_by:
            if table not in tables:
                continue
            if dry_run:
                (count,) = connection.execute(f"SELECT count(*) FROM {table} WHERE {column} < ?", (older,)).fetchone()
                pruned.rows[table] = int(count)
            else:
                if table in AUDIT_TIMES:
                    sqlite_audit_prunable(connection, table)
                pruned.rows[table] = _delete_in_batches(
                    connection, table, column, older, lambda snapshots: _delete_snapshots(snapshots, pruned), stop
                )
                if stop is not None and stop.is_set():
                    pruned.stopped = True
                    break
        deleted = any(pruned.rows.values())  # nothing deleted: no old pages of this prune's (a WARNING only)
        if not dry_run and not _empty_write_ahead_log(connection, path, stop, checkpoint_tries_s, deleted):
            pruned.old_pages_left = str(path) if deleted else None
    finally:
        connection.close()
    return pruned


CHECKPOINT_TRY_MS = 100
"""How long one try of the prune's closing checkpoint waits for a reader to let the log go: SQLite's TRUNCATE
checkpoint holds the write lock while it waits, and `alpr run`'s writes wait with it."""

CHECKPOINT_TRIES_S = 30.0
"""How long the prune tries its closing checkpoint, SQLITE_BATCH_PAUSE_S between tries (the write lock free)."""


def _empty_write_ahead_log(
    connection: sqlite3.Connection,
    path: Path,
    stop: threading.Event | None = None,
    tries_s: float | None = None,
    deleted: bool = True,
) -> bool:
    """The pages the prune wrote copied into the log's file and its write-ahead log emptied (a TRUNCATE
    checkpoint): until then the file kept the deleted rows' pages as they were, plates and all, for as long as
    a running `alpr run` held the log open (SQLite checkpoints by itself only every 1,000 pages written, and
    empties the write-ahead log when its last connection closes; a review read a pruned plate back from the
    file). A checkpoint holds the write lock while it waits for readers: tried CHECKPOINT_TRY_MS at a time, the
    lock let go SQLITE_BATCH_PAUSE_S between tries, for `tries_s` (CHECKPOINT_TRIES_S when None) or until
    `stop` (waited for as a writer waits, 60 s, with an export reading the log it held `alpr run`'s writes
    that long: a review). Returns whether the write-ahead log was emptied; where a reader still holds the
    log's old state, a WARNING names the file and what to do (no plate), and the prune exits 1 (it exited
    0, the deleted plates still in the -wal file for as long as `alpr run` held it: a review); where it
    `deleted` no row, the WARNING says so (an earlier prune's old pages, if any, may be there)."""
    connection.execute(f"PRAGMA busy_timeout = {CHECKPOINT_TRY_MS}")
    deadline = time.monotonic() + (CHECKPOINT_TRIES_S if tries_s is None else tries_s)
    while True:
        (busy, _, _) = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy or time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            break
        time.sleep(SQLITE_BATCH_PAUSE_S)  # the write lock free: a writer waiting takes it now
    if busy and not deleted:
        log.warning("the SQLite log %s: nothing was past the retention, but a reader held it, so its write-ahead log"
                    " was not emptied: pages an earlier prune deleted, if any, may still be read from it and %s-wal"
                    " until SQLite's next checkpoint", path, path)  # fmt: skip
    elif busy:
        log.warning("the SQLite log %s was pruned, but a reader held it: the deleted rows' old pages may still be"
                    " read from it and %s-wal until SQLite's next checkpoint; run the prune again once `alpr run`"
                    " (or whatever reads the log) is stopped", path, path)  # fmt: skip
    return not busy


def _delete_in_batches(
    connection: sqlite3.Connection,
    table: str,
    column: str,
    before: str,
    deleted_snapshots: Callable[[list[str]], None],
    stop: threading.Event | None = None,
) -> int:
    """Delete the rows of `table` whose `column` is before `before`, SQLITE_BATCH_ROWS a transaction, in
    rowid order; returns how many went, and hands `deleted_snapshots` the snapshot paths of each batch's
    sightings once it is committed. Each batch's rows are found first, by a read that holds no writer back
    (WAL), from the rowid the last batch reached (the table is read once in all); then BEGIN IMMEDIATE
    takes the write lock (waiting as a writer does) and deletes them by rowid, each still past the cutoff,
    and the commit lets it go; SQLITE_BATCH_PAUSE_S later the next batch. A batch that searched for its
    own rows inside its transaction (DELETE ... WHERE rowid IN (SELECT ... LIMIT)) would hold the lock
    while it read past the rows kept: on the last batch, the whole table. `stop` set ends it before the
    next batch."""
    wanted = ", snapshot_path" if table == "sightings" else ""
    find = f"SELECT rowid{wanted} FROM {table} WHERE rowid > ? AND {column} < ? ORDER BY rowid LIMIT ?"
    delete = f"DELETE FROM {table} WHERE rowid = ? AND {column} < ?"
    deleted, reached = 0, 0
    while not (stop is not None and stop.is_set()) and (
        batch := connection.execute(find, (reached, before, SQLITE_BATCH_ROWS)).fetchall()
    ):
        reached = batch[-1][0]
        gone = []
        connection.execute("BEGIN IMMEDIATE")  # the write lock first, waited for as a writer waits for it
        with connection:  # committed, or rolled back on an error
            for row in batch:
                if connection.execute(delete, (row[0], before)).rowcount > 0:
                    gone.append(row)
        deleted += len(gone)  # committed: their snapshots may go
        deleted_snapshots([row[1] for row in gone if wanted and isinstance(row[1], str) and row[1]])
        if len(batch) < SQLITE_BATCH_ROWS:
            break
        time.sleep(SQLITE_BATCH_PAUSE_S)  # a writer waiting for the lock takes it now
    return deleted


NOT_ON_THIS_HOST = "its folder is not on this host: delete it where `alpr run` wrote it, or prune where the files are"
"""Why a snapshot a Postgres log names is left: `alpr run` wrote it on its own host (or container), and the
prune runs elsewhere (Compose's `prune` service holds no `alpr run` output)."""


def _delete_snapshots(snapshots: list[str], pruned: Pruned, elsewhere: bool = False) -> None:
    """Delete the snapshot files of the sightings deleted, but those `snapshot_to_delete` keeps, which go
    to `pruned.snapshots_left` with why, as do those that could not be deleted. With `elsewhere` (a
    Postgres log, which any host's `alpr run` may have written to), a file whose folder is missing here is
    named too (NOT_ON_THIS_HOST), not taken for one deleted already."""
    for snapshot in snapshots:
        if elsewhere and Path(snapshot).is_absolute() and not os.path.isdir(os.path.dirname(snapshot)):
            pruned.snapshots_left.append(f"{snapshot} ({NOT_ON_THIS_HOST})")
        elif (kept := snapshot_to_delete(snapshot) or _unlinked(snapshot)) is not None:
            pruned.snapshots_left.append(f"{snapshot} ({kept})")


def _unlinked(snapshot: str) -> str | None:
    """Delete the snapshot file (gone already: done); why not, where it could not be deleted."""
    try:
        os.unlink(os.path.realpath(snapshot))
    except FileNotFoundError:
        pass
    except OSError as error:
        return error.strerror or str(error)
    return None

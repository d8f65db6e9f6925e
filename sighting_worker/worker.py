"""The sighting pool's edge: a loop that, every ALPR_SIGHTING_POLL_S, takes each camera whose cursor
no other worker holds and, in one Postgres transaction with that camera's cursor row locked:

1. matches the camera's new confident reads (at least Settings.early_match_min_confidence, in log order)
   against the watch-lists at once: an early alert, the fast path (within a second of capture);
2. feeds the grouping core the reads captured before the camera's horizon — the capture time before
   which every frame is settled (redacted, its reads recorded or found lost), so grouping sees the
   reads in capture order although OCR workers log them in any order — and closes the sightings
   whose gap has passed by then;
3. logs the closed sightings (keyed by id: never twice), matches each voted plate against the
   watch-lists (no second alert for a pass already alerted on: one whose reads the tracker grouped into
   the sighting, sighting_worker/passes.py), and logs the alerts with their deliveries (the outbox);
4. saves the camera's cursor: how far it grouped, the last read matched early, the open tracks.

A worker killed mid-group loses only the open transaction: the next one starts again from the saved
cursor, so a sighting or an alert is never emitted twice nor lost. After the commit the new alerts'
delivery jobs are queued (the alert pool queues any whose job was lost)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import groupby
from typing import Literal

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout
from rq import Queue

from common import defaults
from common.alert_log import AlertLog, RaisedAlert, alerts_raised, insert_alerts
from common.alerts import PLATE_PATTERN, Alert
from common.db import autocommitting
from common.jobs import alert_job
from common.log_throttle import Throttle
from common.metrics import Metrics
from common.plate_text import plate_distance
from common.queues import enqueue
from common.sighting_log import (
    LoggedRead,
    SightingCursor,
    camera_ids,
    early_reads,
    frame_interval,
    grouping_horizon,
    insert_sightings,
    last_read_id,
    lock_cursor,
    reads_to_group,
    save_cursor,
    sighted_reads,
)
from common.types import Observation, Sighting
from common.watchlist import WatchListCache, WatchListUnavailableError, WatchMatch
from sighting_worker.core import SightingTracker, is_vehicle_pass
from sighting_worker.grouping import MAX_TEXT_DISTANCE, reach_widths
from sighting_worker.passes import Pass, Passes, forget_grouped, link_tracks, load_passes, passes_state, prune

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SightingSettings:
    """What the sighting pool is tuned by (from Settings, in alpr/wiring.py)."""

    gap_s: float
    settle_s: float
    read_min_confidence: float
    sighting_min_confidence: float
    max_distance: float
    history_s: float
    """How far back a camera's reads are grouped when the pool first meets it (the frames' lifetime)."""
    alert_repeat_s: float = 0.0
    """Reads of a listed plate closer in time than this (or the gap) are one pass: one alert."""

    def pass_gap_s(self, gap_s: float) -> float:
        """The longest time without a read of a listed plate within one pass alerted on, at a camera whose
        sighting gap is `gap_s` (the setting, or longer at a camera sampled slowly: `camera_gap_s`)."""
        return max(gap_s, self.alert_repeat_s)


@dataclass
class GroupResult:
    """What one camera's transaction did."""

    sightings: list[Sighting] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    late: dict[str, float] = field(default_factory=dict)
    """The late sightings among `sightings` (`SightingStage.group_late`), each with when its newest read was logged."""
    late_reads: int = 0
    """Reads taken that were captured behind the camera's cursor (logged late)."""
    late_by_s: float = 0.0
    """The longest any of them was logged after its capture."""


@dataclass
class EarlyScan:
    """Which logged reads the early match has taken. Read ids are drawn at insert and commits land in
    any order, so a read may become visible after higher ids were taken: each round reads the ids above
    `from_id` — the highest id taken EARLY_RESCAN_S ago — skipping those in `seen`, the ones taken since.
    Kept as the cursor's early_read_id (`from_id`) and in its state (`seen`, `marks`, `grouped`)."""

    from_id: int
    seen: set[int] = field(default_factory=set)
    marks: list[list[float]] = field(default_factory=list)
    """[Postgres's time, highest id taken by then], one per round that took reads, within the window."""
    took_reads: bool = False
    """Whether this round took any read."""
    grouped: set[int] = field(default_factory=set)
    """Reads the grouping took before this scan did (a backlog past SIGHTING_BATCH_READS a round, or a read
    committed between the two in one round): captured behind the cursor when taken, yet not logged late."""

    @classmethod
    def load(cls, from_id: int, state: dict[str, object]) -> EarlyScan:
        early = state.get("early")
        if not isinstance(early, dict):
            return cls(from_id)
        seen: set[int] = set()
        for entry in early.get("seen", []):  # runs of ids [first, last], or single ids (as saved before)
            first, last = (entry, entry) if isinstance(entry, int) else entry
            seen.update(range(int(first), int(last) + 1))
        grouped = {i for first, last in early.get("grouped", []) for i in range(int(first), int(last) + 1)}
        return cls(from_id, seen, [list(m) for m in early.get("marks", [])], grouped=grouped)

    def took(self, ids: list[int], now_s: float) -> None:
        """Note the reads taken this round (at `now_s`, Postgres's clock); move `from_id` up to the highest id
        taken a window ago."""
        self.took_reads = True
        self.seen.update(ids)
        self.marks.append([now_s, float(max(self.seen))])
        old = [m for m in self.marks if m[0] <= now_s - defaults.EARLY_RESCAN_S]
        if old:
            self.from_id = max(self.from_id, int(old[-1][1]))
            self.marks = [m for m in self.marks if m[0] > now_s - defaults.EARLY_RESCAN_S]
        self.seen = {i for i in self.seen if i > self.from_id}
        self.grouped = {i for i in self.grouped if i > self.from_id}

    def late(self, read: LoggedRead, behind_s: float) -> bool:
        """Whether a read this round took was logged late: captured before `behind_s`, the camera's cursor
        as the round found it, and not grouped already (`grouped`), so that no grouping will ever read it."""
        grouped = read.read_id in self.grouped
        self.grouped.discard(read.read_id)
        return read.observation.captured_at_s < behind_s and not grouped

    def grouping(self, ids: list[int]) -> None:
        """Note the reads the grouping took this round that this scan has not (`grouped`)."""
        self.grouped.update(i for i in ids if i > self.from_id and i not in self.seen)

    def state(self) -> dict[str, object]:
        """Saved in the cursor: `seen` as runs of consecutive ids [first, last] (a frame's reads are logged
        together): a car park's 14,500 ids, one by one, rewrote 250 KB of JSON every round."""
        state: dict[str, object] = {"seen": id_runs(self.seen), "taken": len(self.seen), "marks": self.marks}
        if self.grouped:
            state["grouped"] = id_runs(self.grouped)
        return state  # taken: for CAMERAS_WITH_WORK


def id_runs(ids: set[int]) -> list[list[int]]:
    """Ids as runs of consecutive ids [first, last]."""
    runs: list[list[int]] = []
    for read_id in sorted(ids):
        if runs and read_id == runs[-1][1] + 1:
            runs[-1][1] = read_id
        else:
            runs.append([read_id, read_id])
    return runs


@dataclass(frozen=True)
class RaisedBefore:
    """Where a camera's round finds the passes its cursor may have let go of: a pass alerted on is pruned
    once its reads lie well behind the cursor and no read met it for EARLY_RESCAN_S (passes.prune), so a
    read of it logged later still (a spool replayed after an outage, in batches) found none and raised a
    second alert (a fault review: two webhooks an hour late for one pass). A match captured before
    `behind_s`, the camera's cursor as the round found it, that no pass in the cursor holds is looked up
    among the camera's alerts (`SightingStage.raised_passes`)."""

    connection: psycopg.Connection
    camera_id: str
    behind_s: float


ALERT_ID_LABEL = b"alpr alert id v1"
"""What the job key is an HMAC key for, to make the key alert ids are keyed with (never a job's signature
nor the key's fingerprint: common/job_key.py)."""


def alert_id(kind: str, *parts: object, key: str | None = None) -> str:
    """A deterministic alert id: the same match always has the same id (idempotent), in every sighting
    worker holding the same job key. With the chain's job key (ALPR_JOB_KEY), an HMAC-SHA256 of the parts
    under a key made of it: a plain hash of a frame id, list and plate, logged and an RQ job's id, gave the
    listed plate to whoever knew the frame id, by trying each plate of its format offline (a review). Without
    a key, a SHA-256 of the parts, as before. Ids are kept as raised: an alert raised before a key was set
    keeps its id, and only a new match's id is compared (ON CONFLICT), so none of them changes."""
    message = "|".join(str(p) for p in parts).encode()
    if key is None:
        return f"{kind}-" + hashlib.sha256(message).hexdigest()[:32]
    id_key = hmac.new(key.encode(), ALERT_ID_LABEL, hashlib.sha256).digest()
    return f"{kind}-" + hmac.new(id_key, message, hashlib.sha256).hexdigest()[:32]


STATEMENT_LIMIT = f"SET LOCAL statement_timeout = {round(defaults.SIGHTING_STATEMENT_TIMEOUT_S * 1000)}"
"""Each statement of a camera's transaction, which holds its cursor locked, is bounded (not the watch-lists'
load, made outside any transaction, `SightingStage.refresh_watch`: a long list takes seconds, and holds no
camera)."""

FRAME_INTERVAL_REFRESH_S = 60.0
"""How often a sighting worker looks up a camera's frame interval again (`camera_frame_interval`)."""

ENDED_BY_POSTGRES = (psycopg.errors.QueryCanceled, psycopg.errors.IdleInTransactionSessionTimeout)
"""What Postgres raises on a camera's transaction it ended (a statement past SIGHTING_STATEMENT_TIMEOUT_S, a
worker stalled in it past SIGHTING_IDLE_IN_TRANSACTION_S); a session it ended otherwise (pg_terminate_backend,
AdminShutdown) or found closed is a `CameraSessionEndedError`."""


class CameraSessionEndedError(Exception):
    """A camera's connection closed under its transaction: the session ended by Postgres (AdminShutdown,
    pg_terminate_backend, an error read earlier and passed over), or Postgres gone, which the next camera's
    connection tells (PoolTimeout: the round ends there). That camera's failure alone: an OperationalError
    ('the connection is closed') counted the whole round as a Postgres outage, its other cameras not grouped."""


CLOCK_OFF_WARN_S = 1.0
"""A sighting worker whose host's clock is further than this off Postgres's warns at start (`compare_clocks`)."""

CURSOR_STATE_VERSION = 1
"""The form of the camera cursor's state this worker saves and reads (its `version`; none: saved before there
was one, in any earlier form, read as before). Raised with every change to the state's form: a worker refuses a
newer one (`NewerCursorStateError`). A worker of the form before each alerted pass kept its reads and tracks
read the new form, dropped what it did not know and saved the rest: beside a newer worker during an upgrade,
a car reading one character off a listed plate was alerted on twice a pass (a review)."""


class NewerCursorStateError(Exception):
    """A camera's cursor saved by a newer sighting worker (its state's version past CURSOR_STATE_VERSION, or not a
    number): the camera is not grouped here and its cursor not written."""

    def __init__(self, camera_id: str, found: object) -> None:
        self.camera_id, self.found = camera_id, repr(found)[:40]
        super().__init__(
            f"camera {camera_id}: its cursor was saved by a newer sighting worker (state version {self.found};"
            f" this worker knows versions up to {CURSOR_STATE_VERSION}): not grouped here, its cursor left as it is."
            " Run one version of the sighting worker: stop every earlier one before a newer one starts"
        )


def check_state_version(cursor: SightingCursor) -> None:
    """NewerCursorStateError when the cursor's state is of a version this worker does not know."""
    found = cursor.state.get("version", 0)
    if type(found) is not int or found > CURSOR_STATE_VERSION:
        raise NewerCursorStateError(cursor.camera_id, found)


ROUND_OUTCOMES = ("grouped", "camera_failed", "watchlist_unavailable")
"""How a sighting round ends (`alpr_sighting_rounds_total{outcome}`; deploy/prometheus-rules.yml alerts on
the last two)."""


class SightingStage:
    """The sighting pool's stage: one per worker, built by alpr/wiring.py."""

    def __init__(
        self,
        pool: ConnectionPool,
        watch: WatchListCache | None,
        receivers: list[str],
        alert_queue: Queue,
        metrics: Metrics,
        settings: SightingSettings,
        job_timeout_s: int,
    ) -> None:
        self.pool, self.watch, self.receivers, self.alert_queue = pool, watch, receivers, alert_queue
        self.metrics, self.settings, self.job_timeout_s = metrics, settings, job_timeout_s
        for outcome in ROUND_OUTCOMES:  # every series from 0: the first failure shows in increase()
            metrics.sighting_rounds.labels(outcome=outcome)
        if watch is not None:
            metrics.watchlist_refresh.set(watch.refresh_s)
        self.frame_intervals: dict[str, tuple[float, float | None]] = {}
        """Per camera, when its frame interval was last looked up (monotonic) and what it was."""
        self.said_at = time.monotonic()
        """When the camera's transaction last sent Postgres a statement `keep_alive` knows of (monotonic)."""
        self.clock_at: tuple[float, float] | None = None
        """Postgres's clock as the last camera's transaction began (its now()), and time.monotonic() then."""
        self.refused: dict[str, str] = {}
        """The cameras whose cursor a newer worker saved, with the version found (its ERROR logged once)."""
        self.late_told = Throttle()
        """Rounds that took reads logged late: told in a WARNING at most once a minute (`count_late`)."""
        self.late_untold = (0, 0.0)
        """The late reads since that WARNING, and the longest any was logged after its capture."""

    def postgres_now(self) -> float:
        """Now by Postgres's clock, as read at the camera's transaction's start (`group_camera`) and run on by
        the monotonic clock: what a sighting worker dates and judges by (a pass met, the early scan's marks,
        a camera's first cursor, the watch-list's as-of time), never its host's clock. A worker whose host
        clock ran 30 minutes ahead judged a listed car's entry, 10 minutes left, expired (no alert), and
        started the cameras it met first 18 minutes ahead: their reads never grouped, for good (a review)."""
        if self.clock_at is None:
            raise RuntimeError("Postgres's clock is read at a camera's transaction's start: none began yet")
        postgres_s, monotonic_s = self.clock_at
        return postgres_s + (time.monotonic() - monotonic_s)

    def compare_clocks(self) -> None:
        """A WARNING at start when this host's clock is more than CLOCK_OFF_WARN_S off Postgres's. The
        sighting pool goes by Postgres's clock; its log lines and others' by the host's."""
        try:
            with self.pool.connection(timeout=defaults.DB_ATTEMPT_S) as connection, autocommitting(connection):
                before_s = time.time()
                row = connection.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
                after_s = time.time()
        except (psycopg.Error, PoolTimeout) as error:  # a check only: the rounds wait Postgres out
            log.warning("could not compare this host's clock with Postgres's (%s)", type(error).__name__)
            return
        off_s = (before_s + after_s) / 2 - float(row[0]) if row else 0.0
        if abs(off_s) > CLOCK_OFF_WARN_S:
            log.warning("this host's clock is %+.1f s off Postgres's: the sighting worker dates and judges by"
                        " Postgres's clock, but set this host's right (NTP): other roles and the logs go by it",
                        off_s)  # fmt: skip

    def keep_alive(self, connection: psycopg.Connection) -> None:
        """Within a camera's transaction, between its statements: a statement (SELECT 1) when none was sent
        for SIGHTING_ALIVE_EVERY_S, so that Postgres's idle-in-transaction limit for the pool
        (SIGHTING_IDLE_IN_TRANSACTION_S) ends a frozen worker's transaction and never a busy one's: a backlog of
        5,000 reads matched against a national list of 100,000 plates is 3.5 ms a read, 17 s of Python."""
        now = time.monotonic()
        if now - self.said_at >= defaults.SIGHTING_ALIVE_EVERY_S:
            connection.execute("SELECT 1")
            self.said_at = now

    def camera_frame_interval(self, connection: psycopg.Connection, camera_id: str) -> float | None:
        """The camera's time between sampled frames (common/sighting_log.frame_interval), looked up again
        every FRAME_INTERVAL_REFRESH_S, not every round (every 0.2 s, for each camera with work: 62 ms a
        round at 200 cameras, to learn a setting that changes when an operator edits it); while unknown
        (a camera with under two frames logged), every FRAME_INTERVAL_UNKNOWN_S: it was looked up again
        every round, a query a round for each such camera with work."""
        looked_at, interval_s = self.frame_intervals.get(camera_id, (-math.inf, None))
        refresh_s = FRAME_INTERVAL_REFRESH_S if interval_s is not None else defaults.FRAME_INTERVAL_UNKNOWN_S
        if time.monotonic() - looked_at >= refresh_s:
            interval_s = frame_interval(connection, camera_id)
            self.frame_intervals[camera_id] = (time.monotonic(), interval_s)
        return interval_s

    def poll(self) -> GroupResult:
        """One round over every camera no other worker holds; what it did, all cameras together. The
        watch-lists are brought up to date first, every round (reads or none: their age is a metric,
        which a quiet night must not make look stale); while none has ever loaded, no camera is grouped.

        Each connection is waited for DB_ATTEMPT_S at most, as `write_through_outage`'s attempts are: a
        caller already waiting in the pool when Postgres comes back is not served (the pool's own
        attempt to connect gave up after RECONNECT_GIVE_UP_S; only a new request starts another), so
        with psycopg_pool's default 30 s wait a round begun during an outage held the worker up to
        30 s past Postgres's return, and the loop's back-off (up to 30 s) as much again: early alerts
        came up to a minute late (a review). The round then fails (PoolTimeout) and the loop tries
        again within DB_OUTAGE_BACKOFF_S (alpr/worker_command.py)."""
        total = GroupResult()
        try:
            with self.pool.connection(timeout=defaults.DB_ATTEMPT_S) as connection, autocommitting(connection):
                cameras = camera_ids(connection)
                self.refresh_watch(connection)
            outcome = self.group_cameras(cameras, total)
        except WatchListUnavailableError as error:  # the round rolled back: its reads wait, none taken unmatched
            log.error("sightings not grouped, %s: every camera's reads wait for it", error)
            outcome = "watchlist_unavailable"
        self.metrics.sighting_rounds.labels(outcome=outcome).inc()
        return total

    def refresh_watch(self, connection: psycopg.Connection) -> None:
        """The watch-lists brought up to date when due (WatchListCache.current), over `connection` in
        autocommit: at a round's start, and between cameras (a long round's later cameras match a list
        changed meanwhile), never within a camera's transaction. Its reads and the entries' build took an
        open transaction: a list that builds past SIGHTING_IDLE_IN_TRANSACTION_S (1.5 million entries, or
        the CPUs busy) had Postgres end the session — at the round's start an error the worker exited on,
        at each start again; within a camera's, the error passed over, that camera's next statement found
        the connection closed and the whole round was taken for an outage (a review)."""
        if self.watch is None:
            return
        with autocommitting(connection):
            self.watch.current(connection)
        self.metrics.watchlist_loaded.set(self.watch.loaded_wall_s or 0)

    @contextlib.contextmanager
    def camera_session(self, connection: psycopg.Connection) -> Iterator[psycopg.Connection]:
        """A camera's connection, the watch-lists refreshed over it first when due (`refresh_watch`); an
        OperationalError that leaves it closed is CameraSessionEndedError."""
        self.refresh_watch(connection)
        try:
            yield connection
        except psycopg.OperationalError as error:
            if connection.closed and not isinstance(error, ENDED_BY_POSTGRES):
                raise CameraSessionEndedError(type(error).__name__) from error
            raise

    def group_cameras(self, cameras: list[str], total: GroupResult) -> str:
        """Each camera's round, its sightings and alerts added to `total`; the round's outcome. A camera's
        transaction Postgres ended (its statement past SIGHTING_STATEMENT_TIMEOUT_S, or the worker stalled
        in it past SIGHTING_IDLE_IN_TRANSACTION_S: another worker may have grouped the camera since) is that
        camera's failure: nothing of it was committed, its connection is dropped or rolled back, and the
        camera is done again from its saved cursor. So is one whose session Postgres ended or closed
        (CameraSessionEndedError); Postgres gone, the next camera gets no connection (PoolTimeout)."""
        outcome = "grouped"
        for camera_id in cameras:
            try:
                result = self.group_camera(camera_id)
            except NewerCursorStateError as error:  # left to the newer worker; an ERROR once a camera and version
                log.log(logging.DEBUG if self.refused.get(camera_id) == error.found else logging.ERROR, "%s", error)
                self.refused[camera_id] = error.found
                outcome = "camera_failed"
                continue
            except (*ENDED_BY_POSTGRES, CameraSessionEndedError) as error:
                cause = str(error) if isinstance(error, CameraSessionEndedError) else type(error).__name__
                log.warning("camera %s: its transaction was ended by Postgres (%s), done again from its cursor",
                            camera_id, cause)  # fmt: skip
                outcome = "camera_failed"
                continue
            except (psycopg.OperationalError, PoolTimeout, WatchListUnavailableError):
                raise  # Postgres is down (the loop waits it out), or no list: every camera would fail alike
            except Exception as error:  # one camera's fault (a bad row, a bug) stops neither the others nor the pool
                # the error's text may quote a row (plate text): the type here, the whole only at DEBUG
                log.warning("camera %s: grouping failed (%s), tried again next round", camera_id, type(error).__name__)
                log.debug("camera %s: grouping failed", camera_id, exc_info=True)
                outcome = "camera_failed"
                continue
            total.sightings += result.sightings
            total.alerts += result.alerts
            total.late.update(result.late)
            total.late_reads += result.late_reads
            total.late_by_s = max(total.late_by_s, result.late_by_s)
        return outcome

    def group_camera(self, camera_id: str) -> GroupResult:
        result = GroupResult()
        with (
            self.pool.connection(timeout=defaults.DB_ATTEMPT_S) as connection,
            self.camera_session(connection),
            connection.transaction(),
        ):
            connection.execute(STATEMENT_LIMIT)
            self.said_at = time.monotonic()
            cursor = lock_cursor(connection, camera_id)
            if cursor is None:  # another worker is grouping this camera
                return result
            check_state_version(cursor)
            self.clock_at = (cursor.now_s, time.monotonic())
            first_met = cursor.grouped_until_s == 0
            if first_met:  # reads older than the frames' lifetime are history; only recent ones raise alerts
                cursor.grouped_until_s = cursor.now_s - self.settings.history_s
                cursor.early_read_id = last_read_id(connection, camera_id, defaults.EARLY_RESCAN_S)
            state = cursor.state
            tracker = (
                SightingTracker.from_state(state["tracker"], self.settings.gap_s)
                if "tracker" in state
                else SightingTracker(self.settings.gap_s)
            )
            set_right = self.set_cursor_right(cursor, tracker)
            tracker.set_frame_interval(camera_id, self.camera_frame_interval(connection, camera_id))
            gap_s = tracker.camera_gap_s(camera_id)  # longer than the setting at a camera sampled slowly
            alerted = load_passes(state.get("alerted", {}))
            early = EarlyScan.load(cursor.early_read_id, state)
            raised = RaisedBefore(connection, camera_id, cursor.grouped_until_s)
            late: list[LoggedRead] = []
            result.alerts += self.match_early(connection, camera_id, early, alerted, gap_s, raised, late)
            fed, result.sightings = self.group(connection, cursor, tracker, alerted, early)
            result.sightings += self.group_late(connection, camera_id, late, alerted, result)
            if not (first_met or set_right or fed or early.took_reads):
                return result  # nothing taken, nothing closed: the cursor stays (the next round looks again)
            insert_sightings(connection, [(s, None) for s in result.sightings])
            result.alerts += [
                a
                for s in result.sightings
                for a in self.match_sighting(s, alerted, gap_s, connection, raised, result.late.get(s.sighting_id))
            ]
            new_alerts = insert_alerts(connection, result.alerts, self.receivers)
            horizon_s, open_since_s = cursor.grouped_until_s, tracker.earliest_open_s()
            forget_grouped(alerted, horizon_s, tracker.open_sighting_ids())
            alerted = prune(
                alerted,
                min(horizon_s, open_since_s or horizon_s) - 2 * self.settings.pass_gap_s(gap_s),
                self.postgres_now() - defaults.EARLY_RESCAN_S - 2 * defaults.SIGHTING_POLL_S,
            )
            cursor.early_read_id = early.from_id
            cursor.state = {
                "version": CURSOR_STATE_VERSION,
                "tracker": tracker.to_state(),
                "early": early.state(),
                "alerted": passes_state(alerted),
            }
            save_cursor(connection, cursor)
        self.after_commit(result, new_alerts)
        if result.late_reads:
            self.count_late(camera_id, result)
        return result

    def set_cursor_right(self, cursor: SightingCursor, tracker: SightingTracker) -> bool:
        """Whether the cursor was found past Postgres's now, saved by a worker whose host clock ran ahead
        (before workers read Postgres's): none of the camera's reads captured before it was ever grouped, and
        its horizon would have stayed there until Postgres's clock caught up. It is set back as for a camera
        met for the first time (reads of the last `history_s` grouped), or to now while tracks are open (their
        reads are not grouped twice), with an ERROR."""
        if cursor.grouped_until_s <= cursor.now_s:
            return False
        ahead_s = cursor.grouped_until_s - cursor.now_s
        cursor.grouped_until_s = cursor.now_s - (0.0 if tracker.open_tracks else self.settings.history_s)
        log.error("camera %s: its cursor was %.0f s past Postgres's clock (saved by a sighting worker whose host"
                  " clock ran ahead); set back to %.0f s ago: its reads captured before that and not yet grouped"
                  " have no sighting", cursor.camera_id, ahead_s, cursor.now_s - cursor.grouped_until_s)  # fmt: skip
        return True

    def match_early(
        self,
        connection: psycopg.Connection,
        camera_id: str,
        early: EarlyScan,
        alerted: Passes,
        gap_s: float,
        raised: RaisedBefore | None = None,
        late_reads: list[LoggedRead] | None = None,
    ) -> list[Alert]:
        """Alerts on the camera's new confident reads that match a listed plate, once per pass; every
        new read of a listed plate, sure or not, widens the pass already alerted on that holds it
        (`holds`: a lookalike's only where the tracker would take it for that pass's car). A read logged
        behind the cursor is also held by a pass of the alerts already `raised` (`raised_passes`); those
        reads, sure or not, are added to `late_reads` (grouped apart: `group_late`)."""
        reads = early_reads(connection, camera_id, early.from_id, early.seen, limit=defaults.SIGHTING_BATCH_READS)
        if reads:
            early.took([read.read_id for read in reads], self.postgres_now())
        behind_s = raised.behind_s if raised is not None else -math.inf
        late = {read.read_id for read in reads if early.late(read, behind_s)}
        if late_reads is not None:
            late_reads += [read for read in reads if read.read_id in late]
        if self.watch is None:
            return []
        alerts = []
        for read in reads:
            self.keep_alive(connection)
            seen = read.observation
            if not re.fullmatch(PLATE_PATTERN, seen.text):
                continue
            sure = seen.confidence >= self.settings.read_min_confidence
            matches = self.watch.match_lists(
                seen.text, self.settings.max_distance, seen.captured_at_s, refresh=False, now_s=self.postgres_now()
            )
            for match in matches:
                if (
                    self.seen_in_pass(
                        alerted, match, seen.captured_at_s, seen.captured_at_s, gap_s, sure, seen, raised=raised
                    )
                    or not sure
                ):
                    continue
                identifier = alert_id("read", seen.frame_id, seen.plate_index, *self.key_parts(match), key=self.id_key)
                alerts.append(self.alert(match, seen, identifier, read.logged_at_s if read.read_id in late else None))
            self.hold_open(alerted, seen, {self.watch_key(m) for m in matches}, gap_s)
        return alerts

    def hold_open(self, alerted: Passes, seen: Observation, matched: set[str], gap_s: float) -> None:
        """A read too far from a listed plate to match it, but near enough for the tracker to take it for
        the same car (a misread, half the plate hidden), widens that plate's open pass, never alerting:
        a listed plate unread for longer than the gap is still one pass. As for the tracker, such a read
        continues the pass only within the sighting gap of it and where its car could have gone since
        the pass's newest read: widened within ALPR_ALERT_REPEAT_S and anywhere in view, an unlisted
        car two characters off parked in view (KPX4799 for KPX4721), read every 20 s, held the pass
        open for minutes, and the listed car's next pass raised no alert. Only the passes alerted on are
        looked at (a few), not the whole watch-list. `gap_s`: the camera's sighting gap (`camera_gap_s`)."""
        for key, spans in alerted.items():
            if key in matched or plate_distance(seen.text, key.split(":", 1)[1]) > MAX_TEXT_DISTANCE:
                continue
            for span in spans:
                if (
                    seen.captured_at_s - gap_s <= span.last_s
                    and span.first_s <= seen.captured_at_s + gap_s
                    and span.reaches(seen)
                ):
                    span.widen(seen.captured_at_s, seen.captured_at_s, self.postgres_now())
                    span.note(seen)

    def group(
        self,
        connection: psycopg.Connection,
        cursor: SightingCursor,
        tracker: SightingTracker,
        alerted: Passes,
        early: EarlyScan | None = None,
    ) -> tuple[int, list[Sighting]]:
        """Feed the reads up to the camera's horizon, in capture order; how many were fed, and the vehicle
        passes closed by then. Each track given a read of a pass alerted on is that pass's car from then on
        (`link_tracks`). The reads fed that the `early` scan has not taken yet are noted in it (`grouping`)."""
        camera_id, from_s = cursor.camera_id, cursor.grouped_until_s
        horizon_s = max(
            from_s, grouping_horizon(connection, camera_id, self.settings.settle_s, self.settings.history_s, from_s)
        )
        reads = reads_to_group(connection, camera_id, from_s, horizon_s, limit=defaults.SIGHTING_BATCH_READS)
        if len(reads) == defaults.SIGHTING_BATCH_READS:  # a backlog: this round, the whole capture times in it
            last_s = reads[-1].observation.captured_at_s
            earlier = [r for r in reads if r.observation.captured_at_s < last_s]
            if earlier:  # the reads at the last time (perhaps not all in the batch) wait for the next round
                reads, horizon_s = earlier, last_s
            else:  # the whole batch captured at one time: every read of that time, now
                horizon_s = last_s + 1e-6  # the next microsecond
                reads = reads_to_group(connection, camera_id, last_s, horizon_s, limit=None)
        if early is not None:
            early.grouping([read.read_id for read in reads])
        closed: list[Sighting] = []
        fed: list[Observation] = []
        went_to: list[str] = []
        for _, frame in groupby(reads, key=lambda r: r.observation.frame_id):
            self.keep_alive(connection)
            observations = [r.observation for r in frame]
            closed_now, joined = tracker.observe_frame_joined(observations)
            closed += closed_now
            fed += observations
            went_to += joined
        link_tracks(alerted, fed, went_to)
        closed += tracker.close_due(horizon_s)
        cursor.grouped_until_s = horizon_s
        return len(reads) + len(closed), [
            s for s in closed if is_vehicle_pass(s, self.settings.sighting_min_confidence)
        ]

    def group_late(
        self,
        connection: psycopg.Connection,
        camera_id: str,
        late: list[LoggedRead],
        alerted: Passes,
        result: GroupResult,
    ) -> list[Sighting]:
        """The vehicle passes among the reads taken this round that were captured behind the cursor, which
        the grouping, forward in capture time, never reads again (a spool replayed after an outage: its
        cars were in no sighting, `alpr search` and the sightings export did not find them, a fault review).
        They are grouped apart, in capture order, by a tracker of their own that closes every track at the
        round's end: late sightings (in `result.late`, with when their newest read was logged). A read a
        logged sighting holds already is left out (`sighted_reads`). A pass whose reads come over several
        rounds is a sighting per round's share (the tracker goes forward in capture time, and a late read of
        a sighting closed already cannot join it): a car seen twice rather than not at all. Counted in
        `result` (late_reads, late_by_s)."""
        if not late:
            return []
        result.late_reads = len(late)
        result.late_by_s = max(read.logged_at_s - read.observation.captured_at_s for read in late)
        sighted = sighted_reads(connection, camera_id, late)
        reads = sorted(
            (read for read in late if read.read_id not in sighted),
            key=lambda r: (r.observation.captured_at_s, r.observation.frame_id, r.observation.plate_index),
        )
        tracker = SightingTracker(self.settings.gap_s)
        tracker.set_frame_interval(camera_id, self.camera_frame_interval(connection, camera_id))
        closed: list[Sighting] = []
        fed: list[Observation] = []
        went_to: list[str] = []
        logged_at_s: dict[str, float] = {}
        for _, frame in groupby(reads, key=lambda r: r.observation.frame_id):
            self.keep_alive(connection)
            frame_reads = list(frame)
            closed_now, joined = tracker.observe_frame_joined([r.observation for r in frame_reads])
            closed += closed_now
            fed += [r.observation for r in frame_reads]
            went_to += joined
            for read, sighting_id in zip(frame_reads, joined, strict=True):
                logged_at_s[sighting_id] = max(logged_at_s.get(sighting_id, 0.0), read.logged_at_s)
        link_tracks(alerted, fed, went_to)
        closed += tracker.close_all()
        sightings = [s for s in closed if is_vehicle_pass(s, self.settings.sighting_min_confidence)]
        result.late.update((s.sighting_id, logged_at_s[s.sighting_id]) for s in sightings)
        return sightings

    def match_sighting(
        self,
        sighting: Sighting,
        alerted: Passes,
        gap_s: float,
        connection: psycopg.Connection | None = None,
        raised: RaisedBefore | None = None,
        late_logged_at_s: float | None = None,
    ) -> list[Alert]:
        """An alert per watch-list whose plate the sighting's voted plate matches, when it is sure
        enough, unless this pass was alerted on already for that list (an early alert on one of its
        reads). Entries are judged as of the car's first sighting (at the latest, as of the cache's window
        before now: WatchListCache.match_lists). A late sighting (its newest read logged at
        `late_logged_at_s`) raises a late alert."""
        if self.watch is None or sighting.confidence < self.settings.sighting_min_confidence:
            return []
        if not re.fullmatch(PLATE_PATTERN, sighting.plate):
            return []
        if connection is not None:
            self.keep_alive(connection)
        now_s = self.postgres_now()
        return [
            self.alert(
                match,
                sighting,
                alert_id("sighting", sighting.sighting_id, *self.key_parts(match), key=self.id_key),
                late_logged_at_s,
            )
            for match in self.watch.match_lists(
                sighting.plate, self.settings.max_distance, sighting.first_seen_s, refresh=False, now_s=now_s
            )
            if not self.seen_in_pass(
                alerted, match, sighting.first_seen_s, sighting.last_seen_s, gap_s, box=sighting, raised=raised
            )
        ]

    def seen_in_pass(
        self,
        alerted: Passes,
        match: WatchMatch,
        first_s: float,
        last_s: float,
        gap_s: float,
        alerting: bool = True,
        read: Observation | None = None,
        box: Sighting | None = None,
        raised: RaisedBefore | None = None,
    ) -> bool:
        """Whether a pass of this listed plate already alerted on holds [first_s, last_s] (`holds`) with a
        match as near; the pass is widened to hold it (and, given the `read`, notes where it was). With
        `alerting` (a sure read, or a sighting: this will be alerted on), a new pass begins where none
        holds it, and a nearer match in a pass is alerted on again (a misread KPX4727 raised the pass's
        alert for KPX4721: the exact reads after it confirm it instead of being silenced). Of the passes
        that hold it, one with a match as near is taken first: the listed car's exact sighting, closed
        while a lookalike's pass was open beside it, was otherwise alerted on again in the lookalike's.
        Reads may come in any order: a pass is the span of the reads it holds, in either direction. A
        sighting (its `box`) is held first of all by the passes whose reads the tracker grouped into it.
        One that none holds, captured behind the cursor, may be held by a pass the cursor let go of: those
        are found among the alerts `raised` (`raised_passes`) and kept again."""
        passes = alerted.setdefault(self.watch_key(match), [])
        holding = [
            span
            for span in passes
            if (box is not None and box.sighting_id in span.tracks)
            or self.holds(span, match.distance, first_s, last_s, gap_s, read, box)
        ]
        if not holding and alerting and raised is not None and first_s < raised.behind_s:
            holding = self.raised_passes(raised, match, passes, first_s, last_s, gap_s, read, box)
            passes += holding
        if holding:
            span = min(holding, key=lambda held: held.nearest > match.distance)  # as near first (a stable min)
            span.widen(first_s, last_s, self.postgres_now())
            if read is not None:
                span.note(read)
            if alerting and match.distance < span.nearest:
                span.nearest = match.distance
                return False
            return True
        if alerting:
            passes.append(Pass(first_s, last_s, self.postgres_now(), match.distance))
            if read is not None:
                passes[-1].note(read)
        return False

    def raised_passes(
        self,
        raised: RaisedBefore,
        match: WatchMatch,
        passes: list[Pass],
        first_s: float,
        last_s: float,
        gap_s: float,
        read: Observation | None,
        box: Sighting | None,
    ) -> list[Pass]:
        """The passes of the match's watch-list entry that the camera alerted on already (the alerts log,
        within the pass gap of [first_s, last_s]) and that hold the match (`holds`), each remade from its
        alert: its capture time, its match's distance and its read's box. An alert is the entry's when its
        id is the one this entry's match would have been given (the list is in no alert's body); one
        within a pass still kept is that pass's, which `seen_in_pass` asked already."""
        within_s = self.settings.pass_gap_s(gap_s)
        found = []
        for alert in alerts_raised(
            raised.connection, raised.camera_id, match.entry.plate, first_s - within_s, last_s + within_s
        ):
            if not self.entrys_alert(alert, match) or any(p.first_s <= alert.captured_at_s <= p.last_s for p in passes):
                continue
            span = Pass(alert.captured_at_s, alert.captured_at_s, self.postgres_now(), alert.distance)
            if alert.box_xyxy is not None:
                x1, y1, x2, y2 = alert.box_xyxy
                span.points = [[alert.captured_at_s, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1]]
            if self.holds(span, match.distance, first_s, last_s, gap_s, read, box):
                found.append(span)
        return found

    def entrys_alert(self, alert: RaisedAlert, match: WatchMatch) -> bool:
        """Whether the `alert` was raised on the match's watch-list entry (list and plate): its id is the
        one `alert_id` gives that entry (with this worker's key; one raised under another key is not
        recognised, and the match alerts again: the safer failure)."""
        parts = self.key_parts(match)
        if alert.kind == "sighting":
            return alert.alert_id == alert_id("sighting", alert.sighting_id, *parts, key=self.id_key)
        return any(
            alert.alert_id == alert_id("read", alert.frame_id, index, *parts, key=self.id_key)
            for index in alert.plate_indexes
        )

    def holds(
        self,
        span: Pass,
        distance: float,
        first_s: float,
        last_s: float,
        gap_s: float,
        read: Observation | None,
        box: Sighting | None = None,
    ) -> bool:
        """Whether a match at `distance` of the listed plate, [first_s, last_s] (a read, or a sighting
        without its `read`), is the car of the pass `span`, at a camera whose sighting gap is `gap_s`:

        - exact reads in a pass of exact matches: within the pass gap (ALPR_ALERT_REPEAT_S, 60 s),
          wherever in view (the listed plate is one car);
        - a lookalike (distance > 0: one character off) beside exact matches, or an exact read beside
          lookalikes: only where the tracker would join them (a misread of one car), within the sighting
          gap of the pass and where its car could be at the read's capture time (`Pass.reaches`); a
          sighting whose track held none of the pass's reads (those are held by `seen_in_pass` itself),
          where its best read's box lies within reach of the pass's newest read at the sighting's time
          nearest it;
        - a lookalike's read in a pass of lookalikes: within the pass gap where that pass's car could be
          (a lookalike parked in view, read every 20 s, is one pass and one alert, not one a read).

        Before, any match within the pass gap widened the pass, anywhere in view: an unlisted fleet car
        KPX4727 parked beside the road, read every 20 s, held the listed KPX4721's pass open, and the
        listed car's next pass, five minutes on, raised no alert (its reads logged last first: the first
        pass lost its alert instead). A lookalike's sure read that no pass holds begins its own pass (an
        alert, as it raises with no listed car about); an unsure one is passed over."""
        exact = distance == 0 and span.nearest == 0
        lookalikes = distance > 0 and span.nearest > 0 and read is not None
        within_s = self.settings.pass_gap_s(gap_s) if exact or lookalikes else gap_s
        if not (first_s - within_s <= span.last_s and span.first_s <= last_s + within_s):
            return False
        if exact:
            return True
        if read is None and box is not None and span.points:  # a sighting: by its best read's box
            x1, y1, x2, y2 = box.best_box_xyxy
            newest_s, x, y, width_px = span.points[-1]
            at_s = min(max(newest_s, first_s), last_s)  # its time nearest the pass's newest read
            allowed = reach_widths(at_s - newest_s)
            return math.dist(((x1 + x2) / 2, (y1 + y2) / 2), (x, y)) <= allowed * max(width_px, x2 - x1, 1.0)
        return read is None or span.reaches(read)

    @property
    def id_key(self) -> str | None:
        """The chain's job key, which this stage's alert jobs are signed with: alert ids are keyed with it."""
        return getattr(self.alert_queue, "job_key", None)

    @staticmethod
    def key_parts(match: WatchMatch) -> tuple[str, str]:
        return match.entry.list_name, match.entry.plate

    def watch_key(self, match: WatchMatch) -> str:
        return ":".join(self.key_parts(match))

    @staticmethod
    def alert(
        match: WatchMatch, seen: Observation | Sighting, identifier: str, late_logged_at_s: float | None = None
    ) -> Alert:
        """The alert on a read (`read`: early) or a closed sighting (`sighting`) that matched; with
        `late_logged_at_s`, a late one (`Alert.late`): its reads logged then, after the camera was grouped
        past their capture time."""
        kind: Literal["read", "sighting"]
        if isinstance(seen, Observation):
            kind, plate, at_s, frame_id, sighting_id = "read", seen.text, seen.captured_at_s, seen.frame_id, None
        else:
            kind, plate, at_s, frame_id = "sighting", seen.plate, seen.first_seen_s, seen.best_frame_id
            sighting_id = seen.sighting_id
        return Alert(
            alert_id=identifier, camera_id=seen.camera_id, watch_plate=match.entry.plate, reason=match.entry.reason,
            distance=match.distance, confidence=seen.confidence, kind=kind, plate=plate, captured_at_s=at_s,
            frame_id=frame_id, sighting_id=sighting_id, late=late_logged_at_s is not None, logged_at_s=late_logged_at_s,
        )  # fmt: skip

    def count_late(self, camera_id: str, result: GroupResult) -> None:
        """Count the camera's reads logged late (committed), and say so in a WARNING at most once a minute:
        its cars' sightings and alerts are an outage's backlog, not traffic now. Never the plates."""
        self.metrics.late_reads.labels(camera=self.metrics.camera(camera_id)).inc(result.late_reads)
        reads, late_by_s = self.late_untold
        self.late_untold = (reads + result.late_reads, max(late_by_s, result.late_by_s))
        if self.late_told.note():
            reads, late_by_s = self.late_untold
            log.warning(
                "%d read(s) logged after their camera had been grouped past their capture time (camera %s lately,"
                " up to %.0f s after capture: a spool replayed?): grouped apart into late sightings, their alerts"
                " marked late (alpr_sighting_late_reads_total)", reads, camera_id, late_by_s,
            )  # fmt: skip
            self.late_untold = (0, 0.0)

    def after_commit(self, result: GroupResult, new_alerts: list[Alert]) -> None:
        """Count what was logged; queue the new alerts' deliveries (the alert pool re-queues any lost)."""
        now = self.postgres_now()
        for sighting in result.sightings:
            self.metrics.sightings_closed.labels(camera=self.metrics.camera(sighting.camera_id)).inc()
            self.metrics.reads_per_sighting.observe(sighting.reads)
            if sighting.sighting_id not in result.late:  # late ones are counted as late reads
                self.metrics.sighting_delay_seconds.observe(max(0.0, now - sighting.last_seen_s))
        queued: list[tuple[str, str]] = []
        not_queued: list[tuple[str, str]] = []
        for alert in new_alerts:
            self.metrics.alerts_raised.labels(kind=alert.kind).inc()
            for receiver in self.receivers:
                if not_queued:  # Redis failed just now: the rest are not tried (a Redis that never answers
                    not_queued.append((alert.alert_id, receiver))  # cost its whole timeout for each)
                    continue
                try:
                    enqueue(self.alert_queue, alert_job(alert.alert_id, receiver, 1), self.job_timeout_s)
                    queued.append((alert.alert_id, receiver))
                except Exception as error:  # Redis down: the alert pool queues it from the outbox
                    log.warning("could not queue alert %s for %s: %s", alert.alert_id, receiver, error)
                    not_queued.append((alert.alert_id, receiver))
        try:  # not queued again by the alert pool before ALERT_REQUEUE_AFTER_S (common/alert_log.INSERT_DELIVERY)
            AlertLog(self.pool, 0.0).queued(queued)
        except Exception as error:  # Postgres away: the alert pool queues a second job, which finds it claimed
            log.warning("could not mark %d alert deliveries as queued: %s", len(queued), type(error).__name__)
        if len(not_queued) > 1:
            log.warning(
                "%d more alert deliveries not queued after that: the alert pool queues them", len(not_queued) - 1
            )
        try:  # due at the alert pool's next round once Redis is back, not 30 s later
            AlertLog(self.pool, 0.0).not_queued(not_queued)
        except Exception as error:  # Postgres away too: the requeue delay brings them
            log.warning("could not mark %d alert deliveries as not queued: %s", len(not_queued), type(error).__name__)

"""The sighting pool's edge: a loop that, every ALPR_SIGHTING_POLL_S, takes each camera no other sighting
worker has claimed and, in one Postgres transaction with that camera's cursor row locked (a row another
session holds fails the camera's round, named in an ERROR: sighting_worker/camera_claim.py):

1. matches the camera's new confident reads (at least Settings.early_match_min_confidence, in log order)
   against the watch-lists at once: an early alert, the fast path (within a second of capture)
   (sighting_worker/matching.py; which reads the scan took: sighting_worker/early_scan.py);
2. feeds the grouping core the reads captured before the camera's horizon — the capture time before
   which every frame is settled (redacted, its reads recorded or found lost), so grouping sees the
   reads in capture order although OCR workers log them in any order (those the early scan has not taken
   yet are matched first, as in step 1) — and closes the sightings whose gap has passed by then; reads
   logged late, captured behind the cursor, are grouped apart, their tracks held open across rounds
   until no late read joined them for LATE_SIGHTING_HOLD_S (sighting_worker/late_reads.py, late_tracks.py);
   each open track that took reads and has dwelt in view (its reads spanning OPEN_TRACK_DWELL_S), its
   running vote as sure as a sighting's must be and read exactly by OPEN_TRACK_MIN_READS of them, is
   matched exactly against the watch-lists at once (a listed car parked or queued, read under the early
   scan's threshold, is alerted on while it stands there, not once it has gone: WatchMatcher.match_open);
3. logs the closed sightings (keyed by id: never twice), matches each voted plate against the
   watch-lists (no second alert for a pass already alerted on: one whose reads the tracker grouped into
   the sighting, or whose track was alerted on while open, sighting_worker/passes.py), and logs the alerts
   with their deliveries (the outbox);
4. saves the camera's cursor: how far it grouped, the last read matched early, the open tracks, the late
   tracks held (its state's version, 1 while none is held, which a worker of the earlier release reads:
   sighting_worker/cursor_state.py).

A worker killed mid-group loses only the open transaction: the next one starts again from the saved
cursor, so a sighting or an alert is never emitted twice nor lost. After the commit the new alerts'
delivery jobs are queued (the alert pool queues any whose job was lost)."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Mapping
from itertools import groupby

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout
from rq import Queue

from common import defaults
from common.alert_log import AlertLog
from common.alert_raising import insert_alerts
from common.alerts import Alert, ListFilter, routed
from common.db import autocommitting
from common.jobs import alert_job
from common.log_throttle import Throttle
from common.metrics import Metrics
from common.queues import enqueue
from common.sighting_log import (
    LoggedRead,
    SightingCursor,
    camera_ids,
    frame_interval,
    insert_sightings,
    last_read_id,
    reads_to_group,
    reads_to_horizon,
    save_cursor,
)
from common.types import Observation, Sighting
from common.watchlist_cache import WatchListCache, WatchListUnavailableError
from sighting_worker.camera_claim import ENDED_BY_POSTGRES, CameraSessionEndedError, CursorClaims, CursorHeldError
from sighting_worker.core import SightingTracker, is_vehicle_pass
from sighting_worker.cursor_state import NewerCursorStateError, check_state_version, saved_state
from sighting_worker.early_scan import EarlyScan
from sighting_worker.late_reads import RaisedBefore, close_late, group_late
from sighting_worker.late_tracks import HeldLate
from sighting_worker.matching import WatchMatcher
from sighting_worker.passes import Passes, forget_grouped, link_tracks, load_passes, passes_state, prune
from sighting_worker.stage_types import GroupResult, SightingSettings

log = logging.getLogger(__name__)


FRAME_INTERVAL_REFRESH_S = 60.0
"""How often a sighting worker looks up a camera's frame interval again (`camera_frame_interval`)."""

CLOCK_OFF_WARN_S = 1.0
"""A sighting worker whose host's clock is further than this off Postgres's warns at start (`compare_clocks`)."""

ROUND_OUTCOMES = ("grouped", "camera_failed", "watchlist_unavailable")
"""How a sighting round ends (`alpr_sighting_rounds_total{outcome}`; deploy/prometheus-rules.yml alerts on
the last two)."""


class SightingStage:
    """The sighting pool's stage: one per worker, built by alpr/wiring.py."""

    def __init__(
        self,
        pool: ConnectionPool,
        watch: WatchListCache | None,
        receivers: Mapping[str, ListFilter],
        alert_queue: Queue,
        metrics: Metrics,
        settings: SightingSettings,
        job_timeout_s: int,
    ) -> None:
        self.pool, self.watch, self.receivers, self.alert_queue = pool, watch, receivers, alert_queue
        self.metrics, self.settings, self.job_timeout_s = metrics, settings, job_timeout_s
        for own in (metrics.reads_per_sighting, metrics.sighting_delay_seconds, metrics.alerts_unrouted):
            own.export()  # this role's own, at 0 from the start (common/metrics_registry.RoleMetric)
        self.unrouted_told: dict[str, Throttle] = {}
        """Per watch-list whose alerts no receiver takes: when that was last told (`unrouted`)."""
        for outcome in ROUND_OUTCOMES:  # every series from 0: the first failure shows in increase()
            metrics.sighting_rounds.labels(outcome=outcome)
        if watch is not None:  # exported by the sighting pool alone; 0 till a list loads (AlprWatchListStale)
            metrics.watchlist_refresh.set(watch.refresh_s)
            metrics.watchlist_loaded.set(watch.loaded_wall_s or 0)
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
        self.claims = CursorClaims()
        """The cameras' claims, and the cameras whose cursor another session holds (sighting_worker/camera_claim.py)."""
        self.matcher = WatchMatcher(watch, settings, alert_queue, self.postgres_now, self.keep_alive)
        """The watch-list matching of each camera's reads and sightings (sighting_worker/matching.py)."""

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
        """One round over every camera no other sighting worker has claimed; what it did, all cameras together. The
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
                cameras = camera_ids(connection, *self.passes_due_after_s())
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
        (CameraSessionEndedError), and one whose cursor row another session holds (CursorHeldError); Postgres
        gone, the next camera gets no connection (PoolTimeout)."""
        outcome = "grouped"
        for camera_id in cameras:
            try:
                result = self.group_camera(camera_id)
            except NewerCursorStateError as error:  # left to the newer worker; an ERROR once a camera and version
                log.log(logging.DEBUG if self.refused.get(camera_id) == error.found else logging.ERROR, "%s", error)
                self.refused[camera_id] = error.found
                outcome = "camera_failed"
                continue
            except CursorHeldError as error:  # a DBA's session left open on its row: an ERROR naming it
                self.claims.report(self.pool, error)
                outcome = "camera_failed"
                continue
            except (*ENDED_BY_POSTGRES, CameraSessionEndedError) as error:
                cause = str(error) if isinstance(error, CameraSessionEndedError) else type(error).__name__
                log.warning("camera %s: its transaction was ended by Postgres (%s), done again from its cursor",
                            camera_id, cause)  # fmt: skip
                outcome = "camera_failed"
                continue
            except (psycopg.OperationalError, PoolTimeout, psycopg.errors.ReadOnlySqlTransaction,
                    WatchListUnavailableError):  # fmt: skip
                raise  # Postgres down or read-only (the loop waits it out), or no list: every camera would fail alike
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
            self.said_at = time.monotonic()
            cursor = self.claims.claim(connection, camera_id)  # with the transaction's statement timeout
            if cursor is None:  # another sighting worker is grouping this camera
                return result
            check_state_version(cursor)
            self.clock_at = (cursor.now_s, time.monotonic())
            first_met = cursor.grouped_until_s == 0
            if first_met:  # reads older than the frames' lifetime are history; only recent ones raise alerts
                cursor.grouped_until_s = cursor.now_s - self.settings.history_s
                cursor.early_read_id = last_read_id(connection, camera_id, defaults.EARLY_RESCAN_S)
            state, trusted = cursor.state, self.settings.sighting_min_confidence
            tracker = (
                SightingTracker.from_state(state["tracker"], self.settings.gap_s, trusted_confidence=trusted)
                if "tracker" in state
                else SightingTracker(self.settings.gap_s, trusted_confidence=trusted)
            )
            set_right = self.set_cursor_right(cursor, tracker)
            tracker.set_frame_interval(camera_id, self.camera_frame_interval(connection, camera_id))
            gap_s = tracker.camera_gap_s(camera_id)  # longer than the setting at a camera sampled slowly
            alerted = load_passes(state.get("alerted", {}))
            early = EarlyScan.load(cursor.early_read_id, state)
            held = HeldLate.load(state)
            raised = RaisedBefore(connection, camera_id, cursor.grouped_until_s)
            reads, late = self.matcher.take_reads(connection, camera_id, early, raised)
            late_tracks = group_late(
                connection, camera_id, [read for read in reads if read.read_id in late], held, alerted, result,
                self.settings, self.camera_frame_interval, self.keep_alive, self.postgres_now(),
            )  # fmt: skip
            result.alerts += self.matcher.match_early(connection, reads, late, alerted, gap_s, raised, late_tracks)
            to_group, horizon_s = self.reads_due(connection, cursor)
            taken = early.grouping(to_group)  # not taken by the early scan yet: matched before they are grouped
            result.alerts += self.matcher.match_early(connection, taken, set(), alerted, gap_s, raised)
            fed, result.sightings, joined = self.group(connection, cursor, tracker, alerted, to_group, horizon_s)
            dwell_s = defaults.OPEN_TRACK_DWELL_S  # a car parked or queued in view: matched while it stands there
            opened = tracker.open_sightings(joined, self.matcher.matched_open(camera_id), dwell_s)
            result.alerts += self.matcher.match_open(connection, camera_id, opened, alerted, gap_s, raised)
            result.sightings += close_late(held, result, self.settings, self.postgres_now())
            if not (first_met or set_right or fed or early.took_reads or held.changed):
                alerted = self.passes_kept(alerted, cursor, tracker, held, gap_s)  # a quiet camera's too
                if passes_state(alerted) == state.get("alerted", {}):
                    return result  # nothing taken, closed or let go of: the cursor stays (the next round looks again)
            insert_sightings(connection, [(s, None) for s in result.sightings])
            result.alerts += [
                a
                for s in result.sightings
                for a in self.matcher.match_sighting(
                    s, alerted, gap_s, connection, raised, result.late.get(s.sighting_id)
                )
            ]
            new_alerts = insert_alerts(connection, result.alerts, self.receivers)
            alerted = self.passes_kept(alerted, cursor, tracker, held, gap_s)
            cursor.early_read_id = early.from_id
            cursor.state = saved_state(
                {"tracker": tracker.to_state(), "early": early.state(), "alerted": passes_state(alerted)},
                held.state() if held.held else None,  # version 1 while none is held: a rollback reads it
            )
            save_cursor(connection, cursor)
        self.matcher.opened(camera_id, tracker.open_sighting_ids())
        self.after_commit(result, new_alerts)
        if result.late_reads:
            self.count_late(camera_id, result)
        return result

    def passes_due_after_s(self) -> tuple[float, float]:
        """How long after its last read, and after a read last met it, a pass is let go of at the soonest
        (`passes_kept`, at a camera sampled fast enough for the sighting gap): a round visits a camera whose
        cursor holds one (common/sighting_log.CAMERAS_WITH_WORK)."""
        kept_s = self.settings.settle_s + 2 * self.settings.pass_gap_s(self.settings.gap_s)
        return kept_s, defaults.EARLY_RESCAN_S + 2 * defaults.SIGHTING_POLL_S

    def passes_kept(
        self, alerted: Passes, cursor: SightingCursor, tracker: SightingTracker, held: HeldLate, gap_s: float
    ) -> Passes:
        """The passes alerted on that a read may still join (sighting_worker/passes.prune), their reads and
        tracks grouped let go of (`forget_grouped`): a pass goes once it ended twice the pass gap (at most
        ALPR_ALERT_REPEAT_S's, which the settings keep under half the retention) before the camera's horizon
        and its earliest open track, untouched by a read for EARLY_RESCAN_S, its car's track closed. Done in
        every round, one that took no reads too: a quiet or retired camera's cursor kept a listed plate and
        its car's track for as long as it stayed so (a review)."""
        horizon_s, open_since_s = cursor.grouped_until_s, tracker.earliest_open_s()
        forget_grouped(alerted, horizon_s, tracker.open_sighting_ids() | held.open_ids())
        return prune(
            alerted,
            min(horizon_s, open_since_s or horizon_s) - 2 * self.settings.pass_gap_s(gap_s),
            self.postgres_now() - defaults.EARLY_RESCAN_S - 2 * defaults.SIGHTING_POLL_S,
        )

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

    def reads_due(self, connection: psycopg.Connection, cursor: SightingCursor) -> tuple[list[LoggedRead], float]:
        """The camera's reads to group this round, in capture order, and the horizon they are grouped to:
        captured before the camera's horizon, at most SIGHTING_BATCH_READS (a backlog: whole capture times)."""
        camera_id, from_s = cursor.camera_id, cursor.grouped_until_s
        settle_s, stale_s = self.settings.settle_s, self.settings.history_s
        horizon_s, reads = reads_to_horizon(
            connection, camera_id, settle_s, stale_s, from_s, defaults.SIGHTING_BATCH_READS
        )
        if len(reads) == defaults.SIGHTING_BATCH_READS:  # a backlog: this round, the whole capture times in it
            last_s = reads[-1].observation.captured_at_s
            earlier = [r for r in reads if r.observation.captured_at_s < last_s]
            if earlier:  # the reads at the last time (perhaps not all in the batch) wait for the next round
                reads, horizon_s = earlier, last_s
            else:  # the whole batch captured at one time: every read of that time, now
                horizon_s = last_s + 1e-6  # the next microsecond
                reads = reads_to_group(connection, camera_id, last_s, horizon_s, limit=None)
        return reads, horizon_s

    def group(
        self,
        connection: psycopg.Connection,
        cursor: SightingCursor,
        tracker: SightingTracker,
        alerted: Passes,
        reads: list[LoggedRead],
        horizon_s: float,
    ) -> tuple[int, list[Sighting], set[str]]:
        """Feed the `reads` (`reads_due`), in capture order, and move the cursor to `horizon_s`; how many were
        fed, the vehicle passes closed by then, and the tracks the reads went to (by their sighting's id).
        Each track given a read of a pass alerted on is that pass's car from then on (`link_tracks`)."""
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
        return (
            len(reads) + len(closed),
            [s for s in closed if is_vehicle_pass(s, self.settings.sighting_min_confidence)],
            set(went_to),
        )

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

    def unrouted(self, alert: Alert) -> None:
        """An alert no receiver takes: every receiver names `lists:` and none names its list (a slip of the
        case, `Stolen` for `stolen`, or a list added to the watch-lists and to no receiver). Logged, as every
        alert is, and counted (alpr_alerts_unrouted_total, AlprAlertsUnrouted); told once per list a spell."""
        self.metrics.alerts_unrouted.inc()
        watch_list = alert.list_name or "(unnamed: an earlier sighting worker's)"
        if self.unrouted_told.setdefault(watch_list, Throttle(defaults.UNROUTED_LOG_INTERVAL_S)).note():
            log.warning("alerts of the watch-list %r go to no receiver: no receiver's lists: names it (the alert is"
                        " logged in the alerts table only)", watch_list)  # fmt: skip

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
            if self.receivers and not routed(alert, self.receivers):
                self.unrouted(alert)
            for receiver in routed(alert, self.receivers):
                if not_queued:  # Redis failed just now: the rest are not tried (a Redis that never answers
                    not_queued.append((alert.alert_id, receiver))  # cost its whole timeout for each)
                    continue
                try:
                    enqueue(self.alert_queue, alert_job(alert.alert_id, receiver, 1), self.job_timeout_s)
                    queued.append((alert.alert_id, receiver))
                except Exception as error:  # Redis down: the alert pool queues it from the outbox
                    log.warning("could not queue alert %s for %s: %s", alert.alert_id, receiver, error)
                    not_queued.append((alert.alert_id, receiver))
        try:  # not queued again by the alert pool before ALERT_REQUEUE_AFTER_S (common/alert_raising.INSERT_DELIVERY)
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

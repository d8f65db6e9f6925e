"""One camera's round of the sighting pool (sighting_worker/worker.py's steps 1 to 4), in one Postgres
transaction with the camera's cursor row locked: its reads matched early, grouped up to the camera's
horizon, its open tracks matched, its sightings logged and matched, its passes kept, its cursor saved;
and what that round goes by: Postgres's clock, a statement to keep a busy transaction alive, the camera's
frame interval, the watch-lists refreshed between cameras. CameraRound is a base of SightingStage, whose
__init__ sets the state declared here."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from itertools import groupby

import psycopg
from psycopg_pool import ConnectionPool

from common import defaults
from common.alert_raising import insert_alerts
from common.db import autocommitting
from common.metrics import Metrics
from common.sighting_log import (
    LoggedRead,
    SightingCursor,
    frame_interval,
    insert_sightings,
    last_read_id,
    reads_to_group,
    reads_to_horizon,
    save_cursor,
)
from common.types import Observation, Sighting
from common.watchlist_cache import WatchListCache
from sighting_worker.alert_hand_off import AlertHandOff
from sighting_worker.camera_claim import ENDED_BY_POSTGRES, CameraSessionEndedError, CursorClaims
from sighting_worker.core import SightingTracker, is_vehicle_pass
from sighting_worker.cursor_state import check_state_version, saved_state
from sighting_worker.early_scan import EarlyScan
from sighting_worker.late_reads import RaisedBefore, close_late, group_late
from sighting_worker.late_tracks import HeldLate
from sighting_worker.matching import WatchMatcher
from sighting_worker.passes import Passes, forget_grouped, link_tracks, load_passes, passes_state, prune
from sighting_worker.stage_types import GroupResult, SightingSettings

log = logging.getLogger(__name__)


FRAME_INTERVAL_REFRESH_S = 60.0
"""How often a sighting worker looks up a camera's frame interval again (`camera_frame_interval`)."""


class CameraRound(AlertHandOff):
    """One camera's round and what it goes by; the state it reads and keeps, set by SightingStage.__init__
    (sighting_worker/worker.py, where each is described)."""

    pool: ConnectionPool
    watch: WatchListCache | None
    metrics: Metrics
    settings: SightingSettings
    frame_intervals: dict[str, tuple[float, float | None]]
    said_at: float
    clock_at: tuple[float, float] | None
    claims: CursorClaims
    matcher: WatchMatcher

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
        self.after_commit(result, new_alerts, self.postgres_now())
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

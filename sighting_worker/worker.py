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
delivery jobs are queued (the alert pool queues any whose job was lost).

Its parts: this module, the stage and its rounds over the cameras (each camera's outcome, the clock check at
start); one camera's transaction, steps 1 to 4 (sighting_worker/camera_round.py); after the commit, the
counts and the new alerts' delivery jobs (sighting_worker/alert_hand_off.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout
from rq import Queue

from common import defaults
from common.alerts import ListFilter
from common.db import autocommitting
from common.log_throttle import Throttle
from common.metrics import Metrics
from common.sighting_log import camera_ids
from common.watchlist_cache import WatchListCache, WatchListUnavailableError
from sighting_worker.camera_claim import ENDED_BY_POSTGRES, CameraSessionEndedError, CursorClaims, CursorHeldError
from sighting_worker.camera_round import CameraRound
from sighting_worker.cursor_state import NewerCursorStateError
from sighting_worker.matching import WatchMatcher
from sighting_worker.stage_types import GroupResult, SightingSettings

log = logging.getLogger(__name__)


CLOCK_OFF_WARN_S = 1.0
"""A sighting worker whose host's clock is further than this off Postgres's warns at start (`compare_clocks`)."""

ROUND_OUTCOMES = ("grouped", "camera_failed", "watchlist_unavailable")
"""How a sighting round ends (`alpr_sighting_rounds_total{outcome}`; deploy/prometheus-rules.yml alerts on
the last two)."""


class SightingStage(CameraRound):
    """The sighting pool's stage: one per worker, built by alpr/wiring.py. One camera's round is its base
    CameraRound's, the hand-off after that round's commit AlertHandOff's (sighting_worker/camera_round.py,
    sighting_worker/alert_hand_off.py)."""

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

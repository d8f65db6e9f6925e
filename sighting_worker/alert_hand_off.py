"""After a camera's round committed (sighting_worker/camera_round.py): what it logged counted, the new
alerts' delivery jobs queued (those Redis refused, or all after its first refusal, marked for the alert pool
to queue; the alert pool queues any lost), an alert no receiver takes told, the reads logged late counted
and told. AlertHandOff is a base of SightingStage, whose __init__ sets the state declared here."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from psycopg_pool import ConnectionPool
from rq import Queue

from common import defaults
from common.alert_log import AlertLog
from common.alerts import Alert, ListFilter, routed
from common.jobs import alert_job
from common.log_throttle import Throttle
from common.metrics import Metrics
from common.queues import enqueue
from sighting_worker.stage_types import GroupResult

log = logging.getLogger(__name__)


class AlertHandOff:
    """The hand-off after a camera's commit; the state it reads and keeps, set by SightingStage.__init__
    (sighting_worker/worker.py, where each is described)."""

    pool: ConnectionPool
    receivers: Mapping[str, ListFilter]
    alert_queue: Queue
    metrics: Metrics
    job_timeout_s: int
    unrouted_told: dict[str, Throttle]
    late_told: Throttle
    late_untold: tuple[int, float]

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

    def after_commit(self, result: GroupResult, new_alerts: list[Alert], now: float) -> None:
        """Count what was logged (a sighting's delay up to `now`, by Postgres's clock: CameraRound.postgres_now);
        queue the new alerts' deliveries (the alert pool re-queues any lost)."""
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

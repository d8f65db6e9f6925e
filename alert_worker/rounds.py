"""The alert pool's round between jobs (`PoolRounds.maintain`, a base of AlertStage in
alert_worker/worker.py): the deliveries recent alerts lack are added, the pending ones counted per
receiver, and those due queued — retries after their back-off, deliveries whose job was lost with a
worker, a share of each receiver a round, none of a resting one, one probe of a failing one, and never a
job whose id the queue still holds."""

from __future__ import annotations

import threading
import time

from rq import Queue

from alert_worker.holds import ReceiverHolds
from alert_worker.outcomes import log
from alert_worker.waiting import waiting
from common import defaults
from common.jobs import alert_job, job_id
from common.log_throttle import Throttle
from common.queues import enqueue


class PoolRounds(ReceiverHolds):
    """The rounds `alpr worker alert` runs between jobs."""

    queue: Queue  # (each set and told by AlertStage.__init__)
    job_timeout_s: int
    counted_at: float
    missing_failing: Throttle
    stopping: threading.Event

    def maintain(self) -> None:
        """Give the alerts raised lately a delivery to each receiver of this worker's file they lack; then
        queue the deliveries that are due: those, retries after their back-off, jobs lost with a worker.
        The first's failure is said once a spell (a read-only Postgres failed it every second, each round a
        WARNING: a review), its end at INFO with how many rounds failed. A stopping worker queues nothing: RQ's
        StopRequested, raised by the signal wherever the main thread is, was caught as the first's failure
        when it landed there, and the round went on queueing deliveries on the way out."""
        if self.stopping.is_set():
            return
        try:
            self.add_missing_deliveries()
        except Exception as error:  # tried again next round; the due deliveries are queued all the same
            if self.missing_failing.note():
                log.warning("could not add the deliveries recent alerts lack (%s); tried again each round, said"
                            " again once it goes through", type(error).__name__)  # fmt: skip
        else:
            if spell := self.missing_failing.end():
                log.info("adding the deliveries recent alerts lack answers again, after %d failed rounds in %.0f s",
                         *spell)  # fmt: skip
        if self.stopping.is_set():  # the signal came meanwhile (its StopRequested caught above)
            return
        self.count_pending()
        due = self.alert_log.due(
            defaults.ALERT_REQUEUE_AFTER_S, 1000, defaults.ALERT_DUE_PER_RECEIVER, self.capped(time.monotonic())
        )
        if not due:
            return
        # a job still queued is not queued again: `enqueue` replaced its record and pushed its id once more,
        # and a queue holding more than ALERT_REQUEUE_AFTER_S of work held ids up to 6 times (a soak review).
        # Each due job's id is looked for itself (alert_worker/waiting.py): the whole queue was read each round
        # (a review), then its last 10,000 ids, where the jobs due again at its head were not (a review).
        jobs = [alert_job(alert_id, receiver, attempts + 1) for alert_id, receiver, attempts in due]
        still = waiting(self.queue, [job_id(job.stage, job.batch_id) for job in jobs])
        for job in jobs:
            if job_id(job.stage, job.batch_id) not in still:
                enqueue(self.queue, job, self.job_timeout_s)
            if job.receiver in self.failing:
                self.probed_at[job.receiver] = time.monotonic()

    def count_pending(self) -> None:
        """Every ALERT_PENDING_COUNT_S, the deliveries not made yet per receiver (`alpr_alert_deliveries_pending`:
        a name of this worker's file, the others summed as `unknown`). The alerts held while a receiver fails
        wait in the alerts log, in no lane and no queue: "19 alerts to ops held", the log said, while the lane's
        gauge and the queue's depth read 0 (a review). Postgres away: the last count stays (they are still
        undelivered), and so while Redis is away (no round runs)."""
        now = time.monotonic()
        if now - self.counted_at < defaults.ALERT_PENDING_COUNT_S:
            return
        self.counted_at = now
        try:
            counts = self.alert_log.pending_counts()
        except Exception as error:  # noqa: BLE001 - counted again next time
            log.debug("could not count the pending deliveries (%s)", type(error).__name__)
            return
        by_receiver = dict.fromkeys([*self.receivers, "unknown"], 0)
        for receiver, number in counts.items():
            by_receiver[receiver if receiver in self.receivers else "unknown"] += number
        for receiver, number in by_receiver.items():
            self.metrics.alert_deliveries_pending.labels(receiver=receiver).set(number)

    def capped(self, now: float) -> dict[str, int]:
        """How many due deliveries this round may queue of each receiver that failed its last attempt here:
        none while it rests or its probe may still be in flight (the probe's lease), else one, its probe."""
        caps = {}
        for receiver in list(self.failing):
            lease_s = self.receivers[receiver].timeout_s + defaults.ALERT_LEASE_MARGIN_S
            resting = self.rested_until.get(receiver, 0.0) > now
            probing = self.probed_at.get(receiver, -lease_s) + lease_s > now
            caps[receiver] = 0 if resting or probing else 1
        return caps

    def add_missing_deliveries(self) -> None:
        """A sighting worker raises an alert with a delivery to each receiver of its own file: one still on
        an older file (a rolling restart) left out a receiver just added, which never got the alert, and
        `alpr replay` had no delivery to resend (a review: 3 of 18 alerts). This worker adds a delivery to
        each receiver its file names for the alerts raised in the last ALERT_MISSING_RECEIVER_S that lack
        one and whose list it takes; a delivery there already is left as it is, and a receiver its file does not
        name gets none."""
        routes = {name: receiver.list_filter for name, receiver in self.receivers.items()}
        added = self.alert_log.add_missing(routes, defaults.ALERT_MISSING_RECEIVER_S)
        if added:
            log.warning("%d deliveries added that their alerts lacked, to %s: raised by a sighting worker whose"
                        " receivers file does not name them, or not for those lists (give every worker the same"
                        " file)", len(added),
                        ", ".join(sorted({receiver for _, receiver in added})))  # fmt: skip

"""The alert pool's edge: takes an alert job (one alert, one receiver) and hands it to that receiver's
lane (alert_worker/lanes.py), a thread of its own that makes one attempt at a time; the lane claims the
delivery in the alerts log (so no other worker sends it at the same time, and a delivery already made is
not made again), delivers it (alert_worker/delivery.py) and records the outcome: delivered; retried
after a doubling back-off while the receiver is down, answers 5xx or hangs; failed once retried for
ALPR_ALERT_GIVE_UP_S; rejected when the receiver refuses the alert itself (400, 409, 413, 422, bad MQTT
credentials, a topic its ACL refuses), or after a quarter of an hour of refusals that may be its state for a
while (404, 410, 401, 403, a redirect: a maintenance window, retried meanwhile as a failing receiver's), or
when this worker's receivers file does not name it (at once, on the worker's own thread: there is nothing
to send).

Receivers do not wait for each other: every attempt was made on the worker's one loop, and a receiver
that answered slowly inside its timeout, or hung to it, delayed every other receiver's alerts by that
much per alert (a review: a healthy receiver got a burst of 6 alerts 4.7 to 24.8 s late behind one
answering in 4 s). A receiver whose attempt failed also rests (its back-off, doubling while it keeps
failing, or its Retry-After): meanwhile its alerts are put back, not sent, so one that hangs costs its
lane one timeout per rest, not one per alert. Its backlog is put back in one write, not job by job
(`hold`): one probe is due when the rest ends, the others are held in the alerts log until a probe
succeeds, then come due oldest first at a bounded rate (`release`): a receiver down for hours with
thousands of alerts pending no longer fills the queue ahead of the others'. The probe is marked in the
alerts log, so its delivery releases them whichever worker makes it (one killed or frozen leaves it to
the next, once due or once its lease runs out), in the transaction that records it; refused for good by a
receiver that answers (a 409 for that alert), it hands its mark to the next alert held, due at once; refused
for now (a 404), it is tried again after its own back-off, and the receiver's next probe is another alert.
Between jobs the pool queues the deliveries that are due: retries after their back-off, and deliveries
whose job was lost (a worker killed mid-delivery: its lease runs out, and the alert is sent again, with
the same idempotency key); a share of each receiver a round, none of a resting one, and never a job whose
id the queue still holds.
A stopping worker (`finish`) hands back the jobs still waiting, to be queued again at once, and lets the
attempts in flight end."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Literal, get_args

from rq import Queue

from alert_worker.attempts import DeliveryRejected, DeliveryRetryable
from alert_worker.delivery import deliver
from alert_worker.lanes import Lane
from alert_worker.waiting import waiting
from common import defaults
from common.alert_holds import HELD, REFUSED_FOR_NOW
from common.alert_log import AlertLog, Delivery, UnreadableDelivery
from common.alerts import Alert, MqttReceiver, WebhookReceiver, takes
from common.backoff import Backoff
from common.jobs import AlertJob, alert_job, job_id, parse_job
from common.log_throttle import Throttle
from common.metrics import Metrics
from common.queues import enqueue
from common.worker import StageResult

log = logging.getLogger(__name__)

Deliver = Callable[[Alert, WebhookReceiver | MqttReceiver, float], str | None]
"""One attempt: the alert, its receiver, and the time to sign it at (Postgres's clock at the claim); returns a
caveat on the acknowledgement to tell once (alert_worker/delivery.deliver)."""

CLOCK_DISAGREEMENT_S = 60.0
"""How far this host's clock may lie from Postgres's before the worker warns of it at its start."""

DeliveryOutcome = Literal["sent", "retried", "rested", "failed", "rejected"]
"""An attempt's outcome, as counted in `alpr_alert_deliveries`."""


def retry_delay_s(attempt: int, asked_s: float | None) -> float:
    """The wait after failed attempt number `attempt`: doubling from the first to the longest, or
    what the receiver asked for (Retry-After), whichever is longer."""
    first_s, longest_s = defaults.ALERT_BACKOFF_S
    return max(Backoff(first_s, longest_s, failures=max(0, attempt - 1)).next_delay(), asked_s or 0.0)


def warn_if_clock_off(alert_log: AlertLog) -> None:
    """A WARNING at the worker's start when this host's clock is more than CLOCK_DISAGREEMENT_S off
    Postgres's. Webhooks are signed by Postgres's clock (a worker 10 minutes ahead signed by its own, and
    receivers refused every alert); what still goes by this one is its log lines' times and the alerts'
    latency (`alpr_alert_latency_seconds`)."""
    try:
        before_s = time.time()
        postgres_s = alert_log.clock_s()
        off_s = (before_s + time.time()) / 2 - postgres_s
    except Exception as error:  # a check only: the worker starts
        log.warning("could not compare this host's clock with Postgres's (%s)", type(error).__name__)
        return
    if abs(off_s) > CLOCK_DISAGREEMENT_S:
        log.warning("this host's clock is %+.0f s off Postgres's: webhooks are signed by Postgres's clock, but"
                    " this worker's log times and alert latencies go by this one (set it right)", off_s)  # fmt: skip


class AlertStage:
    """The alert pool's stage: one per worker, built by alpr/wiring.py."""

    name: Final = "alert"

    def __init__(
        self,
        receivers: dict[str, WebhookReceiver | MqttReceiver],
        alert_log: AlertLog,
        queue: Queue,
        metrics: Metrics,
        give_up_s: float,
        job_timeout_s: int,
        send: Deliver = deliver,
    ) -> None:
        self.receivers, self.alert_log, self.queue, self.metrics = receivers, alert_log, queue, metrics
        self.give_up_s, self.job_timeout_s, self.send = give_up_s, job_timeout_s, send
        for name in [*receivers, "unknown"]:  # exported at 0: a first alert given up is an increase to alert on
            for outcome in get_args(DeliveryOutcome):
                metrics.alert_deliveries.labels(receiver=name, outcome=outcome)
            metrics.alert_deliveries_pending.labels(receiver=name).set(0)
        self.counted_at = float("-inf")
        """When (monotonic) `count_pending` last counted (tried to)."""
        self.failing: dict[str, Backoff] = {}
        """Per receiver whose last attempt failed: its back-off (doubling while it keeps failing)."""
        self.rested_until: dict[str, float] = {}
        """Per failing receiver, the monotonic time before which this worker sends it nothing: a receiver
        that hangs cost its lane a whole timeout per alert. Each receiver's entries are its lane's alone."""
        self.probed_at: dict[str, float] = {}
        """Per failing receiver, when this worker's round last queued its probe (monotonic): no other is
        queued while that one may still be in flight (its lease), unless it failed (the entry is dropped)."""
        self.refusing: dict[str, tuple[float, float]] = {}
        """Per receiver refusing for now (a 404...), when this worker's run of such refusals began and when it
        saw the last (monotonic): any other outcome of an attempt ends it, and so does a gap of more than the
        longest rest plus ALERT_REFUSAL_GAP_MARGIN_S between two (`refusing_for`)."""
        self.released_at: dict[str, float] = {}
        """Per receiver, when this worker last made its held deliveries due again (monotonic)."""
        self.caveats_told: set[str] = set()
        """Receivers whose delivery's caveat (an MQTT broker speaking 3.1.1 only) this worker has told."""
        self.missing_failing = Throttle(math.inf)
        """Rounds whose `add_missing_deliveries` failed, told once a spell (`maintain`)."""
        self.stopping = threading.Event()
        """Set by `alpr worker alert` at a stop signal: the lanes begin no further attempt."""
        self.lanes = {name: self.lane(name) for name in receivers}
        """One per receiver: its attempts on a thread of its own, one at a time."""

    def lane(self, receiver: str) -> Lane:
        """The receiver's lane: it stops with the worker, counts an attempt that raised as a failed job,
        and exports how many alerts it holds (exported at 0)."""
        waiting = self.metrics.alert_lane_waiting.labels(receiver=receiver)
        waiting.set(0)
        return Lane(
            receiver, self.attempt, defaults.ALERT_LANE_BACKLOG, halted=self.stopping.is_set,
            failed=self.metrics.jobs.labels(stage=self.name, outcome="failed").inc, held_count=waiting.set,
        )  # fmt: skip

    def handle(self, payload: Any) -> StageResult:
        """Hand the job to its receiver's lane and return: the worker takes the next job at once, whatever
        that receiver does (answers slowly, hangs to its timeout). A job for a receiver this worker does not
        know is settled here (nothing to send); one its lane cannot take (the backlog full, the worker
        stopping) is left pending, never claimed, for `due` to queue again."""
        job = parse_job(payload, AlertJob)
        lane = self.lanes.get(job.receiver)
        if lane is None:
            self.attempt(job)
        elif not lane.offer(job):
            log.debug("alert %s to %s: its lane is full or closed; queued again later", job.alert_id, job.receiver)
        return StageResult(frames=0)

    def attempt(self, job: AlertJob) -> None:
        """Claim the job's delivery, make one attempt and record its outcome: on the receiver's lane (the
        claim's lease, the receiver's timeout plus a margin, starts with the attempt, not while the job
        waited its turn), or on the worker's thread for a receiver it does not know."""
        receiver = self.receivers.get(job.receiver)
        lease_s = (receiver.timeout_s if receiver else 0.0) + defaults.ALERT_LEASE_MARGIN_S
        delivery = self.alert_log.claim(job.alert_id, job.receiver, lease_s)
        if delivery is None:  # delivered already, or not due: another job or worker has it
            return
        if isinstance(delivery, UnreadableDelivery):  # rejected by the claim itself
            log.warning("alert %s to %s rejected: %s", job.alert_id, job.receiver, delivery.reason)
            known = job.receiver if job.receiver in self.receivers else "unknown"
            self.metrics.alert_deliveries.labels(receiver=known, outcome="rejected").inc()
            return
        if receiver is None or not takes(receiver.list_filter, delivery.alert):
            self.not_this_files(delivery, receiver)
            return
        resting_s = self.rested_until.get(job.receiver, 0.0) - time.monotonic()
        if resting_s > 0:  # it failed just now: this alert waits its turn without holding the lane
            self.rested(delivery, resting_s)
            return
        self.send_once(delivery, receiver)

    def send_once(self, delivery: Delivery, receiver: WebhookReceiver | MqttReceiver) -> None:
        """The claimed delivery's attempt, and its outcome recorded: delivered (a probe's releases what its
        receiver held); rejected; or retried, the receiver resting (`rest`) and its backlog held (`hold`)."""
        name = delivery.receiver
        try:
            caveat = self.send(delivery.alert, receiver, delivery.claimed_at_s)
        except DeliveryRejected as error:
            if not error.for_now:
                self.refusing.pop(name, None)
            if error.for_now:  # perhaps the receiver's state (maintenance, a deploy): it rests as a failing one
                self.refused_for_now(delivery, error)
            elif delivery.probe and error.answered:  # the receiver is up, refusing this alert alone
                self.probe_refused(delivery, error)
            else:
                self.give_up(delivery, "rejected", str(error), error.recorded, attempted=True)
        except DeliveryRetryable as error:
            self.refusing.pop(name, None)
            self.retry(delivery, error, attempted=True)
            self.hold(name, self.rest(name, error.retry_after_s))
        except Exception as error:  # a fault of ours or of a library: tried again, given up in time
            # its text may quote the URL's token or the alert's plate: logged and recorded by its type only
            log.debug("alert %s to %s: unexpected error", delivery.alert.alert_id, name, exc_info=True)
            self.refusing.pop(name, None)
            self.retry(delivery, DeliveryRetryable(f"unexpected {type(error).__name__}"), attempted=True)
            self.hold(name, self.rest(name, None))  # it rests all the same: such a fault flooded a receiver (a review)
        else:
            if caveat and name not in self.caveats_told:
                self.caveats_told.add(name)
                log.warning("receiver %s: %s", name, caveat)
            was_failing = self.failing.pop(name, None) is not None
            self.refusing.pop(name, None)
            self.rested_until.pop(name, None)
            self.probed_at.pop(name, None)
            # a probe (whichever worker's hold marked it) releases what its receiver held as it is recorded
            released = self.alert_log.delivered(delivery, defaults.ALERT_RELEASE_PER_S)
            self.count(delivery, "sent")
            self.observe_latency(delivery.alert)
            if delivery.probe:
                self.released_at[name] = time.monotonic()
                self.told_released(name, released)
            elif was_failing or delivery.attempt > 1:  # back: what it held is due again (a retry of another
                self.release(name, checked=not was_failing)  # worker's probe tells this one too)

    def rest(self, receiver: str, retry_after_s: float | None) -> float:
        """The receiver's attempt failed (or was refused for now): it rests its back-off (doubling while it
        keeps failing) or its Retry-After, whichever is longer; how long. Its backlog is then held (`hold`)."""
        backoff = self.failing.setdefault(receiver, Backoff(*defaults.ALERT_BACKOFF_S))
        rest_s = max(backoff.next_delay(), retry_after_s or 0.0)
        self.rested_until[receiver] = time.monotonic() + rest_s
        self.probed_at.pop(receiver, None)
        return rest_s

    def observe_latency(self, alert: Alert) -> None:
        """Capture to delivery, in alpr_alert_latency_seconds for a live alert; a late one's (its reads logged
        after their camera had been grouped past them, a spool replayed) in alpr_late_alert_delay_seconds: an
        hour's replay counted as latency put the latency's p99 past its top bucket, though the chain sent it
        within seconds of its reads being logged (a review)."""
        delay_s = max(0.0, time.time() - alert.captured_at_s)
        (self.metrics.late_alert_delay_seconds if alert.late else self.metrics.alert_latency_seconds).observe(delay_s)

    def not_this_files(self, delivery: Delivery, receiver: WebhookReceiver | MqttReceiver | None) -> None:
        """A delivery this worker's file does not send: to a receiver it does not name (new in a file this
        worker has not been restarted with yet, or renamed or removed), or one it gives other watch-lists
        than the alert's (`lists:`; raised by a sighting worker on an older file, or one this worker has
        not been restarted with yet: a list's alerts go only to the receivers meant for them). Retried within
        ALERT_UNKNOWN_RECEIVER_GRACE_S of the alert, for a worker on the newer file to send, then rejected."""
        if receiver is None:
            reason = f"no receiver named {delivery.receiver!r} in this worker's receivers file"
        else:
            named = delivery.alert.list_name or "none (an earlier sighting worker's alert)"
            taken = ", ".join(receiver.lists or ())
            reason = f"receiver {delivery.receiver!r} takes the lists {taken} only; this alert's list: {named}"
        if delivery.age_s + retry_delay_s(delivery.attempt, None) > defaults.ALERT_UNKNOWN_RECEIVER_GRACE_S:
            self.give_up(delivery, "rejected", reason)
        else:
            self.retry(delivery, DeliveryRetryable(reason))

    def refused_for_now(self, delivery: Delivery, error: DeliveryRejected) -> None:
        """A refusal that may be the receiver's state rather than the alert's (`DeliveryRejected.for_now`: 404,
        410, 401, 403, a redirect... for a maintenance window or a deploy): retried after the alert's own
        back-off within ALERT_UNKNOWN_RECEIVER_GRACE_S of the alert, then rejected; either way the receiver
        rests and its backlog is held, as a failing receiver's. Marked REFUSED_FOR_NOW, the delivery is no
        probe and never held (`AlertLog.hold`); a probe so refused hands its mark to the next alert held, due
        when the rest ends (`AlertLog.refused_probe`): a receiver answering 404 to this alert alone takes the
        next, and the others are released. Rejected at once, every alert raised in 25 s of a receiver's 404
        was lost (a review: 10 of 22; with 503 none). Refused so for the whole grace, the receiver's backlog
        older than it is rejected at once (`reject_refused`)."""
        refusing_s = self.refusing_for(delivery.receiver)
        rest_s = self.rest(delivery.receiver, None)
        delay_s = retry_delay_s(delivery.attempt, None)
        grace_s = defaults.ALERT_UNKNOWN_RECEIVER_GRACE_S
        past = delivery.age_s + delay_s > grace_s
        told = f"still refused {delivery.age_s:.0f} s after the alert (tried again within {grace_s:g} s): "
        recorded = told + error.recorded if past else f"{REFUSED_FOR_NOW}: {error.recorded}"
        if past:
            log.warning("alert %s to %s rejected: %s", delivery.alert.alert_id, delivery.receiver, told + str(error))
        else:
            log.info("alert %s to %s: attempt %d refused (%s), perhaps for a while only; next in %.0f s",
                     delivery.alert.alert_id, delivery.receiver, delivery.attempt, error, delay_s)  # fmt: skip
        if delivery.probe:
            requeue_s, retry_in_s = defaults.ALERT_REQUEUE_AFTER_S, None if past else delay_s
            handed = self.alert_log.refused_probe(delivery, recorded, requeue_s, retry_in_s, rest_s)
            if handed:
                log.info("%s refused its probe, perhaps for a while: alert %s, held, is its probe now, due in %.0f s",
                         delivery.receiver, handed, rest_s)  # fmt: skip
        elif past:
            self.alert_log.give_up(delivery, "rejected", recorded)
        else:
            self.alert_log.retry_after(delivery, delay_s, recorded)
        self.count(delivery, "rejected" if past else "retried")
        if refusing_s >= grace_s:
            self.reject_refused(delivery.receiver, refusing_s, error)
        self.hold(delivery.receiver, rest_s)

    def refusing_for(self, receiver: str) -> float:
        """A refusal for now seen just now: for how long this worker has seen the receiver refuse so. The run
        ends where none came for longer than the longest rest (ALERT_BACKOFF_S) plus ALERT_REFUSAL_GAP_MARGIN_S:
        one worker that saw a 404 hours before, and none since (another took its traffic), took one brief 404
        of a restart for hours of them, and rejected the receiver's backlog (a review). Whatever it believes,
        the alerts log must agree (REJECT_REFUSED)."""
        now = time.monotonic()
        since, last = self.refusing.get(receiver, (now, now))
        if now - last > defaults.ALERT_BACKOFF_S[1] + defaults.ALERT_REFUSAL_GAP_MARGIN_S:
            since = now
        self.refusing[receiver] = (since, now)
        return now - since

    def reject_refused(self, receiver: str, refusing_s: float, error: DeliveryRejected) -> None:
        """The receiver has refused every attempt for now for `refusing_s`, past the grace: its pending
        deliveries older than the grace are rejected in one write (`AlertLog.reject_refused`; not where it
        took one meanwhile), each saying why. Probed one a rest, 40 alerts to a receiver answering 404 for
        good took 3.8 times the grace to be rejected (a review: an hour for 60 alerts at a 15-minute grace)."""
        grace_s = defaults.ALERT_UNKNOWN_RECEIVER_GRACE_S
        reason = (
            f"not tried: the receiver refused every attempt for {refusing_s:.0f} s, past the {grace_s:g} s"
            f" grace for a state of its own, and this alert is older; its last answer: {error.recorded}"
        )
        try:
            rejected = self.alert_log.reject_refused(receiver, grace_s, reason)
        except Exception as failure:  # they are rejected one by one as before, a probe each rest
            log.warning("could not reject the alerts %s refuses (%s)", receiver, type(failure).__name__)
            return
        if rejected:
            shown = ", ".join(rejected[:5]) + (", ..." if len(rejected) > 5 else "")
            log.warning("%d alerts to %s rejected: it refused every attempt for %.0f s (%s): %s", len(rejected),
                        receiver, refusing_s, error, shown)  # fmt: skip
            known = receiver if receiver in self.receivers else "unknown"
            self.metrics.alert_deliveries.labels(receiver=known, outcome="rejected").inc(len(rejected))

    def count(self, delivery: Delivery, outcome: DeliveryOutcome) -> None:
        """One delivery outcome in the metrics, by receiver (a name from the receivers file; a job naming
        another counts as `unknown`: names in jobs are not the operator's to bound)."""
        receiver = delivery.receiver if delivery.receiver in self.receivers else "unknown"
        self.metrics.alert_deliveries.labels(receiver=receiver, outcome=outcome).inc()

    def retry(self, delivery: Delivery, error: DeliveryRetryable, attempted: bool = False) -> None:
        """Pending again after its back-off, or failed past ALPR_ALERT_GIVE_UP_S; `attempted`: the receiver
        was tried and did not refuse it for now (`AlertLog.retry_after`), not a delivery this file lacks."""
        delay_s = retry_delay_s(delivery.attempt, error.retry_after_s)
        if delivery.age_s + delay_s > self.give_up_s:
            gave_up = f"gave up after {delivery.attempt} attempts: "
            self.give_up(delivery, "failed", gave_up + str(error), gave_up + error.recorded, attempted)
            return
        log.info("alert %s to %s: attempt %d failed (%s); next in %.0f s", delivery.alert.alert_id,
                 delivery.receiver, delivery.attempt, error, delay_s)  # fmt: skip
        self.alert_log.retry_after(delivery, delay_s, error.recorded, attempted)
        self.count(delivery, "retried")

    def rested(self, delivery: Delivery, resting_s: float) -> None:
        """A delivery not tried while its receiver rests: due again when the rest ends. It waited the
        back-off of its claims so far, which each rest doubled, so an alert that came up while the receiver
        was down waited up to a minute more once it was back (a review). Its claim still counts among its
        attempts: each claim's number is its token, and one given back is claimed again by the next
        holder, whom a retried write of this one (Postgres lost at its commit) then matched."""
        # a probe stays one, and a delivery refused for now keeps its mark (no probe, never held)
        reason = delivery.last_error if (delivery.probe or delivery.refused_for_now) and delivery.last_error else HELD
        if delivery.age_s + resting_s > self.give_up_s:
            gave_up = f"gave up after {delivery.attempt} attempts: "
            self.give_up(delivery, "failed", gave_up + reason)
            return
        log.debug("alert %s to %s: %s; next in %.0f s", delivery.alert.alert_id, delivery.receiver, reason, resting_s)
        self.alert_log.retry_after(delivery, resting_s, reason)
        self.count(delivery, "rested")

    def hold(self, receiver: str, rest_s: float) -> None:
        """The receiver's attempt failed and it rests `rest_s`: its backlog is put off in one write (`AlertLog.
        hold`), not queued and claimed one delivery at a time. Each pending delivery went round the queue
        once a rest (a job, a claim, `rested`), and once the queue held more than ALERT_REQUEUE_AFTER_S of
        them, every other receiver's alerts waited behind them (a soak review: 6,150 pending to a receiver
        down, a working one got nothing for 3 minutes). Now one probe is due when the rest ends; the others
        wait in the alerts log until a probe succeeds (`release`), ALERT_HOLD_S at most. A failure here is
        logged: the deliveries are still pending, queued as before. Counted `rested` are those held now that
        were not held already: each failed probe holds again those due within ALERT_HOLD_S / 2, and counting
        them all at every rest made 171 `rested` of a few dozen alerts (a review). How many are held is the
        pool's `alpr_alert_deliveries_pending` (`count_pending`): the lanes and the queue hold none of them."""
        try:
            done = self.alert_log.hold(receiver, rest_s, defaults.ALERT_HOLD_S, self.give_up_s)
        except Exception as error:
            log.warning("could not hold the alerts to %s while it rests (%s)", receiver, type(error).__name__)
            return
        known, failed = receiver if receiver in self.receivers else "unknown", done.failed
        if done.held:
            log.info("%d alerts to %s held while it fails: one is tried when its rest ends", done.held, receiver)
            self.metrics.alert_deliveries.labels(receiver=known, outcome="rested").inc(done.newly)
        if failed:
            log.warning("%d alerts to %s failed: gave up, not tried while it failed (%s%s)", len(failed), receiver,
                        ", ".join(failed[:5]), ", ..." if len(failed) > 5 else "")  # fmt: skip
            self.metrics.alert_deliveries.labels(receiver=known, outcome="failed").inc(len(failed))

    def release(self, receiver: str, checked: bool) -> None:
        """The receiver answered: what it held is due again, the oldest first, ALERT_RELEASE_PER_S a second,
        so its backlog never fills the queue ahead of the other receivers' alerts. On a retry's success
        (`checked`: this worker did not see it fail), at most once in ALERT_HOLD_S / 10 per receiver."""
        now = time.monotonic()
        if checked and now - self.released_at.get(receiver, float("-inf")) < defaults.ALERT_HOLD_S / 10:
            return
        self.released_at[receiver] = now
        try:
            released = self.alert_log.release(receiver, defaults.ALERT_RELEASE_PER_S)
        except Exception as error:  # they are due all the same, ALERT_HOLD_S after they were held
            log.warning("could not release the alerts held for %s (%s)", receiver, type(error).__name__)
            return
        self.told_released(receiver, released)

    def told_released(self, receiver: str, released: int) -> None:
        """The INFO line of a release that made `released` held alerts due again (none: no line)."""
        if released:
            log.info("%s answers again: %d alerts held for it are due, %g a second", receiver, released,
                     defaults.ALERT_RELEASE_PER_S)  # fmt: skip

    def probe_refused(self, delivery: Delivery, error: DeliveryRejected) -> None:
        """The receiver's probe refused for good by a receiver that answers (a 409 or 422 for that alert alone): the
        probe is rejected and its mark handed to the oldest alert held, due at once (`AlertLog.refused_probe`,
        one transaction), queued by the next round. Rejected alone, nothing released what the receiver held:
        a review measured 49 alerts held, due in 572 s, the receiver answering 200 to the others. The mark,
        not a release: until the receiver takes an alert, one is tried at a time, as while it failed (one
        answering 409 to every alert rejects them one by one, as a release would all at once), and a
        held alert is made due by one write of the probe's claim alone (MINE): none is queued twice."""
        log.warning("alert %s to %s rejected: %s", delivery.alert.alert_id, delivery.receiver, error)
        handed = self.alert_log.refused_probe(delivery, error.recorded, defaults.ALERT_REQUEUE_AFTER_S, attempted=True)
        self.count(delivery, "rejected")
        self.probed_at.pop(delivery.receiver, None)  # the next probe is due now: this round may queue it
        if handed:
            log.info("%s answers but refused its probe for good: alert %s, held, is its probe now, due at once",
                     delivery.receiver, handed)  # fmt: skip

    def give_up(
        self,
        delivery: Delivery,
        status: Literal["failed", "rejected"],
        reason: str,
        recorded: str | None = None,
        attempted: bool = False,
    ) -> None:
        """Logged with `reason`; recorded with `recorded` (the receiver's own words too) when given; `attempted`
        as for `retry`."""
        log.warning("alert %s to %s %s: %s", delivery.alert.alert_id, delivery.receiver, status, reason)
        self.alert_log.give_up(delivery, status, recorded or reason, attempted)
        self.count(delivery, status)

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

    def finish(self, stop: threading.Event) -> None:
        """The worker is done taking jobs (`alpr worker alert` calls this once its last RQ worker ended).
        Unless `stop` is set (SIGTERM, SIGINT), the lanes first send what waits in them (a burst worker's
        jobs all taken: `--burst` and `--max-jobs` finish their jobs); then what still waits is handed back,
        never claimed, and marked to be queued again at once (by any worker's next round, not 30 s later);
        then the attempts in flight are waited for, each up to its lease, so their outcome is recorded.
        An attempt that outlives it is left (its thread a daemon): the lease runs out and it is sent again."""
        while not stop.is_set() and not all(lane.idle() for lane in self.lanes.values()):
            stop.wait(0.05)
        handed_back = [(job.alert_id, job.receiver) for lane in self.lanes.values() for job in lane.close()]
        if handed_back:
            log.info("%d alert deliveries handed back to the pool, never attempted here", len(handed_back))
            try:
                self.alert_log.not_queued(handed_back)
            except Exception as error:  # Postgres away: still pending, so `due` queues them 30 s later
                log.warning("could not hand back %d alert deliveries (%s); queued again later",
                            len(handed_back), type(error).__name__)  # fmt: skip
        began = time.monotonic()
        for name, lane in self.lanes.items():
            lease_s = self.receivers[name].timeout_s + defaults.ALERT_LEASE_MARGIN_S
            if not lane.join(began + lease_s - time.monotonic()):
                log.warning("an attempt to %s outlived its lease; it will be sent again", name)

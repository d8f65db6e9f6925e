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
attempts in flight end.

What it records of an attempt is alert_worker/outcomes.py's, a failing receiver's rest, holds and releases
alert_worker/holds.py's, the round between jobs alert_worker/rounds.py's: each a base of `AlertStage`."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Final, get_args

from rq import Queue

from alert_worker.attempts import DeliveryRejected, DeliveryRetryable
from alert_worker.delivery import deliver
from alert_worker.lanes import Lane
from alert_worker.outcomes import DeliveryOutcome
from alert_worker.rounds import PoolRounds
from common import defaults
from common.alert_log import AlertLog, Delivery, UnreadableDelivery
from common.alerts import Alert, MqttReceiver, WebhookReceiver, takes
from common.backoff import Backoff
from common.errors import where_raised
from common.jobs import AlertJob, parse_job
from common.log_throttle import Throttle
from common.metrics import Metrics
from common.worker_context import StageResult

log = logging.getLogger(__name__)

Deliver = Callable[[Alert, WebhookReceiver | MqttReceiver, float], str | None]
"""One attempt: the alert, its receiver, and the time to sign it at (Postgres's clock at the claim); returns a
caveat on the acknowledgement to tell once (alert_worker/delivery.deliver)."""

CLOCK_DISAGREEMENT_S = 60.0
"""How far this host's clock may lie from Postgres's before the worker warns of it at its start."""


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


class AlertStage(PoolRounds):
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
        metrics.alert_latency_seconds.export()  # this role's own (common/metrics_registry.RoleMetric)
        metrics.late_alert_delay_seconds.export()
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
        waited its turn), or on the worker's thread for a receiver it does not know. A probe the claim itself
        rejects (its entry withdrawn, its body unreadable) frees the round to queue the next probe, as a probe
        the receiver refuses does: the round took it for in flight for its lease, and the probe it handed on
        waited that long (15 s at a 10 s timeout, the receiver back)."""
        receiver = self.receivers.get(job.receiver)
        lease_s = (receiver.timeout_s if receiver else 0.0) + defaults.ALERT_LEASE_MARGIN_S
        delivery = self.alert_log.claim(job.alert_id, job.receiver, lease_s)
        if delivery is None:  # delivered already, or not due: another job or worker has it
            return
        if isinstance(delivery, UnreadableDelivery):  # rejected by the claim itself
            log.warning("alert %s to %s rejected: %s", job.alert_id, job.receiver, delivery.reason)
            known = job.receiver if job.receiver in self.receivers else "unknown"
            self.metrics.alert_deliveries.labels(receiver=known, outcome="rejected").inc()
            if delivery.probe:  # as `probe_refused`: none in flight, the next probe (handed on) due now
                self.probed_at.pop(job.receiver, None)
            if delivery.handed:
                log.info("%s's probe was rejected at its claim: alert %s, held, is its probe now, due at once",
                         job.receiver, delivery.handed)  # fmt: skip
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
            log.debug("alert %s to %s: unexpected %s", delivery.alert.alert_id, name, where_raised(error))
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

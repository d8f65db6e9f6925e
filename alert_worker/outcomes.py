"""What the alert pool records of a delivery's attempt (`DeliveryOutcomes`, a base of AlertStage in
alert_worker/worker.py): retried after its back-off (`retry_delay_s`), put off while its receiver rests
(`rested`), given up as failed or rejected, or not sent by this worker's receivers file
(`not_this_files`); each outcome counted by receiver (`DeliveryOutcome`), a delivered alert's latency
observed."""

from __future__ import annotations

import logging
import time
from typing import Literal

from alert_worker.attempts import DeliveryRetryable
from common import defaults
from common.alert_holds import HELD
from common.alert_log import AlertLog, Delivery
from common.alerts import Alert, MqttReceiver, WebhookReceiver
from common.backoff import Backoff
from common.metrics import Metrics

log = logging.getLogger("alert_worker.worker")
"""The pool's logger: what an outcome says is the worker's, as it was before it had a module of its own."""

DeliveryOutcome = Literal["sent", "retried", "rested", "failed", "rejected"]
"""An attempt's outcome, as counted in `alpr_alert_deliveries`."""


def retry_delay_s(attempt: int, asked_s: float | None) -> float:
    """The wait after failed attempt number `attempt`: doubling from the first to the longest, or
    what the receiver asked for (Retry-After), whichever is longer."""
    first_s, longest_s = defaults.ALERT_BACKOFF_S
    return max(Backoff(first_s, longest_s, failures=max(0, attempt - 1)).next_delay(), asked_s or 0.0)


class DeliveryOutcomes:
    """The outcomes of the pool's attempts: recorded in the alerts log, logged and counted."""

    receivers: dict[str, WebhookReceiver | MqttReceiver]  # (each set by AlertStage.__init__)
    alert_log: AlertLog
    metrics: Metrics
    give_up_s: float

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

"""A failing receiver's rest and its backlog (`ReceiverHolds`, a base of AlertStage in
alert_worker/worker.py): a receiver whose attempt failed, or was refused for now (a 404...), rests its
back-off (`rest`); its pending deliveries are held in the alerts log in one write (`hold`), one probe due
when the rest ends; a delivery that succeeds releases them, the oldest first at a bounded rate
(`release`); a probe refused for good hands its mark to the next alert held (`probe_refused`); a receiver
refusing for now past the grace has its older backlog rejected in one write (`reject_refused`)."""

from __future__ import annotations

import time

from alert_worker.attempts import DeliveryRejected
from alert_worker.outcomes import DeliveryOutcomes, log, retry_delay_s
from common import defaults
from common.alert_holds import REFUSED_FOR_NOW
from common.alert_log import Delivery
from common.backoff import Backoff


class ReceiverHolds(DeliveryOutcomes):
    """Each receiver's rest, refusals for now, holds and releases, as this worker has seen them."""

    failing: dict[str, Backoff]  # (each set and told by AlertStage.__init__)
    rested_until: dict[str, float]
    probed_at: dict[str, float]
    refusing: dict[str, tuple[float, float]]
    released_at: dict[str, float]

    def rest(self, receiver: str, retry_after_s: float | None) -> float:
        """The receiver's attempt failed (or was refused for now): it rests its back-off (doubling while it
        keeps failing) or its Retry-After, whichever is longer; how long. Its backlog is then held (`hold`)."""
        backoff = self.failing.setdefault(receiver, Backoff(*defaults.ALERT_BACKOFF_S))
        rest_s = max(backoff.next_delay(), retry_after_s or 0.0)
        self.rested_until[receiver] = time.monotonic() + rest_s
        self.probed_at.pop(receiver, None)
        return rest_s

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

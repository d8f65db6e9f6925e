"""A failing receiver's backlog in the alerts log (alert_deliveries): while a receiver rests after a
failed attempt, its oldest pending delivery is its probe, due when the rest ends (PROBE), and the others
are held (HELD) or given up where their retries would outlast ALPR_ALERT_GIVE_UP_S (`hold`); once it
answers again they are released, oldest first, a few a second (`release`, RELEASED); a probe refused by a
receiver that answers hands its mark to the next held delivery (HAND_ON, HANDED_ON; HANDED_ON_AT_CLAIM for one
rejected at its claim); a delivery refused in a way that may be the receiver's state keeps its own back-off
(REFUSED_FOR_NOW); and a receiver refusing
every alert for the grace has its backlog rejected in one write (`reject_refused`). The statements and
marks are this module's; `ReceiverHolds`, the part of `AlertLog` (common/alert_log.py) that acts on a
receiver's backlog as a whole, runs them. A claimed delivery's own outcome (`AlertLog.delivered`,
`refused_probe`) is alert_log's."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool

from common.credentials import escape_controls
from common.db_writes import write_through_outage

HELD = "not tried: the receiver failed its last attempt"
"""A delivery's last error while its receiver rests or is held (`hold`): the mark `release` looks for."""

RELEASED = "not tried: held while the receiver failed; released once it answered"
"""A held delivery's last error once `release` has made it due again."""

PROBE = "the probe while the receiver fails (its other alerts held until it answers)"
"""The start of the last error of a held receiver's probe (`hold`), its own last error after it: whichever
worker claims it knows it for the probe, and its delivery makes the held ones due in the same transaction
(`delivered`). A worker that had not seen the receiver fail took the probe of one killed -9 for an alert
like any other where the probe was never tried before (its first attempt), and the held alerts waited
ALERT_HOLD_S (10 minutes) with the receiver back; so did a worker killed between the probe's delivery and
the release."""

REFUSED_FOR_NOW = "refused, perhaps for a while only (the receiver's state, not the alert's): tried again"
"""The start of the last error of a delivery refused in a way that may be its receiver's state for a while
(alert_worker/webhook.REFUSED_FOR_NOW: a 404 in a maintenance window), tried again after its own back-off
within ALERT_UNKNOWN_RECEIVER_GRACE_S of the alert: never a probe nor held (`hold`), never released. A
receiver refusing that one alert (404 to it alone) would otherwise be probed with it again and again, its
other alerts held; as it is, the next probe is another alert, which it takes."""

UNREFUSED = ", unrefused_attempt_at = now()"
"""Added to the write of an attempt's outcome other than a refusal for now (answered 5xx, timed out, refused
the connection, refused the alert for good, given up after such): the column (migration 22) that tells
REJECT_REFUSED the receiver did not refuse every attempt. The last error cannot: a hold overwrites it (HELD)."""

REJECT_REFUSED = """
UPDATE alert_deliveries SET status = 'rejected', next_attempt_at = now(), last_error = %(reason)s
WHERE (alert_id, receiver) IN (
    SELECT alert_id, %(receiver)s::text FROM alert_deliveries
    WHERE receiver = %(receiver)s AND status = 'pending' AND now() - retry_from > make_interval(secs => %(grace_s)s)
        AND NOT EXISTS (SELECT 1 FROM alert_deliveries k WHERE k.receiver = %(receiver)s
            AND (k.delivered_at > now() - make_interval(secs => %(grace_s)s)
                OR k.unrefused_attempt_at > now() - make_interval(secs => %(grace_s)s)))
    FOR UPDATE SKIP LOCKED
)
RETURNING alert_id
"""
"""A receiver's pending deliveries older than the grace (held, its probe, refused for now), rejected in one
write once it has refused every alert for the grace (`AlertLog.reject_refused`): only where every attempt
made to it in the grace, by whichever worker, was a refusal for now; none delivered (a 404 to one alert
alone), none answered otherwise (UNREFUSED). A worker that saw a 404 and then, its traffic taken by others
meeting 503s for an hour, one brief 404 of a restart, rejected a backlog due to be delivered seconds later
(a review: the worker's memory of the refusals alone decided). One at a time, a probe each rest, 40 alerts
to a receiver answering 404 took 3.8 times the grace to settle (a review, at a grace of 30 s and a longest
rest of 2 s: 60 s a rest, a 15-minute grace, is an hour for 60 alerts), and a backlog of thousands a day."""

CANDIDATES = """
SELECT alert_id, retry_from, last_error FROM alert_deliveries
WHERE receiver = %(receiver)s AND status = 'pending'
"""
"""A receiver's pending deliveries, their jobs queued or not (those in flight are `sending`). One whose job
the pool's round had queued was left to that job: claimed after the rest, it was sent before any probe was
answered, ahead of the older alerts held meanwhile (a live alert before a backlog released oldest first: the
404 probe test of tests/alert_worker/test_backlog.py, 1 run in 2 on busy CPUs, where the lane was slower
than the rest). Held, it is not due: its job's claim finds nothing (CLAIM), and its release queues it again."""

GIVE_UP_HELD = f"""
UPDATE alert_deliveries SET status = 'failed', next_attempt_at = now(),
    last_error = 'gave up after ' || attempts || ' attempts: ' || %(reason)s
WHERE (alert_id, receiver) IN (
    SELECT alert_id, %(receiver)s::text FROM ({CANDIDATES}
        AND now() - retry_from + make_interval(secs => %(rest_s)s) > make_interval(secs => %(give_up_s)s)
        FOR UPDATE SKIP LOCKED) c
)
RETURNING alert_id
"""
"""A resting receiver's deliveries whose retries would outlast ALPR_ALERT_GIVE_UP_S by the rest's end:
failed, as `rest` gives up one."""

HOLD = f"""
UPDATE alert_deliveries d SET queued_at = NULL,
    next_attempt_at = CASE WHEN h.n = 1 THEN greatest(d.next_attempt_at, now() + make_interval(secs => %(rest_s)s))
        ELSE least(now() + make_interval(secs => %(hold_s)s), d.retry_from + make_interval(secs => %(give_up_s)s)) END,
    last_error = CASE WHEN h.n > 1 THEN %(reason)s WHEN starts_with(d.last_error, %(probe)s) THEN d.last_error
        ELSE %(probe)s || coalesce(': ' || d.last_error, '') END
FROM (
    SELECT alert_id, row_number() OVER (ORDER BY retry_from, alert_id) AS n,
        last_error IS NOT DISTINCT FROM %(reason)s AS was_held FROM ({CANDIDATES}
        AND next_attempt_at < now() + make_interval(secs => %(hold_s)s / 2)
        AND NOT starts_with(coalesce(last_error, ''), %(refused)s) FOR UPDATE SKIP LOCKED) c
) h
WHERE d.alert_id = h.alert_id AND d.receiver = %(receiver)s
RETURNING h.n, h.was_held
"""
"""A resting receiver's deliveries not queued: the oldest is its probe, due when the rest ends, marked so
(PROBE, before its last error); the others are held, due ALERT_HOLD_S from now (or when they are to be given
up), pushed again by each failed probe (those due within half of it) and made due by a probe that succeeds
(`release`, with its delivery: `delivered`). A delivery refused for now (REFUSED_FOR_NOW) keeps its own
back-off: neither probe nor held. Each row says whether it was held already (HELD: held, or rested by a
worker, before), for the deliveries newly put back to be counted once (`AlertLog.hold`)."""

RELEASE = """
UPDATE alert_deliveries d SET queued_at = NULL, last_error = %(released)s,
    next_attempt_at = now() + make_interval(secs => (h.n - 1) / %(per_s)s)
FROM (
    SELECT alert_id, row_number() OVER (ORDER BY retry_from, alert_id) AS n FROM (
        SELECT alert_id, retry_from FROM alert_deliveries
        WHERE receiver = %(receiver)s AND status = 'pending'
            AND (last_error = %(held)s OR starts_with(last_error, %(probe)s)) FOR UPDATE SKIP LOCKED
    ) c
) h
WHERE d.alert_id = h.alert_id AND d.receiver = %(receiver)s
"""
"""A receiver's held deliveries (and those rested, and a probe still pending), due again oldest first,
`per_s` a second."""

HANDED_ON = PROBE + ": handed on by the one before it, refused for good by the receiver, which answers"
"""The last error of a held delivery made its receiver's probe by `refused_probe`."""

HANDED_ON_AT_CLAIM = PROBE + ": handed on by the one before it, rejected at its claim (withdrawn or unreadable)"
"""The last error of a held delivery made its receiver's probe by a probe rejected at its claim (AlertLog.claim):
never sent, so nothing is known of the receiver (HANDED_ON said the receiver had refused it)."""

HAND_ON = """
UPDATE alert_deliveries d SET queued_at = NULL, next_attempt_at = now() + make_interval(secs => %(due_in_s)s),
    last_error = CASE WHEN starts_with(d.last_error, %(probe)s) THEN d.last_error ELSE %(handed)s END
WHERE d.receiver = %(receiver)s AND d.alert_id = (
    SELECT alert_id FROM alert_deliveries
    WHERE receiver = %(receiver)s AND status = 'pending'
        AND (queued_at IS NULL OR queued_at < now() - make_interval(secs => %(requeue_after_s)s))
        AND (last_error = %(held)s OR starts_with(last_error, %(probe)s))
    ORDER BY retry_from, alert_id LIMIT 1 FOR UPDATE SKIP LOCKED
)
RETURNING d.alert_id
"""
"""The oldest of a receiver's held deliveries (or a probe still pending), not queued lately: its probe now
(HANDED_ON), due in `due_in_s` (at once; when its rest ends, for a probe refused for now)."""


@dataclass(frozen=True)
class Held:
    """What `AlertLog.hold` did: the ids given up, how many deliveries it held, and how many of those were
    not held already (`newly`: what the alert pool counts as rested)."""

    failed: list[str]
    held: int
    newly: int


class ReceiverHolds:
    """What the alert pool does to a receiver's pending deliveries as a whole, as it fails, answers again or
    refuses every alert (a part of `AlertLog`, through its pool, writes waiting out an outage for `patience_s`)."""

    pool: ConnectionPool
    patience_s: float

    def hold(self, receiver: str, rest_s: float, hold_s: float, give_up_s: float) -> Held:
        """A receiver's attempt failed and it rests `rest_s`: its pending deliveries (CANDIDATES) are
        put off in one transaction, none of them claimed: those whose retries would outlast `give_up_s` by
        the rest's end are failed; the oldest of the others is due when the rest ends (the probe); the rest
        are held for `hold_s` (or until they are to be given up). The ids failed, how many were held, and
        how many of those were not held already (a failed probe holds again those due within `hold_s` / 2)."""
        values = {"receiver": receiver, "rest_s": rest_s, "hold_s": hold_s, "give_up_s": give_up_s, "reason": HELD,
                  "probe": PROBE, "refused": REFUSED_FOR_NOW}  # fmt: skip

        def hold(connection: psycopg.Connection) -> Held:
            failed = [str(a) for (a,) in connection.execute(GIVE_UP_HELD, values)]
            held = [bool(was_held) for n, was_held in connection.execute(HOLD, values) if n > 1]
            return Held(failed, len(held), held.count(False))

        return write_through_outage(self.pool, hold, self.patience_s)

    def reject_refused(self, receiver: str, grace_s: float, reason: str) -> list[str]:
        """The receiver's pending deliveries older than `grace_s`, rejected with `reason` (REJECT_REFUSED),
        unless an attempt to it in the last `grace_s` was delivered or not refused for now: their ids."""
        values = {"receiver": receiver, "grace_s": grace_s, "reason": escape_controls(reason)[:500]}

        def reject(connection: psycopg.Connection) -> list[str]:
            return [str(a) for (a,) in connection.execute(REJECT_REFUSED, values)]

        return write_through_outage(self.pool, reject, self.patience_s)

    def release(self, receiver: str, per_s: float) -> int:
        """A receiver answered again: its held deliveries due again, the oldest first, `per_s` a second
        (a backlog is not queued all at once); how many."""
        values = {"receiver": receiver, "per_s": per_s, "held": HELD, "released": RELEASED, "probe": PROBE}

        def release(connection: psycopg.Connection) -> int:
            return connection.execute(RELEASE, values).rowcount

        return write_through_outage(self.pool, release, self.patience_s)

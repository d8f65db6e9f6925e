"""The alerts log (tables `alerts` and `alert_deliveries`, migration 7): every alert raised, as it is
sent, and its delivery to each receiver: pending, being sent, delivered, failed (its retries spent)
or rejected (the receiver refused it for good). This module owns the alert pool's view of it (`AlertLog`).

It is an outbox: the sighting pool inserts an alert and its deliveries in the transaction that raised
it, so no alert is lost to a crash between raising and queuing it (common/alert_raising.py). The alert
pool claims one delivery at a time (`claim`: only one worker sends an alert to a receiver at once, and a
delivery already done is not sent again; `Delivery`, or `UnreadableDelivery` where the claim itself
rejects it), records each attempt and when to try again, and queues what is due (`due`): retries after
their back-off, and deliveries whose job was lost. Writes wait out a Postgres outage. It also adds the
deliveries a recent alert lacks to a receiver its own file names (`add_missing`: the alert was raised by
a sighting worker on an older receivers file), and answers `alpr status` and `alpr replay` (`counts`,
`recent_counts`, `replay`). Its statements are common/alert_log_sql.py's. What happens to a failing
receiver's backlog as a whole (its probe, the deliveries held and released, a backlog refused for good) is
common/alert_holds.py's, a part of `AlertLog` (`ReceiverHolds`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg_pool import ConnectionPool
from pydantic import ValidationError

from common import defaults
from common.alert_holds import (
    HAND_ON,
    HANDED_ON,
    HANDED_ON_AT_CLAIM,
    HELD,
    PROBE,
    REFUSED_FOR_NOW,
    RELEASE,
    RELEASED,
    UNREFUSED,
    ReceiverHolds,
)
from common.alert_log_sql import (
    ADD_MISSING,
    CLAIM,
    DUE,
    MINE,
    PENDING_BY_RECEIVER,
    RECENT_DELIVERY_COUNTS,
    REJECT_CLAIMED,
    STILL_LISTED,
    STILL_LISTED_ANYWHERE,
)
from common.alerts import Alert, ListFilter
from common.credentials import escape_controls
from common.db_writes import write_through_outage

DeliveryStatus = Literal["pending", "sending", "delivered", "failed", "rejected"]
"""A delivery's state: to send (now or after its back-off), being sent (claimed, with a lease), sent
and acknowledged, given up after its retries, refused by the receiver (a 4xx, bad credentials)."""

WITHDRAWN = "the watch-list entry was removed after the alert was raised"
"""The last error of a delivery rejected at its claim because its alert's entry is no longer listed."""


@dataclass(frozen=True)
class UnreadableDelivery:
    """A claimed delivery the claim itself rejected for good, recorded `rejected` in the claim's own
    transaction, `reason` its last error: its alert cannot be read (written by another version or by hand:
    rolled back with the claim, it was queued again every 30 s and never given up), or its watch-list entry
    was removed after it was raised (WITHDRAWN: a receiver down meanwhile was sent it once back, up to
    ALPR_ALERT_GIVE_UP_S later, and `alpr replay` resent it; a review)."""

    receiver: str
    reason: str
    probe: bool = False
    """Whether it was its receiver's probe (PROBE): the mark is handed on (`AlertLog.claim`), and no attempt of
    it is in flight, so the worker's round may queue the next probe at once (as `probe_refused` lets it)."""
    handed: str | None = None
    """The held delivery made its receiver's probe in its stead, due at once; None where none is held."""


def unreadable(error: ValidationError) -> str:
    """Why an alert's body cannot be read: the fields at fault, named (never their values)."""
    fields = sorted({repr(".".join(str(part) for part in e["loc"]))[:40] for e in error.errors()})
    return f"the alert cannot be read (fields {', '.join(fields[:5]) or 'none'}): written by another version?"


@dataclass(frozen=True)
class Delivery:
    """One claimed delivery: the alert, the receiver's name, this attempt's number (the claim's token),
    how long the delivery has been tried (since the alert, or since `alpr replay`), and when it was
    claimed by Postgres's clock, the chain's shared one (Unix seconds): the time its webhook is signed
    at. Signed by the worker's own clock, a worker 10 minutes ahead had every alert refused by receivers
    checking the timestamp (verify_signature: 5 minutes), and lost for good (a review)."""

    alert: Alert
    receiver: str
    attempt: int
    age_s: float
    claimed_at_s: float
    last_error: str | None = None
    """As the claim found it: a probe's mark (PROBE) or an earlier attempt's error."""

    @property
    def probe(self) -> bool:
        """Whether it is its receiver's probe (`hold` marked it): its delivery ends the hold, whoever sends it."""
        return (self.last_error or "").startswith(PROBE)

    @property
    def refused_for_now(self) -> bool:
        """Whether its last attempt was refused in a way that may be the receiver's state (REFUSED_FOR_NOW)."""
        return (self.last_error or "").startswith(REFUSED_FOR_NOW)


class AlertLog(ReceiverHolds):
    """The alert pool's view of the outbox, through a shared pool."""

    def __init__(self, pool: ConnectionPool, patience_s: float) -> None:
        self.pool, self.patience_s = pool, patience_s

    def queued(self, deliveries: Sequence[tuple[str, str]]) -> None:
        """(alert id, receiver) deliveries whose job the raiser queued: not due to `due` before
        ALERT_REQUEUE_AFTER_S (common/alert_raising.INSERT_DELIVERY). One attempt: when it fails, `due`
        queues them again ALERT_UNCONFIRMED_S after the commit, a second job the first's claim makes a no-op."""
        self._mark(deliveries, "queued_at = now()", " AND queued_at IS NOT NULL")

    def not_queued(self, deliveries: Sequence[tuple[str, str]]) -> None:
        """(alert id, receiver) deliveries whose job the raiser could not queue (Redis away): due to
        the alert pool's next round (`due`, every second), not ALERT_REQUEUE_AFTER_S later. One
        attempt: when Postgres is away too, the requeue delay still brings them."""
        self._mark(deliveries, "queued_at = NULL")

    def _mark(self, deliveries: Sequence[tuple[str, str]], setting: str, also: str = "") -> None:
        """SET `setting` on these (alert id, receiver) deliveries still pending (and `also`), in one attempt."""
        if not deliveries:
            return
        statement = (
            f"UPDATE alert_deliveries SET {setting} WHERE alert_id = %s AND receiver = %s AND status = 'pending'"
        )

        def mark(connection: psycopg.Connection) -> None:
            with connection.cursor() as cursor:
                cursor.executemany(statement + also, list(deliveries))  # type: ignore[arg-type]

        write_through_outage(self.pool, mark, 0.0)

    def claim(self, alert_id: str, receiver: str, lease_s: float) -> Delivery | UnreadableDelivery | None:
        """This worker's delivery, for `lease_s`; None when it is not due (done, or another worker's);
        an UnreadableDelivery, rejected, when its alert cannot be read or its watch-list entry was removed
        (STILL_LISTED). A rejected probe hands its mark on to the oldest delivery its receiver holds, due at
        once (HAND_ON), as a probe refused by the receiver does: the held ones did not wait ALERT_HOLD_S."""

        def claim(connection: psycopg.Connection) -> Delivery | UnreadableDelivery | None:
            row = connection.execute(CLAIM, (lease_s, alert_id, receiver)).fetchone()
            if row is None:
                return None
            try:
                alert = Alert.model_validate(row[0])
            except ValidationError as error:
                return self._rejected_at_claim(connection, alert_id, receiver, unreadable(error), row[4])
            listed = (
                connection.execute(STILL_LISTED, (alert.list_name, alert.watch_plate))
                if alert.list_name is not None
                else connection.execute(STILL_LISTED_ANYWHERE, (alert.watch_plate,))
            )
            if not (found := listed.fetchone()) or not found[0]:
                return self._rejected_at_claim(connection, alert_id, receiver, WITHDRAWN, row[4])
            return Delivery(alert, receiver, int(row[1]), float(row[2]), float(row[3]), row[4])

        return write_through_outage(self.pool, claim, self.patience_s)

    def _rejected_at_claim(
        self, connection: psycopg.Connection, alert_id: str, receiver: str, reason: str, last_error: str | None
    ) -> UnreadableDelivery:
        """The delivery just claimed, rejected for `reason`, and, where it was its receiver's probe, the mark
        handed on (HAND_ON, due at once): said in the UnreadableDelivery (`probe`, `handed`)."""
        connection.execute(REJECT_CLAIMED, (reason, alert_id, receiver))
        if not (last_error or "").startswith(PROBE):
            return UnreadableDelivery(receiver, reason)
        values = {"receiver": receiver, "requeue_after_s": defaults.ALERT_REQUEUE_AFTER_S, "held": HELD,
                  "probe": PROBE, "handed": HANDED_ON_AT_CLAIM, "due_in_s": 0.0}  # fmt: skip
        row = connection.execute(HAND_ON, values).fetchone()
        return UnreadableDelivery(receiver, reason, probe=True, handed=str(row[0]) if row else None)

    def delivered(self, delivery: Delivery, release_per_s: float | None = None) -> int:
        """Recorded delivered (while the claim is still this worker's); when it was its receiver's probe
        and `release_per_s` is given, in the same transaction its held deliveries due again (RELEASE): how
        many. Two writes, a worker killed between them left the held ones to wait ALERT_HOLD_S."""
        values = {"receiver": delivery.receiver, "per_s": release_per_s, "held": HELD, "released": RELEASED,
                  "probe": PROBE}  # fmt: skip

        def delivered(connection: psycopg.Connection) -> int:
            recorded = connection.execute(
                "UPDATE alert_deliveries SET status = 'delivered', delivered_at = now(), last_error = NULL"
                " WHERE alert_id = %s AND receiver = %s" + MINE,
                (delivery.alert.alert_id, delivery.receiver, delivery.attempt),
            ).rowcount
            if not (recorded and delivery.probe and release_per_s):
                return 0
            return connection.execute(RELEASE, values).rowcount

        return write_through_outage(self.pool, delivered, self.patience_s)

    def refused_probe(
        self,
        delivery: Delivery,
        error: str,
        requeue_after_s: float,
        retry_in_s: float | None = None,
        hand_on_in_s: float = 0.0,
        attempted: bool = False,
    ) -> str | None:
        """Its receiver's probe refused by a receiver that answers (`DeliveryRejected.answered`), or refused
        for now (`for_now`): recorded rejected, or pending again in `retry_in_s` where given (while the claim
        is still this worker's), and, in the same transaction, the mark handed to the oldest delivery it holds,
        due in `hand_on_in_s` (HAND_ON): its id, or None where none is held. Rejected alone, it left the held
        ones to wait ALERT_HOLD_S with the receiver back. `attempted`: refused otherwise than for now (UNREFUSED)."""
        values = {"receiver": delivery.receiver, "requeue_after_s": requeue_after_s, "held": HELD, "probe": PROBE,
                  "handed": HANDED_ON, "due_in_s": hand_on_in_s}  # fmt: skip
        mine = (delivery.alert.alert_id, delivery.receiver, delivery.attempt)
        if retry_in_s is None:
            statement = "UPDATE alert_deliveries SET status = 'rejected', last_error = %s, next_attempt_at = now()"
            recorded_values: tuple[object, ...] = (escape_controls(error)[:500], *mine)
        else:
            statement = ("UPDATE alert_deliveries SET status = 'pending', last_error = %s, queued_at = NULL,"
                         " next_attempt_at = now() + make_interval(secs => %s)")  # fmt: skip
            recorded_values = (escape_controls(error)[:500], retry_in_s, *mine)
        statement += UNREFUSED if attempted else ""

        def refused(connection: psycopg.Connection) -> str | None:
            recorded = connection.execute(
                statement + " WHERE alert_id = %s AND receiver = %s" + MINE,  # type: ignore[arg-type]
                recorded_values,
            ).rowcount
            row = connection.execute(HAND_ON, values).fetchone() if recorded else None
            return str(row[0]) if row else None

        return write_through_outage(self.pool, refused, self.patience_s)

    def retry_after(self, delivery: Delivery, delay_s: float, error: str, attempted: bool = False) -> None:
        """Back to pending, due again in `delay_s`; `attempted`: after an attempt that was not refused for
        now (UNREFUSED), not one put off untried or refused for now."""
        self._update(
            "UPDATE alert_deliveries SET status = 'pending', next_attempt_at = now() + make_interval(secs => %s),"
            " queued_at = NULL, last_error = %s"
            + (UNREFUSED if attempted else "")
            + " WHERE alert_id = %s AND receiver = %s"
            + MINE,
            (delay_s, escape_controls(error)[:500], delivery.alert.alert_id, delivery.receiver, delivery.attempt),
        )

    def give_up(
        self, delivery: Delivery, status: Literal["failed", "rejected"], error: str, attempted: bool = False
    ) -> None:
        """Given up (`status`) saying why; `attempted` as for `retry_after`."""
        self._update(
            "UPDATE alert_deliveries SET status = %s, last_error = %s, next_attempt_at = now()"  # when given up
            + (UNREFUSED if attempted else "")
            + " WHERE alert_id = %s AND receiver = %s"
            + MINE,
            (status, escape_controls(error)[:500], delivery.alert.alert_id, delivery.receiver, delivery.attempt),
        )

    def due(
        self,
        requeue_after_s: float,
        limit: int,
        per_receiver: int | None = None,
        capped: Mapping[str, int] | None = None,
    ) -> list[tuple[str, str, int]]:
        """(alert id, receiver, attempts so far) of the deliveries to queue now, marked queued: `limit` in
        all, `per_receiver` of each receiver (default `limit`), or its own cap in `capped`."""
        caps = dict(capped or {})
        values = {"requeue_after_s": requeue_after_s, "limit": limit, "per_receiver": per_receiver or limit,
                  "capped": list(caps), "caps": list(caps.values()), "probe": PROBE}  # fmt: skip

        def due(connection: psycopg.Connection) -> list[tuple[str, str, int]]:
            return [(str(a), str(r), int(n)) for a, r, n in connection.execute(DUE, values)]

        return write_through_outage(self.pool, due, 0.0)

    def pending_counts(self) -> dict[str, int]:
        """Deliveries not made yet (pending, or being sent), per receiver; one attempt (an outage raises)."""

        def count(connection: psycopg.Connection) -> dict[str, int]:
            return {str(receiver): int(number) for receiver, number in connection.execute(PENDING_BY_RECEIVER)}

        return write_through_outage(self.pool, count, 0.0, "read")

    def add_missing(self, receivers: Mapping[str, ListFilter], max_age_s: float) -> list[tuple[str, str]]:
        """(alert id, receiver) of the deliveries added to these `receivers` (name -> the lists it takes) for
        the alerts of their lists raised less than `max_age_s` ago (Postgres's clock) that had none: the
        raiser's receivers file did not name them."""
        if not receivers:
            return []
        names = list(receivers)
        lists = [None if (taken := receivers[name]) is None else ",".join(sorted(taken)) for name in names]

        def add(connection: psycopg.Connection) -> list[tuple[str, str]]:
            rows = connection.execute(ADD_MISSING, (names, lists, max_age_s))
            return [(str(a), str(r)) for a, r in rows]

        return write_through_outage(self.pool, add, 0.0)

    def replay(self, max_age_s: float, dry_run: bool = False) -> list[tuple[str, str]]:
        """Failed and rejected deliveries given up less than `max_age_s` ago (`give_up` notes when in
        next_attempt_at) back to pending, tried afresh for ALPR_ALERT_GIVE_UP_S (after the receiver or its
        settings were mended); (alert id, receiver) of each. Older ones stay: a receiver mended after weeks
        would flood dispatch with stale hits. The attempts count on (each is a claim's token): reset, a
        new claim took the number a stalled worker still held, whose late outcome then overwrote it."""
        recent = " WHERE status IN ('failed', 'rejected') AND next_attempt_at > now() - make_interval(secs => %s)"
        statement = (
            "SELECT alert_id, receiver FROM alert_deliveries" + recent
            if dry_run
            else "UPDATE alert_deliveries SET status = 'pending', next_attempt_at = now(),"
            " queued_at = now(), retry_from = now(), last_error = NULL" + recent + " RETURNING alert_id, receiver"
        )

        def replay(connection: psycopg.Connection) -> list[tuple[str, str]]:
            rows = connection.execute(statement, (max_age_s,))  # type: ignore[arg-type]
            return [(str(a), str(r)) for a, r in rows]

        return write_through_outage(self.pool, replay, self.patience_s, "read" if dry_run else "write")

    def clock_s(self) -> float:
        """Postgres's clock now (Unix seconds): the one deliveries are signed by (`Delivery.claimed_at_s`)."""
        with self.pool.connection() as connection:
            row = connection.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
            return float(row[0]) if row else 0.0

    def counts(self) -> dict[str, int]:
        """Deliveries per status."""
        with self.pool.connection() as connection:
            rows = connection.execute("SELECT status, count(*) FROM alert_deliveries GROUP BY status")
            return {str(status): int(number) for status, number in rows}

    def recent_counts(self, window_s: float) -> dict[str, int]:
        """Deliveries per status: every one still pending or being sent (alert_deliveries_due), and those of
        the alerts raised in the last `window_s` seconds (alerts_by_created) that ended: never every row of a
        table kept for ever (`alpr status`)."""
        with self.pool.connection() as connection:
            rows = connection.execute(RECENT_DELIVERY_COUNTS, (window_s,))
            return {str(status): int(number) for status, number in rows}

    def _update(self, statement: str, values: tuple[object, ...]) -> None:
        def update(connection: psycopg.Connection) -> None:
            connection.execute(statement, values)  # type: ignore[arg-type]

        write_through_outage(self.pool, update, self.patience_s)

"""The statements the alert pool's view of the alerts log runs (`AlertLog`, common/alert_log.py): the
claim of one delivery (CLAIM, with the checks that reject it there: STILL_LISTED, STILL_LISTED_ANYWHERE,
REJECT_CLAIMED), the guard on every outcome written (MINE), the round's queueing of what is due (DUE_ROWS,
DUE) and of the deliveries an alert lacks (ADD_MISSING), and the counts it and `alpr status` read
(PENDING_BY_RECEIVER, RECENT_DELIVERY_COUNTS). Those that act on a failing receiver's backlog as a whole
are common/alert_holds.py's; those that raise an alert, common/alert_raising.py's."""

CLAIM = """
UPDATE alert_deliveries d SET status = 'sending', attempts = d.attempts + 1,
    next_attempt_at = now() + make_interval(secs => %s)
FROM alerts a
WHERE d.alert_id = %s AND d.receiver = %s AND a.alert_id = d.alert_id
    AND d.status IN ('pending', 'sending') AND d.next_attempt_at <= now()
RETURNING a.body, d.attempts, extract(epoch FROM now() - d.retry_from), extract(epoch FROM now()), d.last_error
"""
"""A delivery due now (pending, or being sent by a worker whose lease ran out): this worker's, for
the lease; the alert, the attempt's number (this claim's token), how long it has been tried, Postgres's
clock (what its webhook is signed at) and its last error (the claim leaves it: a probe's mark, PROBE)."""

STILL_LISTED = "SELECT EXISTS (SELECT 1 FROM watchlist WHERE list_name = %s AND plate = %s)"
"""Whether the entry an alert matched is listed still, by the primary key: 0.03 ms of a list of 100,000. An
entry expired since is listed still (an alert raised on it is delivered, as a car seen before its entry
expired is alerted on); one removed is not, one removed and added again since is."""

STILL_LISTED_ANYWHERE = "SELECT EXISTS (SELECT 1 FROM watchlist WHERE plate = %s)"
"""STILL_LISTED for a version 1 body, which names no list: its plate on any list (no index on the plate alone:
10 ms of a list of 100,000; such bodies come from sighting workers of an earlier version only). Two statements,
not one with `list IS NULL OR`: a prepared statement's generic plan would scan the table for every claim."""

REJECT_CLAIMED = """
UPDATE alert_deliveries SET status = 'rejected', last_error = %s, next_attempt_at = now()
WHERE alert_id = %s AND receiver = %s
"""
"""A delivery claimed in this transaction, rejected for good by the claim itself (UnreadableDelivery)."""

MINE = " AND status = 'sending' AND attempts = %s"
"""An outcome is recorded only by the worker whose claim is still the delivery's: a worker whose lease
ran out mid-send (another has claimed it since) changes nothing."""

DUE_ROWS = """
status IN ('pending', 'sending') AND next_attempt_at <= now()
    AND ((status = 'sending' AND (queued_at IS NULL OR queued_at < next_attempt_at))
        OR queued_at IS NULL OR queued_at < now() - make_interval(secs => %(requeue_after_s)s))
"""
"""Deliveries due and not queued lately (a retry after its back-off; a job never queued), or being
sent by a worker whose lease ran out (it died mid-delivery)."""

DUE = f"""
WITH ranked AS (
    SELECT alert_id, receiver, row_number() OVER (PARTITION BY receiver
        ORDER BY starts_with(coalesce(last_error, ''), %(probe)s) DESC, next_attempt_at, retry_from, alert_id) AS n
    FROM alert_deliveries WHERE {DUE_ROWS}
), queued AS (
    UPDATE alert_deliveries SET queued_at = now()
    WHERE (alert_id, receiver) IN (
        SELECT d.alert_id, d.receiver FROM alert_deliveries d JOIN ranked r USING (alert_id, receiver)
            LEFT JOIN unnest(%(capped)s::text[], %(caps)s::int[]) AS c(receiver, cap) ON c.receiver = d.receiver
        WHERE r.n <= coalesce(c.cap, %(per_receiver)s) AND {DUE_ROWS}
        ORDER BY d.next_attempt_at LIMIT %(limit)s FOR UPDATE OF d SKIP LOCKED
    )
    RETURNING alert_id, receiver, attempts, next_attempt_at, retry_from
)
SELECT alert_id, receiver, attempts FROM queued ORDER BY next_attempt_at, retry_from, alert_id
"""
"""The deliveries due (DUE_ROWS), the earliest first, at most `per_receiver` of each receiver (or its cap
in `capped`: 0 for one resting, 1, its probe, for one that failed last; a probe due is a receiver's first, ahead
of the retries of alerts refused for now, which came due with it rest after rest), `limit` in all: marked queued now,
and returned in the order they came due (a receiver's held backlog, released oldest first, is sent so).
One receiver's backlog (a day of alerts to one that was down) is queued a share a round, never all at once
ahead of the other receivers' alerts."""

ADD_MISSING = """
INSERT INTO alert_deliveries (alert_id, receiver)
SELECT a.alert_id, r.receiver FROM alerts a CROSS JOIN unnest(%s::text[], %s::text[]) AS r(receiver, lists)
WHERE a.created_at > now() - make_interval(secs => %s)
    AND (r.lists IS NULL OR a.body ->> 'list_name' = ANY (string_to_array(r.lists, ',')))
    AND NOT EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.alert_id = a.alert_id AND d.receiver = r.receiver)
ON CONFLICT DO NOTHING
RETURNING alert_id, receiver
"""
"""A pending delivery, never queued (so `due` queues it), to each of these receivers for every alert raised
lately (migration 19's index) that has none and whose list it takes (`lists`: the names joined by commas, which
no list name holds; NULL: every list, a body that names none included): a delivery there already, whatever its
state, is left as it is, and a receiver not among these gets nothing."""


PENDING_BY_RECEIVER = """
SELECT receiver, count(*) FROM alert_deliveries WHERE status IN ('pending', 'sending') GROUP BY receiver
"""
"""Deliveries not made yet per receiver (the index alert_deliveries_due holds these rows alone)."""

RECENT_DELIVERY_COUNTS = """
SELECT status, count(*) FROM alert_deliveries WHERE status IN ('pending', 'sending') GROUP BY status
UNION ALL
SELECT d.status, count(*) FROM alerts a JOIN alert_deliveries d ON d.alert_id = a.alert_id
WHERE a.created_at >= statement_timestamp() - make_interval(secs => %s) AND d.status NOT IN ('pending', 'sending')
GROUP BY d.status"""
"""Deliveries per status: every one not made yet (alert_deliveries_due), and those that ended of the alerts
raised in the last so many seconds (alerts_by_created): never every row of a table kept for ever."""

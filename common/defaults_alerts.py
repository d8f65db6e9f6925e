"""Defaults of the alert pool's deliveries: retries and back-off, leases, requeues, the grace given
an unknown or refusing receiver, the holding and release of a failing receiver's deliveries, lanes.
Read them as `defaults.NAME` (common/defaults.py), not from this module."""

from __future__ import annotations

ALERT_GIVE_UP_S = 86400.0
"""How long an alert's delivery is retried (a day) before it is marked failed (`alpr replay --stage alert`)."""

ALERT_BACKOFF_S = (1.0, 60.0)
"""First and longest wait between an alert's delivery attempts (doubling): a receiver back after
minutes of downtime gets its alerts within a minute."""

ALERT_MAINTENANCE_S = 1
"""How often an idle alert worker queues the deliveries that are due (retries after their back-off)."""

ALERT_REQUEUE_AFTER_S = 30.0
"""A due delivery queued this long ago and still not sent (its job lost with a worker) is queued again."""

ALERT_UNCONFIRMED_S = 3.0
"""How long after its commit a new alert's delivery waits for its raiser to say it queued the job, before
the alert pool queues it itself (a raiser killed in between)."""

ALERT_UNKNOWN_RECEIVER_GRACE_S = 900.0
"""A delivery to a receiver this worker's receivers file does not name is retried this long before it is
rejected: while the pools are restarted with a new file, a sighting worker already raising alerts to a
new receiver would have its deliveries rejected by an alert worker not restarted yet. So is a delivery a
receiver refused in a way that may be its state for a while (404, 410, 401, 403, a redirect: a maintenance
window, a deploy; alert_worker/webhook.REFUSED_FOR_NOW), counted from the alert."""

ALERT_MISSING_RECEIVER_S = ALERT_UNKNOWN_RECEIVER_GRACE_S
"""An alert raised this recently (by Postgres's clock) with no delivery to a receiver the alert worker's
file names is given one by the alert pool: a sighting worker still on an older receivers file (a rolling
restart) raised it without the receiver just added, which never got it, and `alpr replay` had no
delivery to resend. The window the pool gives such a restart the other way round; older alerts are left
(a receiver added today is not sent last week's)."""

ALERT_REFUSAL_GAP_MARGIN_S = 30.0
"""A worker's run of a receiver's refusals for now ends where none came for the longest rest (ALERT_BACKOFF_S)
plus this (a round, a lease): the grace counts from the refusal after the gap."""

ALERT_LEASE_MARGIN_S = 5.0
"""A claimed delivery's lease: the receiver's timeout plus this; past it another worker may send it."""

ALERT_HOLD_S = 600.0
"""How long a failing receiver's pending deliveries are held while one probe is tried each rest: a failed
probe holds them again, one that succeeds makes them due (ALERT_RELEASE_PER_S), whichever worker sends it
(marked in the alerts log: the probe of a worker killed or frozen is sent by another once it is due, or
once its claim's lease runs out). Held this long at most: when no probe is left to answer."""

ALERT_PENDING_COUNT_S = 10.0
"""How often an alert worker counts the deliveries pending per receiver in the alerts log, for its
`alpr_alert_deliveries_pending` (one indexed query: the pending rows alone)."""

ALERT_RELEASE_PER_S = 20.0
"""How many of a receiver's held deliveries come due a second once it answers again, the oldest first."""

ALERT_DUE_PER_RECEIVER = 100
"""Most due deliveries of one receiver the pool's round queues (of 1,000 in all): one receiver's backlog
(a day's alerts to a receiver that was down) is not queued at once ahead of every other receiver's alerts."""

ALERT_LANE_BACKLOG = 1000
"""Most alert jobs waiting for one receiver's lane in one worker (alert_worker/lanes.py), as many as one
round of the pool's `due` queues: a job past it stays pending and is queued again ALERT_REQUEUE_AFTER_S
later. Fewer would idle a fast receiver's lane for that long after a burst (a receiver back from an
outage gets its held alerts ALERT_RELEASE_PER_S a second, up to ALERT_DUE_PER_RECEIVER a round)."""

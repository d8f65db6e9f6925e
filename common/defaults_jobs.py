"""Defaults of the chain's RQ jobs and workers: retries, timeouts and time budgets, leases and recovery
after a worker's death, how long RQ keeps records, frames' freshness, pool sizing.
Read them as `defaults.NAME` (common/defaults.py), not from this module."""

from __future__ import annotations

JOB_RETRIES = 2
"""How often a failed job is queued again (common/queues.py); a job hash asking for more is held to it."""

JOB_TIMEOUT_S = 120
"""Longest one job may run before RQ fails it."""

JOB_TIME_BUDGET_SHARE = 0.75
"""Share of the job timeout a detect or OCR job's frames may take: a frame not begun by then (or whose
work, at the job's pace so far, would end past it) is passed on as skipped, `over job time budget`,
and the job ends in time. A job of more work than its timeout (16 frames from an 8K camera, 7 s each
on 2 cores; 1,600 plates in one OCR job) timed out on every attempt, and none of its frames was
detected or read (a review)."""

WORKER_MAINTENANCE_S = 15
"""How often an idle worker cleans RQ's registries: the job of a worker that died is queued again
(while it has retries left) within this long of its heartbeat expiring."""

WORKER_STEADY_S = 30.0
"""An RQ worker that lost Redis sooner than this after it started is followed by the next only after a
backoff (RECONNECT_BACKOFF_S): a Redis that answers PING but refuses the worker's writes (full, or a
read-only replica) had each pool start some 1,500 workers a second, one core busy, the log flooded."""

WORKER_NAME_TOKEN_BYTES = 4
"""Random bytes in an RQ worker's name (hex, after its stage, host, pid and run): a container's worker is
pid 1 on a hostname kept across restarts, and one restarted after a SIGKILL took the dead one's name, whose
registration RQ keeps up to a minute and a half: RQ refused the name and the process crash-looped."""

WORKER_NAME_CLASH_BACKOFF_S = (1.0, 60.0)
"""First and longest wait before a worker whose name RQ found registered already (forged in Redis: the
random part makes a true clash unlikely past belief) tries again under a new one: a Redis that answers
every name as taken gets a line a minute, not a busy core."""

FAILURE_TTL_S = 7 * 24 * 3600
"""How long failed jobs stay in RQ's failed registry for inspection and replay: one week."""

LEFT_JOB_TTL_S = 3600
"""How long a job left for good (refused: not the chain's, or signed with another key; rejected:
malformed) stays in RQ's failed registry: counted by `alpr replay` and its reason readable for an hour,
never replayed. Kept the week of FAILURE_TTL_S, a node with another ALPR_JOB_KEY filled Redis with them
(6.4 KB each: about 9 GB a day from a 50-camera node, a soak review)."""

RESULT_TTL_S = 60
"""How long RQ keeps a finished job's record."""

MAX_FRAME_AGE_S = 30.0
"""Longest a frame may take from capture to logged: under overload, frames that would be older are
skipped (counted, recorded) rather than processed minutes late, so the processed ones stay fresh."""

MAX_AGE_QUEUED_SHARE = 0.8
"""Share of MAX_FRAME_AGE_S a frame may spend before its detection starts; the rest is left for
detection, reading, redaction and the writes (a frame older than this at detection is skipped)."""

JOB_LEASE_S = 15
"""A running job's lease in RQ's started registry, renewed every JOB_LEASE_S / 3 by the worker's
heartbeat thread: a killed worker's job is found abandoned this long after its last renewal."""

TARGET_BUSY = 0.8
"""Share of its workers' time a pool should be busy at the current input: `alpr status` sizes pools
to it, leaving room for bursts."""

RECOVERY_S = JOB_LEASE_S + 2 * WORKER_MAINTENANCE_S + 30
"""Longest time from a worker's death to its job running again (lease, registry cleaning, an idle
worker's wake-up) plus a margin: frames must outlive JOB_TIMEOUT_S + this, which config checks."""

REPEATED_LOG_INTERVAL_S = 60.0
"""An event that may repeat for every job (a job refused for its signature, an RQ command refused) is
logged at once, then at most this often, with the count since (`common.log_throttle`)."""

"""Which of the deliveries the alert pool's round finds due still have their job waiting in the alert queue
(so none is queued twice): each due job's id is looked for itself, never a window of the queue read. The
round read the queue's last 10,000 ids, where new jobs are pushed; but RQ pushes at the tail and workers
take from the head, so the jobs due again (queued 30 s ago, still waiting) sat at the head of a longer
queue, unseen, and were queued a second time (a review: two copies of each behind 12,000 jobs).

A job waits where RQ's record of it says `queued` (compared in Redis: nothing of a record is sent) and the
queue, or RQ's list of the jobs its workers have taken and not yet started, holds its id (LPOS with MAXLEN:
a bounded scan in Redis, no entry sent). A queue longer than MAX_QUEUE_SEARCHED is not searched: there the
record's word is taken, and a job lost from it is queued again once the queue is short enough to tell. A
record gone, or of another status (started, finished, failed), or a job neither list holds (lost with a
worker, or with Redis): not waiting.

A job in the taken list is there for the moment between a worker's taking it and starting it; one a worker
killed in that moment stays there, and it waited for ever (a delivery due 30 s after the kill was left pending
until RQ's own cleaning failed the job a minute or more later: the alert test that kills a worker saw it).
So a due job found only there is looked for again TAKEN_SETTLE_S later: gone from it, a worker started it
(waiting, not queued twice); still there, it is stuck: taken off the list (RQ's cleaning would otherwise fail
the job queued anew under its id) and not waiting. A live worker stalled past the pause makes one attempt
too many, which the delivery's claim turns away."""

from __future__ import annotations

import time

from rq import Queue
from rq.job import Job as RqJob
from rq.job import JobStatus

MAX_QUEUE_SEARCHED = 20_000
"""The longest alert queue searched for a due job's id (one LPOS per id queued by its record: 1,000 ids
not found in 20,000 entries took 0.3 s of Redis's time, in commands of 0.2 ms each; a round looks only for
its due deliveries' ids, at most its due limit)."""

TAKEN_SETTLE_S = 0.5
"""How long a due job found only in the taken list is given to leave it (a live worker starts a job it took
within milliseconds) before it is held stuck there."""

STATUS_IS = """
local out = {}
for i, key in ipairs(KEYS) do
    out[i] = redis.pcall('HGET', key, 'status') == ARGV[1] and 1 or 0
end
return out
"""
"""For each RQ job record KEYS[i], 1 where its status is ARGV[1] (none, or a key of another type: 0)."""


def waiting(queue: Queue, job_ids: list[str], settle_s: float = TAKEN_SETTLE_S) -> set[str]:
    """Of `job_ids`, those whose job waits in `queue` (the module's docstring); those stuck in its taken
    list (still there `settle_s` after they were first found there) are taken off it and not waiting."""
    if not job_ids:
        return set()
    keys = [RqJob.key_for(job_id) for job_id in job_ids]
    with queue.connection.pipeline(transaction=False) as pipeline:
        pipeline.llen(queue.key)
        pipeline.eval(STATUS_IS, len(keys), *keys, JobStatus.QUEUED.value)
        length, statuses = pipeline.execute()
    queued = [job_id for job_id, status in zip(job_ids, statuses, strict=True) if status == 1]
    if not queued or length > MAX_QUEUE_SEARCHED:
        return set(queued)
    with queue.connection.pipeline(transaction=False) as pipeline:
        for job_id in queued:
            pipeline.lpos(queue.key, job_id, maxlen=MAX_QUEUE_SEARCHED)
            pipeline.lpos(queue.intermediate_queue_key, job_id, maxlen=MAX_QUEUE_SEARCHED)
        found = pipeline.execute()
    pairs = list(zip(queued, found[::2], found[1::2], strict=True))
    held = {job_id for job_id, in_queue, _ in pairs if in_queue is not None}
    taken = [job_id for job_id, in_queue, in_taken in pairs if in_queue is None and in_taken is not None]
    return held | (set(taken) - stuck(queue, taken, settle_s))


def stuck(queue: Queue, taken: list[str], settle_s: float) -> set[str]:
    """Of the ids found in `queue`'s taken list, those still there and still `queued` after `settle_s`,
    each taken off the list (and RQ's note of when its cleaning first saw it there dropped)."""
    if not taken:
        return set()
    time.sleep(settle_s)
    keys = [RqJob.key_for(job_id) for job_id in taken]
    with queue.connection.pipeline(transaction=False) as pipeline:
        pipeline.eval(STATUS_IS, len(keys), *keys, JobStatus.QUEUED.value)
        for job_id in taken:
            pipeline.lpos(queue.intermediate_queue_key, job_id, maxlen=MAX_QUEUE_SEARCHED)
        statuses, *found = pipeline.execute()
    pairs = zip(taken, statuses, found, strict=True)
    left = [job_id for job_id, status, at in pairs if status == 1 and at is not None]
    with queue.connection.pipeline(transaction=False) as pipeline:
        for job_id in left:
            pipeline.lrem(queue.intermediate_queue_key, 0, job_id)
            pipeline.delete(queue.intermediate_queue.get_first_seen_key(job_id))
        pipeline.execute()
    return set(left)

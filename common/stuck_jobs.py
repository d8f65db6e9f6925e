"""What a worker makes of a job RQ's cleaning finds stuck in a queue's intermediate list (`stuck_job`): RQ moves
a job there as a worker takes it, and takes it off once the job is in the started registry; a job found there,
not started, a minute after the cleaning first noted it (a key of its own, kept a day) is failed by RQ through
the cleaning worker's handle_job_failure, which queues it again while it has retries. That is right for a job
lost between its worker taking it and starting it (the worker killed: SIGKILL, the OOM killer), and wrong for
two others a review found: a job whose worker was killed after starting it but before taking it off the list
was queued again by the registry cleaning once its lease lapsed, then a second time here (run twice, a retry
spent; one that had run since was queued again once done); and after one real loss, RQ's note stays a day, so
a live worker that had just taken the job queued again had it counted abandoned and queued a second time."""

from __future__ import annotations

from typing import Literal

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.utils import now

STUCK_IN_INTERMEDIATE = "Job was stuck in intermediate queue."
"""What RQ's cleaning of a queue's intermediate list (rq/intermediate_queue.py, IntermediateQueue.cleanup) fails
a job with, through the cleaning worker's handle_job_failure and none of its exception handlers: a job moved
there as a worker took it, neither started since (not in the started registry) nor taken off, a minute after
the cleaning first found it."""

FIRST_SEEN_TTL_S = 24 * 3600
"""How long RQ keeps its note of when its cleaning first found a job id in the intermediate list."""

Stuck = Literal["lost", "not lost", "noted before its queueing", "unknown"]
"""What a job found stuck is (`stuck_job`)."""


def stuck_job(job: Job, queue: Queue) -> Stuck:
    """What the job RQ found stuck in `queue`'s intermediate list is, with what that asks done in Redis:

    - "lost": taken and never started (still queued, and in the queue no more), noted there since its latest
      queueing: RQ's failing it queues it again (or fails it, its retries spent); the worker counts it.
    - "not lost": back in its queue (the registry cleaning queued it again once its lease lapsed, counted then:
      its worker was killed between starting it and taking it off the list) or not queued at all (run since,
      failed, refused): RQ must not fail it again; the cleaning drops the entry, and the note of it is let go
      so that the job's next taking is noted afresh.
    - "noted before its queueing": RQ's note predates the job's latest queueing (a loss before, or a cleaning
      that found it between a taking and its start): the entry is the latest taker's, perhaps alive and about to
      start it. It is noted as found now and kept in the list (one more entry of it, for the one the cleaning
      drops next), so that it is failed a minute on only if it is still there, never started.
    - "unknown": Redis could not be read; RQ's failing goes ahead as it would, not counted."""
    connection = queue.connection
    try:
        if job.get_status(refresh=True) != JobStatus.QUEUED or connection.lpos(queue.key, job.id) is not None:
            connection.delete(queue.intermediate_queue.get_first_seen_key(job.id))
            return "not lost"
        noted, queued = queue.intermediate_queue.get_first_seen(job.id), job.enqueued_at
        if noted is None or queued is None or noted >= queued:
            return "lost"
        # the queueing's clock may be another host's, ahead: noted at it, so that the next look is not older
        found_now = max(now(), queued).timestamp()
        with connection.pipeline() as pipe:
            pipe.set(queue.intermediate_queue.get_first_seen_key(job.id), found_now, ex=FIRST_SEEN_TTL_S)
            pipe.rpush(queue.intermediate_queue.key, job.id)
            pipe.execute()
        return "noted before its queueing"
    except redis.RedisError:
        return "unknown"

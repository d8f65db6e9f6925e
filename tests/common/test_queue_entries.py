"""A worker's search for the queue entries RQ cannot fetch, against entries forged by another client of a
private Redis (common/queue_entries.py): it read a queue's intermediate list and started registry whole,
a TYPE round trip an entry, at every registry cleaning (200,000 forged in each: 50 s and 11 MB a cleaning)."""

from __future__ import annotations

import time

import redis

from common.metrics import Metrics
from common.queue_entries import MOST_PER_CLEANING, STEP
from common.queues import stage_queue
from common.worker import StageWorker
from common.worker_context import WorkerContext
from tests.common.recording_stage import Recorder

FORGED = 200_000
"""Entries forged in each key: valid ids with no job, which RQ passes over and nothing drops."""


def test_forged_entries_are_looked_at_within_bounds_and_a_bad_one_anywhere_is_dropped_in_time(redis_url):
    connection = redis.Redis.from_url(redis_url)
    queue = stage_queue(connection, "detect")
    intermediate, started = queue.intermediate_queue_key, queue.started_job_registry.key
    with connection.pipeline(transaction=False) as pipeline:
        for first in range(0, FORGED, 1000):
            names = [f"forged-{n:06d}" for n in range(first, first + 1000)]
            pipeline.rpush(intermediate, *names)
            pipeline.zadd(started, {f"{name}:x": 4e9 + n for n, name in enumerate(names, first)})
        pipeline.execute()
    connection.set("rq:job:evil", "x")  # a job key that is no hash: RQ's fetch raises WRONGTYPE
    connection.linsert(intermediate, "BEFORE", f"forged-{FORGED // 2:06d}", b"\xff\xfe")  # in the middle
    connection.rpush(intermediate, "has space")  # where a dequeue leaves the entry it could not fetch
    connection.zadd(started, {"evil:x": 4e9 + FORGED * 3 // 4})  # three quarters in
    worker = StageWorker(queue, WorkerContext(Recorder(), Metrics()))  # type: ignore[arg-type]
    sent = connection.info("stats")["total_net_output_bytes"]
    began = time.perf_counter()
    dropped = worker.drop_unfetchable(queue)
    took_s = time.perf_counter() - began
    sent = connection.info("stats")["total_net_output_bytes"] - sent
    assert took_s < 1.0 and sent < 100_000, (took_s, sent)  # were 50 s and 11 MB
    assert dropped == 1 and connection.lindex(intermediate, -1) == b"forged-199999"  # the dequeue's, at once
    cleanings = 1
    while connection.llen(intermediate) + connection.zcard(started) > 2 * FORGED:
        dropped += worker.drop_unfetchable(queue)
        cleanings += 1
        assert cleanings <= FORGED // (MOST_PER_CLEANING - STEP) + 2, "a bad entry never reached"
    assert dropped == 3 and connection.llen(intermediate) == connection.zcard(started) == FORGED
    print(f"\n{FORGED} forged in each: a cleaning {took_s:.3f} s, {sent} bytes sent; all three bad ones dropped"
          f" within {cleanings} cleanings")  # fmt: skip

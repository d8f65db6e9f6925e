"""Which due deliveries' jobs still wait in the alert queue (alert_worker/waiting.py), on a private Redis
with jobs queued as the chain queues them: each id looked for itself, at either end of the queue or taken
by a worker and not yet started; a job lost, started, or whose record is forged waits no longer."""

from __future__ import annotations

from alert_worker.waiting import MAX_QUEUE_SEARCHED, waiting
from common.jobs import alert_job, job_id
from common.queues import connect_redis, enqueue, stage_queue


def test_each_due_job_is_found_wherever_the_queue_or_its_workers_hold_it(redis_url):
    queue = stage_queue(connect_redis(redis_url), "alert")
    jobs = {name: alert_job(f"read-a{n:015d}", "ops", 1) for n, name in enumerate(
        ("head", "tail", "taken", "lost", "started", "forged", "gone"))}  # fmt: skip
    ids = {name: job_id(job.stage, job.batch_id) for name, job in jobs.items()}
    for name in ("head", "taken", "lost", "started", "forged", "gone"):
        enqueue(queue, jobs[name], 60)
    connection = queue.connection
    connection.rpush(queue.key, *(f"alert-other-{n:06d}" for n in range(15_000)))  # newer jobs behind
    enqueue(queue, jobs["tail"], 60)
    connection.lrem(queue.key, 0, ids["taken"])
    connection.rpush(queue.intermediate_queue_key, ids["taken"])  # a worker took it, not yet started
    connection.lrem(queue.key, 0, ids["lost"])  # lost (a worker killed between taking and starting it)
    connection.hset(f"rq:job:{ids['started']}", "status", "started")
    connection.delete(f"rq:job:{ids['forged']}")
    connection.set(f"rq:job:{ids['forged']}", "x")  # a client of Redis: no record of RQ's
    connection.delete(f"rq:job:{ids['gone']}")
    assert waiting(queue, list(ids.values())) == {ids["head"], ids["tail"], ids["taken"]}
    assert waiting(queue, []) == set()
    # a queue too long to search: a job its record says is queued is taken at its word
    connection.rpush(queue.key, *(f"alert-other-{n:06d}" for n in range(MAX_QUEUE_SEARCHED)))
    assert waiting(queue, list(ids.values())) == {ids["head"], ids["tail"], ids["taken"], ids["lost"]}

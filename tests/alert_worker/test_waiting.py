"""Which due deliveries' jobs still wait in the alert queue (alert_worker/waiting.py), on a private Redis
with jobs queued as the chain queues them: each id looked for itself, at either end of the queue or taken
by a worker and not yet started; a job lost, started, or whose record is forged waits no longer; one a
killed worker left in the taken list is stuck there, not waiting, and taken off it."""

from __future__ import annotations

import threading

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

    def started(job_id: str) -> None:  # as RQ's worker starts a job it took (prepare_job_execution)
        connection.hset(f"rq:job:{job_id}", "status", "started")
        connection.lrem(queue.intermediate_queue_key, 1, job_id)

    starting = threading.Timer(0.3, started, [ids["taken"]])  # a live worker starts it within the pause
    starting.start()
    assert waiting(queue, list(ids.values()), settle_s=1.0) == {ids["head"], ids["tail"], ids["taken"]}
    starting.join()
    connection.hset(f"rq:job:{ids['taken']}", "status", "queued")
    connection.rpush(queue.intermediate_queue_key, ids["taken"])
    assert waiting(queue, []) == set()
    # a queue too long to search: a job its record says is queued is taken at its word
    connection.rpush(queue.key, *(f"alert-other-{n:06d}" for n in range(MAX_QUEUE_SEARCHED)))
    assert waiting(queue, list(ids.values())) == {ids["head"], ids["tail"], ids["taken"], ids["lost"]}


def test_a_job_a_killed_worker_left_taken_and_never_started_is_stuck_and_taken_off_the_list(redis_url):
    """A worker killed between taking a job (RQ moves its id to the taken list) and starting it left it there,
    `queued`: it was held to be waiting, so the alert pool never queued its due delivery again."""
    queue = stage_queue(connect_redis(redis_url), "alert")
    stuck_job, live_job = (alert_job(f"read-b{n:015d}", "ops", 1) for n in range(2))
    stuck_id, live_id = (job_id(job.stage, job.batch_id) for job in (stuck_job, live_job))
    for job in (stuck_job, live_job):
        enqueue(queue, job, 60)
    connection = queue.connection
    for _ in range(2):  # both taken, as RQ's dequeue does
        connection.lmove(queue.key, queue.intermediate_queue_key, "LEFT", "RIGHT")
    connection.set(queue.intermediate_queue.get_first_seen_key(stuck_id), 1)  # RQ's cleaning saw it once
    starting = threading.Timer(0.1, lambda: connection.lrem(queue.intermediate_queue_key, 1, live_id))
    starting.start()  # the live one leaves the list (its status left queued: started and back, say)
    assert waiting(queue, [stuck_id, live_id], settle_s=0.5) == {live_id}
    starting.join()
    assert connection.lrange(queue.intermediate_queue_key, 0, -1) == []
    assert not connection.exists(queue.intermediate_queue.get_first_seen_key(stuck_id))

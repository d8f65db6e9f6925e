"""A job whose worker dies holding it (SIGKILL, the OOM killer) is counted: the surviving worker whose
registry cleaning finds its lease lapsed counts it in alpr_jobs_total{outcome="abandoned"}, each time, as RQ
retries it and, its retries spent, fails it. RQ does both outside any JobRun: a poison job that killed its
worker each time showed no failure at all (a metrics review). Real worker processes, a private Redis."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.registry import FailedJobRegistry
from rq.utils import utcformat

from common import defaults
from common.metrics import Metrics
from common.queues import enqueue, stage_queue
from common.worker import StageWorker
from common.worker_context import WorkerContext
from tests.common.hanging_worker import HANGING_KEY
from tests.common.recording_stage import Recorder, detect_job
from tests.helpers import wait_for

REPO = Path(__file__).resolve().parents[2]
LEASE_S = 2


def minute_passed(connection: redis.Redis, queue: Queue, job_id: str) -> None:
    """RQ's note of when its cleaning first found the job in the intermediate list put a minute back, and the
    job's latest queueing with it (it was queued before it was found there)."""
    first_seen = queue.intermediate_queue.get_first_seen_key(job_id)
    connection.set(first_seen, float(connection.get(first_seen) or 0) - 61)
    job = queue.fetch_job(job_id)
    assert job is not None and job.enqueued_at is not None
    connection.hset(job.key, "enqueued_at", utcformat(job.enqueued_at - timedelta(seconds=61)))


def job_its_worker_died_holding(redis_url: str, name: str, *when: str) -> tuple[redis.Redis, Queue, str]:
    """A detect job `name` enqueued on the private Redis and taken by a real worker process that is SIGKILLed
    holding it (tests.common.dying_worker; `when` its further arguments: none, killed before starting the job;
    `started LEASE_S`, once started): the connection, the detect queue and the job's id."""
    connection = redis.Redis.from_url(redis_url)
    queue = stage_queue(connection, "detect")
    job_id = enqueue(queue, detect_job(name), 60)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "tests.common.dying_worker", redis_url, *when]
    assert subprocess.Popen(command, cwd=REPO, env=env).wait(timeout=60) == -signal.SIGKILL
    return connection, queue, job_id


def hanging_worker(redis_url: str) -> subprocess.Popen:  # type: ignore[type-arg]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "tests.common.hanging_worker", redis_url, str(LEASE_S)]
    return subprocess.Popen(command, cwd=REPO, env=env)


def test_a_job_that_kills_its_worker_each_time_is_counted_abandoned_each_time(redis_url, caplog):
    connection = redis.Redis.from_url(redis_url)
    queue = stage_queue(connection, "detect")
    job_id = enqueue(queue, detect_job("poison"), 60)
    metrics = Metrics()
    survivor = StageWorker(queue, WorkerContext(Recorder(), metrics))  # type: ignore[arg-type]
    counted = metrics.registry.get_sample_value
    assert counted("alpr_jobs_total", {"stage": "detect", "outcome": "abandoned"}) == 0  # exported from the start
    caplog.set_level(logging.WARNING)
    attempts = defaults.JOB_RETRIES + 1
    for attempt in range(1, attempts + 1):
        worker = hanging_worker(redis_url)
        try:
            wait_for(lambda n=attempt: connection.llen(HANGING_KEY) == n, 60, f"the worker to take the job ({attempt})")
            os.kill(worker.pid, signal.SIGKILL)  # dies holding the job, as the OOM killer leaves it
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)
        lapsed = lambda: queue.started_job_registry.get_expired_job_ids() != []  # noqa: E731
        wait_for(lapsed, 30, "the killed worker's lease to lapse")
        survivor.run_maintenance_tasks()  # its registry cleaning, as an idle worker runs it every WORKER_MAINTENANCE_S
        assert counted("alpr_jobs_total", {"stage": "detect", "outcome": "abandoned"}) == attempt
    assert job_id in FailedJobRegistry(queue=queue).get_job_ids()  # its retries spent: failed for good
    assert queue.count == 0
    assert counted("alpr_jobs_total", {"stage": "detect", "outcome": "failed"}) == 0  # no JobRun saw it end
    told = [r.getMessage() for r in caplog.records if "abandoned" in r.getMessage()]
    assert len(told) == attempts and told[0].startswith(f"detect job {job_id} abandoned: its worker died")
    assert told[0].endswith("queued again") and told[-1].endswith("failed, its retries spent")


def test_a_job_whose_worker_died_before_starting_it_is_counted_abandoned(redis_url, caplog):
    """RQ moves the job it takes to the queue's intermediate list, and puts it in the started registry only as
    it starts it: a worker killed in between leaves it there, with no lease to lapse. RQ's cleaning of that list
    fails it (or queues it again) a minute after first finding it, through the worker's failure handling, not
    its exception handlers: it was counted nowhere."""
    connection, queue, job_id = job_its_worker_died_holding(redis_url, "lost")
    assert queue.intermediate_queue.get_job_ids() == [job_id] and job_id not in queue.started_job_registry
    metrics = Metrics()
    survivor = StageWorker(queue, WorkerContext(Recorder(), metrics))  # type: ignore[arg-type]
    counted = metrics.registry.get_sample_value
    caplog.set_level(logging.WARNING)
    survivor.run_maintenance_tasks()  # RQ notes when it first found the job there, and waits a minute
    assert counted("alpr_jobs_total", {"stage": "detect", "outcome": "abandoned"}) == 0
    minute_passed(connection, queue, job_id)
    survivor.run_maintenance_tasks()
    assert queue.intermediate_queue.get_job_ids() == [] and queue.get_job_ids() == [job_id]  # queued again (retries)
    assert counted("alpr_jobs_total", {"stage": "detect", "outcome": "abandoned"}) == 1
    assert counted("alpr_jobs_total", {"stage": "detect", "outcome": "refused"}) == 0
    told = [r.getMessage() for r in caplog.records if "abandoned" in r.getMessage()]
    assert len(told) == 1 and told[0].startswith(f"detect job {job_id} abandoned: its worker died"), told
    assert told[0].endswith("queued again")


def test_a_job_left_in_the_intermediate_list_after_its_start_is_counted_once(redis_url, caplog):
    """Killed a step later, the job started (a lease) but not taken off the intermediate list: RQ's registry
    cleaning queues it again once its lease lapses (counted then), and its intermediate cleaning fails it again
    a minute later. It is one job abandoned once: not counted a second time."""
    connection, queue, job_id = job_its_worker_died_holding(redis_url, "started", "started", str(LEASE_S))
    assert queue.intermediate_queue.get_job_ids() == [job_id] and job_id in queue.started_job_registry
    metrics = Metrics()
    survivor = StageWorker(queue, WorkerContext(Recorder(), metrics))  # type: ignore[arg-type]
    counted = metrics.registry.get_sample_value
    caplog.set_level(logging.WARNING)
    lapsed = lambda: queue.started_job_registry.get_expired_job_ids() != []  # noqa: E731
    wait_for(lapsed, 30, "the killed worker's lease to lapse")
    survivor.run_maintenance_tasks()  # the lease lapsed: queued again, counted; first found in the list
    assert counted("alpr_jobs_total", {"stage": "detect", "outcome": "abandoned"}) == 1
    assert queue.get_job_ids() == [job_id]
    minute_passed(connection, queue, job_id)
    survivor.run_maintenance_tasks()
    assert queue.intermediate_queue.get_job_ids() == []
    assert counted("alpr_jobs_total", {"stage": "detect", "outcome": "abandoned"}) == 1


@pytest.mark.parametrize("meanwhile", ["waiting", "run"])
def test_a_job_left_in_the_intermediate_list_after_its_start_is_queued_once(meanwhile, redis_url):
    """Killed once the job started but before it left the intermediate list: the registry cleaning queued it
    again (its lease lapsed), and the intermediate cleaning a minute later queued it a second time, spending a
    retry, and it ran twice (a review); one that had run meanwhile was failed or queued again once done."""
    connection, queue, job_id = job_its_worker_died_holding(redis_url, "started", "started", str(LEASE_S))
    recorder, metrics = Recorder(), Metrics()
    survivor = StageWorker(queue, WorkerContext(recorder, metrics))  # type: ignore[arg-type]
    wait_for(lambda: queue.started_job_registry.get_expired_job_ids() != [], 30, "the killed worker's lease to lapse")
    survivor.run_maintenance_tasks()  # queued again, counted; first found in the intermediate list
    retries_left = queue.fetch_job(job_id).retries_left  # type: ignore[union-attr]
    assert queue.get_job_ids() == [job_id]
    if meanwhile == "run":
        StageWorker(queue, WorkerContext(recorder, metrics)).work(burst=True)  # type: ignore[arg-type]
        assert recorder.batches == ["started"] and queue.get_job_ids() == []
    minute_passed(connection, queue, job_id)
    survivor.last_cleaned_at = None
    survivor.run_maintenance_tasks()
    job = queue.fetch_job(job_id)
    assert job is not None and queue.intermediate_queue.get_job_ids() == []
    if meanwhile == "waiting":
        assert queue.get_job_ids() == [job_id] and job.retries_left == retries_left  # queued once, no retry spent
        StageWorker(queue, WorkerContext(recorder, metrics)).work(burst=True)  # type: ignore[arg-type]
    assert recorder.batches == ["started"] and queue.get_job_ids() == []  # run once
    assert queue.fetch_job(job_id).get_status() == "finished"  # type: ignore[union-attr]
    counted = metrics.registry.get_sample_value
    assert counted("alpr_jobs_total", {"stage": "detect", "outcome": "abandoned"}) == 1


def test_a_live_worker_taking_a_job_once_lost_is_not_counted_abandoned(redis_url):
    """RQ's note of when its cleaning first found a job id in the intermediate list lives a day: after one
    real loss, a live worker that had just taken the job queued again (moved it to the list, not yet started it)
    had it counted abandoned and queued again by the next cleaning (a review). The note is older than the job's
    latest queueing: the job is taken as first found now, and is counted only if it is still there a minute on."""
    connection, queue, job_id = job_its_worker_died_holding(redis_url, "lost")
    metrics = Metrics()
    survivor = StageWorker(queue, WorkerContext(Recorder(), metrics))  # type: ignore[arg-type]
    counted = lambda: metrics.registry.get_sample_value("alpr_jobs_total", {"stage": "detect", "outcome": "abandoned"})  # noqa: E731
    survivor.run_maintenance_tasks()
    minute_passed(connection, queue, job_id)
    survivor.last_cleaned_at = None
    survivor.run_maintenance_tasks()
    assert counted() == 1 and queue.get_job_ids() == [job_id]  # the real loss: counted, queued again
    retries_left = queue.fetch_job(job_id).retries_left  # type: ignore[union-attr]
    connection.lmove(queue.key, queue.intermediate_queue.key)  # a live worker takes it (RQ's dequeue), not started
    survivor.last_cleaned_at = None
    survivor.run_maintenance_tasks()  # another worker's cleaning lands in that moment
    job = queue.fetch_job(job_id)
    assert counted() == 1 and job is not None and job.retries_left == retries_left
    assert queue.get_job_ids() == [] and queue.intermediate_queue.get_job_ids() == [job_id]  # the taker's
    minute_passed(connection, queue, job_id)  # that worker died too, before starting it: a loss, a minute on
    survivor.last_cleaned_at = None
    survivor.run_maintenance_tasks()
    assert counted() == 2 and queue.get_job_ids() == [job_id] and queue.intermediate_queue.get_job_ids() == []

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
from pathlib import Path

import redis
from rq.registry import FailedJobRegistry

from common import defaults
from common.metrics import Metrics
from common.queues import enqueue, stage_queue
from common.worker import StageWorker, WorkerContext
from tests.common.hanging_worker import HANGING_KEY
from tests.common.recording_stage import Recorder, detect_job
from tests.helpers import wait_for

REPO = Path(__file__).resolve().parents[2]
LEASE_S = 2


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
    connection = redis.Redis.from_url(redis_url)
    queue = stage_queue(connection, "detect")
    job_id = enqueue(queue, detect_job("lost"), 60)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    dying = subprocess.Popen([sys.executable, "-m", "tests.common.dying_worker", redis_url], cwd=REPO, env=env)
    assert dying.wait(timeout=60) == -signal.SIGKILL
    assert queue.intermediate_queue.get_job_ids() == [job_id] and job_id not in queue.started_job_registry
    metrics = Metrics()
    survivor = StageWorker(queue, WorkerContext(Recorder(), metrics))  # type: ignore[arg-type]
    counted = metrics.registry.get_sample_value
    caplog.set_level(logging.WARNING)
    survivor.run_maintenance_tasks()  # RQ notes when it first found the job there, and waits a minute
    assert counted("alpr_jobs_total", {"stage": "detect", "outcome": "abandoned"}) == 0
    first_seen = queue.intermediate_queue.get_first_seen_key(job_id)
    connection.set(first_seen, float(connection.get(first_seen) or 0) - 61)  # the minute passed
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
    connection = redis.Redis.from_url(redis_url)
    queue = stage_queue(connection, "detect")
    job_id = enqueue(queue, detect_job("started"), 60)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "tests.common.dying_worker", redis_url, "started", str(LEASE_S)]
    assert subprocess.Popen(command, cwd=REPO, env=env).wait(timeout=60) == -signal.SIGKILL
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
    first_seen = queue.intermediate_queue.get_first_seen_key(job_id)
    connection.set(first_seen, float(connection.get(first_seen) or 0) - 61)  # the minute passed
    survivor.run_maintenance_tasks()
    assert queue.intermediate_queue.get_job_ids() == []
    assert counted("alpr_jobs_total", {"stage": "detect", "outcome": "abandoned"}) == 1

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

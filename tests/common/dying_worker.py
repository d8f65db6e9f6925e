"""A detect worker process that dies, SIGKILLed, right after RQ moved the job it took to the queue's
intermediate list and before the job starts (before RQ's prepare_execution puts it in the started
registry, with a lease): `python -m tests.common.dying_worker REDIS_URL` runs a real StageWorker in burst mode
(tests/common/test_abandoned_jobs.py). With `started LEASE_S`, it dies a step later: the job in the started
registry with a lease of LEASE_S seconds, and still in the intermediate list (RQ's prepare_job_execution takes
it off)."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import redis

from common.worker import StageWorker


class DyingWorker(StageWorker):
    """Killed between taking a job and starting it, as a worker the OOM killer takes there."""

    def prepare_execution(self, job: Any) -> Any:
        os.kill(os.getpid(), signal.SIGKILL)


class DyingStartedWorker(StageWorker):
    """Killed once the job is in the started registry, before it is taken off the intermediate list."""

    def prepare_job_execution(self, job: Any, remove_from_intermediate_queue: bool = False) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


def main(url: str, when: str = "taken", lease_s: str = "") -> None:
    from common import defaults
    from common.metrics import Metrics
    from common.queues import stage_queue
    from common.worker_context import WorkerContext
    from tests.common.recording_stage import Recorder

    if lease_s:
        defaults.JOB_LEASE_S = int(lease_s)  # read at each job: its lease lapses this long after the kill
    connection = redis.Redis.from_url(url)
    kind = DyingStartedWorker if when == "started" else DyingWorker
    worker = kind(stage_queue(connection, "detect"), WorkerContext(Recorder(), Metrics()))  # type: ignore[arg-type]
    worker.work(burst=True, logging_level="WARNING")


if __name__ == "__main__":
    main(*sys.argv[1:])

"""A detect worker process whose every job hangs (a poison job, as one that gets its worker OOM-killed
would): `python -m tests.common.hanging_worker REDIS_URL LEASE_S` runs a real StageWorker, in burst mode,
with a lease of LEASE_S seconds, and pushes each batch it takes to HANGING_KEY before hanging in it, so a
test knows when to kill it (tests/common/test_abandoned_jobs.py)."""

from __future__ import annotations

import sys
import time
from typing import Any

import redis

from common import defaults

HANGING_KEY = "test:hanging"
"""The Redis list the worker pushes each batch id it hangs in to."""


class Hanging:
    """A detect stage whose jobs never end."""

    name = "detect"

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def handle(self, payload: Any) -> Any:
        self.connection.rpush(HANGING_KEY, payload["batch_id"])
        time.sleep(600)
        raise AssertionError("the worker was not killed")

    def maintain(self) -> None:
        pass


def main(url: str, lease_s: str) -> None:
    defaults.JOB_LEASE_S = int(lease_s)  # read at each job: its lease lapses this long after the kill
    from common.metrics import Metrics
    from common.queues import stage_queue
    from common.worker import StageWorker
    from common.worker_context import WorkerContext

    connection = redis.Redis.from_url(url)
    worker = StageWorker(stage_queue(connection, "detect"), WorkerContext(Hanging(connection), Metrics()))  # type: ignore[arg-type]
    worker.work(burst=True, logging_level="WARNING")


if __name__ == "__main__":
    main(*sys.argv[1:])

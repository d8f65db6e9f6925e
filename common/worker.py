"""The worker edge shared by the three pools: an RQ `SimpleWorker` (no fork per job, so the model
loaded at start stays loaded) that hands each job's JSON payload to its stage, and the job function
RQ calls. Stages count their jobs, frames and time in the process's metrics. Workers clean RQ's
registries often, so the job of a worker that died runs again well within the frames' TTL."""

from __future__ import annotations

import logging
import threading
import time
from contextvars import ContextVar
from typing import Any, Protocol

import redis
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer

from common import defaults
from common.metrics import Metrics
from common.queues import STATS_BUSY_KEY, STATS_FRAMES_KEY

log = logging.getLogger(__name__)


class Stage(Protocol):
    name: str

    def handle(self, payload: Any) -> dict[str, Any]:
        """Process one job's payload; returns a small summary (stored as the job's result)."""
        ...


CURRENT_STAGE: ContextVar[tuple[Stage, Metrics, dict[str, Any]] | None] = ContextVar("alpr_current_stage", default=None)
"""The stage, metrics and a place for the job's result summary, while a StageWorker runs a job."""


def run_stage_job(payload: Any) -> dict[str, Any]:
    """The job function of every queue: the stage of the worker running it does the work."""
    current = CURRENT_STAGE.get()
    if current is None:
        raise RuntimeError("alpr jobs run only inside `alpr worker STAGE` (a StageWorker)")
    stage, metrics, summary = current
    start = time.perf_counter()
    try:
        result = stage.handle(payload)
    except Exception:
        metrics.jobs.labels(stage=stage.name, outcome="failed").inc()
        raise
    metrics.stage_seconds.labels(stage=stage.name).observe(time.perf_counter() - start)
    metrics.jobs.labels(stage=stage.name, outcome="done").inc()
    summary.update(result)
    return result


class StageWorker(SimpleWorker):
    """Runs jobs in this process, with the stage (and its loaded model) as their context."""

    def __init__(
        self, queue: Queue, stage: Stage, metrics: Metrics, stop: threading.Event | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("maintenance_interval", defaults.WORKER_MAINTENANCE_S)
        kwargs.setdefault("worker_ttl", defaults.WORKER_MAINTENANCE_S + 15)  # an idle worker wakes this often
        super().__init__([queue], connection=queue.connection, serializer=JSONSerializer, **kwargs)
        self.stage = stage
        self.metrics = metrics
        self.stop = stop or threading.Event()

    def request_stop(self, signum: Any, frame: Any) -> None:
        """SIGTERM/SIGINT: finish the job at hand, then stop (and tell `alpr worker` not to start again)."""
        self.stop.set()
        super().request_stop(signum, frame)

    def execute_job(self, job: Job, queue: Queue) -> None:
        summary: dict[str, Any] = {}
        token = CURRENT_STAGE.set((self.stage, self.metrics, summary))
        start = time.perf_counter()
        try:
            super().execute_job(job, queue)
        finally:
            CURRENT_STAGE.reset(token)
        self.account(time.perf_counter() - start, int(summary.get("frames", 0)))

    def account(self, busy_s: float, frames: int) -> None:
        """Add the job's time and frames to the pool's totals in Redis: `alpr status` sizes pools by them."""
        try:
            pipe = self.connection.pipeline(transaction=False)
            pipe.hincrbyfloat(STATS_BUSY_KEY, self.stage.name, busy_s)
            pipe.hincrby(STATS_FRAMES_KEY, self.stage.name, frames)
            pipe.execute()
        except redis.RedisError as error:  # statistics only: the job itself is done
            log.warning("could not record pool statistics: %s", error)

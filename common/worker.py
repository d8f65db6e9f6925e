"""The worker edge shared by the three pools: an RQ `SimpleWorker` (no fork per job, so the model
loaded at start stays loaded) that hands each job's JSON payload to its stage, and the job function
RQ calls. Stages count their jobs, frames and time in the process's metrics.

Only the project's own jobs run: a job naming any other function, arguments or callbacks is refused
before anything is imported (RQ would otherwise run whatever importable function a job names). A
job that can never succeed (malformed, wrong version) fails at once, is not retried, and is marked
so that `alpr replay` leaves it. A running job holds a short lease that a heartbeat thread renews,
so the job of a killed worker runs again within a minute. A worker whose registration vanished
(Redis restarted without persistence) registers again."""

from __future__ import annotations

import logging
import threading
import time
from contextvars import ContextVar
from typing import Any, Protocol

import redis
from rq import Queue, SimpleWorker, worker_registration
from rq.job import Job, get_current_job
from rq.serializers import JSONSerializer

from common import defaults
from common.errors import InputError
from common.metrics import Metrics
from common.queues import STATS_BUSY_KEY, STATS_FRAMES_KEY
from common.stage_job import PERMANENT, StageJob

log = logging.getLogger(__name__)


class Stage(Protocol):
    name: str

    def handle(self, payload: Any) -> dict[str, Any]:
        """Process one job's payload; returns a small summary (stored as the job's result)."""
        ...

    def maintain(self) -> None:
        """Periodic duties of the stage's pool (run between jobs, every WORKER_MAINTENANCE_S)."""
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
    except InputError as error:  # malformed, wrong version: it would fail the same way every time
        metrics.jobs.labels(stage=stage.name, outcome="rejected").inc()
        log.warning("%s job rejected, not retried: %s", stage.name, error)
        mark_permanent(f"rejected: {error}")
        raise
    except Exception:
        metrics.jobs.labels(stage=stage.name, outcome="failed").inc()
        raise
    metrics.stage_seconds.labels(stage=stage.name).observe(time.perf_counter() - start)
    metrics.jobs.labels(stage=stage.name, outcome="done").inc()
    summary.update(result)
    return result


def mark_permanent(reason: str) -> None:
    """Mark the running job as one that will always fail: not retried, not replayed."""
    job = get_current_job()
    if job is not None:
        job.meta[PERMANENT] = reason[:300]
        job.save_meta()


class StageWorker(SimpleWorker):
    """Runs jobs in this process, with the stage (and its loaded model) as their context."""

    def __init__(
        self, queue: Queue, stage: Stage, metrics: Metrics, stop: threading.Event | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("maintenance_interval", defaults.WORKER_MAINTENANCE_S)
        kwargs.setdefault("worker_ttl", defaults.WORKER_MAINTENANCE_S + 15)  # an idle worker wakes this often
        super().__init__([queue], connection=queue.connection, serializer=JSONSerializer, job_class=StageJob, **kwargs)
        self.stage = stage
        self.metrics = metrics
        self.stop = stop or threading.Event()

    def get_heartbeat_ttl(self, job: Job) -> int:
        """A running job's lease: short, renewed by the heartbeat thread (RQ's SimpleWorker would hold
        it for the job timeout + 60 s, so a killed worker's job waited minutes)."""
        return defaults.JOB_LEASE_S

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat, and registration anew when Redis lost it (restarted without persistence):
        a busy worker's own writes may have re-created its hash, so the registry sets decide."""
        if pipeline is None and not self.connection.sismember(worker_registration.REDIS_WORKER_KEYS, self.key):
            log.info("worker %s: registration gone from Redis (restarted?); registering again", self.name)
            with self.connection.pipeline() as registration:
                registration.hset(self.key, mapping=self.serialize())
                worker_registration.register(self, registration)
                registration.execute()
        super().heartbeat(timeout, pipeline)

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        try:
            self.stage.maintain()
        except Exception as error:  # a duty that fails now is tried again next time; jobs go on
            log.warning("%s pool duty failed: %s", self.stage.name, error)

    def renew_lease(self, job: Job, done: threading.Event) -> None:
        """Renew the running job's lease every third of it, until the job ends — or until the job has
        outlived its timeout (stuck where the timeout cannot reach it): then the lease lapses and the
        job is found abandoned, as RQ would do."""
        give_up_at = time.monotonic() + (job.timeout or defaults.JOB_TIMEOUT_S) + defaults.JOB_LEASE_S
        while not done.wait(defaults.JOB_LEASE_S / 3) and time.monotonic() < give_up_at:
            try:
                if self.execution is not None:
                    self.maintain_heartbeats(job)
            except Exception as error:  # the job may have just ended; the next renewal, if any, tries again
                log.warning("could not renew the lease of job %s: %s", job.id, error)

    def request_stop(self, signum: Any, frame: Any) -> None:
        """SIGTERM/SIGINT: finish the job at hand, then stop (and tell `alpr worker` not to start again)."""
        self.stop.set()
        super().request_stop(signum, frame)

    def execute_job(self, job: Job, queue: Queue) -> None:
        if isinstance(job, StageJob) and (reason := job.refusal()):
            self.metrics.jobs.labels(stage=self.stage.name, outcome="refused").inc()
            log.warning("job %s refused: %s", str(job.id)[:80], reason)
            job.meta[PERMANENT] = f"refused: {reason}"
            job.save_meta()
        summary: dict[str, Any] = {}
        token = CURRENT_STAGE.set((self.stage, self.metrics, summary))
        done = threading.Event()
        lease = threading.Thread(target=self.renew_lease, args=(job, done), name="job-lease", daemon=True)
        start = time.perf_counter()
        lease.start()
        try:
            super().execute_job(job, queue)  # a refused job fails inside, on StageJob.func, never imported
        finally:
            done.set()
            lease.join()
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

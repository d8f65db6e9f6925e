"""What a worker of one kind starts with, and how one of its jobs runs: the stage (`Stage`: the thin edge
that moves a job's frames through its core, loaded once), the process's metrics and the pool's settings,
gathered in a `WorkerContext` built once by the composition root (alpr/wiring.py); each job runs as a
`JobRun` bound to it (as arq's `ctx`), which counts how the job ended (`JobOutcome`) and keeps what it did
(`StageResult`) for the pool's statistics. A job whose payload will always fail (InputError: malformed,
wrong version) is rejected: marked so that it is neither retried nor replayed. The RQ worker that runs
the jobs is common/worker.py's StageWorker."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from rq.job import get_current_job

from common import defaults
from common.errors import InputError
from common.jobs import StageName
from common.metrics import Metrics
from common.queues import STAGES
from common.stage_job import StageJob

if TYPE_CHECKING:
    from common.role_settings import RoleSettings

log = logging.getLogger("common.worker")  # the name its lines were told under before this module was split off

JobOutcome = Literal["done", "failed", "rejected", "refused", "abandoned"]
"""How a job ended, as counted in `alpr_jobs`: done; failed (retried: an outage, a bug); rejected (its
payload will always fail: malformed, wrong version); refused (not one of the chain's jobs); abandoned (its
worker died holding it, SIGKILLed or OOM-killed: counted by the worker whose registry cleaning found its
lease lapsed, which retries it or, its retries spent, fails it)."""


@dataclass(frozen=True)
class StageResult:
    """What one job did, stored as the job's result: frames it processed (the pool's sizing counts
    them), plates found, reads newly logged, frames that ended otherwise (expired, corrupt, skipped)."""

    frames: int
    plates: int = 0
    reads_logged: int = 0
    not_done: int = 0
    done_by_camera: dict[str, int] = field(default_factory=dict)
    """Frames this job finished for good (the redactor's), per camera: `alpr status` shows them."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Stage(Protocol):
    """A worker kind's stage: the thin edge that moves one job's frames through its core."""

    @property
    def name(self) -> StageName: ...

    def handle(self, payload: Any) -> StageResult:
        """Process one job's payload."""
        ...

    def maintain(self) -> None:
        """Periodic duties of the stage's pool (run between jobs, every WORKER_MAINTENANCE_S)."""
        ...


@dataclass(frozen=True)
class WorkerContext:
    """What a worker of one kind starts with and every job of it uses: its stage (with the core loaded
    once, at start) and the process's metrics."""

    stage: Stage
    metrics: Metrics
    job_timeout_s: int = defaults.JOB_TIMEOUT_S
    """How long one of its jobs may run: the pool's setting, whatever a job's hash says."""
    finish: Callable[[threading.Event], None] | None = None
    """What the process does once its last RQ worker ended, given the stop event: the alert pool's lanes
    send or hand back the jobs they hold and let the attempts in flight end (a stage whose jobs end with
    handle() needs nothing)."""
    stop: threading.Event | None = None
    """The stop event the process's signals set, where the stage must see it at once (the alert pool's
    lanes begin no attempt once it is set: told only at `finish`, after RQ's own teardown of up to a
    second, a lane began the next alert waiting behind the one in flight); None: the process makes one."""
    settings: RoleSettings | None = None
    """Its settings that change its results (common/role_settings.py), published with each of its RQ
    workers' registration (common/worker.py's SETTINGS_FIELD): `alpr status` tells a pool whose members disagree."""

    def __post_init__(self) -> None:  # every outcome exported at 0: a first refused job is an increase
        for outcome in get_args(JobOutcome):
            self.metrics.jobs.labels(stage=self.stage.name, outcome=outcome)
        if self.stage.name in STAGES:  # and a frame stage's first missing or corrupt frame (the dashboard's
            self.metrics.frames_missing.labels(stage=self.stage.name)  # increase() of a series that began
            self.metrics.frames_corrupt.labels(stage=self.stage.name)  # at 1 showed nothing)

    def count(self, outcome: JobOutcome) -> None:
        self.metrics.jobs.labels(stage=self.stage.name, outcome=outcome).inc()


@dataclass
class JobRun:
    """One job's run inside a StageWorker: the callable RQ calls with the job's payload (StageJob.func
    hands it over), bound to the worker's context; keeps the job's result for the pool's statistics."""

    context: WorkerContext
    result: StageResult | None = None

    def __call__(self, payload: Any) -> dict[str, Any]:
        stage, metrics = self.context.stage, self.context.metrics
        start = time.perf_counter()
        try:
            self.result = stage.handle(payload)
        except InputError as error:  # malformed, wrong version: it would fail the same way every time
            self.context.count("rejected")
            job = get_current_job()
            log.warning("%s job %s rejected, not retried: %s", stage.name, str(job.id if job else "?")[:80], error)
            mark_permanent(f"rejected: {error}")
            raise
        except Exception:
            self.context.count("failed")
            raise
        metrics.stage_seconds.labels(stage=stage.name).observe(time.perf_counter() - start)
        self.context.count("done")
        return self.result.as_dict()


def mark_permanent(reason: str) -> None:
    """Mark the running job as one that will always fail: not retried, not replayed."""
    job = get_current_job()
    if isinstance(job, StageJob):
        job.mark_permanent(reason)

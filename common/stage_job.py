"""The one kind of RQ job the chain runs. RQ calls whatever importable function a job names (and its
callbacks, and sends its webhooks); a `StageJob` calls only the chain's job function with one
payload, and refuses anything else before it is imported: the function, extra arguments, an
instance, callbacks or webhooks a job's data names. Every queue and registry of the chain uses it,
so RQ's own registry cleaning cannot run a callback a crafted job names either."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rq.exceptions import StopRequested
from rq.job import Job

STAGE_JOB_FUNCTION = "alpr.stage"
"""The one function name a job may carry. It is never imported: a StageWorker hands each job a
`JobRun` bound to its stage (common/worker.py), and that is what runs."""

PERMANENT = "alpr_permanent"
"""Job meta key: why the job will always fail (never retried, not replayed)."""


class RefusedJobError(Exception):
    """A job that is not one of the chain's own: it names another function, arguments or callbacks."""


class StageJob(Job):
    """An RQ job that can only call the chain's job function with one payload: anything else a
    job's data names (a function, an instance, callbacks) is refused before it is imported."""

    run: Callable[[Any], Any] | None = None
    """Set by the StageWorker running the job: its stage's handler (a common.worker.JobRun)."""

    def refusal(self) -> str | None:
        """Why this job is not one of ours, or None."""
        try:
            return self._refusal()
        except StopRequested:  # a stop signal, not the job's fault: let the worker stop
            raise
        except Exception:  # data RQ cannot even decode (wrong shape, not JSON)
            return "undecodable job data"

    def _refusal(self) -> str | None:
        if self.func_name != STAGE_JOB_FUNCTION:
            return f"function {str(self.func_name)[:80]!r} is not {STAGE_JOB_FUNCTION}"
        if len(self.args) != 1 or self.kwargs:
            return "a stage job takes exactly one payload argument"
        callbacks = (self._success_callback_name, self._failure_callback_name, self._stopped_callback_name)
        if any(callbacks):
            return "stage jobs carry no callbacks"
        if self.webhooks:
            return "stage jobs carry no webhooks"
        if self.instance is not None:
            return "stage jobs call no instance method"
        return None

    @property
    def func(self) -> Any:
        if reason := self.refusal():
            self.meta[PERMANENT] = f"refused: {reason}"
            self.save_meta()  # RQ's failure handling does not save meta: replay and retries must see it
            raise RefusedJobError(reason)
        if self.run is None:
            raise RuntimeError("alpr jobs run only inside `alpr worker STAGE` (a StageWorker)")
        return self.run

    @property
    def should_retry(self) -> bool:
        return PERMANENT not in self.meta and bool(super().should_retry)

    @property
    def success_callback(self) -> Any:
        return None

    @property
    def failure_callback(self) -> Any:
        return None

    @property
    def stopped_callback(self) -> Any:
        return None

    def send_webhooks(self, *args: Any, **kwargs: Any) -> None:
        """Never: a job's webhooks would make workers send requests a job's author chose."""

"""The jobs a worker of the chain refuses or finds abandoned (a base of common/worker.py's StageWorker),
each counted in `alpr_jobs` and told: a job not of the chain (another function, arguments or callbacks, or
one not signed with the worker's job key) is refused before anything is imported and marked so, never
retried nor replayed; a queue entry RQ cannot fetch is dropped, refused; a job whose worker died holding it
(its lease lapsed, or lost between the queue's intermediate list and its start) is counted `abandoned`
before RQ retries or fails it. A failure the chain explains has its traceback at DEBUG alone."""

from __future__ import annotations

import logging
from typing import Any

import redis
from rq import Queue
from rq.exceptions import AbandonedJobError
from rq.job import Job

from common.credentials import mask_url
from common.errors import InputError
from common.job_key import key_fingerprint, others_disagreeing
from common.log_throttle import Throttle
from common.queue_entries import EntryWindows, Kind
from common.queues import redis_now
from common.stage_job import NOT_SIGNED_WITH_KEY, PERMANENT, REFUSED, StageJob
from common.stuck_jobs import STUCK_IN_INTERMEDIATE, stuck_job
from common.worker_context import WorkerContext
from common.worker_controls import RefusedControls

log = logging.getLogger("common.worker")  # the name its lines were told under before this module was split off


class JobRefusals(RefusedControls):
    """The refused, unfetchable and abandoned jobs of an RQ worker of the chain: counted, told, marked."""

    context: WorkerContext  # (each set and told by StageWorker.__init__)
    job_key: str | None
    unsigned_refused: Throttle
    entry_windows: EntryWindows

    def count_abandoned(self, job: Job, exc_type: Any, exc_value: Any = None, traceback: Any = None) -> bool:
        """RQ's exception handler: its registry cleaning calls it (with AbandonedJobError) for each job whose
        lease lapsed, its worker having died holding it (SIGKILL, the OOM killer), before retrying or failing
        it outside any JobRun: counted `abandoned`, and told. Such jobs were counted nowhere (a job killing its
        worker each time showed no failure). RQ calls it for the failures of jobs run here too: those are
        JobRun's to count, left alone. Returns True: any handler after it runs."""
        if isinstance(exc_value, AbandonedJobError):
            self.tell_abandoned(job, "its worker died holding it")
        return True

    def tell_abandoned(self, job: Job, how: str) -> None:
        """Count a job whose worker died with it `abandoned`, and say so, before RQ retries or fails it."""
        self.context.count("abandoned")
        retried = bool(job.retries_left and job.retries_left > 0)
        log.warning("%s job %s abandoned: %s (killed: SIGKILL, out of memory?); %s", self.context.stage.name,
                    str(job.id)[:80], how, "queued again" if retried else "failed, its retries spent")  # fmt: skip

    def drop_unfetchable(self, queue: Queue) -> int:
        """Drop the entries of the queue's intermediate list and started-jobs registry that RQ cannot
        fetch (each refused and counted), looked for in Redis within a bound (common/queue_entries.py: both
        were read whole, a TYPE round trip an entry, at every cleaning); returns how many."""
        dropped = 0
        keys: tuple[tuple[str, Kind], ...] = (
            (queue.intermediate_queue_key, "list"),
            (queue.started_job_registry.key, "zset"),
        )
        for key, kind in keys:
            for entry in self.entry_windows.drop_unfetchable(self.connection, key, kind):
                dropped += 1
                self.context.count("refused")
                log.warning("queue entry %r dropped, refused: %s", entry.preview, entry.reason)
        return dropped

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: Any = None, exc_string: str = ""
    ) -> None:
        """RQ's failure handling; a job not of ours that RQ's cleaning fails unrun (found stuck in the
        intermediate list: a worker quit holding it) is counted and marked refused, as one run is, and one of
        ours lost there is counted `abandoned`, as one whose lease lapsed is; one not lost (back in its queue, run
        since) or noted there before its latest queueing is not RQ's to fail (common/stuck_jobs.py)."""
        if isinstance(job, StageJob):
            job.job_key = self.job_key
        if isinstance(job, StageJob) and PERMANENT not in job.meta and (reason := job.refusal()):
            self.refuse(job, reason)
        elif exc_string == STUCK_IN_INTERMEDIATE and (stuck := stuck_job(job, queue)) != "unknown":
            if stuck != "lost":  # failed again, it was queued twice and run twice, or counted as a live taker's
                return
            self.tell_abandoned(job, "its worker died between taking it and starting it")
        super().handle_job_failure(job, queue, started_job_registry, exc_string)

    def refuse(self, job: StageJob, reason: str) -> None:
        """Count a job that is not one of the chain's, say why, and mark it refused for good (not retried,
        not replayed). One not signed with this worker's key is told at ERROR at most once a minute, with
        the count (`report_unsigned`): a key differing between roles has every job refused, and a line
        each (with RQ's traceback) buried the cause."""
        self.context.count("refused")
        if reason == NOT_SIGNED_WITH_KEY:
            if count := self.unsigned_refused.note():
                self.report_unsigned(count)
        else:
            log.warning("job %s refused: %s", str(job.id)[:80], reason)
        job.mark_permanent(REFUSED + reason)

    def report_unsigned(self, count: int) -> None:
        """The ERROR for `count` jobs refused as not signed with this worker's key, naming the roles whose
        published key differs (common/job_key.py)."""
        name = self.context.stage.name
        try:
            others = others_disagreeing(self.connection, self.job_key, name)
            now_s = redis_now(self.connection)
        except redis.RedisError as error:
            why = f"the keys the other roles published could not be read ({mask_url(str(error))})"
        else:
            why = (
                f"the key differs in {', '.join(entry.describe(now_s) for entry in others)}: give every role the"
                " same ALPR_JOB_KEY (a key file's trailing spaces, tabs and line end are not part of the key)"
                if others
                else "every role that published its key holds this one: another process queued them (a role of"
                " an older version, or a forger)"
            )
        log.error("%s: jobs refused, not signed with this worker's job key (ALPR_JOB_KEY, key %s): %d since the last"
                  " such line, their frames lost; %s", name, key_fingerprint(self.job_key), count, why)  # fmt: skip

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """RQ's ERROR with the job's traceback, for a failure the chain does not explain; one it explains
        has its traceback at DEBUG alone: a job refused (RQ's error is then ours, RefusedJobError, or its
        own on data it cannot decode) or rejected (InputError: malformed, bad input), each told by a line
        of its own. Each refused job was logged twice, its traceback burying the line that said why (30-90
        tracebacks an incident). The chain pushes no exception handler of RQ's to skip."""
        refused = isinstance(job, StageJob) and job.refusal() is not None  # checked once: found good, cached
        if refused or isinstance(exc_info[1], InputError):
            log.debug("job %s failed as logged: %s", str(job.id)[:80], exc_info[1], exc_info=exc_info)
            return
        super().handle_exception(job, *exc_info)

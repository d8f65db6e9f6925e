"""The worker edge shared by the three pools: an RQ `SimpleWorker` (no fork per job, so the model
loaded at start stays loaded) that hands each job's JSON payload to its stage. A worker is started
with its kind's context (`WorkerContext`: the stage, its loaded core, and the process's metrics),
built once by the composition root (alpr/wiring.py); each job runs as a `JobRun` bound to it (as
arq's `ctx`), so no job reaches the stage through global state. Stages count their jobs, frames and
time in the process's metrics.

Only the project's own jobs run: a job naming any other function, arguments or callbacks is refused
before anything is imported (RQ would otherwise run whatever importable function a job names). A
job that can never succeed (malformed, wrong version) fails at once, is not retried, and is marked
so that `alpr replay` leaves it. A running job holds a short lease that a heartbeat thread renews, so
the job of a killed worker runs again within a minute, counted `abandoned` by the worker that finds
it (one killed between taking a job and starting it: by the worker whose cleaning of the queue's
intermediate list finds the job there a minute after it first saw it). A worker whose registration
vanished (Redis restarted without persistence) registers again. RQ's controls through Redis, which any
client of it can use, are refused: its commands (`shutdown`: one PUBLISH per worker stopped every pool)
and its suspension of every worker (`rq:suspended`); a worker of the chain is stopped by a signal.

What a worker starts with and how one job runs (WorkerContext, JobRun, StageResult) are in
common/worker_context.py; StageWorker's bases hold the jobs it refuses or finds abandoned
(common/worker_refusals.py) and RQ's controls it refuses (common/worker_controls.py); it keeps the
worker's life: its start, leases and heartbeat, maintenance, registry cleaning, stop and statistics."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from rq import Queue, worker_registration
from rq.exceptions import StopRequested
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import now

from common import defaults
from common.log_throttle import Throttle
from common.queue_entries import EntryWindows
from common.queues import STATS_BUSY_KEY, STATS_DONE_KEY, STATS_FRAMES_KEY, add_pool_stats, add_stats, redis_now
from common.stage_job import StageJob
from common.worker_context import JobRun, StageResult, WorkerContext
from common.worker_refusals import JobRefusals

log = logging.getLogger(__name__)

SETTINGS_FIELD = "alpr_settings"
"""The field of an RQ worker's registration (its hash, `rq:worker:NAME`) with the settings it publishes."""


class StageWorker(JobRefusals):
    """Runs jobs in this process, with the stage (and its loaded model) as their context."""

    def __init__(
        self, queue: Queue, context: WorkerContext, stop: threading.Event | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("maintenance_interval", defaults.WORKER_MAINTENANCE_S)
        # RQ's idle worker waits for a job worker_ttl - 15 s before its duties: as long as their interval, not
        # 15 s whatever it was (the alert pool's deliveries due every second were queued every 15: a review)
        kwargs.setdefault("worker_ttl", kwargs["maintenance_interval"] + 15)
        super().__init__([queue], connection=queue.connection, serializer=JSONSerializer, job_class=StageJob, **kwargs)
        self.context = context
        self.stop = stop or threading.Event()
        self.job_key: str | None = getattr(queue, "job_key", None)
        """The key its jobs must be signed with (the queue's: RQ hands jobs over with queues of its own)."""
        self.commands_refused = Throttle()
        """RQ commands published to this worker, all refused: logged at most once a minute (a flood of them
        would otherwise flood the log)."""
        self.suspension_seen = False
        """Whether `rq:suspended` was there at the last check: it is warned of once each time it appears."""
        self.unsigned_refused = Throttle()
        """Jobs refused as not signed with this worker's key: told at most once a minute (`report_unsigned`)."""
        self.duty_failures = Throttle()
        """A pool duty failing at every maintenance (a read-only Postgres): a line a minute, and one at its end."""
        self.entry_windows = EntryWindows()
        """Where `drop_unfetchable` looks next in each key."""
        self.push_exc_handler(self.count_abandoned)  # RQ's registry cleaning calls it for each abandoned job

    def get_heartbeat_ttl(self, job: Job) -> int:
        """A running job's lease: short, renewed by the heartbeat thread (RQ's SimpleWorker would hold
        it for the job timeout + 60 s, so a killed worker's job waited minutes)."""
        return defaults.JOB_LEASE_S

    def serialize(self) -> dict[Any, Any]:
        """RQ's registration of the worker, and the pool's settings that change its results: written at
        its birth and whenever it registers anew, so its registration, which its heartbeat keeps alive,
        carries them while it runs."""
        fields: dict[Any, Any] = super().serialize()
        if self.context.settings is not None:
            fields[SETTINGS_FIELD] = self.context.settings.entry()
        return fields

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
        """RQ's duties, then the pool's. A signal while the worker is idle raises RQ's StopRequested
        wherever the main thread is: one caught with a failing duty here, or inside a duty, would be
        lost, and the worker would go on taking jobs until killed. So it always propagates, and a stop
        asked for (`self.stop`) ends the loop even if a duty swallowed the exception."""
        self.stop_if_asked()  # no duties on the way out (the alert pool's would queue deliveries)
        if count := self.unsigned_refused.due():  # the last minute's, told though no job came since
            self.report_unsigned(count)
        super().run_maintenance_tasks()
        try:
            self.context.stage.maintain()
        except StopRequested:
            raise
        except Exception as error:  # a duty that fails now is tried again next time; jobs go on
            if count := self.duty_failures.note():  # once a minute at most: the alert pool's, a second, 56 lines
                log.warning("%s pool duty failed (%d time%s since the last such line): %s", self.context.stage.name,
                            count, "" if count == 1 else "s", error)  # fmt: skip
        else:
            if spell := self.duty_failures.end():
                log.info("%s pool duty answers again, after %d failures in %.0f s", self.context.stage.name, *spell)
        self.stop_if_asked()

    def stop_if_asked(self) -> None:
        """Raise RQ's StopRequested once a stop was asked for (`request_stop` sets `self.stop` first),
        whatever swallowed the exception RQ's handler raised since (a library's catch-all)."""
        if self.stop.is_set():
            raise StopRequested()

    def clean_registries(self) -> None:
        """RQ's registry cleaning (which brings back the jobs of killed workers), after dropping the
        entries RQ cannot fetch; a stop signal or an error landing in it does not leave the queue's
        maintenance lock held: RQ would keep it for up to 15 minutes, and no worker of the pool would
        bring back an abandoned job meanwhile. Released whether this worker or another took it: at worst
        two workers clean at once, which is harmless. An error is warned of; the worker goes on."""
        try:
            for queue in self.queues:
                self.drop_unfetchable(queue)
            super().clean_registries()
        except StopRequested:
            self.release_maintenance_locks()
            raise
        except Exception as error:
            self.release_maintenance_locks()
            self.last_cleaned_at = now()  # type: ignore[assignment]  # RQ sets it on success only: each next job cleaned again
            log.warning("%s: registry cleaning failed (%s); tried again at the next maintenance",
                        self.context.stage.name, error)  # fmt: skip

    def release_maintenance_locks(self) -> None:
        for queue in self.queues:
            queue.release_maintenance_lock()

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        """RQ's dequeue, but never once a stop was asked for: the worker takes no further job. A queue
        entry RQ cannot fetch (an id it does not allow or not UTF-8, a job key that is no hash) made RQ
        raise and the worker quit, the entry stuck between queues: it is dropped, counted as refused."""
        self.stop_if_asked()
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except (redis.ResponseError, ValueError, TypeError):
                if not sum(self.drop_unfetchable(queue) for queue in self.queues):
                    raise

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
        run = JobRun(self.context)
        if isinstance(job, StageJob):
            job.job_key = self.job_key
            if reason := job.refusal():
                job.origin = queue.name  # RQ's bookkeeping (intermediate queue, registries) by the queue it is in
                self.refuse(job, reason)  # marked before RQ reads its data: failed once, never retried
            job.run = run  # what StageJob.func hands RQ (a refused job fails there, never imported)
            job.timeout = self.context.job_timeout_s  # not the hash's (a crafted one could lift the limit)
        done = threading.Event()
        lease = threading.Thread(target=self.renew_lease, args=(job, done), name="job-lease", daemon=True)
        start = time.perf_counter()
        lease.start()
        try:
            super().execute_job(job, queue)
        finally:
            done.set()
            lease.join()
            self.account(time.perf_counter() - start, run.result)  # a stop signal here must not lose it

    def teardown(self) -> None:
        """RQ's, after telling the jobs refused as unsigned since the last such line (a worker stopping, or
        at the end of a burst); its control channel's thread stopped even when RQ's teardown fails on Redis
        (`release_control_channel`)."""
        if count := self.unsigned_refused.due(now=True):
            self.report_unsigned(count)
        try:
            super().teardown()
        finally:
            self.release_control_channel()

    def account(self, busy_s: float, result: StageResult | None) -> None:
        """Add a finished job's time, frames and finished frames to the pool's totals in Redis: `alpr
        status` sizes pools by them. A failed job adds nothing: a job that waited out a Postgres outage
        for minutes and failed made the pool's seconds per frame, and the workers advised, ten times
        what they are (for good in the all-time totals; for the hour in the recent ones)."""
        name = self.context.stage.name
        if result is None:  # failed: its time (perhaps spent waiting out an outage) is no measure of the work
            return
        counts: dict[str, dict[str, int]] = {
            STATS_FRAMES_KEY: {name: result.frames},
            STATS_DONE_KEY: result.done_by_camera,
        }
        try:
            pipe = self.connection.pipeline(transaction=False)
            add_stats(self.connection, counts, {STATS_BUSY_KEY: {name: busy_s}}, pipeline=pipe)
            now = redis_now(self.connection)  # one clock for every host's workers and `alpr status`
            add_pool_stats(pipe, name, busy_s, result.frames, now)
            pipe.execute()
        except redis.RedisError as error:  # statistics only: the job itself is done
            log.warning("could not record pool statistics: %s", error)

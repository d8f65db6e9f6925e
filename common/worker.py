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
and its suspension of every worker (`rq:suspended`); a worker of the chain is stopped by a signal."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

import redis
from rq import Queue, SimpleWorker, worker_registration
from rq.exceptions import AbandonedJobError, StopRequested
from rq.job import Job, get_current_job
from rq.serializers import JSONSerializer
from rq.suspension import WORKERS_SUSPENDED, is_suspended
from rq.utils import now

from common import defaults
from common.credentials import mask_url
from common.errors import InputError
from common.job_key import key_fingerprint, others_disagreeing
from common.jobs import StageName
from common.log_throttle import Throttle
from common.metrics import Metrics
from common.queue_entries import EntryWindows, Kind
from common.queues import (
    STAGES,
    STATS_BUSY_KEY,
    STATS_DONE_KEY,
    STATS_FRAMES_KEY,
    add_pool_stats,
    add_stats,
    redis_now,
)
from common.redis_json import json_object
from common.stage_job import NOT_SIGNED_WITH_KEY, PERMANENT, REFUSED, StageJob
from common.stuck_jobs import STUCK_IN_INTERMEDIATE, stuck_job

if TYPE_CHECKING:
    from common.role_settings import RoleSettings

log = logging.getLogger(__name__)

SETTINGS_FIELD = "alpr_settings"
"""The field of an RQ worker's registration (its hash, `rq:worker:NAME`) with the settings it publishes."""

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
    workers' registration (SETTINGS_FIELD): `alpr status` tells a pool whose members disagree."""

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


MAX_COMMAND_BYTES = 1024
"""Longest RQ control message read (RQ's own are some 40 bytes: `{"command": "shutdown"}`)."""


def rq_command(message: Any) -> str:
    """The command an RQ control message names, for a log line (quoted and shortened: any client of
    Redis may publish one)."""
    payload = json_object(message.get("data") if isinstance(message, dict) else None, MAX_COMMAND_BYTES)
    if payload is None or "command" not in payload:  # not JSON, not UTF-8, too deeply nested, not RQ's shape
        return "(an unreadable message)"
    return repr(str(payload["command"])[:40])


def mark_permanent(reason: str) -> None:
    """Mark the running job as one that will always fail: not retried, not replayed."""
    job = get_current_job()
    if isinstance(job, StageJob):
        job.mark_permanent(reason)


class StageWorker(SimpleWorker):
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

    def handle_payload(self, message: Any) -> None:
        """A message on RQ's control channel (`rq:pubsub:<worker name>`), refused. RQ's worker obeys the
        `shutdown`, `kill-horse` and `stop-job` any Redis client publishes there: one PUBLISH per worker
        (their names are in `rq:workers`) stopped every pool of the chain for good, each exiting 0 and
        logging nothing, jobs signed or not (a review). The chain stops a worker by a signal (SIGTERM:
        `docker compose stop`), which only the host can send. A WARNING names the command, at most once a
        minute with the count (RQ's thread reads the channel; a crafted message must not end it)."""
        if count := self.commands_refused.note():
            log.warning("worker %s: RQ command %s refused (%d since the last such line): the chain's workers obey"
                        " no command through Redis, where any client of it can publish one; stop a worker with a"
                        " signal (SIGTERM)", self.name, rq_command(message), count)  # fmt: skip

    def check_for_suspension(self, burst: bool) -> None:
        """RQ parks every worker while the key `rq:suspended` exists (`rq suspend`), saying so only at INFO,
        below the workers' level: any Redis client parked every pool unseen, while the frames waiting
        expired. The chain's workers are never suspended (a pool parked past the frames' TTL loses them;
        stop the ingest nodes, or the workers by a signal): the key is ignored, with a WARNING each time it
        appears. Checked as RQ checks it, with the worker's heartbeat."""
        suspended = bool(is_suspended(self.connection, self))
        if suspended and not self.suspension_seen:
            log.warning("worker %s: %s is set in the queues' Redis (RQ's `rq suspend`, or any client of it):"
                        " ignored, the worker goes on taking jobs (a suspended pool loses the frames that wait"
                        " past their TTL); stop workers with a signal (SIGTERM) instead", self.name,
                        WORKERS_SUSPENDED)  # fmt: skip
        self.suspension_seen = suspended

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

    def release_control_channel(self) -> None:
        """Stop the thread that listens on RQ's control channel and close its connection. RQ's teardown
        does so last, after registering the worker's death, which a full or read-only Redis refuses: each
        worker the pool started again after such an error left its thread behind, retrying every 2 s for
        ever (a diff review found the tests' leftovers logging into later tests)."""
        thread = getattr(self, "pubsub_thread", None)
        if thread is not None:  # not by is_alive(): it said False of one still retrying (a test's leftover)
            thread.stop()
            thread.join(timeout=1)
            if self.pubsub is not None:
                with contextlib.suppress(Exception):  # its connection may be gone with Redis
                    self.pubsub.close()

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

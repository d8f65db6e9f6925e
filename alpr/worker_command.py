"""`alpr worker STAGE`: build the worker kind's context once (its model loaded), then run RQ workers
of it — a new one, after waiting out the outage, whenever Redis drops the last — until a signal."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import replace
from secrets import token_hex
from typing import TYPE_CHECKING, Any

import redis
from rq.exceptions import StopRequested

from alpr.connections import reach_redis, signed_queue
from alpr.deployment_check import check_deployment
from alpr.start_warnings import check_job_key, warn_if_links_in_clear, warn_if_redis_open
from alpr.wiring import build_sighting_stage, build_worker_context
from common import defaults
from common.backoff import Backoff
from common.config import Settings
from common.credentials import mask_url
from common.db_writes import outage_reason
from common.metrics import Metrics
from common.queues import QUEUED_STAGES, SIGHTING_WORKERS_KEY, beat_sighting_worker, leave, queue_keys
from common.redis_watch import watch_redis
from common.role_settings import role_settings
from common.worker import StageWorker
from common.worker_context import WorkerContext

if TYPE_CHECKING:  # built by alpr/wiring.py; the sighting worker's modules load in its process only
    from sighting_worker.worker import SightingStage

log = logging.getLogger(__name__)


def worker(args: argparse.Namespace, settings: Settings) -> int:
    """Metrics are served once the worker is ready (Redis reached, Postgres opened, model loaded): a worker
    failing at start (a wrong database password) restarted every 12 s under Compose and answered most
    scrapes meanwhile, so no alert on a process down fired, and sightings and alerts stopped unseen. What
    the kind keeps of the cars is bounded by the retention first (Settings.within_retention: a keep age
    set past it refused, one unset cut to it), and the settings it publishes are those it runs with."""
    settings = settings.within_retention(args.stage)
    warn_if_links_in_clear(settings)  # before a start that may fail on that link
    connection = reach_redis(settings)
    warn_if_redis_open(settings)
    deployment = check_deployment(settings, connection, args.stage)  # refused where Redis serves another one
    check_job_key(settings, connection, args.stage, deployment)  # published with the key's fingerprint
    metrics = Metrics()
    watch_redis(connection, metrics)  # alpr_redis_up{redis="queues"}
    metrics.watch_queues(connection, queue_keys(QUEUED_STAGES))
    stop = threading.Event()
    if args.stage == "sight":
        published = role_settings(settings, args.stage, deployment=deployment)  # with its heartbeats; a metric
        metrics.settings_info.labels(pool=args.stage, fingerprint=published.fingerprint).set(1)
        stage = build_sighting_stage(settings, connection, metrics)
        metrics.serve(settings.metrics_port, settings.metrics_address)
        return sighting_loop(stage, settings, stop, args.burst, published.entry())
    context = build_worker_context(args.stage, settings, connection, metrics)
    published = role_settings(settings, args.stage, found_facts(args.stage, settings), deployment)
    metrics.settings_info.labels(pool=args.stage, fingerprint=published.fingerprint).set(1)
    context = replace(context, settings=published)
    stop = context.stop or stop
    metrics.serve(settings.metrics_port, settings.metrics_address)
    code = run_workers(args, settings, connection, context, stop)
    if context.finish is not None:  # RQ's signal handlers replaced: a signal now only sets `stop`. Not after
        context.finish(stop)  # a cold shutdown (a second signal raised SystemExit): that one ends at once
    return code


def found_facts(stage: str, settings: Settings) -> dict[str, str]:
    """What a worker of `stage` publishes beside its settings that changes its results: a detector worker's
    weights file's digest (its model loaded: the file is there)."""
    if stage != "detect":
        return {}
    from detector_worker.weights import resolve_weights, weights_digest

    weights = resolve_weights(settings.detector_backend, settings.model_dir, settings.detector_weights)
    return {"detector_weights_sha256": weights_digest(weights)}


def run_workers(
    args: argparse.Namespace, settings: Settings, connection: redis.Redis, context: WorkerContext, stop: threading.Event
) -> int:
    """RQ workers of the stage, one after another (a new one whenever Redis dropped the last, after a
    backoff where the last lasted under WORKER_STEADY_S), until a signal, or the end of a burst or of
    --max-jobs. One whose name RQ finds registered already is followed by the next, under a new name,
    after a backoff of its own (`name_taken`)."""
    quick = worker_options(args.stage)
    restarts = Backoff(*defaults.RECONNECT_BACKOFF_S)
    clashes = Backoff(*defaults.WORKER_NAME_CLASH_BACKOFF_S)
    for run in itertools.count():
        name = worker_name(args.stage, run)
        queue = signed_queue(settings, connection, args.stage)
        rq_worker = StageWorker(queue, context, stop, name=name, **quick)
        log.info("worker %s ready", name)
        started, delay, refused = time.monotonic(), 0.0, False
        try:
            rq_worker.work(burst=args.burst, max_jobs=args.max_jobs, logging_level="WARNING")
        except ValueError:
            if rq_worker.birth_date is not None:  # born: not RQ's refusal of its name
                raise
            delay, refused = name_taken(name, clashes), True
        except redis.RedisError as error:  # RQ's own start-up and shutdown bookkeeping raise these
            if time.monotonic() - started >= defaults.WORKER_STEADY_S:
                restarts.reset()
                log.warning("worker %s lost Redis: %s", name, mask_url(str(error)))
            else:  # PING answers but the worker's writes are refused (full, a replica): not in a loop
                delay = restarts.next_delay()
                log.warning("worker %s lost Redis %.0f s after it started: %s; the next one in %.0f s", name,
                            time.monotonic() - started, mask_url(str(error)), delay)  # fmt: skip
        except StopRequested:  # a signal after RQ's loop ended, before its handlers were replaced
            stop.set()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):  # RQ's handlers belong to the worker that ended
                signal.signal(signum, lambda *_: stop.set())
            rq_worker.release_control_channel()  # its teardown may not have run (a stop during its start)
        if delay:  # waited with our handlers in place: RQ's, raising StopRequested, ended the run before
            stop.wait(delay)
        if stop.is_set():
            return 0
        if refused:  # never registered: its burst or its jobs are the next worker's
            continue
        clashes.reset()
        if args.burst or args.max_jobs is not None:
            return 0
        wait_for_redis(connection, stop)
    return 0


def worker_name(stage: str, run: int) -> str:
    """An RQ worker's name: its stage, host, pid and run, and a random part. A container's worker is pid 1
    on a hostname its restart keeps: without the random part, one restarted after a SIGKILL (the OOM
    killer, `docker stop`'s grace run out) took the dead one's name, whose registration RQ keeps up to a
    minute and a half, and RQ refused it; anyone who can write to Redis could forge the next name for good
    (its pid and run are no secret: the names are listed in `rq:workers`)."""
    return f"{stage}-{socket.gethostname()}-{os.getpid()}-{run}-{token_hex(defaults.WORKER_NAME_TOKEN_BYTES)}"


def name_taken(name: str, clashes: Backoff) -> float:
    """RQ refused worker `name` at its birth (ValueError: a registration of it there, no death recorded):
    forged by a client of the queues' Redis, or, past belief, the same random part drawn. The refusal ended
    the process (exit 1), which a supervisor restarted into the same refusal, loading its model each time
    (a review); now the next worker takes a new name, after a wait that grows, from 1 s to a minute, while
    names are refused in a row: a Redis that answers every name as taken gets a line a minute. Returns the
    wait, in seconds."""
    delay = clashes.next_delay()
    log.warning("worker %s: its name is registered in Redis already (RQ refused it: forged by a client of"
                " the queues' Redis?); the next worker takes a new name in %.0f s", name, delay)  # fmt: skip
    return delay


def worker_options(stage: str) -> dict[str, Any]:
    """What a pool's RQ workers are given beyond StageWorker's defaults: the alert pool does its duty
    (queueing the deliveries due, retries after their back-off) every ALERT_MAINTENANCE_S."""
    return {"maintenance_interval": defaults.ALERT_MAINTENANCE_S} if stage == "alert" else {}


def wait_for_redis(connection: redis.Redis, stop: threading.Event) -> None:
    """After RQ's loop ended on a Redis error: wait, with backoff, until Redis answers (or a stop)."""
    backoff = Backoff(*defaults.RECONNECT_BACKOFF_S)
    while not stop.is_set():
        try:
            connection.ping()
            return
        except redis.RedisError as error:
            delay = backoff.next_delay()
            log.warning("Redis unavailable (%s); retrying in %.0f s", mask_url(str(error)), delay)
            stop.wait(delay)


def sighting_loop(
    stage: SightingStage, settings: Settings, stop: threading.Event, burst: bool, entry: str | None = None
) -> int:
    """The sighting pool's loop: a round over the cameras every ALPR_SIGHTING_POLL_S until a signal
    (one round with `burst`); a Postgres outage is waited out with backoff, the cursors where they were.
    `entry`: what its heartbeat publishes (`sighting_rounds`)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    # containers run as pid 1 and may share a hostname: a random part keeps each worker its own entry
    name = f"{socket.gethostname()}-{os.getpid()}-{token_hex(defaults.WORKER_NAME_TOKEN_BYTES)}"
    connection = stage.alert_queue.connection
    log.info("sighting worker %s ready", name)
    try:
        sighting_rounds(stage, settings, stop, burst, connection, name, entry)
    finally:
        with contextlib.suppress(redis.RedisError):  # stopped: no longer counted (a killed one ages out)
            leave(connection, SIGHTING_WORKERS_KEY, name)
    return 0


def heartbeat(
    connection: redis.Redis, name: str, done: threading.Event, round_began: list[float | None], entry: str | None = None
) -> None:
    """Mark sighting worker `name` alive every third of the heartbeat's TTL until `done`, with `entry`,
    its settings that change its results (common/role_settings.py: `alpr status` counts the pool by the
    beats and compares the entries; a Redis outage only makes it miss beats), but while a round in progress
    (`round_began[0]`, time.monotonic(); None between rounds) began more than the TTL ago: a worker whose
    round hangs drops out of the count, as it did when it beat between rounds; an idle one waiting out a
    long ALPR_SIGHTING_POLL_S does not (a review)."""
    while True:
        began = round_began[0]
        if began is None or time.monotonic() - began < defaults.SIGHTING_HEARTBEAT_TTL_S:
            with contextlib.suppress(redis.RedisError):
                beat_sighting_worker(connection, name, entry)
        if done.wait(defaults.SIGHTING_HEARTBEAT_TTL_S / 3):
            return


def sighting_rounds(
    stage: SightingStage,
    settings: Settings,
    stop: threading.Event,
    burst: bool,
    connection: redis.Redis,
    name: str,
    entry: str | None = None,
) -> None:
    """The rounds of `sighting_loop`; its heartbeat, every third of its TTL, on a thread of its own: a
    Redis that accepts and never answers held each beat for its whole timeout (30 s), and the rounds,
    which need no Redis, ran 4 times in 41 s instead of 200 (a review). The heartbeat ends with the rounds
    (before the worker's entry is taken away: a beat after it left a ghost). Each beat publishes `entry`
    (its settings and deployment; by default its settings alone)."""
    done = threading.Event()
    round_began: list[float | None] = [None]
    beating = threading.Thread(
        target=heartbeat,
        args=(connection, name, done, round_began, entry or role_settings(settings, "sight").entry()),
        name="sighting-heartbeat",
        daemon=True,
    )
    beating.start()
    try:
        _rounds(stage, settings, stop, burst, round_began)
    finally:
        done.set()
        beating.join(HEARTBEAT_JOIN_S)  # one stuck on a Redis that never answers is left behind (a daemon)


HEARTBEAT_JOIN_S = 1.0
"""How long a stopping sighting worker waits for a beat in flight."""


def _rounds(
    stage: SightingStage, settings: Settings, stop: threading.Event, burst: bool, round_began: list[float | None]
) -> None:
    """The rounds themselves, each one's start noted in `round_began` (None once it ended). While
    Postgres is away a round fails within DB_ATTEMPT_S (`SightingStage.poll`) and the next is tried
    after DB_OUTAGE_BACKOFF_S's wait (0.5 s doubling to 5 s), as a job's writes are: with the sources'
    RECONNECT_BACKOFF_S (1 s doubling to 30 s) a worker resumed up to 30 s after Postgres was back, its
    early alerts that late (a review). A round whose session Postgres ended idle in a transaction
    (IdleInTransactionSessionTimeout, an InternalError) fails alone, its connection dropped by the pool, and
    the next is tried as usual: the worker exited on it (a review; no transaction is left open at a round's
    start any more, `SightingStage.refresh_watch`). Each round's outcome, gone through or met an outage, is
    the worker's alpr_database_up (common/db_watch.py): a round may only read."""
    import psycopg
    from psycopg_pool import PoolTimeout

    from common.db import WatchedPool

    backoff = Backoff(*defaults.DB_OUTAGE_BACKOFF_S)
    away: str | None = None  # the outage told, once (a read-only primary: a WARNING a camera a round before)
    pool = stage.pool
    answered = pool.answered if isinstance(pool, WatchedPool) else lambda up: None  # its alpr_database_up
    while not stop.is_set():
        round_began[0] = time.monotonic()
        try:
            stage.poll()
            answered(True)  # (a round that only read: no write told it)
            backoff.reset()
            if away is not None:
                log.info("Postgres answers again: sighting rounds go on")
                away = None
        except (psycopg.OperationalError, PoolTimeout, psycopg.errors.ReadOnlySqlTransaction) as error:
            round_began[0] = None
            answered(False)
            if isinstance(error, psycopg.errors.ReadOnlySqlTransaction):
                stage.pool.drain()  # each retry connects afresh: to the new primary behind the same name
            delay = backoff.next_delay()
            reason = mask_url(outage_reason(error, "round")[:200])
            log.log(logging.DEBUG if away == reason else logging.WARNING, "%s; retrying in %.1f s", reason, delay)
            away = reason
            stop.wait(delay)
            continue
        except psycopg.errors.IdleInTransactionSessionTimeout as error:
            log.warning("sighting round failed: Postgres ended its session (%s), tried again next round",
                        type(error).__name__)  # fmt: skip
        round_began[0] = None
        if burst:
            break
        stop.wait(settings.sighting_poll_s)

"""The distributed chain's subcommands: `alpr ingest`, `alpr worker STAGE`, `alpr db upgrade`,
`alpr status` (alpr/status.py) and `alpr replay`. Each builds its role's parts from the validated
Settings and hands over."""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import signal
import socket
import threading
from typing import Any

import redis

from common import defaults
from common.config import Settings
from common.credentials import mask_url
from common.errors import ConfigError, InputError
from common.frame_store import FrameStore
from common.metrics import Metrics
from common.queues import STAGES, connect_redis, queue_keys, stage_queue

log = logging.getLogger(__name__)


def reach_redis(settings: Settings, url: str | None = None, what: str = "queues") -> redis.Redis:
    """A checked connection to the queues' Redis (or, with `url`, another: the frame store's)."""
    url = url or settings.redis_url
    if url == defaults.REDIS_URL and "ALPR_REDIS_URL" not in os.environ:
        log.info("no ALPR_REDIS_URL set: using the default %s for the %s", url, what)
    log.info("Redis for the %s: %s", what, mask_url(url))
    connection = connect_redis(url, settings.secret("redis_password"))
    try:
        connection.ping()
    except redis.RedisError as error:
        raise ConfigError(f"cannot reach Redis ({what}) at {mask_url(url)}: {mask_url(str(error))}") from None
    return connection


def reach_frame_store(settings: Settings, queues: redis.Redis) -> redis.Redis:
    """The frame store's Redis: the queues' connection unless ALPR_FRAME_STORE_URL names another."""
    if settings.store_url == settings.redis_url:
        return queues
    return reach_redis(settings, settings.store_url, "frame store")


def database_pool(settings: Settings, role: str) -> Any:
    from common.db import open_pool, require_schema

    if not settings.database_url:
        raise ConfigError(f"the {role} needs ALPR_DATABASE_URL (or --database-url) to log to Postgres")
    pool = open_pool(settings.database_url, password=settings.secret("database_password"))
    require_schema(pool)
    return pool


def ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.cameras import load_cameras
    from ingest.node import IngestNode
    from ingest.sources import check_source

    cameras = load_cameras(args.cameras)
    for camera in cameras:
        if camera.enabled:
            try:
                check_source(camera.source)
            except InputError as error:
                raise ConfigError(f"camera {camera.id!r}: {mask_url(str(error))}") from None
    connection = reach_redis(settings)
    frames = reach_frame_store(settings, connection)
    metrics = Metrics()
    metrics.watch_queues(connection, queue_keys())
    metrics.serve(settings.metrics_port, settings.metrics_address)
    ledger = None
    if settings.database_url:
        register_cameras_if_reachable(settings, cameras)
        ledger = frame_ledger(settings, metrics)
    else:
        log.warning("no ALPR_DATABASE_URL: sampled frames are not recorded in the frames log (no loss accounting)")
    node = IngestNode(cameras, settings, connection, frames, metrics, ledger)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: node.stop.set())
    summary = node.run(args.max_seconds)
    for camera in node.cameras:
        print(f"{camera.id}: {summary.ingested[camera.id]} frames queued, {summary.skipped[camera.id]} skipped")
    print(f"{summary.jobs} detect jobs", flush=True)
    if args.linger:  # a last scrape of the final counts, for nodes that ingest files and end
        finished = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: finished.set())
        finished.wait(args.linger)
    return 0


def frame_ledger(settings: Settings, metrics: Metrics) -> Any:
    """The ingest node's ledger of sampled frames; it opens Postgres itself, when it answers."""
    from common.db import open_pool
    from common.frame_log import FrameLog
    from ingest.ledger import FrameLedger

    def open_log() -> FrameLog:
        pool = open_pool(settings.database_url or "", wait_s=3, password=settings.secret("database_password"))
        return FrameLog(pool, patience_s=0)

    return FrameLedger(open_log, metrics, defaults.LEDGER_CAPACITY)


def register_cameras_if_reachable(settings: Settings, cameras: list[Any]) -> None:
    """Fill the cameras table, for joins and dashboards. Frames flow without it: while Postgres is
    down, the node starts anyway and says so; a database without the schema is still an error."""
    from common.db import open_pool, register_cameras, require_schema

    try:
        pool = open_pool(settings.database_url or "", wait_s=3, password=settings.secret("database_password"))
    except ConfigError as error:
        log.warning("%s; cameras not registered, ingesting anyway", error)
        return
    try:
        require_schema(pool)
        register_cameras(pool, [(c.id, c.region, c.enabled) for c in cameras])
    finally:
        pool.close()


def build_stage(stage: str, settings: Settings, connection: redis.Redis, metrics: Metrics) -> Any:
    """The stage object of a worker, its model loaded once, here, before any job."""
    from alpr.wiring import build_detector, build_reader

    store = FrameStore(reach_frame_store(settings, connection), settings.frame_ttl_s)
    if stage == "detect":
        from detector_worker.worker import DetectStage

        detector = build_detector(settings)
        metrics.worker_threads.set(detector.threads)
        return DetectStage(
            detector, store, stage_queue(connection, "ocr"), metrics, defaults.OCR_CROP_MARGIN, settings.job_timeout_s,
            settings.max_frame_age_s,
        )  # fmt: skip
    if stage == "ocr":
        from common.plate_log import PostgresPlateLog
        from ocr_worker.worker import OcrStage

        plate_log = PostgresPlateLog(database_pool(settings, "OCR worker"), patience_s=settings.db_patience_s)
        ocr = OcrStage(
            lambda region: build_reader(settings, region), store, plate_log, stage_queue(connection, "redact"), metrics,
            settings.job_timeout_s,
        )  # fmt: skip
        ocr.reader(settings.ocr_region)  # load the recogniser now, not on the first job
        return ocr
    from common.frame_log import FrameLog
    from redactor_worker.worker import RedactStage

    log.info("redactor keeps %s frames in %s for %.0f h", settings.keep_frames, settings.keep_dir,
             settings.keep_max_age_h)  # fmt: skip
    return RedactStage(
        store, FrameLog(database_pool(settings, "redactor"), settings.db_patience_s), settings.keep_dir,
        settings.keep_frames, settings.redact_method, metrics, connection, settings.jpeg_quality,
        settings.keep_max_age_h * 3600,
        lost_after_s=settings.frame_ttl_s + settings.job_timeout_s, keep_sweep_s=defaults.KEEP_SWEEP_S,
    )  # fmt: skip


def worker(args: argparse.Namespace, settings: Settings) -> int:
    from common.worker import StageWorker

    connection = reach_redis(settings)
    metrics = Metrics()
    metrics.watch_queues(connection, queue_keys())
    metrics.serve(settings.metrics_port, settings.metrics_address)
    stage = build_stage(args.stage, settings, connection, metrics)
    stop = threading.Event()
    for run in itertools.count():
        name = f"{args.stage}-{socket.gethostname()}-{os.getpid()}-{run}"
        rq_worker = StageWorker(stage_queue(connection, args.stage), stage, metrics, stop, name=name)
        log.info("worker %s ready", name)
        try:
            rq_worker.work(burst=args.burst, max_jobs=args.max_jobs, logging_level="WARNING")
        except redis.RedisError as error:  # RQ's own start-up and shutdown bookkeeping raise these
            log.warning("worker %s lost Redis: %s", name, mask_url(str(error)))
        if stop.is_set() or args.burst or args.max_jobs:
            return 0
        for signum in (signal.SIGTERM, signal.SIGINT):  # RQ's handlers belong to the worker that ended
            signal.signal(signum, lambda *_: stop.set())
        wait_for_redis(connection, stop)
    return 0


def wait_for_redis(connection: redis.Redis, stop: threading.Event) -> None:
    """After RQ's loop ended on a Redis error: wait, with backoff, until Redis answers (or a stop)."""
    wait, longest = defaults.RECONNECT_BACKOFF_S
    while not stop.is_set():
        try:
            connection.ping()
            return
        except redis.RedisError as error:
            log.warning("Redis unavailable (%s); retrying in %.0f s", mask_url(str(error)), wait)
            stop.wait(wait)
            wait = min(longest, wait * 2)


def db(args: argparse.Namespace, settings: Settings) -> int:
    from common.db import open_pool, upgrade

    if not settings.database_url:
        raise ConfigError("set ALPR_DATABASE_URL (or --database-url) to the Postgres to upgrade")
    pool = open_pool(settings.database_url, password=settings.secret("database_password"))
    try:
        applied = upgrade(pool)
    finally:
        pool.close()
    print(f"applied migrations {applied}" if applied else "schema already up to date")
    return 0


def status(args: argparse.Namespace, settings: Settings) -> int:
    from alpr.status import status as show_status

    return show_status(args, settings)


def replay(args: argparse.Namespace, settings: Settings) -> int:
    from common.replay import replay_failed

    queues_redis = reach_redis(settings)
    stages = [args.stage] if args.stage else list(STAGES)
    report = replay_failed(queues_redis, reach_frame_store(settings, queues_redis), stages, args.dry_run)
    verb = "would requeue" if args.dry_run else "requeued"
    print(f"{'stage':<8} {verb:>13} {'expired':>8} {'malformed':>9}")
    for stage in [args.stage] if args.stage else STAGES:
        print(f"{stage:<8} {report.requeued[stage]:>13} {report.expired[stage]:>8} {report.malformed[stage]:>9}")
    return 0

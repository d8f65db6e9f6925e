"""`alpr ingest`: check the cameras file and every enabled source, connect, then run an ingest node until
its files end, `--max-seconds`, or a signal; each camera's row in the cameras table is written once the
node has claimed it (ingest/claims.py)."""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from alpr.connections import ingest_pool, reach_frame_store, reach_redis
from alpr.deployment_check import check_deployment
from alpr.start_warnings import check_job_key, warn_if_links_in_clear, warn_if_redis_open
from alpr.wiring import frame_ledger
from common import defaults
from common.config import Settings
from common.credentials import mask_url
from common.errors import ConfigError
from common.metrics import Metrics
from common.queues import queue_keys
from common.redis_watch import watch_redis

log = logging.getLogger(__name__)


def ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.cameras import load_cameras, shared_sources
    from ingest.clock import CaptureClock
    from ingest.node import IngestNode
    from ingest.spool_files import check_spool_folder

    # every mistake of the file at once, sources too (a video opened within the operator's memory bound); a
    # camera without a sample_fps or region of its own takes ALPR_SAMPLE_FPS and ALPR_OCR_REGION, as `alpr run`
    cameras = load_cameras(args.cameras, settings, check_sources=True)
    for ids in shared_sources(cameras):
        log.warning("cameras %s read the same source: every car there is read, logged and alerted on by each",
                    ", ".join(ids))  # fmt: skip
    if settings.database_url:  # its frame records kept there until written: a kill loses none
        check_spool_folder(settings.ledger_spool_dir)
    warn_if_links_in_clear(settings)  # before a start that may fail on that link
    connection = reach_redis(settings, timeout_s=defaults.INGEST_REDIS_TIMEOUT_S)
    warn_if_redis_open(settings)
    deployment = check_deployment(settings, connection, "ingest")  # refused where Redis serves another one
    check_job_key(settings, connection, "ingest", deployment)  # published with the key's fingerprint
    frames = reach_frame_store(settings, connection, defaults.INGEST_REDIS_TIMEOUT_S, "ingest node")
    metrics = Metrics()
    watch_redis(connection, metrics)  # alpr_redis_up: recorded footage waits a Redis outage out, shown here
    watch_redis(frames, metrics, "frame_store", back_pressure=True)  # a full store: skipped or held, not counted
    metrics.watch_queues(connection, queue_keys())
    ledger, clock = None, CaptureClock()  # one clock: the frames' dates, their store time, the watermarks
    register = None
    if settings.database_url:
        register_cameras_if_reachable(settings, [c for c in cameras if not c.enabled], overwrite=False)
        ledger = frame_ledger(settings, metrics, clock.now)
        register = functools.partial(register_claimed, settings)
    else:
        log.warning("no ALPR_DATABASE_URL: sampled frames are not recorded in the frames log (no loss accounting)")
    node = IngestNode(cameras, settings, connection, frames, metrics, ledger, clock, register, deployment)
    metrics.serve(settings.metrics_port, settings.metrics_address)  # once ready: a node failing at start answers none
    on_stop_signals(lambda *_: node.stop.set())
    summary = node.run(args.max_seconds)
    for camera in node.cameras:
        lost = f"; taken by ingest node {summary.lost[camera.id]!r}, stood by for" if camera.id in summary.lost else ""
        unsampled = summary.unsampled[camera.id]  # counted skipped, but never sampled: no frames-log row
        never = f" ({unsampled} of them never sampled: no frames-log row)" if unsampled else ""
        print(f"{camera.id}: {summary.ingested[camera.id]} frames queued, {summary.skipped[camera.id]} skipped{never}"
              f"{lost}")  # fmt: skip
    print(f"{summary.jobs} detect jobs", flush=True)
    if args.linger:  # a last scrape of the final counts, for nodes that ingest files and end
        finished = threading.Event()
        on_stop_signals(lambda *_: finished.set())
        finished.wait(args.linger)
    return 0  # a camera another node took is stood by for, as one held elsewhere at the start: no failure


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""What stops a node as asked: SIGHUP too (its ssh session dropped), whose default killed it outright, the
frames in hand never queued nor recorded and its cameras' claims held until they lapsed."""


def on_stop_signals(handler: Callable[[int, FrameType | None], None]) -> None:
    """`handler` for each of STOP_SIGNALS but one ignored (SIGHUP under `nohup` stays ignored)."""
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, handler)


def register_claimed(settings: Settings, cameras: list[Any]) -> None:
    """The cameras table's rows of cameras the node has just claimed (IngestNode.claimed, from a thread of
    its own): a node that stands by for a camera another node samples rewrote its row at each start (a
    review: another region, a disabled camera); Postgres away, said and passed over."""
    try:
        register_cameras_if_reachable(settings, cameras)
    except Exception as error:  # noqa: BLE001 - a row for dashboards: the camera is sampled all the same
        log.warning("cameras %s not registered in the cameras table: %s", ", ".join(c.id for c in cameras),
                    mask_url(str(error)) or type(error).__name__)  # fmt: skip


def register_cameras_if_reachable(settings: Settings, cameras: list[Any], overwrite: bool = True) -> None:
    """Fill the cameras table, for joins and dashboards: at the start the rows it lacks of the disabled cameras
    (`overwrite` False), the enabled ones as they are claimed (`register_claimed`). Frames flow without it:
    while Postgres is down, or read-only (common/db_writes.OUTAGES: a node started during a failover exited
    at once), the node starts anyway and says so. A login Postgres refuses for good (a database or role that
    does not exist, a wrong password: common/db.refused_for_good) and a database without the schema stop
    the node at start, as they stop the workers: a node given a mistyped database name ran and exited 0,
    its frames in the chain and their records only in its spool folder, with WARNINGs alone (a review). So
    does a role that lacks a right the node needs (common/db_rights.INGEST_NODE_RIGHTS): it started, then
    failed its first statement."""
    from common.db import CannotConnectError
    from common.db_rights import INGEST_NODE_RIGHTS, require_rights
    from common.db_writes import OUTAGES, outage_reason, register_cameras
    from common.schema_upgrade import require_schema

    try:
        pool = ingest_pool(settings)
    except CannotConnectError as error:
        if error.for_good:
            raise ConfigError(f"{error} (no wait mends that: check the database URL and password)") from None
        log.warning("%s; cameras not registered, ingesting anyway", error)
        return
    try:
        require_schema(pool)
        require_rights(pool, "the ingest node", INGEST_NODE_RIGHTS)
        if cameras:
            register_cameras(pool, [(c.id, c.region, c.enabled) for c in cameras], overwrite)
    except OUTAGES as error:  # read-only (a failover under way), gone since, a table locked: as when down
        log.warning("%s; cameras not registered, ingesting anyway", outage_reason(error))
    finally:
        pool.close()

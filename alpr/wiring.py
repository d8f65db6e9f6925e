"""The composition root: builds the role cores and each worker kind's stage from the one Settings
object, so every command (standalone, chain, evaluation) wires them the same way. The links they use
are opened by alpr/connections.py; what a role warns of at its start is alpr/start_warnings.py."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import redis

from alpr.connections import database_pool, ingest_pool, reach_frame_store, signed_queue
from alpr.start_checks import check_device, check_keep_dir, check_session_device
from common import defaults
from common.config import Settings
from common.db_rights import ALERT_WORKER_RIGHTS, OCR_WORKER_RIGHTS, REDACT_WORKER_RIGHTS, SIGHTING_WORKER_RIGHTS
from common.errors import ConfigError
from common.frame_store import FrameStore
from common.metrics import Metrics
from common.queues import StageName
from common.redis_watch import watch_redis
from common.worker_context import WorkerContext
from detector_worker.core import DetectorSettings, PlateDetector
from ocr_worker.core import OcrSettings, PlateReader

if TYPE_CHECKING:  # the roles' edges, imported by the builders that need them (a worker loads its own)
    from alert_worker.worker import AlertStage
    from alpr.standalone import Pipeline
    from common.alerts import MqttReceiver, WebhookReceiver
    from common.plate_log import PlateLog
    from common.roi import Polygon
    from common.sighting_log import SightingLog
    from ingest.ledger import FrameLedger
    from sighting_worker.worker import SightingStage

log = logging.getLogger(__name__)


def detector_settings(settings: Settings) -> DetectorSettings:
    """How the detector runs, from the one Settings object (its cap on plates a frame also tells the
    redactor when to hide a whole frame)."""
    return DetectorSettings(
        model_dir=settings.model_dir,
        weights=settings.detector_weights,
        backend=settings.detector_backend,
        device=settings.detector_device,
        half=settings.detector_half,
        imgsz=settings.detector_imgsz,
        confidence=settings.detector_confidence,
        batch_size=settings.detector_batch_size,
        threads=settings.detector_threads,
        max_downscale=settings.detector_max_downscale,
    )


def build_detector(settings: Settings, kind: type[PlateDetector] = PlateDetector) -> PlateDetector:
    """The detector (of `kind`, a PlateDetector or one that extends it), on the device asked for: a
    CUDA device the backend cannot use is an error here, not a quiet fall-back to the CPU."""
    check_device(settings.detector_backend, settings.detector_device)
    if settings.detector_imgsz < defaults.DETECTOR_IMGSZ and settings.keep_frames != "none":
        log.warning("ALPR_DETECTOR_IMGSZ %d is under the default %d: small plates are found less often, and a "
                    "plate not found is not blurred in the frames kept (ALPR_KEEP_FRAMES %s; 2 of the demo clip's "
                    "24 plates at 320)",
                    settings.detector_imgsz, defaults.DETECTOR_IMGSZ, settings.keep_frames)  # fmt: skip
    detector = kind(detector_settings(settings))
    if session := getattr(detector.backend, "session", None):  # ONNX Runtime's
        check_session_device(settings.detector_backend, settings.detector_device, session)
    return detector


def ocr_settings(
    settings: Settings, region: str | None = None, calibrated: bool = True, format_weight: float | None = None
) -> OcrSettings:
    return OcrSettings(
        engine=settings.ocr_engine,
        region=region or settings.ocr_region,
        max_candidates=settings.ocr_max_candidates,
        model=settings.ocr_model,
        calibrated=calibrated,
        threads=settings.ocr_threads,
        format_weight=format_weight,
    )


def build_reader(
    settings: Settings, region: str | None = None, calibrated: bool = True, format_weight: float | None = None
) -> PlateReader:
    """The reader; `calibrated=False` keeps the engine's own confidences and `format_weight` overrides
    the fitted one (what `alpr calibrate` fits)."""
    return PlateReader(ocr_settings(settings, region, calibrated, format_weight))


def build_worker_context(
    stage: StageName, settings: Settings, connection: redis.Redis, metrics: Metrics
) -> WorkerContext:
    """What a worker of one kind starts with: its stage, the model loaded once, here, before any job."""
    from common.frame_log import FrameLog

    if stage == "alert":  # the one kind that never touches frames; its lanes end with the process's last worker
        alert = build_alert_stage(settings, connection, metrics)
        return WorkerContext(alert, metrics, settings.job_timeout_s, finish=alert.finish, stop=alert.stopping)
    if stage == "redact" and settings.keep_frames != "none":  # frames kept: fail now, not in every job
        check_keep_dir(settings.keep_dir)
    frames = reach_frame_store(settings, connection, writer="detector worker" if stage == "detect" else None)
    watch_redis(frames, metrics, "frame_store")  # (where it is the queues' Redis, watched once)
    store = FrameStore(frames, settings.frame_ttl_s, settings.db_patience_s)
    if stage == "detect":
        from detector_worker.worker import DetectStage

        detector = build_detector(settings)
        metrics.worker_threads.set(detector.threads)
        log.info("detector: %d inference threads (ALPR_DETECTOR_THREADS %d)", detector.threads,
                 settings.detector_threads)  # fmt: skip
        detect = DetectStage(
            detector, store, signed_queue(settings, connection, "ocr"), signed_queue(settings, connection, "redact"),
            metrics, settings.ocr_crop_margin, settings.job_timeout_s, settings.max_frame_age_s,
        )  # fmt: skip
        return WorkerContext(detect, metrics, settings.job_timeout_s)
    if stage == "ocr":
        from common.plate_log import PostgresPlateLog
        from ocr_worker.worker import OcrStage

        pool = database_pool(settings, "OCR worker", OCR_WORKER_RIGHTS, metrics=metrics)
        ocr = OcrStage(
            lambda region: build_reader(settings, region), store,
            PostgresPlateLog(pool, patience_s=settings.db_patience_s), FrameLog(pool, settings.db_patience_s), metrics,
            settings.job_timeout_s * defaults.JOB_TIME_BUDGET_SHARE,
        )  # fmt: skip
        # load the recogniser now, not on the first job; a frame of another region (its camera's, which the
        # ingest node set) is read with that region's reader, made at its first frame and kept
        ocr.reader(settings.ocr_region)
        metrics.worker_threads.set(settings.ocr_threads)  # each recogniser's ONNX session (ALPR_OCR_THREADS)
        return WorkerContext(ocr, metrics, settings.job_timeout_s)
    from redactor_worker.worker import RedactStage

    settings = settings.within_retention("redact")  # (as `alpr worker redact` has: the same settings again)
    cut = "" if settings.keep_age_cut_h is None else (
        f" (ALPR_KEEP_MAX_AGE_H unset: its default {settings.keep_age_cut_h:g} h cut to ALPR_RETENTION_DAYS,"
        f" {settings.retention_days:g} days)")  # fmt: skip
    log.info("redactor keeps %s frames in %s for %g h%s", settings.keep_frames, settings.keep_dir,
             settings.keep_max_age_h, cut)  # fmt: skip
    pool = database_pool(settings, "redactor", REDACT_WORKER_RIGHTS, metrics=metrics)
    redact = RedactStage(
        store, FrameLog(pool, settings.db_patience_s), settings.keep_dir,
        settings.keep_frames, settings.redact_method, metrics, settings.jpeg_quality,
        settings.keep_max_age_h * 3600,
        lost_after_s=settings.frame_ttl_s + settings.job_timeout_s, keep_sweep_s=defaults.KEEP_SWEEP_S,
        max_boxes=detector_settings(settings).max_plates_per_frame, plate_confidence=settings.detector_confidence,
    )  # fmt: skip
    return WorkerContext(redact, metrics, settings.job_timeout_s)


def receivers(settings: Settings) -> dict[str, WebhookReceiver | MqttReceiver]:
    """The alert receivers of the receivers file (ALPR_ALERT_RECEIVERS); none without one."""
    from common.alerts import load_receivers

    return load_receivers(settings.alert_receivers) if settings.alert_receivers else {}


def receivers_file_slip(environ: Mapping[str, str] | None = None) -> str:
    """What to add where ALPR_ALERT_RECEIVERS is missing and ALPR_RECEIVERS_FILE, docker-compose.yml's name
    for the host's receivers file, is set: it is read by no alpr command (common/setting_environment.COMPOSE_VARIABLES),
    and a warning naming only ALPR_ALERT_RECEIVERS left its operator believing it read. Its value (a path)
    is not repeated."""
    environ = os.environ if environ is None else environ
    if not environ.get("ALPR_RECEIVERS_FILE"):
        return ""
    return (
        "; ALPR_RECEIVERS_FILE is set, but it is docker-compose.yml's (the host file compose mounts as the"
        " receivers file), read by no alpr command: set ALPR_ALERT_RECEIVERS=FILE instead"
    )


def build_alert_stage(settings: Settings, connection: redis.Redis, metrics: Metrics) -> AlertStage:
    """The alert pool's stage: the receivers (the file is required) and the alerts log."""
    from alert_worker.worker import AlertStage, warn_if_clock_off
    from common.alert_log import AlertLog
    from common.alerts import LOOPBACK_HOSTS, MqttReceiver

    if not settings.alert_receivers:
        raise ConfigError(
            f"the alert worker needs ALPR_ALERT_RECEIVERS: the YAML file of the receivers{receivers_file_slip()}"
        )
    targets = receivers(settings)
    if not targets:
        log.warning("the receivers file %s lists no receiver: there is nothing to deliver", settings.alert_receivers)
    host: str | None
    for name, receiver in targets.items():  # alerts carry plate text: in the clear only on this host
        if isinstance(receiver, MqttReceiver):
            plain, host = not receiver.uses_tls, receiver.host
        else:
            parts = urlsplit(receiver.url)  # the scheme in any case: HTTP:// is sent as plain http too
            plain, host = parts.scheme == "http", parts.hostname
        if plain and host not in LOOPBACK_HOSTS:
            log.warning("receiver %s gets plate text unencrypted (plain http or MQTT without TLS)", name)
    alert_pool = database_pool(settings, "alert worker", ALERT_WORKER_RIGHTS, metrics=metrics)
    alert_log = AlertLog(alert_pool, settings.db_patience_s)
    warn_if_clock_off(alert_log)
    return AlertStage(
        targets, alert_log, signed_queue(settings, connection, "alert"), metrics, settings.alert_give_up_s,
        settings.job_timeout_s,
    )  # fmt: skip


def build_sighting_stage(settings: Settings, connection: redis.Redis, metrics: Metrics) -> SightingStage:
    """The sighting pool's stage: the grouping settings, the watch-lists (cached) and the receivers
    each alert gets a delivery to (with none, alerts are only logged)."""
    from common.db import SIGHTING_SESSION_SETTINGS
    from common.watchlist import WatchList
    from common.watchlist_cache import WatchListCache
    from sighting_worker.stage_types import SightingSettings
    from sighting_worker.worker import SightingStage

    read_min_confidence = settings.early_match_min_confidence  # one below ALPR_OCR_MIN_CONFIDENCE refused first
    pool = database_pool(settings, "sighting worker", SIGHTING_WORKER_RIGHTS, SIGHTING_SESSION_SETTINGS, metrics)
    tuning = SightingSettings(
        gap_s=settings.sighting_gap_s, settle_s=settings.sighting_settle_s,
        read_min_confidence=read_min_confidence, sighting_min_confidence=settings.ocr_min_confidence,
        max_distance=settings.watch_max_distance, history_s=settings.frame_ttl_s + settings.job_timeout_s,
        alert_repeat_s=settings.alert_repeat_s, fuzzy_min_probability=settings.watch_fuzzy_min_probability,
    )  # fmt: skip
    watch = WatchListCache(
        WatchList(pool),
        settings.watch_refresh_s,
        expired_within_s=settings.frame_ttl_s + settings.job_timeout_s,
        keyed_distance=settings.watch_max_distance,
    )
    from common.alerts import receiver_routes

    routes = receiver_routes(settings.alert_receivers) if settings.alert_receivers else {}
    if not routes:
        slip = "" if settings.alert_receivers else receivers_file_slip()
        log.warning("no alert receivers (ALPR_ALERT_RECEIVERS unset or listing none): watch-list alerts are"
                    f" logged, but delivered to no receiver{slip}")  # fmt: skip
    stage = SightingStage(pool, watch, routes, signed_queue(settings, connection, "alert"), metrics,
                          tuning, settings.job_timeout_s)  # fmt: skip
    stage.compare_clocks()
    return stage


def frame_ledger(settings: Settings, metrics: Metrics, now: Callable[[], float] = time.time) -> FrameLedger:
    """The ingest node's ledger of sampled frames; it opens Postgres itself, when it answers. `now`: the
    clock the node dates its frames by (its watermarks are on it)."""
    from common.frame_log import FrameLog
    from ingest.ledger import FrameLedger
    from ingest.spool_files import database_tag

    def open_log() -> FrameLog:
        return FrameLog(ingest_pool(settings), patience_s=0)

    return FrameLedger(open_log, metrics, defaults.LEDGER_CAPACITY, now, spool_dir=settings.ledger_spool_dir,
                       spool_tag=database_tag(settings.database_url))  # fmt: skip


def build_pipeline(
    settings: Settings,
    cores: tuple[PlateDetector, PlateReader],
    plate_log: PlateLog,
    sighting_log: SightingLog,
    roi: Polygon | None = None,
) -> Pipeline:
    """The standalone pipeline (`alpr run`): the same cores the chain's stages call (`cores`: the detector and
    reader, built before the logs are opened, so that a device refused leaves no log), one process."""
    from alpr.standalone import Pipeline

    return Pipeline(
        *cores, plate_log, sighting_log, settings.redact_method,
        settings.ocr_min_confidence, roi, settings.ocr_crop_margin, settings.ocr_region, settings.sighting_gap_s,
    )  # fmt: skip

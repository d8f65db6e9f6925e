"""Prometheus metrics, counted where things happen. Each process builds one `Metrics` (its own
registry, no global state) and serves it on its own port. Labels carry camera ids, stages, queues
and outcomes — never plate text."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.backoff import NoBackoff
from redis.retry import Retry

from common import defaults
from common.errors import ConfigError
from common.metrics_registry import RegistryWithoutCreated, RoleCounter, RoleGauge, RoleHistogram, RoleMetric
from common.metrics_server import serve_metrics

LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.1, 1.25, 1.4, 1.6, 1.8, 2, 2.25, 2.5,
    3, 3.5, 4, 5, 6, 7.5, 10, 12.5, 15, 20, 25, 30, 40, 50, 60, 120,
)  # fmt: skip
"""Bounds of the latency histograms (a stage's job; capture to reads logged, to a sighting, to an alert
delivered), in seconds: each at most a third above the one before from 0.25 s to a minute, where the
chain's latencies lie, so that histogram_quantile reads the README's p50 / p99 within 15%
(tests/common/test_latency_buckets.py; 0.5, 1, 2.5, 5 read a p99 of 1.22 s as 2.47 s). 37 bounds: 39
series a histogram and label set."""
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
LATE_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 21600, 86400)
"""How late a late alert went out (seconds from capture): minutes to a day of an outage's backlog."""


POOL_OWN_KWARGS = frozenset({
    "maint_notifications_pool_handler", "orig_socket_timeout", "orig_socket_connect_timeout", "himport_registry",
})  # fmt: skip
"""The connection settings redis-py's pool gives its connections of its own (its maintenance handler, the
timeouts it restores after one): left to the depth connection's pool to give."""


def depth_connection(connection: redis.Redis) -> redis.Redis:
    """A client of `connection`'s Redis, as reached (address, credentials, TLS; its connections watched where
    `watch_redis` watched the role's already), in a pool of its own, whose every connect and read waits
    QUEUE_DEPTH_TIMEOUT_S at most and is not retried (redis-py retries a timeout 3 times unless told)."""
    pool = connection.connection_pool
    kwargs = {key: value for key, value in pool.connection_kwargs.items() if key not in POOL_OWN_KWARGS}
    for key in ("socket_timeout", "socket_connect_timeout"):
        kwargs[key] = min(kwargs.get(key) or defaults.QUEUE_DEPTH_TIMEOUT_S, defaults.QUEUE_DEPTH_TIMEOUT_S)
    kwargs.update(retry=Retry(NoBackoff(), 0), health_check_interval=0)
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


class QueueDepthCollector(Collector):
    """Queue depths read from Redis at scrape time, once `watch`ing (none before: a role watching no
    queues exports no depth family). Read on a connection of their own (`depth_connection`), so a hung Redis
    holds a scrape QUEUE_DEPTH_TIMEOUT_S or so, well within Prometheus's scrape_timeout (deploy/prometheus.yml):
    on the role's own connection a scrape waited its Redis timeout (30 s a worker), every scrape failed and
    every process read as down while alpr_redis_up, never scraped, fired nothing (a review). A read that
    times out sets alpr_redis_up to 0 (the connection is watched): `Metrics` registers this collector before
    that gauge, so the scrape in which it timed out serves the 0."""

    def __init__(self) -> None:
        self.connection: redis.Redis | None = None
        self.queue_keys: dict[str, str] = {}

    def watch(self, connection: redis.Redis, queue_keys: dict[str, str]) -> None:
        self.queue_keys = dict(queue_keys)
        self.connection = depth_connection(connection)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.connection is None:
            return
        family = GaugeMetricFamily("alpr_queue_depth", "Jobs waiting in each queue.", labels=["queue"])
        try:
            pipe = self.connection.pipeline(transaction=False)
            for key in self.queue_keys.values():
                pipe.llen(key)
            for name, depth in zip(self.queue_keys, pipe.execute(), strict=True):
                family.add_metric([name], float(depth))
        except redis.RedisError:
            pass  # Redis down or not answering: no depth to report, the scrape itself still succeeds
        yield family


MAX_CAMERA_LABELS = 5000
"""Distinct cameras one process names in its metrics' labels; cameras after them count as OTHER_CAMERA.
Workers take the camera from the job, and jobs from outside (whoever reaches Redis) could name a new
one each, growing the worker's memory and every scrape without end."""

OTHER_CAMERA = "(other)"
"""The camera label of the cameras past MAX_CAMERA_LABELS (no camera id has parentheses)."""


class Metrics:
    """Every metric of every role; a process uses the ones of its role."""

    def __init__(self) -> None:
        self.registry: CollectorRegistry = RegistryWithoutCreated()  # no `_created` series: common/metrics_registry.py
        self.cameras: set[str] = set()
        """The camera label values given so far (`camera`)."""
        r = self.registry
        self.frames_ingested = Counter(
            "alpr_frames_ingested", "Frames sampled and queued, per camera.", ["camera"], registry=r
        )
        self.frames_skipped = Counter(
            "alpr_frames_skipped", "Frames sampled but not queued, detected or read, per camera and reason.",
            ["camera", "reason"],
            registry=r,
        )  # fmt: skip
        self.source_errors = Counter("alpr_source_errors", "Source open/read failures.", ["camera"], registry=r)
        self.source_reopens = Counter(
            "alpr_source_reopens", "Live connections a camera closed after serving frames (a snapshot URL's each"
            " frame), reopened: not failures.", ["camera"], registry=r,
        )  # fmt: skip
        self.camera_failed = Gauge(
            "alpr_camera_failed", "1 while a camera's source has failed for good (not retried), else 0.", ["camera"],
            registry=r,
        )  # fmt: skip
        self.camera_ended = Gauge(
            "alpr_camera_ended", "1 once a camera's footage (a file, or a URL declared `footage: true`) was read"
            " to its end and is not read again, else 0.", ["camera"], registry=r,
        )  # fmt: skip
        self.camera_silent = Gauge(
            "alpr_camera_silent", "1 while this ingest node holds the camera and it has sampled nothing (no frame"
            " handed on, skipped or counted unsampled, not waiting for room) for 10 minutes, or three of its sample"
            " intervals where longer; 0 once it ended or failed for good, and while stood by for or lost.",
            ["camera"], registry=r,
        )  # fmt: skip
        self.camera_claimed = Gauge(
            "alpr_camera_claimed", "1 while this ingest node holds the camera's claim (samples it), 0 while it stands"
            " by for it (another node holds it): a camera whose max over the nodes is 0 is sampled by none.",
            ["camera"], registry=r,
        )  # fmt: skip
        self.camera_takeovers = Counter(
            "alpr_camera_takeovers", "Cameras this ingest node took over from a node that never gave them up (it"
            " died, froze or lost Redis).", ["camera"], registry=r,
        )  # fmt: skip
        self.camera_unsampled_seconds = Counter(
            "alpr_camera_unsampled_seconds", "Seconds a camera taken over went unsampled: from its previous"
            " holder's last frame to this node's first.", ["camera"], registry=r,
        )  # fmt: skip
        self.camera_settings_changed = Counter(
            "alpr_camera_settings_changed", "Claims of a camera whose previous holder gave it other settings"
            " (source, sample_fps, region, roi, enabled): one camera id, other settings.", ["camera"], registry=r,
        )  # fmt: skip
        self.camera_settings_differ = Gauge(
            "alpr_camera_settings_differ", "1 on an ingest node standing by for a camera whose holder, another live"
            " node, gives it other settings: two cameras files that disagree (0 once they agree).", ["camera"],
            registry=r,
        )  # fmt: skip
        ProcessCollector(registry=r)  # process_start_time_seconds: a process restarting over and over shows
        self.jobs = Counter("alpr_jobs", "Jobs handled per stage and outcome.", ["stage", "outcome"], registry=r)
        self.frames_processed = Counter("alpr_frames_processed", "Frames through each stage.", ["stage"], registry=r)
        self.frames_missing = Counter(
            "alpr_frames_missing", "Frames expired from the store before a stage read them.", ["stage"], registry=r
        )
        self.frames_corrupt = Counter(
            "alpr_frames_corrupt", "Frames (or plate crops) that did not decode, per stage.", ["stage"], registry=r
        )
        self.frames_lost = RoleCounter(
            r, "alpr_frames_lost", "Frames marked lost by the sweep: no stage finished them in time."
        )
        self.reads_lost = RoleCounter(
            r, "alpr_reads_lost", "Frames whose plate reads the sweep marked lost: no OCR job recorded them in time."
        )  # fmt: skip
        self.frames_unaccounted = Gauge(
            "alpr_frames_unaccounted", "Frames sampled without a final outcome yet (in the chain), per camera.",
            ["camera"], registry=r,
        )  # fmt: skip
        self.frames_unrecorded = Counter(
            "alpr_frames_unrecorded", "Sampled frames whose record the ingest node could not keep.", ["camera"],
            registry=r,
        )  # fmt: skip
        self.ledger_held_records = RoleGauge(
            r, "alpr_ledger_held_records", "Frame records this ingest node holds for the frames log, not yet written"
            " (in memory, and in its spool folder where it has one): they grow while Postgres is away, and past"
            " LEDGER_CAPACITY (200,000) further frames go unrecorded."
        )  # fmt: skip
        self.ledger_unwritten_seconds = RoleGauge(
            r, "alpr_ledger_unwritten_seconds", "Seconds this ingest node has held frame records without a write to the"
            " frames log going through (0 while it holds none): Postgres down, refusing, or not answering."
        )  # fmt: skip
        self.database_up = Gauge(
            "alpr_database_up", "1 while Postgres takes this process's statements, 0 from one that met an outage"
            " (unreachable, read-only, a lock waited past lock_timeout) until one goes through; by the pool"
            " of the role (a role without Postgres exports none).", ["pool"], registry=r,
        )  # fmt: skip
        self.queue_depths = QueueDepthCollector()  # before alpr_redis_up: a depth read timing out shows in its scrape
        r.register(self.queue_depths)
        self.redis_up = Gauge(
            "alpr_redis_up", "1 from this process's last Redis command that Redis answered (a refusal included:"
            " alpr_redis_refused_total), 0 from one that could not be sent or answered (unreachable, timed out,"
            " loading) until one is; by the Redis (queues, frame_store: where the frame store is another).",
            ["redis"], registry=r,
        )  # fmt: skip
        self.redis_refused = Counter(
            "alpr_redis_refused", "Commands Redis refused for its own state, by the Redis and the reason"
            " (out_of_memory, read_only, master_down, misconf, busy, no_permission; a full frame store is"
            " back-pressure, not counted).", ["redis", "reason"], registry=r,
        )  # fmt: skip
        self.kept_deleted = RoleCounter(r, "alpr_kept_frames_deleted", "Kept frames deleted past their age.")
        self.stage_seconds = Histogram(
            "alpr_stage_seconds", "Time one job takes per stage.", ["stage"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.end_to_end_seconds = RoleHistogram(
            r, "alpr_capture_to_logged_seconds",
            "Capture of a live frame to its reads committed (recorded footage, dated by the footage: left out).",
            LATENCY_BUCKETS,
        )  # fmt: skip
        self.detector_batch_frames = RoleHistogram(
            r, "alpr_detector_batch_frames", "Frames per detector inference.", BATCH_BUCKETS
        )
        self.plate_reads = Counter("alpr_plate_reads", "Reads logged, by format match.", ["format_match"], registry=r)
        self.side_edge_reads = Counter(
            "alpr_plate_reads_side_edge",
            "Reads logged of plates at the frame's left or right edge (maybe cut off: confidence capped), per camera.",
            ["camera"], registry=r,
        )  # fmt: skip
        self.plates_outside_roi = Counter(
            "alpr_plates_outside_roi",
            "Plates found outside their camera's ROI (none nested in a stronger box): blurred, never read, per"
            " camera. A camera whose plates all count here reads nothing: its ROI drawn for other frames?",
            ["camera"], registry=r,
        )  # fmt: skip
        self.worker_threads = RoleGauge(r, "alpr_worker_threads", "Inference threads of this detector or OCR worker.")
        self.settings_info = Gauge(
            "alpr_settings_info",
            "1, labelled with the fingerprint of this process's settings that change its pool's results"
            " (common/role_settings.py): a pool with two fingerprints is mixed, `alpr status` says how.",
            ["pool", "fingerprint"], registry=r,
        )  # fmt: skip
        self.core_cpu_seconds = Counter(
            "alpr_core_cpu_seconds", "CPU spent in the stage's core (model, OCR, blur), not moving jobs.", ["stage"],
            registry=r,
        )  # fmt: skip

        self.sightings_closed = Counter(
            "alpr_sightings_closed", "Sightings (vehicle passes) closed and logged, per camera.", ["camera"], registry=r
        )
        self.reads_per_sighting = RoleHistogram(
            r, "alpr_reads_per_sighting", "Reads grouped into one sighting.", BATCH_BUCKETS
        )
        self.sighting_delay_seconds = RoleHistogram(
            r, "alpr_sighting_delay_seconds", "A sighting's last read (capture) to the sighting logged.",
            LATENCY_BUCKETS,
        )  # fmt: skip
        self.late_reads = Counter(
            "alpr_sighting_late_reads",
            "Reads logged after the sighting pool had grouped their camera past their capture time (a spool"
            " replayed after an outage), per camera: grouped apart into late sightings, their alerts marked late.",
            ["camera"], registry=r,
        )  # fmt: skip
        self.sighting_rounds = Counter(
            "alpr_sighting_rounds",
            "Sighting rounds by outcome: grouped; camera_failed (a camera's grouping failed, tried again next round);"
            " watchlist_unavailable (no watch-list ever loaded: no camera grouped, the reads wait).",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.watchlist_loaded = RoleGauge(
            r, "alpr_watchlist_loaded_timestamp_seconds",
            "When this sighting worker last loaded the watch-lists, or found them unchanged (Unix time): listed cars"
            " are matched against a list this old."
        )  # fmt: skip
        self.watchlist_refresh = RoleGauge(
            r, "alpr_watchlist_refresh_seconds",
            "How often this sighting worker reloads the watch-lists (ALPR_WATCH_REFRESH_S)."
        )  # fmt: skip
        self.alerts_raised = Counter(
            "alpr_alerts_raised", "Watch-list alerts raised, by kind (read: early; sighting).", ["kind"], registry=r
        )
        self.alerts_unrouted = RoleCounter(
            r, "alpr_alerts_unrouted",
            "Watch-list alerts raised that no receiver takes: the receivers file names receivers, none of whose"
            " `lists:` holds the alert's list (logged only).",
        )  # fmt: skip
        self.alert_deliveries = Counter(
            "alpr_alert_deliveries",
            "Alert deliveries by receiver and outcome (sent, retried, rested: put back untried while the receiver"
            " rests after a failure, once each time, not again while it stays held, failed, rejected).",
            ["receiver", "outcome"], registry=r,
        )  # fmt: skip
        self.alert_lane_waiting = Gauge(
            "alpr_alert_lane_waiting",
            "Alerts this worker holds for a receiver: waiting in its lane, and the attempt in flight (the alert"
            " queue no longer shows a backlog behind a slow receiver: each job is handed to its lane at once).",
            ["receiver"], registry=r,
        )  # fmt: skip
        self.alert_deliveries_pending = Gauge(
            "alpr_alert_deliveries_pending",
            "Deliveries to a receiver not made yet, as the alerts log holds them (pending: due, waiting their"
            " back-off, or held while the receiver fails; or being sent), counted every ALERT_PENDING_COUNT_S by"
            " each alert worker; the last count is kept while Postgres does not answer.", ["receiver"], registry=r,
        )  # fmt: skip
        self.alert_latency_seconds = RoleHistogram(
            r, "alpr_alert_latency_seconds",
            "Capture of the read that raised an alert to its delivery; live alerts only (a late one's in"
            " alpr_late_alert_delay_seconds).", LATENCY_BUCKETS,
        )  # fmt: skip
        self.late_alert_delay_seconds = RoleHistogram(
            r, "alpr_late_alert_delay_seconds",
            "Capture of a late alert's read to its delivery: its reads were logged after their camera had been"
            " grouped past them (a spool replayed after an outage); kept out of alpr_alert_latency_seconds.",
            LATE_BUCKETS,
        )  # fmt: skip
        self.prune_succeeded = RoleGauge(
            r, "alpr_prune_last_success_timestamp_seconds",
            "When the last prune round of `alpr db prune --every-h` ended well (Unix time): plate data past its"
            " retention stays while it does not move."
        )  # fmt: skip
        self.pruned_rows = Counter(
            "alpr_pruned_rows", "Rows deleted past the retention, by table.", ["table"], registry=r
        )  # fmt: skip

    def role_gauges(self) -> list[RoleGauge]:
        """The unlabelled gauges only the roles that set them export (common/metrics_registry.RoleGauge)."""
        return [value for value in vars(self).values() if isinstance(value, RoleGauge)]

    def role_metrics(self) -> list[RoleMetric]:
        """The unlabelled gauges, counters and histograms only the roles using them export (their stages
        export theirs at start: common/metrics_registry.RoleMetric)."""
        return [value for value in vars(self).values() if isinstance(value, RoleMetric)]

    @contextmanager
    def core_cpu(self, stage: str) -> Iterator[None]:
        """Count the process CPU of the block as the stage core's."""
        start = time.process_time()
        try:
            yield
        finally:
            self.core_cpu_seconds.labels(stage=stage).inc(time.process_time() - start)

    def watch_queues(self, connection: redis.Redis, queue_keys: dict[str, str]) -> None:
        """Export the depths of `queue_keys` (name: Redis key) at each scrape, read from `connection`'s Redis
        on a connection of their own (QueueDepthCollector); after `watch_redis(connection, ...)`, so that a
        depth read Redis does not answer sets alpr_redis_up{redis="queues"} to 0."""
        self.queue_depths.watch(connection, queue_keys)

    def serve(self, port: int, address: str) -> None:
        """Serve /metrics on `address`:`port` (port 0: do not serve), idle connections closed and those
        served at once bounded (common/metrics_server.py); ConfigError, naming the settings, where the
        address does not resolve or cannot be bound."""
        if port:
            try:
                serve_metrics(self.registry, address, port)
            except OSError as error:  # gaierror too: an unknown host name
                reason = error.strerror or str(error) or type(error).__name__
                raise ConfigError(
                    f"ALPR_METRICS_ADDRESS / ALPR_METRICS_PORT: cannot serve metrics on {address} port {port}: {reason}"
                ) from None

    def start_camera(self, camera_id: str, skip_reasons: Iterable[str]) -> None:
        """An ingest node's camera's series, exported at 0 before anything happens: a counter's series
        first scraped at 1 has no increase to alert on (its first failure, overflow or skip went unseen)."""
        camera = self.camera(camera_id)
        for counter in (self.frames_ingested, self.source_errors, self.source_reopens, self.frames_unrecorded):
            counter.labels(camera=camera)
        self.camera_failed.labels(camera=camera).set(0)
        self.camera_ended.labels(camera=camera).set(0)
        self.camera_silent.labels(camera=camera).set(0)  # (an ingest node's CameraSilence reads it at each scrape)
        self.camera_settings_differ.labels(camera=camera).set(0)
        for counter in (self.camera_takeovers, self.camera_unsampled_seconds, self.camera_settings_changed):
            counter.labels(camera=camera)
        for reason in skip_reasons:
            self.frames_skipped.labels(camera=camera, reason=reason)

    def camera(self, camera_id: str) -> str:
        """The label value of a camera: its id, or OTHER_CAMERA past MAX_CAMERA_LABELS distinct ones."""
        if camera_id not in self.cameras:
            if len(self.cameras) >= MAX_CAMERA_LABELS:
                return OTHER_CAMERA
            self.cameras.add(camera_id)
        return camera_id

    def count_reads(self, matches: Iterable[bool]) -> None:
        for matched in matches:
            self.plate_reads.labels(format_match=str(matched).lower()).inc()

"""An ingest node: one thread per camera samples frames (reconnecting dropped sources with
backoff), and the node's main loop packs them into detect jobs — JPEG bytes into the frame store
with a TTL, frame references onto the detect queue. When the chain's queues hold more jobs than the
limit (every waiting job holds frames in Redis), cameras skip frames and count them: memory stays
bounded, whatever the workers do."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
import time
from collections import Counter as Tally
from dataclasses import dataclass, field

import redis

from common import defaults
from common.config import Settings
from common.errors import InputError
from common.frame_store import FrameStore, encode_jpeg, frame_key
from common.jobs import DetectJob, FrameRef
from common.metrics import Metrics
from common.queues import STATS_INGESTED_KEY, enqueue, queue_keys, stage_queue
from ingest.cameras import CameraConfig
from ingest.sources import open_source

log = logging.getLogger(__name__)

DEPTH_REFRESH_S = 0.5
"""How often the node reads the chain's queue depths for back-pressure."""


@dataclass
class NodeSummary:
    ingested: Tally[str] = field(default_factory=Tally)
    skipped: Tally[str] = field(default_factory=Tally)
    jobs: int = 0


class IngestNode:
    def __init__(self, cameras: list[CameraConfig], settings: Settings, connection: redis.Redis, metrics: Metrics):
        self.cameras = [c for c in cameras if c.enabled]
        self.settings, self.metrics = settings, metrics
        self.store = FrameStore(connection, settings.frame_ttl_s)
        self.detect_queue = stage_queue(connection, "detect")
        self.queue_keys = list(queue_keys().values())
        self.pending: queue.Queue[tuple[FrameRef, bytes]] = queue.Queue(maxsize=settings.frames_per_job * 4)
        self.stop = threading.Event()
        self.depth = 0
        self.node_id = f"{socket.gethostname()}-{os.getpid()}-{int(time.time() * 1000)}"
        self.summary = NodeSummary()

    def skip(self, camera: CameraConfig, reason: str) -> None:
        self.metrics.frames_skipped.labels(camera=camera.id, reason=reason).inc()
        self.summary.skipped[camera.id] += 1

    def camera_loop(self, camera: CameraConfig) -> None:
        """Sample one camera until its file ends (unless looping) or the node stops."""
        backoff, longest = defaults.RECONNECT_BACKOFF_S
        run_ms = int(time.time() * 1000)
        seq = 0
        while not self.stop.is_set():
            try:
                source = open_source(camera.source, camera.sample_fps)
                backoff = defaults.RECONNECT_BACKOFF_S[0]
                started = time.monotonic()
                for frame in source.frames():
                    if self.stop.is_set():
                        return
                    if camera.realtime and not source.is_stream:
                        self.stop.wait(max(0.0, started + frame.time_s - time.monotonic()))
                    if self.depth >= self.settings.max_queue_depth:
                        self.skip(camera, "backpressure")
                        continue
                    frame_id = f"{camera.id}:{run_ms}:{seq}"
                    ref = FrameRef(
                        frame_id=frame_id, camera_id=camera.id, seq=seq, frame_index=frame.index,
                        captured_at=time.time(), source_time_s=frame.time_s, key=frame_key(frame_id),
                        region=camera.region, roi=camera.roi,
                    )  # fmt: skip
                    seq += 1
                    try:
                        self.pending.put((ref, encode_jpeg(frame.image, self.settings.jpeg_quality)), timeout=1.0)
                    except queue.Full:
                        self.skip(camera, "node_busy")
                for failure in source.failures:
                    log.warning("camera %s: %s", camera.id, failure)
                if not camera.loop and not source.is_stream:
                    return
            except InputError as error:
                self.metrics.source_errors.labels(camera=camera.id).inc()
                log.warning("camera %s: %s; retrying in %.0f s", camera.id, error, backoff)
                self.stop.wait(backoff)
                backoff = min(longest, backoff * 2)

    def flush(self, batch: list[tuple[FrameRef, bytes]]) -> None:
        """Store the frames and queue their detect job; waits out a Redis outage (cameras skip meanwhile)."""
        job = DetectJob(batch_id=f"{self.node_id}:{self.summary.jobs}", frames=[ref for ref, _ in batch])
        wait = defaults.RECONNECT_BACKOFF_S[0]
        while True:
            try:
                self.store.put_many([(ref.key, data) for ref, data in batch])
                enqueue(self.detect_queue, job, self.settings.job_timeout_s)
                pipe = self.store.redis.pipeline(transaction=False)
                for camera_id, count in Tally(ref.camera_id for ref, _ in batch).items():
                    pipe.hincrby(STATS_INGESTED_KEY, camera_id, count)
                pipe.execute()
                break
            except redis.RedisError as error:
                if self.stop.is_set():
                    return
                log.warning("Redis unavailable (%s); retrying in %.0f s", error, wait)
                self.stop.wait(wait)
                wait = min(defaults.RECONNECT_BACKOFF_S[1], wait * 2)
        self.summary.jobs += 1
        self.refresh_depth()  # back-pressure reacts to the job just queued, not half a second later
        for ref, _ in batch:
            self.metrics.frames_ingested.labels(camera=ref.camera_id).inc()
            self.summary.ingested[ref.camera_id] += 1

    def refresh_depth(self) -> None:
        """Jobs waiting in all three queues: each holds frames (or their crops) in the frame store."""
        with contextlib.suppress(redis.RedisError):  # keep the last known depth; flush() reports the outage
            pipe = self.store.redis.pipeline(transaction=False)
            for key in self.queue_keys:
                pipe.llen(key)
            self.depth = sum(pipe.execute())

    def run(self, max_seconds: float | None = None) -> NodeSummary:
        """Ingest until every camera has ended (files without loop), `max_seconds`, or stop()."""
        threads = [threading.Thread(target=self.camera_loop, args=(c,), name=f"camera-{c.id}", daemon=True)
                   for c in self.cameras]  # fmt: skip
        for thread in threads:
            thread.start()
        try:
            self.pack_jobs(threads, time.monotonic() + max_seconds if max_seconds else None)
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=5)
        return self.summary

    def pack_jobs(self, cameras: list[threading.Thread], deadline: float | None) -> None:
        """Gather sampled frames into detect jobs: full at `frames_per_job`, or when the oldest frame
        has waited `max_batch_wait_ms`; the rest goes out once the cameras have ended."""
        batch: list[tuple[FrameRef, bytes]] = []
        oldest = last_depth = 0.0
        wait_s = self.settings.max_batch_wait_ms / 1000
        while True:
            now = time.monotonic()
            if deadline and now >= deadline:
                self.stop.set()
            if now - last_depth >= DEPTH_REFRESH_S:
                self.refresh_depth()
                last_depth = now
            with contextlib.suppress(queue.Empty):
                item = self.pending.get(timeout=0.05)
                oldest = oldest if batch else time.monotonic()
                batch.append(item)
            ended = (self.stop.is_set() or not any(t.is_alive() for t in cameras)) and self.pending.empty()
            full = len(batch) >= self.settings.frames_per_job
            if batch and (full or ended or time.monotonic() - oldest >= wait_s):
                self.flush(batch)
                batch = []
            if ended and not batch:
                return

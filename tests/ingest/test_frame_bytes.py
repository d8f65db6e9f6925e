"""An ingest node's frames held to the bytes the detector reads, against a private Redis (and the real Postgres
for the frames log): a frame over MAX_FRAME_BYTES is refused at ingest and recorded skipped (too_large), a job
closes before its frames pass MAX_JOB_FRAME_BYTES, and the frames waiting to be packed are bounded by their
bytes as well as their count. The bounds are lowered here to keep the frames small: they are the product's
constants, and the frames are real JPEGs of random noise (which no encoder shrinks) through the real node."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psycopg

from alpr.cli import main
from common import defaults
from common.config import Settings
from common.db import open_pool
from common.frame_log import FrameLog
from common.frame_store import KEY_PREFIX, encode_jpeg
from common.metrics import Metrics
from common.queues import connect_redis, stage_queue
from ingest.cameras import CameraConfig
from ingest.ledger import FrameLedger
from ingest.node import IngestNode
from tests.helpers import wait_for
from tests.ingest.helpers import queued_frames


def noise(side: int, seed: int) -> np.ndarray:
    """A `side` x `side` image of random noise: its JPEG is about as large as its pixels."""
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def noise_folder(folder: Path, count: int, side: int = 200) -> int:
    """`count` noise images as PNGs (lossless: the node's JPEG is the only one); the largest frame's JPEG size
    at the chain's quality."""
    folder.mkdir()
    sizes = []
    for index in range(count):
        image = noise(side, index)
        cv2.imwrite(str(folder / f"{index:03d}.png"), image)
        sizes.append(len(encode_jpeg(image, defaults.JPEG_QUALITY)))
    return max(sizes)


def test_a_frame_over_the_byte_limit_is_refused_at_ingest_and_recorded_skipped(
    redis_url, postgres_url, tmp_path, monkeypatch, caplog
):
    """An 8K noise camera's frames (24 MB at quality 85, 36 MB at 95) were stored whatever their size: at 95
    every one sat in Redis (801 MB) and the detector read none, over its MAX_FRAME_BYTES. Now a frame whose
    JPEG is over it is never stored: skipped as too_large, counted, and logged as any skip, with one WARNING
    naming the camera and the remedy."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    folder = tmp_path / "shots"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((200, 200, 3), 90, np.uint8))  # a flat frame: small
    cv2.imwrite(str(folder / "b.png"), noise(200, 1))
    cv2.imwrite(str(folder / "c.png"), noise(200, 2))
    cv2.imwrite(str(folder / "d.png"), np.full((200, 200, 3), 30, np.uint8))
    flat, noisy = (len(encode_jpeg(cv2.imread(str(folder / n)), defaults.JPEG_QUALITY)) for n in ("a.png", "b.png"))
    monkeypatch.setattr(defaults, "MAX_FRAME_BYTES", (flat + noisy) // 2)
    assert flat < defaults.MAX_FRAME_BYTES < noisy
    settings = Settings.load({}, redis_url=redis_url, database_url=postgres_url)
    metrics = Metrics()
    ledger = FrameLedger(lambda: FrameLog(open_pool(postgres_url, wait_s=3), patience_s=0), metrics, capacity=100)
    connection = connect_redis(redis_url)
    camera = CameraConfig(id="cam", source=str(folder), realtime=False)
    caplog.set_level("INFO", logger="ingest.node")

    summary = IngestNode([camera], settings, connection, connection, metrics, ledger).run(max_seconds=30)

    assert summary.ingested["cam"] == 2 and summary.skipped["cam"] == 2, summary
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT frame_index, outcome, detail FROM frames ORDER BY frame_index").fetchall()
    assert rows == [
        (0, "pending", None),
        (1, "skipped", "too large"),
        (2, "skipped", "too large"),
        (3, "pending", None),
    ]
    sample = metrics.registry.get_sample_value
    assert sample("alpr_frames_skipped_total", {"camera": "cam", "reason": "too_large"}) == 2
    frames = queued_frames(connection)
    assert [f.frame_index for f in frames] == [0, 3]
    stored = [key.decode() for key in connection.scan_iter(match=f"{KEY_PREFIX}*")]
    assert sorted(stored) == sorted(f.key for f in frames)  # the refused frames never reached Redis
    warned = [r for r in caplog.records if r.levelname == "WARNING" and "MAX_FRAME_BYTES" in r.getMessage()]
    assert len(warned) == 1 and "cam" in warned[0].getMessage(), [r.getMessage() for r in caplog.records]
    assert "ALPR_JPEG_QUALITY" in warned[0].getMessage()


def test_a_job_closes_before_its_frames_pass_the_jobs_byte_limit(redis_url, tmp_path, monkeypatch):
    """A job of 16 such frames held 380 MB where the detector reads 256 MB of a job's frames: at most 10 were
    read, the rest skipped at detection (over_job_byte_budget). Now a job closes before its frames' bytes
    would pass MAX_JOB_FRAME_BYTES, the next frame opening the next job: every frame is queued and read."""
    largest = noise_folder(tmp_path / "shots", 9)
    monkeypatch.setattr(defaults, "MAX_JOB_FRAME_BYTES", int(largest * 2.5))  # 2 frames a job, not 3
    connection = connect_redis(redis_url)
    settings = Settings.load({}, redis_url=redis_url, frames_per_job=8, max_batch_wait_ms=5000)
    camera = CameraConfig(id="cam", source=str(tmp_path / "shots"), realtime=False)

    summary = IngestNode([camera], settings, connection, connection, Metrics(), None).run(max_seconds=30)

    assert summary.ingested["cam"] == 9 and summary.skipped["cam"] == 0, summary
    jobs = [[f.key for f in frames] for frames in jobs_frames(connection)]
    assert [len(job) for job in jobs] == [2, 2, 2, 2, 1], jobs
    for job in jobs:
        assert sum(connection.strlen(key) for key in job) <= defaults.MAX_JOB_FRAME_BYTES


def jobs_frames(connection: object) -> list[list]:  # type: ignore[type-arg]
    """Each queued detect job's frames, job by job in queue order."""
    from rq.serializers import JSONSerializer

    from common.jobs import DetectJob, parse_job
    from common.queues import StageJob

    found = []
    for job_id in stage_queue(connection, "detect").get_job_ids():
        job = StageJob.fetch(job_id, connection=connection, serializer=JSONSerializer)
        found.append(list(parse_job(job.args[0], DetectJob).frames))
    return found


def test_the_frames_waiting_to_be_packed_are_bounded_by_their_bytes(redis_server, tmp_path, monkeypatch):
    """The frames to pack were bounded by count alone (4 jobs' worth): with Redis away the node held 64 frames
    of whatever size (1.5 GB of 8K noise frames at 16 a job). Now they are held to MAX_PENDING_FRAME_BYTES too:
    footage waits for room, as it waits for a full count."""
    largest = noise_folder(tmp_path / "shots", 24)
    monkeypatch.setattr(defaults, "MAX_PENDING_FRAME_BYTES", 3 * largest, raising=False)
    connection = connect_redis(redis_server.url)
    settings = Settings.load({}, redis_url=redis_server.url, frames_per_job=2, max_batch_wait_ms=50)
    camera = CameraConfig(id="cam", source=str(tmp_path / "shots"), realtime=False)
    node = IngestNode([camera], settings, connection, connection, Metrics(), None)
    redis_server.stop()  # the packing waits the outage out: the frames to pack fill up
    runner = threading.Thread(target=node.run, kwargs={"max_seconds": 6.0}, daemon=True)
    runner.start()
    held: list[tuple[int, int]] = []  # (frames, bytes) waiting to be packed, as seen
    try:
        wait_for(lambda: node.pending.qsize() >= 2, 20, "frames waiting to be packed")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            waiting = list(node.pending.queue)
            held.append((len(waiting), sum(len(data) for _, data in waiting)))
            time.sleep(0.02)
    finally:
        node.stop.set()
        runner.join(60)
    assert not runner.is_alive()
    most = max(held, key=lambda seen: seen[1])
    assert most[1] <= 3 * largest and most[0] >= 2, (most, largest)  # (8 frames by count alone)

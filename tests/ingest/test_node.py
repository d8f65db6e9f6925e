"""The ingest node against a private Redis and the real Postgres: every sampled frame of an image
folder ends with a row in the frames log and a count in the metrics, the undecodable and the
oversized ones included, and a FIFO named like an image does not hold the camera; a live camera's
capture keeps pace while the node cannot hand its frames on (Redis down)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psycopg
import pytest

from alpr.cli import main
from common import defaults
from common.config import Settings
from common.db import open_pool
from common.frame_log import FrameLog
from common.frame_store import encode_jpeg, frame_key, jpeg_digest
from common.jobs import FrameRef
from common.metrics import Metrics
from common.queues import CAMERA_STATE_KEY, connect_redis, stage_queue
from ingest.cameras import CameraConfig
from ingest.clock import CaptureClock
from ingest.ledger import FrameLedger
from ingest.node import IngestNode, NodeSummary
from ingest.sources import open_source
from tests.helpers import clip_frames, mjpeg_camera, served_video, wait_for, write_clip
from tests.ingest.helpers import queued_frames, release_fifo
from tests.ingest.mkv import write_mjpeg_mkv


def folder_node(folder: Path, redis_url: str, postgres_url: str) -> tuple[IngestNode, Metrics]:
    """A node of one camera reading `folder` once (not in real time), recording its frames in Postgres."""
    settings = Settings.load({}, redis_url=redis_url, database_url=postgres_url)
    metrics = Metrics()
    ledger = FrameLedger(lambda: FrameLog(open_pool(postgres_url, wait_s=3), patience_s=0), metrics, capacity=100)
    connection = connect_redis(redis_url)
    camera = CameraConfig(id="cam", source=str(folder), realtime=False)
    return IngestNode([camera], settings, connection, connection, metrics, ledger), metrics


def run_node(node: IngestNode, fifo: Path, timeout_s: float) -> NodeSummary:
    """Run the node in a thread; fail if its camera has not ended within `timeout_s`."""
    result: list[NodeSummary] = []
    thread = threading.Thread(target=lambda: result.append(node.run()), daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        node.stop.set()
        release_fifo(fifo)
        thread.join(10)
    assert result, f"the node did not end within {timeout_s:.0f} s"
    return result[0]


def camera_jpegs(tmp_path: Path) -> list[bytes]:
    """A second of a car passing, as JPEGs for an MJPEG test camera."""
    clip = tmp_path / "cam.mp4"
    write_clip(clip, ("KPX4721",))
    return [encode_jpeg(f.image, 80) for f in open_source(str(clip), 10).frames()][:10]


def start_live_node(url: str, settings: Settings, connection, metrics: Metrics, seconds: float):  # type: ignore[no-untyped-def]
    """A node sampling the live camera at `url` (as "live", 5 frames/s) for `seconds`, in a thread."""
    node = IngestNode([CameraConfig(id="live", source=url, sample_fps=5)], settings, connection, connection,
                      metrics, None)  # fmt: skip
    runner = threading.Thread(target=node.run, kwargs={"max_seconds": seconds}, daemon=True)
    runner.start()
    return node, runner


def test_every_sampled_image_is_recorded_and_counted(redis_url, postgres_url, tmp_path):
    """A good image is queued; a 0-byte file and a text file named *.jpg are recorded `corrupt`; a PNG of
    8000x4500 pixels (small on disk) is skipped as too large; a FIFO named *.jpg is not read."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    folder = tmp_path / "shots"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((120, 160, 3), 90, np.uint8))
    (folder / "b.jpg").write_bytes(b"")
    (folder / "c.jpg").write_text("not an image")
    cv2.imwrite(str(folder / "d.png"), np.zeros((4500, 8000), np.uint8))
    assert defaults.MAX_FRAME_PIXELS < 4500 * 8000 and (folder / "d.png").stat().st_size < 1_000_000
    os.mkfifo(folder / "e.jpg")
    node, metrics = folder_node(folder, redis_url, postgres_url)

    summary = run_node(node, folder / "e.jpg", timeout_s=60)

    assert summary.ingested["cam"] == 1 and summary.skipped["cam"] == 3
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT frame_index, outcome, detail FROM frames ORDER BY frame_index").fetchall()
    assert rows == [
        (0, "pending", None),
        (1, "corrupt", "undecodable image"),
        (2, "corrupt", "undecodable image"),
        (3, "skipped", "too large"),
    ]
    sample = metrics.registry.get_sample_value
    assert sample("alpr_frames_ingested_total", {"camera": "cam"}) == 1
    assert sample("alpr_frames_corrupt_total", {"stage": "ingest"}) == 2
    assert sample("alpr_frames_skipped_total", {"camera": "cam", "reason": "too_large"}) == 1
    # exported at 0 from the camera's start: its first failure, skip or overflow is an increase to alert on
    assert sample("alpr_frames_skipped_total", {"camera": "cam", "reason": "backpressure"}) == 0
    assert (
        sample("alpr_source_errors_total", {"camera": "cam"})
        == sample("alpr_frames_unrecorded_total", {"camera": "cam"})
        == 0
    )


def test_recorded_footage_is_dated_by_its_own_clock_however_long_it_waits_for_the_chain(redis_url, tmp_path):
    """`realtime: false` waits for the chain and was dated as it was handed on: frames 0.2 s apart in
    the footage landed 1 ms or seconds apart, and a clip of three cars gave 11 sightings. Here the chain
    takes a job of two frames a second from a footage of 20 frames a second."""
    from rq.serializers import JSONSerializer

    from common.jobs import DetectJob, parse_job
    from common.queues import StageJob, stage_queue

    folder = tmp_path / "shots"
    folder.mkdir()
    for index in range(8):
        cv2.imwrite(str(folder / f"{index}.jpg"), np.full((120, 160, 3), 30 * index, np.uint8))
    connection = connect_redis(redis_url)
    settings = Settings.load({"ALPR_MAX_QUEUE_DEPTH": "1", "ALPR_FRAMES_PER_JOB": "2"}, redis_url=redis_url)
    camera = CameraConfig(id="cam", source=str(folder), sample_fps=20, realtime=False)  # 0.35 s of footage
    node = IngestNode([camera], settings, connection, connection, Metrics(), None)
    detect, taken = stage_queue(connection, "detect"), []
    started = time.time()
    runner = threading.Thread(target=node.run, daemon=True)
    runner.start()
    while runner.is_alive() or detect.count:  # the chain: one job a second
        for job_id in detect.get_job_ids():
            job = StageJob.fetch(job_id, connection=connection, serializer=JSONSerializer)
            taken += parse_job(job.args[0], DetectJob).frames
            job.delete()
        time.sleep(1.0)
        assert time.time() - started < 60, "the node did not end"
    assert [frame.frame_index for frame in taken] == list(range(8)) and all(frame.recorded for frame in taken)
    assert all(frame.digest == jpeg_digest(connection.get(frame.key)) for frame in taken)  # as stored
    dates = [frame.captured_at_s for frame in taken]
    assert [round(later - earlier, 6) for earlier, later in zip(dates, dates[1:], strict=False)] == [0.05] * 7
    assert started <= dates[0] < started + 5 and time.time() - started > 1.5  # dated from the start; it waited


def test_frames_the_node_could_not_record_are_shown_by_alpr_status(redis_url, tmp_path, monkeypatch, capsys):
    """The frames log down the whole run: the frames went unrecorded, counted only in the node's own
    metric; `alpr status` (which reads the frames log for its accounting) could not show them."""
    from tests.ingest.test_ledger import closed_port

    monkeypatch.setattr(defaults, "LEDGER_CLOSE_S", 2.0)
    folder = tmp_path / "shots"
    folder.mkdir()
    for name in ("a", "b", "c"):
        cv2.imwrite(str(folder / f"{name}.jpg"), np.full((120, 160, 3), 90, np.uint8))
    down = f"postgresql://postgres@127.0.0.1:{closed_port()}/test"
    metrics, connection = Metrics(), connect_redis(redis_url)
    ledger = FrameLedger(lambda: FrameLog(open_pool(down, wait_s=1), patience_s=0), metrics, capacity=100)
    camera = CameraConfig(id="cam", source=str(folder), realtime=False)
    node = IngestNode([camera], Settings.load({}, redis_url=redis_url), connection, connection, metrics, ledger)

    assert run_node(node, folder / "none", timeout_s=60).ingested["cam"] == 3
    assert metrics.registry.get_sample_value("alpr_frames_unrecorded_total", {"camera": "cam"}) == 3
    assert main(["status", "--interval", "0.1", "--redis-url", redis_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert next(line for line in lines if line.startswith("camera ")).split()[-4:] == [
        "queued", "skipped", "done", "unrecorded"]  # fmt: skip
    assert next(line for line in lines if line.startswith("cam ")).split()[-4:] == ["3", "0", "0", "3"]


def test_a_live_camera_is_captured_at_its_rate_while_the_node_cannot_hand_frames_on(redis_server, tmp_path):
    """With Redis gone, packing waits out the outage and the frames to pack fill up. A stream's frame
    then waited a second for room before being skipped: capture fell to one frame a second, the stream
    backed up in its buffer and the frames sampled after were stale. Now each is skipped at once
    (node_busy) and capture keeps the camera's pace."""
    jpegs = camera_jpegs(tmp_path)
    connection = connect_redis(redis_server.url)
    settings = Settings.load({}, redis_url=redis_server.url, frames_per_job=1, max_batch_wait_ms=50)
    metrics = Metrics()
    gone = {"camera": "live", "reason": "redis_unavailable"}  # why: the packing waits out Redis (node_busy before)
    with mjpeg_camera(jpegs, fps=10) as url:
        node, runner = start_live_node(url, settings, connection, metrics, 8.0)
        time.sleep(2.0)
        assert node.summary.ingested["live"] >= 3  # connected and queuing
        redis_server.stop()
        wait_for(lambda: (metrics.registry.get_sample_value("alpr_frames_skipped_total", gone) or 0) >= 12
                 or not runner.is_alive(), 30, "the skips, or the node's 8 s")  # fmt: skip
        node.stop.set()  # (at 12 skips: the node's 8 s are the bound)
        runner.join(30)
    assert not runner.is_alive()
    busy = metrics.registry.get_sample_value("alpr_frames_skipped_total", gone)
    assert busy is not None and busy >= 12, busy  # ~6 s down at 5 a second, less the few frames held


def test_an_outage_at_the_queue_limit_is_logged_and_its_skips_say_redis(redis_server, tmp_path, caplog):
    """At the queue limit no batch goes out, so no write failed: a Redis outage there was never logged,
    and every frame skipped meanwhile was recorded as back-pressure."""
    from common.queues import queue_keys

    jpegs = camera_jpegs(tmp_path)
    connection = connect_redis(redis_server.url)
    connection.rpush(queue_keys()["detect"], "a-job-waiting")  # the chain is full
    settings = Settings.load({}, redis_url=redis_server.url, max_queue_depth=1)
    metrics = Metrics()

    def skipped(reason: str) -> float:
        return metrics.registry.get_sample_value("alpr_frames_skipped_total", {"camera": "live", "reason": reason})

    caplog.set_level("INFO", logger="ingest.node")
    with mjpeg_camera(jpegs, fps=10) as url:
        node, runner = start_live_node(url, settings, connection, metrics, 9.0)
        time.sleep(2.5)
        assert skipped("backpressure") >= 5 and skipped("redis_unavailable") == 0  # the positive control
        redis_server.stop()
        time.sleep(3.5)
        assert skipped("redis_unavailable") >= 8
        redis_server.start()
        connection.rpush(queue_keys()["detect"], "a-job-waiting")  # this server kept nothing
        wait_for(lambda: any(r.getMessage() == "Redis answers again" for r in caplog.records) or not runner.is_alive(),
                 30, "Redis said back, or the node's 9 s")  # fmt: skip
        node.stop.set()
        runner.join(30)
    assert not runner.is_alive()
    messages = [record.getMessage() for record in caplog.records]
    assert sum(m.startswith("Redis unavailable") for m in messages) == 1, messages  # once, not per refresh
    assert "Redis answers again" in messages


def test_a_file_camera_waits_for_room_and_every_frame_it_sampled_is_recorded_when_the_node_stops(
    redis_server, postgres_url, tmp_path
):
    """A file's frames wait for room among the frames to pack (nothing is lost by waiting) rather than
    being skipped after a second; when the node stops with Redis away, each frame sampled is recorded
    (the ones held as skipped), none left waiting after the drain."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    folder = tmp_path / "shots"
    folder.mkdir()
    for index in range(40):
        cv2.imwrite(str(folder / f"{index:03d}.jpg"), np.full((48, 64, 3), index * 5, np.uint8))
    connection = connect_redis(redis_server.url)
    redis_server.stop()
    settings = Settings.load({}, redis_url=redis_server.url, database_url=postgres_url, frames_per_job=1)
    metrics = Metrics()
    ledger = FrameLedger(lambda: FrameLog(open_pool(postgres_url, wait_s=3), patience_s=0), metrics, capacity=100)
    camera = CameraConfig(id="files", source=str(folder), realtime=False)
    node = IngestNode([camera], settings, connection, connection, metrics, ledger)
    summary = node.run(max_seconds=3.0)
    assert summary.ingested["files"] == 0 and node.pending.empty()
    assert all(not frames for frames in ledger.watermarks.outstanding.values())  # every frame sampled has its row
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT frame_index, outcome, detail FROM frames ORDER BY frame_index").fetchall()
    assert [index for index, _, _ in rows] == list(range(len(rows))) and 4 <= len(rows) < 40
    assert {(outcome, detail) for _, outcome, detail in rows} <= {("skipped", "node stopped"),
                                                                   ("skipped", "redis unavailable")}  # fmt: skip
    assert (
        metrics.registry.get_sample_value("alpr_frames_skipped_total", {"camera": "files", "reason": "node_busy"}) == 0
    )


def test_a_full_frame_store_is_back_pressure_recorded_not_an_outage_waited_out(redis_server, postgres_url, tmp_path,
                                                                               caplog):  # fmt: skip
    """Redis at its maxmemory refuses the frames: the node waited it out as an outage (1 s doubling to
    30 s) while its frames grew stale; now a live camera's batch (here a folder played in real time, a
    live camera's stand-in) is skipped as back-pressure, recorded, and the node goes on (and says so
    once). Recorded footage waits instead (the next test)."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    folder = tmp_path / "shots"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(6):
        cv2.imwrite(str(folder / f"{index:03d}.jpg"), rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    connection = connect_redis(redis_server.url)
    connection.config_set("maxmemory", str(int(connection.info("memory")["used_memory"]) + 100_000))
    settings = Settings.load({}, redis_url=redis_server.url, database_url=postgres_url, frames_per_job=2)
    metrics = Metrics()
    ledger = FrameLedger(lambda: FrameLog(open_pool(postgres_url, wait_s=3), patience_s=0), metrics, capacity=100)
    node = IngestNode([CameraConfig(id="files", source=str(folder), sample_fps=10)], settings, connection,
                      connection, metrics, ledger)  # fmt: skip
    started = time.monotonic()
    summary = node.run(max_seconds=60)
    assert time.monotonic() - started < 20 and summary.skipped["files"] == 6 and summary.ingested["files"] == 0
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT outcome, detail, count(*) FROM frames GROUP BY 1, 2").fetchall()
    assert rows == [("skipped", "backpressure", 6)]
    assert caplog.text.count("the frame store is full") == 1 and "Redis unavailable" not in caplog.text


def test_recorded_footage_waits_for_room_in_a_full_frame_store_and_none_is_skipped(
    redis_server, postgres_url, tmp_path, caplog, monkeypatch
):
    """A frame store of its own at its maxmemory (noeviction, as Compose runs it) refused recorded
    footage's batches, and each was skipped as back-pressure (a review: 80 of 120 frames skipped, where
    the README says footage waits). Now the batch is held and tried again with backoff while nothing
    frees the store, and once something does (a consumer deleting the frames) every frame ends queued.
    (The store is full to the node at the crops' reserve below its maxmemory: 100 kB here.)"""
    from tests.servers import PrivateRedis

    monkeypatch.setattr(defaults, "FRAME_STORE_RESERVE_MIN_BYTES", 100_000)
    caplog.set_level("INFO", logger="ingest.node")
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    folder = tmp_path / "shots"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(12):  # about 60 kB each as JPEG
        cv2.imwrite(str(folder / f"{index:03d}.jpg"), rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    (tmp_path / "store").mkdir()
    store_server = PrivateRedis(tmp_path / "store")
    store_server.start()
    try:
        store = connect_redis(store_server.url)
        store.config_set("maxmemory-policy", "noeviction")
        used = int(store.info("memory")["used_memory"])
        store.config_set("maxmemory", str(used + 100_000 + 300_000))  # the reserve, and a job's 2 frames, not 4
        settings = Settings.load({}, redis_url=redis_server.url, frame_store_url=store_server.url,
                                 database_url=postgres_url, frames_per_job=2)  # fmt: skip
        metrics = Metrics()
        ledger = FrameLedger(lambda: FrameLog(open_pool(postgres_url, wait_s=3), patience_s=0), metrics, capacity=100)
        node = IngestNode([CameraConfig(id="footage", source=str(folder), realtime=False)], settings,
                          connect_redis(redis_server.url), store, metrics, ledger)  # fmt: skip
        result: list[NodeSummary] = []
        runner = threading.Thread(target=lambda: result.append(node.run(max_seconds=60)), daemon=True)
        runner.start()
        wait_for(lambda: node.packer.store_full or not runner.is_alive(), 20, "the frame store to fill")
        time.sleep(2.0)  # nothing consumes: the footage waits (tried again meanwhile), none skipped
        assert runner.is_alive() and node.summary.skipped["footage"] == 0, node.summary
        while runner.is_alive():  # a consumer: the detector's jobs read and delete their frames
            keys = list(store.scan_iter("alpr:frame:*"))
            if keys:
                store.delete(*keys)
            runner.join(0.2)
    finally:
        store_server.stop()
    summary = result[0]
    assert summary.skipped["footage"] == 0 and summary.ingested["footage"] == 12, summary
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT outcome, count(*) FROM frames GROUP BY 1").fetchall()
    assert rows == [("pending", 12)]
    assert "the frame store is full" in caplog.text and "the frame store has room again" in caplog.text


def test_a_full_frame_store_of_its_own_does_not_hide_the_queues_redis_being_away(redis_server, tmp_path):
    """Its full answer counted as the queues' Redis answering: their outage went unrecorded (every frame
    skipped as back-pressure) and "Redis answers again" was logged a dozen times a second (a review)."""
    from tests.servers import PrivateRedis

    (tmp_path / "store").mkdir()
    store_server = PrivateRedis(tmp_path / "store")
    store_server.start()
    try:
        store = connect_redis(store_server.url)
        store.config_set("maxmemory", str(int(store.info("memory")["used_memory"]) + 10_000))
        settings = Settings.load({}, redis_url=redis_server.url, frame_store_url=store_server.url)
        metrics = Metrics()
        node = IngestNode([CameraConfig(id="cam", source="rtsp://cam/1")], settings, connect_redis(redis_server.url),
                          store, metrics, None)  # fmt: skip
        image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
        data = encode_jpeg(image, 90)

        def batch(index: int) -> list[tuple[FrameRef, bytes]]:
            ref = FrameRef(frame_id=f"cam:1:{index}", camera_id="cam", seq=index, frame_index=index,
                           captured_at_s=time.time(), source_time_s=0.0, key=frame_key(f"cam:1:{index}"),
                           region="us", digest=jpeg_digest(data))  # fmt: skip
            return [(ref, data)]

        node.packer.flush(batch(0))  # the queues' Redis answers: back-pressure
        redis_server.stop()
        node.packer.flush(batch(1))  # away: said so, and the node knows it is
        skipped = {reason: metrics.registry.get_sample_value(
            "alpr_frames_skipped_total", {"camera": "cam", "reason": reason}) for reason in (
            "backpressure", "redis_unavailable")}  # fmt: skip
        assert skipped == {"backpressure": 1.0, "redis_unavailable": 1.0} and node.packer.redis_down
    finally:
        store_server.stop()


def test_a_looping_file_played_in_real_time_keeps_its_rate_across_passes(redis_url, tmp_path, caplog):
    """A folder of one image, looping at 5 frames/s: each pass started at once, and the camera sampled
    thousands of frames a second (each skipped, each a row). It says it connected once, not each pass."""
    caplog.set_level("INFO", logger="ingest.node")
    folder = tmp_path / "one"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((120, 160, 3), 90, np.uint8))
    camera = CameraConfig(id="still", source=str(folder), sample_fps=5, loop=True)
    connection = connect_redis(redis_url)
    node = IngestNode([camera], Settings.load({}, redis_url=redis_url), connection, connection, Metrics(), None)
    summary = node.run(max_seconds=2.0)
    sampled = summary.ingested["still"] + summary.skipped["still"]
    assert 8 <= sampled <= 12, summary
    assert caplog.text.count("camera still: connected to") == 1  # at INFO: the later passes at DEBUG


def test_recorded_footage_waits_for_a_full_chain_instead_of_skipping(redis_url, tmp_path, demo_clip):
    """`realtime: false` is recorded footage: a chain that has not caught up is waited for (frames are
    sampled as room frees up), not skipped as back-pressure — it lost most of a video to a chain that
    was merely behind. A file played in real time stands in for a live camera, and skips as one."""
    connection = connect_redis(redis_url)
    settings = Settings.load({}, redis_url=redis_url, max_queue_depth=2, frames_per_job=2)
    for realtime in (False, True):
        connection.flushall()
        camera = CameraConfig(id="cam", source=str(demo_clip[0]), sample_fps=10, realtime=realtime)
        metrics = Metrics()
        summary = IngestNode([camera], settings, connection, connection, metrics, None).run(max_seconds=3.0)
        skipped = metrics.registry.get_sample_value(
            "alpr_frames_skipped_total", {"camera": "cam", "reason": "backpressure"}
        )
        if realtime:
            assert skipped, summary
        else:
            assert not skipped and summary.ingested["cam"] <= 6 and summary.skipped["cam"] <= 1, summary


def test_a_frame_handed_on_after_the_node_drained_its_pending_frames_is_recorded(redis_url, tmp_path, monkeypatch):
    """A camera thread still encoding a large frame when the stopping node stopped waiting for it put it
    among the pending frames after they were drained: sampled, never queued, never recorded."""
    import ingest.frame_handoff

    folder = tmp_path / "big"
    folder.mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(folder / f"{name}.jpg"), np.full((120, 160, 3), 90, np.uint8))
    encoded: list[int] = []
    real_encode = ingest.frame_handoff.encode_jpeg

    def slow_encode(image: np.ndarray, quality: int) -> bytes:
        encoded.append(1)
        time.sleep(1.0)  # a 33-megapixel frame on a busy host
        return real_encode(image, quality)

    monkeypatch.setattr(ingest.frame_handoff, "encode_jpeg", slow_encode)
    monkeypatch.setattr(defaults, "CAMERA_STOP_S", 0.2)
    monkeypatch.setattr(ingest.frame_handoff, "PENDING_WAIT_S", 0.1)
    camera = CameraConfig(id="cam", source=str(folder), realtime=False)
    connection = connect_redis(redis_url)
    summary = IngestNode([camera], Settings.load({}, redis_url=redis_url), connection, connection, Metrics(), None).run(
        max_seconds=0.3
    )
    time.sleep(1.5)  # the thread left behind finishes its frame
    assert encoded and summary.ingested["cam"] + summary.skipped["cam"] == len(encoded), summary


def test_a_node_stopping_while_redis_stalls_tries_it_once_not_once_per_batch(redis_url, tmp_path):
    """Redis paused (a stall, a partition): each batch still pending at the stop blocked for Redis's
    timeouts again, and a stop took minutes — past a supervisor's grace, which then killed the node with
    frames unrecorded. After one failed write past the stop the rest are recorded without trying."""
    import redis as redis_py
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    folder = tmp_path / "shots"
    folder.mkdir()
    for index in range(12):
        cv2.imwrite(str(folder / f"{index:02}.jpg"), np.full((120, 160, 3), index, np.uint8))
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    stalling = redis_py.Redis(port=port, socket_timeout=0.3, retry=Retry(NoBackoff(), 0))
    settings = Settings.load({}, redis_url=redis_url, frames_per_job=2, max_batch_wait_ms=10_000)
    node = IngestNode([CameraConfig(id="cam", source=str(folder), realtime=False)], settings, stalling, stalling,
                      Metrics(), None)  # fmt: skip
    attempts_after_stop: list[int] = []
    store_and_queue = node.packer.store_and_queue

    def counted(batch):  # type: ignore[no-untyped-def]
        if node.stop.is_set():
            attempts_after_stop.append(len(batch))
        store_and_queue(batch)

    node.packer.store_and_queue = counted  # type: ignore[method-assign]
    connect_redis(redis_url).execute_command("CLIENT", "PAUSE", 5000, "ALL")
    summary = node.run(max_seconds=0.5)
    assert len(attempts_after_stop) <= 1, attempts_after_stop
    assert summary.ingested["cam"] == 0 and summary.skipped["cam"] >= 2


@pytest.mark.parametrize("hostname", ["cam node", "caméra-1", "x" * 300, "@@"])
def test_a_host_of_any_name_queues_its_frames(redis_url, tmp_path, monkeypatch, hostname):
    """The node's id, and so every job's batch id, carries the host name: a host named "cam node" failed
    the first job's id check and the node stopped with its frames unrecorded. The host's name is set
    for this process alone (it cannot be set for real here)."""
    import socket

    from ingest.node import host_part

    monkeypatch.setattr(socket, "gethostname", lambda: hostname)
    folder = tmp_path / "shots"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((120, 160, 3), 90, np.uint8))
    settings = Settings.load({}, redis_url=redis_url)
    connection = connect_redis(redis_url)
    node = IngestNode([CameraConfig(id="cam", source=str(folder), realtime=False)], settings, connection, connection,
                      Metrics(), None)  # fmt: skip
    summary = run_node(node, folder / "none", timeout_s=30)
    assert summary.ingested["cam"] == 1 and summary.jobs == 1
    assert node.node_id.startswith(host_part(hostname) + "-") and len(host_part(hostname)) <= 64
    assert host_part("cam node") == "cam-node" and host_part("") == "host"


def test_a_file_played_in_real_time_plays_on_after_a_hold_up_without_a_burst(redis_server, tmp_path):
    """A file in real time stands in for a live camera. Held up by a Redis outage, its schedule fell
    behind and it caught up at once: seconds of footage were dated within milliseconds (a car's reads
    all at one instant). Now it plays on from where it stood, a sample interval between frames."""
    from common.queues import stage_queue

    clip = tmp_path / "cam.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
    for i in range(300):  # 30 s of footage
        writer.write(np.full((120, 160, 3), i % 250, np.uint8))
    writer.release()
    connection = connect_redis(redis_server.url)
    settings = Settings.load({}, redis_url=redis_server.url, frames_per_job=1, max_batch_wait_ms=50)
    camera = CameraConfig(id="file", source=str(clip), sample_fps=5, realtime=True)
    node = IngestNode([camera], settings, connection, connection, Metrics(), None)
    runner = threading.Thread(target=node.run, kwargs={"max_seconds": 16.0}, daemon=True)
    runner.start()
    time.sleep(2.0)
    redis_server.stop()  # the frames queued so far go with it (this server keeps nothing)
    time.sleep(4.0)
    redis_server.start()
    # 3 s of footage after the outage (its first frames a burst, when it caught up): enough, not 16 s of run
    wait_for(lambda: stage_queue(connection, "detect").count >= 15 or not runner.is_alive(), 30, "frames queued")
    node.stop.set()
    runner.join(40)
    assert not runner.is_alive()
    jobs = stage_queue(connection, "detect").get_jobs()
    times = sorted(frame["captured_at_s"] for job in jobs for frame in job.args[0]["frames"])
    assert len(times) >= 8, times  # frames after the outage: the node reconnected and went on
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert min(gaps) > 0.1, gaps  # 0.2 s apart, but across the outage (a burst was 1 ms apart)


def test_a_host_clock_far_from_redis_is_warned_of_once(redis_url, tmp_path, caplog):
    """A box without a real-time clock (a day behind here: its clock stands in for the host's) dated
    its frames wrong unwarned, though Redis's clock, the chain's common one, was a round trip away."""
    from ingest.clock import CaptureClock

    folder = tmp_path / "shots"
    folder.mkdir()
    for name in ("a", "b", "c"):
        cv2.imwrite(str(folder / f"{name}.jpg"), np.full((120, 160, 3), 90, np.uint8))
    settings = Settings.load({}, redis_url=redis_url, frames_per_job=1)
    connection = connect_redis(redis_url)
    camera = CameraConfig(id="cam", source=str(folder), sample_fps=20)  # dated as read (recorded: by the footage)
    node = IngestNode([camera], settings, connection, connection, Metrics(), None,
                      clock=CaptureClock(lambda: time.time() - 86_400))  # fmt: skip
    summary = run_node(node, folder / "none", timeout_s=30)
    assert summary.ingested["cam"] == 3
    assert caplog.text.count("the frames' time is -86400 s off Redis's clock") == 1
    from common.queues import stage_queue

    for job in stage_queue(connection, "detect").get_jobs():  # stored on the frames' clock: not a day old
        payload = job.args[0]
        assert all(0 <= payload["stored_at_s"] - frame["captured_at_s"] < 5 for frame in payload["frames"])
    node.packer.clock = CaptureClock()  # the positive control: the host's own clock agrees
    caplog.clear()
    node.packer.refresh_depth()
    assert "off Redis's" not in caplog.text


def test_a_looping_camera_restarted_logs_its_passes_anew(redis_url, postgres_url, tmp_path):
    """A looping file stands in for a live camera: each pass is new traffic. Its passes were numbered
    from 0 in each run of the node, so a restarted node's passes had the ids of the last run's: their
    rows and reads were taken for what was logged already, and nothing of them reached the log."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    folder = tmp_path / "one"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((120, 160, 3), 90, np.uint8))
    camera = CameraConfig(id="still", source=str(folder), sample_fps=5, loop=True)
    connection = connect_redis(redis_url)
    settings = Settings.load({}, redis_url=redis_url, database_url=postgres_url)
    sampled = 0
    for _ in range(2):  # the node stopped and started again
        metrics = Metrics()
        ledger = FrameLedger(lambda: FrameLog(open_pool(postgres_url, wait_s=3), patience_s=0), metrics, capacity=100)
        summary = IngestNode([camera], settings, connection, connection, metrics, ledger).run(max_seconds=1.0)
        sampled += summary.ingested["still"] + summary.skipped["still"]
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT count(*) FROM frames WHERE camera_id = 'still'").fetchone()
    assert rows is not None and sampled >= 8 and rows[0] == sampled


@pytest.mark.parametrize("before", ["nothing", "first-pending", "grouped-past-it", "an-hour-back"])
@pytest.mark.parametrize("kind", ["video", "folder", "recorder"])
def test_recorded_footage_read_again_after_a_restart_resumes_where_its_frames_ended(
    kind, before, redis_url, postgres_url, tmp_path, demo_clip
):
    """A node restarted on recorded footage read the whole file again: hours of footage detected and read
    anew to log nothing new. Now the frames the log holds as finished are passed over, and the rest
    (never queued, skipped at the stop, still pending) is read again, dated as the first read dated
    it: dated on from the restart, a car cut in two by it was two sightings and a listed plate raised
    two alerts (a fault drill). Where the sighting pool has grouped the camera past the first frame
    left meanwhile, or first read longer ago than half the frames' lifetime (how far back a pool meeting
    the camera first groups), the rest is dated on at the footage's pace from the restart: dated minutes
    back, its reads fell behind what the pool had grouped, and made no sighting (a review). A recorder's
    file with a 10-minute gap is dated by its frames' own timestamps across the restart as before it."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    frames_per_s = 10.0
    time_of = {index: index / frames_per_s for index in range(120)}
    if kind == "folder":
        source = tmp_path / "shots"
        source.mkdir()
        for index in range(40):
            cv2.imwrite(str(source / f"{index:02d}.jpg"), np.full((120, 160, 3), 5 * index, np.uint8))
    elif kind == "recorder":  # on motion: half the clip, 10 minutes without a frame, the other half
        time_of = {index: index / frames_per_s + (600 if index >= 60 else 0) for index in range(120)}
        frames = clip_frames(demo_clip[0], set(range(120)))
        source = write_mjpeg_mkv(tmp_path / "recorder.mkv", [frames[i] for i in range(120)], list(time_of.values()),
                                 fps=frames_per_s)  # fmt: skip
    else:
        source = demo_clip[0]
        assert cv2.VideoCapture(str(source)).get(cv2.CAP_PROP_FPS) == frames_per_s
    opened = open_source(str(source), 10)
    total = 120 if kind == "recorder" else opened.expected_frames  # an MKV states duration x rate

    def footage_start(index: int, captured_s: float) -> float:
        return round(captured_s - time_of[index], 2)

    camera = CameraConfig(id="cam", source=str(source), sample_fps=10, realtime=False)
    connection = connect_redis(redis_url)

    def run(max_queue_depth: int, max_seconds: float | None) -> NodeSummary:
        metrics = Metrics()
        ledger = FrameLedger(lambda: FrameLog(open_pool(postgres_url, wait_s=3), patience_s=0), metrics, capacity=100)
        settings = Settings.load({}, redis_url=redis_url, max_queue_depth=max_queue_depth, frames_per_job=2)
        return IngestNode([camera], settings, connection, connection, metrics, ledger).run(max_seconds=max_seconds)

    first = run(max_queue_depth=2, max_seconds=2.0)  # the chain took none: the node stopped part way
    with psycopg.connect(postgres_url) as db:
        done = (1, 2) if before == "first-pending" else (0, 1)  # the chain finished two (the first still pending)
        db.execute("UPDATE frames SET outcome = 'done' WHERE frame_index = ANY(%s)", (list(done),))
        if before == "an-hour-back":  # the first read an hour ago
            db.execute("UPDATE frames SET captured_at = captured_at - interval '1 hour'")
        rows = db.execute("SELECT frame_index, captured_at, outcome FROM frames ORDER BY frame_index").fetchall()
    assert total and first.ingested["cam"] + first.skipped["cam"] < total and len(rows) >= 3
    started_s = {footage_start(index, captured.timestamp()) for index, captured, _ in rows}
    connection.flushall()
    if before == "grouped-past-it":  # the sighting pool grouped the camera up to now meanwhile
        with psycopg.connect(postgres_url) as db:
            db.execute("INSERT INTO sighting_cursors (camera_id, grouped_until_s) VALUES ('cam', %s)", (time.time(),))

    restarted_s = time.time()
    second = run(max_queue_depth=1000, max_seconds=60)  # a quarter of it holds the whole video

    again = queued_frames(connection)
    indexes = [frame.frame_index for frame in again]
    assert not set(done) & set(indexes) and len(indexes) == total - 2 == second.ingested["cam"]
    assert ({0, 1, 2} - set(done)) <= set(indexes)  # pending when the node stopped: read again
    (resumed_s,) = {footage_start(f.frame_index, f.captured_at_s) for f in again}
    if before not in ("nothing", "first-pending"):  # dated on from the restart at the footage's pace
        assert min(f.captured_at_s for f in again) >= restarted_s - 0.01 and resumed_s > max(started_s)
    else:  # dated as the first read dated the footage: one pass across the restart
        assert started_s == {resumed_s}


def test_recorded_footage_fills_a_quarter_of_the_queue_before_it_waits(redis_url, tmp_path, demo_clip):
    """Recorded footage is never shed as too old (it has no freshness to keep), so its frames' TTL in the
    frame store is all that bounds their wait: it queued up to the whole depth (64 jobs, 1,024 frames,
    minutes of work at a few frames a second) and 256 of a video's 317 frames were skipped at detection."""
    connection = connect_redis(redis_url)
    settings = Settings.load({}, redis_url=redis_url, max_queue_depth=12, frames_per_job=2)
    camera = CameraConfig(id="cam", source=str(demo_clip[0]), sample_fps=10, realtime=False)
    summary = IngestNode([camera], settings, connection, connection, Metrics(), None).run(max_seconds=3.0)
    assert summary.skipped["cam"] <= 1 and 3 <= stage_queue(connection, "detect").count <= 4, summary  # of 12


def test_recorded_footage_counts_its_frames_not_packed_yet_against_its_share(redis_url, demo_clip, monkeypatch):
    """The share was read from the queues alone: a packer starved of CPU (each job stored 0.3 s late here, a
    wrapper around the real store) still read the depth before the frames handed to it, so up to its 8
    pending frames (4 jobs) went through: 6 jobs queued in a busy run where 3 were the share."""
    from ingest.job_packer import JobPacker

    store_and_queue = JobPacker.store_and_queue

    def starved(self: JobPacker, batch: list) -> None:  # type: ignore[type-arg]
        time.sleep(0.3)
        store_and_queue(self, batch)

    monkeypatch.setattr(JobPacker, "store_and_queue", starved)
    connection = connect_redis(redis_url)
    settings = Settings.load({}, redis_url=redis_url, max_queue_depth=12, frames_per_job=2)
    camera = CameraConfig(id="cam", source=str(demo_clip[0]), sample_fps=10, realtime=False)
    summary = IngestNode([camera], settings, connection, connection, Metrics(), None).run(max_seconds=4.0)
    assert summary.skipped["cam"] <= 1 and 3 <= stage_queue(connection, "detect").count <= 4, (
        summary
    )  # of 12 (3 its share)


def test_a_cameras_state_lost_with_a_restarted_redis_is_written_again(redis_url, demo_clip):
    """A camera's state for `alpr status` was written only when it changed: after a restart of the queues'
    Redis (no persistence) a live camera streaming on showed "-" (found by an audit). The clip, played
    in real time, is a camera that stays connected for its 6 s."""
    from common.queues import CAMERA_STATE_KEY

    connection = connect_redis(redis_url)
    camera = CameraConfig(id="still", source=str(demo_clip[0]), sample_fps=5)
    node = IngestNode([camera], Settings.load({}, redis_url=redis_url), connection, connection, Metrics(), None)
    runner = threading.Thread(target=node.run, kwargs={"max_seconds": 6.0}, daemon=True)
    runner.start()
    wait_for(lambda: connection.hexists(CAMERA_STATE_KEY, "still"), 10, "the camera's state")
    connection.delete(CAMERA_STATE_KEY)  # what a Redis restarted without persistence holds
    wait_for(lambda: connection.hexists(CAMERA_STATE_KEY, "still"), 3, "the camera's state written again")
    assert json.loads(connection.hget(CAMERA_STATE_KEY, "still"))["state"] == "connected"
    node.stop.set()
    runner.join(15)


def test_a_camera_that_failed_for_good_says_so_in_its_metric(redis_url, tmp_path, demo_clip):
    """A file camera that fails is not retried: its error counter stood at 1, below what AlprCameraFailing
    counts, and nothing else said it was gone (an ops review). `alpr_camera_failed` is 1 for it
    (AlprCameraFailed), 0 for a camera beside it that works."""
    from prometheus_client import generate_latest

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    cameras = [CameraConfig(id="broken", source=str(broken), sample_fps=5),
               CameraConfig(id="good", source=str(demo_clip[0]), sample_fps=5, realtime=False)]  # fmt: skip
    connection, metrics = connect_redis(redis_url), Metrics()
    IngestNode(cameras, Settings.load({}, redis_url=redis_url), connection, connection, metrics, None).run(3.0)
    exported = generate_latest(metrics.registry).decode()
    assert 'alpr_camera_failed{camera="broken"} 1.0' in exported and 'alpr_camera_failed{camera="good"} 0.0' in exported


@pytest.mark.parametrize("realtime", [True, False], ids=["realtime", "recorded"])
def test_a_video_served_over_http_is_footage_that_ends_not_a_stream_reopened_for_ever(redis_url, tmp_path, realtime):
    """A URL stating its frame count (a recording an NVR serves) was a live stream to the node: sampled
    by read speed, and reopened at each end as a stream that dropped ("the stream ended... reconnecting"),
    each pass under new frame ids, so the same footage was logged and alerted on again and again (a
    review: in 40 s, 18 requests and 6 frames queued, one a pass). It is footage, as a file is: one pass
    sampled by its timestamps, then ended (no `loop`); played at its pace, or recorded footage
    (`realtime: false`) dated by its own clock. Such a camera is declared `footage: true`: a stream URL
    without it is a live camera, which a clip never ends (tests/ingest/test_live_camera.py)."""
    from rq.serializers import JSONSerializer

    from common.jobs import DetectJob, parse_job
    from common.queues import StageJob

    clip = tmp_path / "car.mp4"
    write_clip(clip, ("KPX4721",))  # 4 s at 10 frames/s
    connection = connect_redis(redis_url)
    metrics = Metrics()
    with served_video(clip) as (url, requests):
        list(open_source(url, 5).frames())
        one_pass = len(requests)  # FFmpeg's requests for one read of it (the index at its end, then the rest)
        camera = CameraConfig(id="nvr", source=url, sample_fps=5, realtime=realtime, footage=True)
        node = IngestNode([camera], Settings.load({}, redis_url=redis_url), connection, connection, metrics, None)
        started = time.monotonic()
        summary = run_node(node, tmp_path / "no-fifo", timeout_s=30)
        took = time.monotonic() - started
    assert summary.ingested["nvr"] == 20 and summary.skipped["nvr"] == 0, summary
    assert len(requests) == 2 * one_pass  # the node's one pass
    assert metrics.registry.get_sample_value("alpr_source_errors_total", {"camera": "nvr"}) == 0
    assert json.loads(connection.hget(CAMERA_STATE_KEY, "nvr") or b"{}").get("state") == "ended"
    assert metrics.registry.get_sample_value("alpr_camera_ended", {"camera": "nvr"}) == 1  # (not silent: ended)
    frames = []
    for job_id in stage_queue(connection, "detect").get_job_ids():
        job = StageJob.fetch(job_id, connection=connection, serializer=JSONSerializer)
        frames += parse_job(job.args[0], DetectJob).frames
    assert [frame.frame_index for frame in frames] == list(range(0, 40, 2))  # by its timestamps, every 0.2 s
    assert [frame.source_time_s for frame in frames] == pytest.approx([0.2 * i for i in range(20)])
    assert len({frame.frame_id for frame in frames}) == 20 and all(frame.recorded is not realtime for frame in frames)
    gaps = [later.captured_at_s - earlier.captured_at_s for earlier, later in zip(frames, frames[1:], strict=False)]
    if realtime:  # played at its pace: 3.8 s from the first frame to the last
        assert took >= 3.5 and min(gaps) > 0.1, (took, gaps)
    else:  # dated by its own clock, however fast it was read
        assert [round(gap, 6) for gap in gaps] == [0.2] * 19


def test_footage_over_http_cut_short_is_read_on_not_ended(redis_url, tmp_path):
    """A review: a URL's footage whose transfer dropped midway (a server without ranges, which FFmpeg
    cannot resume) was ended for good ("ended early at frame 91 of 200"), the rest never read, no source
    error counted. Then it was read again from its start as a new pass, each pass new footage (a later
    review: a transfer that always dropped halfway queued the same frames 23 times in 40 s, dated ever
    further ahead). Now it is opened again and read on from the frame reached, with a source error: the
    same pass, each frame queued once, dated on from the pass's start."""
    import http.server
    from contextlib import suppress

    from rq.serializers import JSONSerializer

    from common.jobs import DetectJob, parse_job
    from common.queues import StageJob
    from tests.helpers import http_server

    clip = tmp_path / "recording.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for index in range(60):  # 6 s at 10 frames/s
        writer.write(np.full((120, 160, 3), (index * 4) % 250, np.uint8))
    writer.release()
    data, requests = clip.read_bytes(), []

    class CutOnce(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            requests.append(self.path)  # no ranges served: a cut transfer cannot be resumed
            self.send_response(200)
            self.send_header("Content-Type", "video/x-msvideo")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data[: len(data) * 2 // 5] if len(requests) == 1 else data)

        def log_message(self, *args: object) -> None:
            pass

    connection = connect_redis(redis_url)
    metrics = Metrics()
    with http_server(CutOnce) as base:
        camera = CameraConfig(id="nvr", source=f"{base}/{clip.name}", sample_fps=2, realtime=False, footage=True)
        node = IngestNode([camera], Settings.load({}, redis_url=redis_url), connection, connection, metrics, None)
        summary = run_node(node, tmp_path / "no-fifo", timeout_s=60)
    assert len(requests) == 2 and json.loads(connection.hget(CAMERA_STATE_KEY, "nvr") or b"{}")["state"] == "ended"
    assert metrics.registry.get_sample_value("alpr_source_errors_total", {"camera": "nvr"}) == 1
    frames = []
    for job_id in stage_queue(connection, "detect").get_job_ids():
        job = StageJob.fetch(job_id, connection=connection, serializer=JSONSerializer)
        frames += parse_job(job.args[0], DetectJob).frames
    first_pass = [frame.frame_index for frame in frames if frame.frame_id.split(":")[-2] == "0"]
    assert [frame.frame_index for frame in frames] == first_pass == list(range(0, 60, 5))  # read on, each once
    assert summary.ingested["nvr"] == len(frames) == len({frame.frame_id for frame in frames}) == 12
    gaps = [later.captured_at_s - earlier.captured_at_s for earlier, later in zip(frames, frames[1:], strict=False)]
    assert [round(gap, 6) for gap in gaps] == [0.5] * 11  # dated on from the pass's start, across the drop


def test_a_camera_whose_roi_lies_outside_its_frames_is_warned_of_once(redis_url, tmp_path, caplog):
    """An ROI drawn for another resolution was taken without a word: the camera never read a plate, and
    nothing told it from an empty road (a review)."""
    folder = tmp_path / "shots"
    folder.mkdir()
    for name in ("a", "b", "c"):
        cv2.imwrite(str(folder / f"{name}.jpg"), np.full((120, 160, 3), 90, np.uint8))
    settings = Settings.load({}, redis_url=redis_url)
    connection = connect_redis(redis_url)
    outside = CameraConfig(id="cam", source=str(folder), roi=[(5000, 5000), (6000, 5000), (6000, 6000)])
    within = CameraConfig(id="cam2", source=str(folder), roi=[(0, 60), (160, 60), (160, 120), (0, 120)])
    node = IngestNode([outside, within], settings, connection, connection, Metrics(), None)
    summary = run_node(node, folder / "none", timeout_s=30)
    assert summary.ingested == {"cam": 3, "cam2": 3}
    warned = [r.getMessage() for r in caplog.records if "ROI" in r.getMessage()]
    assert [r.levelname for r in caplog.records if "ROI" in r.getMessage()] == ["WARNING"]
    assert warned[0].startswith("camera cam: its ROI covers none of its 160x120 frames"), warned


def image_folder(path: Path, count: int) -> Path:
    """A folder of `count` distinct images (a recording, or a live camera's stand-in when looped)."""
    path.mkdir()
    for index in range(count):
        cv2.imwrite(str(path / f"{index:02d}.jpg"), np.full((120, 160, 3), 5 * index, np.uint8))
    return path


def logged_dates(postgres_url: str) -> dict[str, float]:
    """Every frame in the frames log: frame id -> capture time."""
    with psycopg.connect(postgres_url) as db:
        return {frame_id: captured.timestamp() for frame_id, captured in db.execute(
            "SELECT frame_id, captured_at FROM frames").fetchall()}  # fmt: skip


def ingest_until_done(camera: CameraConfig, settings: Settings, connection, postgres_url: str,  # type: ignore[no-untyped-def]
                      clock: CaptureClock | None = None, max_seconds: float | None = 30.0) -> NodeSummary:  # fmt: skip
    """One node with a ledger on the frames log samples `camera` (until it ends, or `max_seconds`)."""
    clock = clock or CaptureClock()
    metrics = Metrics()
    ledger = FrameLedger(lambda: FrameLog(open_pool(postgres_url, wait_s=3), patience_s=0), metrics, capacity=100,
                         now=clock.now)  # fmt: skip
    return IngestNode([camera], settings, connection, connection, metrics, ledger, clock).run(max_seconds=max_seconds)


def test_a_restarted_node_dates_a_new_recording_after_the_cameras_last_frame(redis_url, postgres_url, tmp_path):
    """Recorded footage read faster than it plays is dated ahead of the clock. A node restarted with the
    camera on a new recording dated it from now, up to 69 s before the last recording's frames: the two
    interleaved on the camera's time, one recording's cars merged into the other's passes (12 of 30
    sightings, 6 of 10 listed passes unalerted: a chaos review). It is dated after the camera's last frame
    in the frames log now, at the footage's own pace."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    connection = connect_redis(redis_url)
    settings = Settings.load({}, redis_url=redis_url)
    recordings = [CameraConfig(id="cam", source=str(image_folder(tmp_path / name, 20)), sample_fps=1, realtime=False)
                  for name in ("old", "new")]  # 20 s of footage each, read within a second or two  # fmt: skip
    assert ingest_until_done(recordings[0], settings, connection, postgres_url).ingested["cam"] == 20
    old = logged_dates(postgres_url)
    assert ingest_until_done(recordings[1], settings, connection, postgres_url).ingested["cam"] == 20
    new = sorted(date for frame_id, date in logged_dates(postgres_url).items() if frame_id not in old)
    assert len(new) == 20 and min(new) > max(old.values())
    assert [round(later - earlier, 3) for earlier, later in zip(new, new[1:], strict=False)] == [1.0] * 19


@pytest.mark.parametrize("ahead", ["host-clock-behind", "grouped-ahead", "grouped-past-postgres-now"])
def test_a_restarted_node_dates_a_live_cameras_frames_after_its_last_frame(ahead, redis_url, postgres_url, tmp_path,
                                                                           caplog):  # fmt: skip
    """A node started with its host's clock two minutes behind dated its frames two minutes before its
    predecessor's last, which the sighting pool had grouped past: 48 cars had no sighting (a chaos
    review). A pool that grouped the camera past that clock was passed alike. The camera's frames are
    dated after both now, slewing back to the node's clock at half speed: never back, never crowded. A
    cursor past Postgres's now, though (saved by a sighting worker whose host clock ran ahead, set right at
    the camera's next round), is none: the camera's frames were dated 18 minutes ahead (a review)."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    connection = connect_redis(redis_url)
    settings = Settings.load({}, redis_url=redis_url)
    camera = CameraConfig(id="cam", source=str(image_folder(tmp_path / "live", 1)), sample_fps=5, loop=True)
    ingest_until_done(camera, settings, connection, postgres_url, max_seconds=1.0)
    before = logged_dates(postgres_url)
    last_s = max(before.values())
    clock = CaptureClock() if ahead == "grouped-past-postgres-now" else CaptureClock(wall=lambda: time.time() - 120)
    if ahead != "host-clock-behind":
        grouped_s = time.time() + (1080 if ahead == "grouped-past-postgres-now" else 0)  # past the node's clock
        with psycopg.connect(postgres_url) as db:
            db.execute("INSERT INTO sighting_cursors (camera_id, grouped_until_s) VALUES ('cam', %s)", (grouped_s,))
        if ahead == "grouped-ahead":
            last_s = grouped_s
    caplog.set_level("INFO", logger="ingest.node")
    ingest_until_done(camera, settings, connection, postgres_url, clock, max_seconds=2.0)
    new = sorted(date for frame_id, date in logged_dates(postgres_url).items() if frame_id not in before)
    assert len(new) >= 5 and min(new) > last_s
    assert min(later - earlier for earlier, later in zip(new, new[1:], strict=False)) > 0.05  # 0.2 s at half speed
    if ahead == "grouped-past-postgres-now":
        assert max(new) < time.time() + 1 and "its last frame is dated" not in caplog.text
    else:
        assert "its last frame is dated" in caplog.text


def test_a_node_started_while_postgres_is_away_dates_its_frames_after_those_its_spool_holds(
    redis_url, tmp_path, caplog, monkeypatch
):
    """Postgres away at the start, the frames log cannot say when the camera's last frame was dated; a node
    killed while it was away left its newest frames in the spool, which this node adopts: its frames are
    dated after them, and it says what it knows no more."""
    monkeypatch.setattr(defaults, "LEDGER_CLOSE_S", 1.0)  # its 15 s of tries on the way out: to no avail here
    from common.frame_log import FrameRecord
    from ingest.spool_files import record_line
    from tests.ingest.test_ledger import closed_port

    spool = tmp_path / "spool"
    spool.mkdir()
    ahead_s = time.time() + 60  # the last node's clock a minute ahead
    left = FrameRef(frame_id="cam:1:0", camera_id="cam", seq=0, frame_index=0, captured_at_s=ahead_s,
                    source_time_s=0.0, key=frame_key("cam:1:0"), region="us")  # fmt: skip
    (spool / "ledger-1-1.jsonl").write_text(record_line(FrameRecord(left, "pending")))
    unreachable = f"postgresql://postgres@127.0.0.1:{closed_port()}/none"
    metrics = Metrics()
    ledger = FrameLedger(lambda: FrameLog(open_pool(unreachable, wait_s=0.5), patience_s=0), metrics, capacity=100,
                         spool_dir=spool)  # fmt: skip
    connection = connect_redis(redis_url)
    camera = CameraConfig(id="cam", source=str(image_folder(tmp_path / "live", 1)), sample_fps=5, loop=True)
    IngestNode([camera], Settings.load({}, redis_url=redis_url), connection, connection, metrics, ledger).run(
        max_seconds=1.5
    )
    dates = [frame.captured_at_s for frame in queued_frames(connection)]
    assert dates and min(dates) > ahead_s
    assert "the frames log cannot say when its last frame was dated (Postgres away): dated from the last frame the" \
           " spool holds" in caplog.text  # fmt: skip


def test_footage_resumed_after_another_recording_keeps_its_logged_dates_and_dates_the_rest_after_it(
    redis_url, postgres_url, tmp_path
):
    """A recording cut short by a stop, another read on the camera since, then the first resumed: its frames
    the log holds keep the dates they were logged with (one pass across the restart), and those new to the
    log come after the other recording's, not among them."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    connection = connect_redis(redis_url)
    first = CameraConfig(id="cam", source=str(image_folder(tmp_path / "first", 20)), sample_fps=1, realtime=False)
    other = CameraConfig(id="cam", source=str(image_folder(tmp_path / "other", 20)), sample_fps=1, realtime=False)
    slow = Settings.load({}, redis_url=redis_url, max_queue_depth=2, frames_per_job=2)  # nothing takes the jobs
    ingest_until_done(first, slow, connection, postgres_url, max_seconds=2.0)  # stopped part way
    with psycopg.connect(postgres_url) as db:
        db.execute("UPDATE frames SET outcome = 'done' WHERE frame_index IN (0, 1)")
    cut_short = logged_dates(postgres_url)
    assert 3 <= len(cut_short) < 20
    connection.flushall()
    settings = Settings.load({}, redis_url=redis_url)
    assert ingest_until_done(other, settings, connection, postgres_url).ingested["cam"] == 20
    other_last_s = max(date for frame_id, date in logged_dates(postgres_url).items() if frame_id not in cut_short)
    connection.flushall()
    assert ingest_until_done(first, settings, connection, postgres_url).ingested["cam"] == 18
    again = queued_frames(connection)
    kept = {frame.frame_id: frame.captured_at_s for frame in again if frame.frame_id in cut_short}
    new = [frame.captured_at_s for frame in again if frame.frame_id not in cut_short]
    assert len(kept) == len(cut_short) - 2 and kept == pytest.approx({k: cut_short[k] for k in kept}, abs=1e-5)
    assert len(new) == 20 - len(cut_short) and min(new) > other_last_s


def test_a_camera_taken_over_that_samples_nothing_replaces_the_dead_nodes_watermark(redis_url, postgres_url,
                                                                                   tmp_path):  # fmt: skip
    """A node killed left its watermark; the node that took its camera over found the footage all finished,
    sampled nothing, and wrote none: the dead node's held the camera's sightings back for the frames'
    lifetime, 12 minutes (a chaos review). Every camera a node claims has its watermark from the start
    (a camera that cannot be opened too), and the node removes it at its stop."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    connection = connect_redis(redis_url)
    settings = Settings.load({}, redis_url=redis_url)
    footage = CameraConfig(id="cam", source=str(image_folder(tmp_path / "film", 3)), sample_fps=1, realtime=False)
    ingest_until_done(footage, settings, connection, postgres_url)
    unopened = CameraConfig(id="gone", source="http://127.0.0.1:9/cam.mjpg", sample_fps=1)  # nothing answers
    stale_s = time.time() - 300
    with psycopg.connect(postgres_url) as db:
        db.execute("UPDATE frames SET outcome = 'done'")  # all finished: the node reads nothing of it
        db.execute("INSERT INTO camera_watermarks (camera_id, recorded_until_s) VALUES ('cam', %s), ('gone', %s)",
                   (stale_s, stale_s))  # fmt: skip

    def watermarks() -> dict[str, float]:
        with psycopg.connect(postgres_url) as db:
            return dict(db.execute("SELECT camera_id, recorded_until_s FROM camera_watermarks").fetchall())

    metrics = Metrics()
    ledger = FrameLedger(lambda: FrameLog(open_pool(postgres_url, wait_s=3), patience_s=0), metrics, capacity=100)
    node = IngestNode([footage, unopened], settings, connection, connection, metrics, ledger)
    runner = threading.Thread(target=node.run, kwargs={"max_seconds": 30}, daemon=True)
    runner.start()
    try:
        wait_for(lambda: all(mark > time.time() - 10 for mark in watermarks().values()), 20,
                 "both watermarks this node's")  # fmt: skip
    finally:
        node.stop.set()
        runner.join(20)
    assert not runner.is_alive() and watermarks() == {}


def test_links_named_like_images_that_lead_to_no_image_are_recorded_corrupt(redis_url, postgres_url, tmp_path):
    """Entries named *.jpg that are links to nothing, to themselves, to a folder or to a FIFO were left out of
    the folder's images (`Path.is_file()` is False for them without raising): no frame id, no row in the
    frames log, no warning (a review). Each is now a frame recorded `corrupt`, the reason said."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    folder = tmp_path / "shots"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((120, 160, 3), 90, np.uint8))
    (folder / "b.jpg").symlink_to(tmp_path / "nowhere.jpg")  # dangling
    (folder / "c.jpg").symlink_to("c.jpg")  # a loop
    (tmp_path / "sub").mkdir()
    (folder / "d.jpg").symlink_to(tmp_path / "sub")
    os.mkfifo(tmp_path / "pipe")
    (folder / "e.jpg").symlink_to(tmp_path / "pipe")
    node, metrics = folder_node(folder, redis_url, postgres_url)

    summary = run_node(node, tmp_path / "pipe", timeout_s=60)

    assert summary.ingested["cam"] == 1 and summary.skipped["cam"] == 4
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT frame_index, outcome, detail FROM frames ORDER BY frame_index").fetchall()
    assert rows == [
        (0, "pending", None),
        (1, "corrupt", "cannot read: No such file or directory"),
        (2, "corrupt", "cannot read: Too many levels of symbolic links"),
        (3, "corrupt", "not a regular file"),
        (4, "corrupt", "not a regular file"),
    ], rows
    assert metrics.registry.get_sample_value("alpr_frames_corrupt_total", {"stage": "ingest"}) == 4


def test_a_read_only_redis_is_logged_without_the_frames_bytes(redis_server, tmp_path, caplog):
    """A queues' Redis turned read-only (a replica after a failover) refuses the frame store's pipeline:
    redis-py's error holds the refused command's first 100 characters — the frame's key and its JPEG
    bytes — and every warning while it lasted carried them. The log says why, not what was sent."""
    from common.credentials import install_log_masking

    jpegs = camera_jpegs(tmp_path)
    connection = connect_redis(redis_server.url)
    settings = Settings.load({}, redis_url=redis_server.url, frames_per_job=1, max_batch_wait_ms=50)
    caplog.set_level("WARNING")
    install_log_masking()  # as every alpr command does at start (the test's capture handler is the root's)
    with mjpeg_camera(jpegs, fps=10) as url:
        node, runner = start_live_node(url, settings, connection, Metrics(), 6.0)
        # its capture process started (1.5 s on an idle host; on busy CPUs none was ingested by then)
        wait_for(lambda: node.summary.ingested["live"] >= 1, 5, "a frame ingested")
        connection.replicaof("127.0.0.1", "1")  # a replica of nothing: writes refused with READONLY
        try:
            wait_for(lambda: any("read only replica" in r.getMessage() for r in caplog.records), 10,
                     "the refusal to be logged")  # fmt: skip
        finally:
            connection.replicaof("NO", "ONE")
        runner.join(30)
    assert not runner.is_alive()
    refused = [r.getMessage() for r in caplog.records if "read only replica" in r.getMessage()]
    assert all("JFIF" not in m and "\\xff" not in m and "\ufffd" not in m and "SET " not in m for m in refused), refused
    assert any("command 1 of a pipeline refused" in m for m in refused), refused


def test_footage_read_again_with_other_bytes_keeps_the_first_reads_frames_as_stored(redis_url, tmp_path, demo_clip):
    """Footage read again while its frames are still in the chain (a node restarted, or another node taking
    the camera over) numbers them alike. Where its JPEG bytes differ (another ALPR_JPEG_QUALITY, another
    build of the codec), they replaced the first read's under the same keys, and every first job's frame
    was logged `corrupt`, not the frame stored at sampling (the sign of tampering): 120 of 120 in a review.
    Each read's frames now lie under keys of their own."""
    from common.frame_store import FrameStore, as_stored

    camera = CameraConfig(id="cam", source=str(demo_clip[0]), sample_fps=10, realtime=False)
    connection = connect_redis(redis_url)
    for quality in (90, 60):  # the chain took none: every frame still pending when it is read again
        settings = Settings.load({}, redis_url=redis_url, frames_per_job=4, jpeg_quality=quality, max_queue_depth=1000)
        IngestNode([camera], settings, connection, connection, Metrics(), None).run(max_seconds=60)
    frames = queued_frames(connection)
    assert len(frames) == 240 and len({f.frame_id for f in frames}) == 120  # each frame id twice
    store = FrameStore(connection, 600)
    stored = store.get_jpegs([f.key for f in frames])
    assert all(as_stored(f.digest, stored[f.key] or b"") for f in frames)  # every job finds its own bytes

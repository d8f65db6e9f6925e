"""An ingest node decides whether a camera it holds is silent (alpr_camera_silent: AlprCameraSilent): a camera
that serves nothing, or whose thread died, reads 1 after CAMERA_SILENT_S (patched down); a camera sampled
at a rate slower than that, once it sampled a frame, and recorded footage held back waiting for room read 0;
so does a camera lost to another node, whose alpr_camera_ended is reset too. Real IngestNode, real HTTP
cameras and capture processes, a private Redis."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psycopg
import pytest

from common import defaults
from common.config import Settings
from common.metrics import Metrics
from common.queues import connect_redis
from ingest.cameras import CameraConfig
from ingest.node import IngestNode
from tests.helpers import http_server, mjpeg_camera, wait_for
from tests.ingest.fmp4 import init_segment

SILENT_S = 2.0
"""CAMERA_SILENT_S in these tests."""


@pytest.fixture(autouse=True)
def silent_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(defaults, "CAMERA_SILENT_S", SILENT_S)


def value(metrics: Metrics, name: str, camera: str = "cam") -> float | None:
    return metrics.registry.get_sample_value(name, {"camera": camera})


def start_node(
    camera: CameraConfig, redis_url: str, *others: CameraConfig, **settings: int
) -> tuple[IngestNode, Metrics, threading.Thread]:
    """A node of the camera (and `others`), run in a thread for up to a minute."""
    connection, metrics = connect_redis(redis_url), Metrics()
    settings_ = Settings.load({}, redis_url=redis_url, **settings)
    node = IngestNode([camera, *others], settings_, connection, connection, metrics, None)
    runner = threading.Thread(target=node.run, kwargs={"max_seconds": 60}, daemon=True)
    runner.start()
    wait_for(lambda: value(metrics, "alpr_camera_claimed") == 1, 10, "the camera claimed")
    return node, metrics, runner


def stop_node(node: IngestNode, runner: threading.Thread) -> None:
    node.stop.set()
    runner.join(20)
    assert not runner.is_alive()


def test_a_camera_that_serves_nothing_reads_silent_and_a_lost_one_does_not(redis_url, stalled_camera):
    node, metrics, runner = start_node(CameraConfig(id="cam", source=stalled_camera, sample_fps=5), redis_url)
    try:
        assert value(metrics, "alpr_camera_silent") == 0  # heard from as its thread started
        wait_for(lambda: value(metrics, "alpr_camera_silent") == 1, 4 * SILENT_S, "the camera read silent")
        assert value(metrics, "alpr_frames_ingested_total") == 0
        metrics.camera_ended.labels(camera="cam").set(1)  # (what a node whose footage ended had set)
        node.lose("cam", "ingest-2")  # another node took the camera over
        assert value(metrics, "alpr_camera_silent") == 0 and value(metrics, "alpr_camera_claimed") == 0
        assert value(metrics, "alpr_camera_ended") == 0  # its end, if any, is the new holder's to tell
    finally:
        stop_node(node, runner)


def test_a_camera_whose_thread_died_reads_silent(redis_url, demo_clip, monkeypatch):
    """The class of bug AlprCameraSilent exists for: the claim held, its thread gone, nothing sampled (the
    node goes on with its other camera, a file played in a loop)."""
    sample_camera = IngestNode.sample_camera

    def dies_for_cam(node: IngestNode, camera: CameraConfig, *args: object) -> None:
        if camera.id == "cam":
            raise RuntimeError("a bug in the camera's thread")
        sample_camera(node, camera, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(IngestNode, "sample_camera", dies_for_cam)
    camera = CameraConfig(id="cam", source=str(demo_clip[0]), sample_fps=5)
    other = CameraConfig(id="other", source=str(demo_clip[0]), sample_fps=5, loop=True)
    node, metrics, runner = start_node(camera, redis_url, other)
    try:
        wait_for(lambda: value(metrics, "alpr_camera_silent") == 1, 4 * SILENT_S, "the camera read silent")
        assert not node.camera_threads["cam"].is_alive() and value(metrics, "alpr_camera_claimed") == 1
        assert value(metrics, "alpr_camera_silent", "other") == 0
    finally:
        stop_node(node, runner)
    assert value(metrics, "alpr_camera_silent") == 0  # the node stopped: it holds the camera no longer


def test_a_camera_sampled_slower_than_the_silence_bound_is_not_silent_between_its_frames(redis_url):
    """sample_fps may be as low as a frame an hour: a camera sampled every 10 s is silent only after 3 of
    its intervals (30 s), not after CAMERA_SILENT_S (2 s here; 10 min in production, against a camera
    sampled every 15 minutes: the alert fired 5 minutes of every 15)."""
    jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 128, np.uint8))[1].tobytes()
    with mjpeg_camera([jpeg], fps=10) as url:
        node, metrics, runner = start_node(CameraConfig(id="cam", source=url, sample_fps=0.1), redis_url)
        try:
            wait_for(lambda: (value(metrics, "alpr_frames_ingested_total") or 0) >= 1, 15, "its first frame")
            time.sleep(2 * SILENT_S)
            assert value(metrics, "alpr_frames_ingested_total") == 1  # nothing sampled for twice the bound
            assert value(metrics, "alpr_camera_silent") == 0
        finally:
            stop_node(node, runner)


def test_recorded_footage_held_back_for_room_is_not_silent(redis_url, demo_clip):
    """Recorded footage (`realtime: false`) waits for the chain rather than skipping (nothing counted): with
    no detector the queue fills, and it waits. It fired the alert on every archive camera through any
    outage of the chain over 10 minutes."""
    camera = CameraConfig(id="cam", source=str(demo_clip[0]), sample_fps=10, realtime=False)
    node, metrics, runner = start_node(camera, redis_url, max_queue_depth=2, frames_per_job=2)
    try:
        wait_for(lambda: (value(metrics, "alpr_frames_ingested_total") or 0) >= 1, 15, "its first frames")
        deadline, held = time.monotonic() + 20, False
        while not held and time.monotonic() < deadline:  # a span past the bound with nothing ingested
            before = value(metrics, "alpr_frames_ingested_total")
            time.sleep(1.5 * SILENT_S)
            held = value(metrics, "alpr_frames_ingested_total") == before
        skipped = sum(sample.value for family in metrics.registry.collect() if family.name == "alpr_frames_skipped"
                      for sample in family.samples if sample.labels.get("camera") == "cam")  # fmt: skip
        assert held and skipped == 0 and value(metrics, "alpr_camera_ended") == 0
        assert value(metrics, "alpr_camera_silent") == 0
    finally:
        stop_node(node, runner)


def test_a_node_that_loses_a_camera_whose_footage_ended_resets_its_ended(redis_url, demo_clip):
    """lose() reset alpr_camera_failed but not alpr_camera_ended: the old node told the end for ever."""
    connection, metrics = connect_redis(redis_url), Metrics()
    camera = CameraConfig(id="cam", source=str(demo_clip[0]), sample_fps=2, realtime=False)
    node = IngestNode([camera], Settings.load({}, redis_url=redis_url), connection, connection, metrics, None)
    node.run(max_seconds=60)  # the footage read to its end
    assert value(metrics, "alpr_camera_ended") == 1
    node.lose("cam", "ingest-2")
    assert value(metrics, "alpr_camera_ended") == 0


def long_clip(path: Path, frames: int) -> Path:
    """An mp4 of `frames` 720p frames at 30 frames/s, each numbered (grabbed at roughly 1,000 frames/s here)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (1280, 720))
    base = np.tile(np.linspace(0, 255, 1280, dtype=np.uint8)[None, :, None], (720, 1, 3))
    for index in range(frames):
        frame = base.copy()
        cv2.putText(frame, str(index), (100, 300), cv2.FONT_HERSHEY_SIMPLEX, 5, (255, 255, 255), 8)
        writer.write(frame)
    writer.release()
    return path


def test_footage_a_restarted_node_passes_over_is_not_silent(redis_url, postgres_url, tmp_path, monkeypatch):
    """A node restarted through recorded footage passes over the frames the node before finished, grabbing each
    and sampling none: it read silent meanwhile (at the real bound, after some 5 hours of 30 frames/s footage
    passed over: a review). Grabbing is being heard from (CameraSilence.reading)."""
    from alpr.cli import main
    from common.db import open_pool
    from common.frame_log import FrameLog
    from ingest.ledger import FrameLedger

    monkeypatch.setattr(defaults, "CAMERA_SILENT_S", 1.0)  # (0.6 s, 3 sample intervals, read a capture child's
    # start on a busy host as silence before its first frame, one run in two)
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    camera = CameraConfig(id="cam", source=str(long_clip(tmp_path / "clip.mp4", 2400)), sample_fps=5, realtime=False)
    connection = connect_redis(redis_url)

    def node() -> tuple[IngestNode, Metrics]:
        metrics = Metrics()
        ledger = FrameLedger(lambda: FrameLog(open_pool(postgres_url, wait_s=3), patience_s=0), metrics, capacity=1000)
        settings = Settings.load({}, redis_url=redis_url, max_queue_depth=1000, frames_per_job=2)
        return IngestNode([camera], settings, connection, connection, metrics, ledger), metrics

    first, _ = node()
    first.run(max_seconds=60)
    with psycopg.connect(postgres_url) as db:
        db.execute("UPDATE frames SET outcome = 'done' WHERE frame_index < 2300")  # finished by the node before
    connection.flushall()
    second, metrics = node()
    runner = threading.Thread(target=second.run, kwargs={"max_seconds": 30}, daemon=True)
    runner.start()
    readings, started = [], time.monotonic()
    while runner.is_alive() and time.monotonic() - started < 30:  # read as a scrape would, 5 times a second
        readings.append((value(metrics, "alpr_camera_silent"), value(metrics, "alpr_frames_ingested_total")))
        time.sleep(0.2)
    runner.join(30)
    passed_over = [reading for reading in readings if not reading[1]]
    assert len(passed_over) * 0.2 > 1.2, passed_over  # the pass-over outlasted the bound (1 s; 1.8 s here)
    assert all(silent != 1 for silent, _ in readings), readings


def test_a_restream_that_opens_and_gives_no_frame_at_each_reconnect_reads_silent(redis_url, monkeypatch):
    """A go2rtc or NVR restream whose camera is dead answers its fragmented MP4's init segment and no frame, at
    every reconnect: each pass begun was taken as progress (CameraSilence.reading), and it read 0 for ever (a
    review). The bound and the backoff lowered in their real ratio (600 s against 1 to 30 s)."""
    monkeypatch.setattr(defaults, "CAMERA_SILENT_S", 3.0)
    monkeypatch.setattr("common.defaults.RECONNECT_BACKOFF_S", (0.2, 1.0))
    connections = []

    class Restream(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            connections.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.end_headers()
            self.wfile.write(init_segment(160, 120))  # its camera dead: the init segment, no fragment, closed

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Restream) as base:
        camera = CameraConfig(id="cam", source=f"{base}/api/stream.mp4", sample_fps=5)
        node, metrics, runner = start_node(camera, redis_url)
        try:
            wait_for(lambda: value(metrics, "alpr_camera_silent") == 1, 15, "the dead restream read silent")
            assert len(connections) >= 2 and not value(metrics, "alpr_frames_ingested_total")
        finally:
            stop_node(node, runner)


def test_a_restream_declared_live_is_not_warned_of_as_a_recording(redis_url):
    """A fragmented-MP4 restream states frames as a recording does: the WARNING that suggests `footage: true`
    was given at every start even where the cameras file says `footage: false` (a review); left unset, it is."""
    connection, metrics = connect_redis(redis_url), Metrics()
    declared = CameraConfig(id="live", source="http://127.0.0.1:9/api/stream.mp4", sample_fps=5, footage=False)
    unset = CameraConfig(id="unset", source="http://127.0.0.1:9/export.mp4", sample_fps=5)
    node = IngestNode([declared, unset], Settings.load({}, redis_url=redis_url), connection, connection, metrics, None)
    keepers = {camera.id: node.source_keeper(camera, node.stop.camera(camera.id)) for camera in (declared, unset)}
    assert keepers["live"].live and not keepers["live"].tell_recording
    assert keepers["unset"].live and keepers["unset"].tell_recording

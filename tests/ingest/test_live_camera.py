"""A live camera stays live: an ingest node's stream-URL camera (not declared `footage: true`) whose URL
answers stating a frame count (a camera's boot clip, a fragmented-MP4 restream, a snapshot's one JPEG) is
read as a live stream, reopened at its end (no source error where it served the frames it stated: a snapshot
URL's one JPEG; else a drop reconnected from with backoff), never footage that ends (a review: the
camera's thread ended for good, its claim kept, its live stream never read again, nothing counted) nor an
answer refused (a review: fragmented-MP4 and snapshot cameras refused at every open gave no frame, for
ever). Real HTTP servers, real capture processes, a private Redis."""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import cv2
import numpy as np
import pytest

from common.backoff import Backoff
from common.config import Settings
from common.metrics import Metrics
from common.queues import CAMERA_STATE_KEY, connect_redis
from ingest.cameras import CameraConfig
from ingest.frame_source import FrameSource
from ingest.node import IngestNode
from ingest.reconnect import SourceKeeper
from tests.helpers import http_server, wait_for
from tests.ingest.fmp4 import fragment, frame_image, init_segment
from tests.ingest.mkv import write_mjpeg_mkv


def clip_bytes(path: Path, frames: int = 10) -> bytes:
    """A small AVI (MJPEG, 10 frames/s): FFmpeg states its frame count."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (160, 120))
    for index in range(frames):
        writer.write(np.full((120, 160, 3), 10 + 20 * index, np.uint8))
    writer.release()
    return path.read_bytes()


@contextmanager
def clip_then_live(clip: bytes, clips: int | None) -> Iterator[tuple[str, list[str]]]:
    """A camera whose first `clips` answers (None: every one) are the clip, the rest a live MJPEG stream at
    10 frames/s; yields its URL and what each answer was."""
    jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 128, np.uint8))[1].tobytes()
    answers: list[str] = []

    class Camera(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            answers.append("clip" if clips is None or len(answers) < clips else "live")
            self.send_response(200)
            with suppress(BrokenPipeError, ConnectionResetError):
                if answers[-1] == "clip":
                    self.send_header("Content-Type", "video/x-msvideo")
                    self.send_header("Content-Length", str(len(clip)))
                    self.end_headers()
                    self.wfile.write(clip)
                    return
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for _ in range(600):  # a minute at most
                    head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                    self.wfile.write(head + jpeg + b"\r\n")
                    time.sleep(0.1)

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Camera) as base:
        yield f"{base}/video", answers


def gap_mkv(path: Path) -> bytes:
    """An MKV of 4 frames, the last two an hour after the first two (its timestamps)."""
    frames = [np.full((120, 160, 3), 40 * index, np.uint8) for index in range(4)]
    return write_mjpeg_mkv(path, frames, [0.0, 0.1, 3600.0, 3600.1], fps=10.0).read_bytes()


@pytest.mark.parametrize("clip", ["avi", "mkv_gap"])
def test_a_live_camera_whose_url_first_answers_a_clip_is_read_live(redis_url, tmp_path, clip):
    """The review's ended.py (a 1-second AVI: the camera's thread ended, its claim kept, the live stream
    never read again) and stalled.py (an MKV whose timestamps jump an hour: held "connected" with no frame
    for that hour): the clip is read as live, its end a reopening where it served the frames it stated (no
    source error), else a drop (one, reconnected from with backoff), and the live stream that follows is read,
    the camera's thread alive and "connected"."""
    connection = connect_redis(redis_url)
    metrics = Metrics()
    data = clip_bytes(tmp_path / "boot.avi") if clip == "avi" else gap_mkv(tmp_path / "boot.mkv")
    with clip_then_live(data, clips=1) as (url, answers):
        camera = CameraConfig(id="gate", source=url, sample_fps=5)
        node = IngestNode([camera], Settings.load({}, redis_url=redis_url), connection, connection, metrics, None)
        runner = threading.Thread(target=node.run, kwargs={"max_seconds": 30}, daemon=True)
        runner.start()
        try:
            wait_for(lambda: node.summary.ingested["gate"] >= 10, 15, "10 frames of the live stream queued")
            state = json.loads(connection.hget(CAMERA_STATE_KEY, "gate") or b"{}")
            assert node.camera_threads["gate"].is_alive() and state["state"] == "connected", state
        finally:
            node.stop.set()
            runner.join(15)
    assert answers[0] == "clip" and "live" in answers, answers
    errors = metrics.registry.get_sample_value("alpr_source_errors_total", {"camera": "gate"})
    reopens = metrics.registry.get_sample_value("alpr_source_reopens_total", {"camera": "gate"})
    assert (errors, reopens) in ((0, 1), (1, 0)), (errors, reopens)  # a clip served whole as stated: reopened


def test_a_live_cameras_url_that_answers_only_clips_is_read_live_and_reconnected_never_ended(tmp_path, caplog):
    """Every answer a clip: each read as a live stream (no frame count, dated by arrival), reopened at its end
    (closed by the camera after its frames: no source error), and said once at WARNING that its URL states
    frames as recorded video does (an http:// recording left at the cameras file's defaults, footage before,
    said nothing): "connected" throughout, never "ended" (the camera keeps being read live; taken for
    footage, its thread ended for good: a review)."""
    caplog.set_level(logging.DEBUG, logger="ingest.reconnect")
    stop, states, passes = threading.Event(), [], []

    def read_pass(source: FrameSource) -> None:
        assert source.is_live and getattr(source, "frame_count", None) == 0 and source.footage_key() is None
        passes.append(sum(1 for _ in source.frames()))
        if len(passes) == 3:
            stop.set()

    with clip_then_live(clip_bytes(tmp_path / "boot.avi"), clips=None) as (url, answers):
        keeper = SourceKeeper(url, 5.0, "gate", stop, backoff=Backoff(0.01, 0.05), live=True,
                              on_state=lambda state, errors: states.append(state))  # fmt: skip
        assert keeper.run(read_pass) == "ended" and stop.is_set()
    assert len(passes) == 3 and keeper.reopens == 2 and keeper.errors == 0 and all(f >= 1 for f in passes), passes
    assert states == ["connected", "ended"], states
    assert len(answers) == 3 and set(answers) == {"clip"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    recorded = [w for w in warnings if "declare `footage: true`" in w]  # an http:// recording left at the
    assert len(recorded) == 1 and len(warnings) == 1, warnings  # defaults: said once (a review)
    assert "camera gate: its URL states 10 frames, as recorded video does" in recorded[0], recorded


def test_footage_served_over_http_is_still_read_as_footage_by_alpr_run_and_a_declared_camera(tmp_path):
    """Without `live` (`alpr run URL`, a camera declared `footage: true`) a clip over http:// is footage:
    read once, and it ends."""
    stop, passes = threading.Event(), []

    def read_pass(source: FrameSource) -> None:
        assert not source.is_live
        passes.append(sum(1 for _ in source.frames()))

    with clip_then_live(clip_bytes(tmp_path / "clip.avi"), clips=None) as (url, _):
        assert SourceKeeper(url, 10.0, "clip", stop, backoff=Backoff(0.01, 0.05)).run(read_pass) == "ended"
    assert passes == [10]


@pytest.mark.parametrize(("rtsp", "fields"), [(True, {"loop": True}), (False, {"realtime": False})])
def test_footage_settings_on_a_stream_url_imply_footage_with_a_warning(rtsp, fields, caplog):
    """A rolling upgrade: a cameras file of the release before (no `footage`, which that release refuses)
    with `loop: true` or `realtime: false` on a stream URL stopped an upgraded node (a review). It is
    footage, with a WARNING (deprecated); `footage: false` with them is still refused."""
    from common.config import Settings
    from common.errors import ConfigError
    from ingest.cameras import parse_cameras

    caplog.set_level(logging.WARNING, logger="ingest.cameras")
    source = "rtsp://10.0.0.5/stream" if rtsp else "http://10.0.0.40/export.mp4"
    settings = Settings.load({})
    entry = {"id": "gate", "source": source, **fields}
    (camera,) = parse_cameras({"cameras": [entry]}, settings)
    assert camera.footage and camera.loop == fields.get("loop", False)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and "camera 'gate':" in said[0] and "deprecated: add `footage: true`" in said[0], said
    assert "10.0.0" not in said[0]  # (the source is not quoted: a URL may hold a password)
    caplog.clear()
    assert parse_cameras({"cameras": [entry | {"footage": True}]}, settings)[0].footage
    assert not caplog.records  # declared: nothing to say
    with pytest.raises(ConfigError, match="is for footage: a stream URL is a live camera unless"):
        parse_cameras({"cameras": [entry | {"footage": False}]}, settings)
    assert not CameraConfig(id="gate", source=source).footage  # a live camera by default
    assert not CameraConfig(id="gate", source="/srv/video/depot.mp4", loop=True).footage  # a file: as it says


@contextmanager
def fmp4_camera() -> Iterator[tuple[str, list[int]]]:
    """A live fragmented-MP4 camera (go2rtc's /api/stream.mp4): each connection its init segment, then a
    fragment every 0.1 s (10 frames/s, a minute at most); yields its URL and the fragments each connection
    was sent so far."""
    sent: list[int] = []

    class Camera(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            sent.append(0)
            connection = len(sent) - 1
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.end_headers()
            with suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(init_segment(160, 120))
                for index in range(600):
                    self.wfile.write(fragment(index + 1, index * 100, 100, frame_image(index)))
                    self.wfile.flush()
                    sent[connection] += 1
                    time.sleep(0.1)

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Camera) as base:
        yield f"{base}/api/stream.mp4?src=gate", sent


@contextmanager
def snapshot_camera() -> Iterator[tuple[str, list[int]]]:
    """A snapshot camera: each GET of /snapshot.jpg answers one fresh JPEG of a busy 320x240 scene (FFmpeg's
    image2 states 1 frame; for a JPEG of a few hundred bytes, a flat grey, it states none); yields its URL
    and the snapshots served."""
    served: list[int] = []
    scene = np.random.default_rng(7).integers(0, 256, (240, 320, 3), np.uint8)

    class Camera(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            jpeg = cv2.imencode(".jpg", np.roll(scene, len(served), axis=1))[1].tobytes()
            served.append(len(jpeg))
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(jpeg)))
            self.end_headers()
            with suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(jpeg)

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Camera) as base:
        yield f"{base}/snapshot.jpg", served


def run_node(
    redis_url: str, url: str, enough: int, seconds: float, fps: float = 5.0
) -> tuple[IngestNode, Metrics, set[str]]:
    """The real node on a private Redis sampling one live camera at `url` (`fps` frames/s) until it has queued
    `enough` frames (within `seconds`); the camera's states (`alpr status`'s; "ended" too where its
    alpr_camera_ended was 1) seen every 50 ms meanwhile, its thread alive throughout."""
    connection = connect_redis(redis_url)
    metrics = Metrics()
    camera = CameraConfig(id="gate", source=url, sample_fps=fps)
    node = IngestNode([camera], Settings.load({}, redis_url=redis_url), connection, connection, metrics, None)
    runner = threading.Thread(target=node.run, kwargs={"max_seconds": seconds + 10}, daemon=True)
    states: set[str] = set()
    runner.start()
    deadline = time.monotonic() + seconds
    try:
        while node.summary.ingested["gate"] < enough:
            assert time.monotonic() < deadline, f"{enough} frames of the live camera not queued in {seconds} s"
            time.sleep(0.05)
            states.add(json.loads(connection.hget(CAMERA_STATE_KEY, "gate") or b'{"state": "none"}')["state"])
            if metrics.registry.get_sample_value("alpr_camera_ended", {"camera": "gate"}):
                states.add("ended")
            assert node.camera_threads["gate"].is_alive(), states
    finally:
        node.stop.set()
        runner.join(15)
    return node, metrics, states


def test_a_live_fragmented_mp4_camera_is_read_live(redis_url):
    """go2rtc's /api/stream.mp4, an NVR's restream: FFmpeg states a frame count for it (41 here), and a
    live camera's open that stated one was refused, every time: no frame, for ever (a review). Read live:
    its frames queued at the sample rate, by arrival, one connection, "connected", no source error."""
    with fmp4_camera() as (url, sent):
        node, metrics, states = run_node(redis_url, url, enough=10, seconds=20)
    assert node.summary.ingested["gate"] >= 10 and len(sent) == 1, sent
    assert node.summary.ingested["gate"] <= sent[0] // 2 + 3  # 5 of its 10 frames/s: sampled by arrival
    assert "connected" in states and not states & {"ended", "failed"}, states
    assert metrics.registry.get_sample_value("alpr_source_errors_total", {"camera": "gate"}) in (None, 0.0)


def test_a_snapshot_camera_is_sampled_at_its_rate_never_counted_failing(redis_url):
    """A /snapshot.jpg camera: FFmpeg's image2 states 1 frame; read live, a frame each connection. Each
    connection's end was a drop (a review): a source error each (7 a minute: AlprCameraFailing, 3 in 10
    minutes, paged a healthy camera), "reconnecting" between frames, and the growing backoff (1 s doubling to
    30 s) sampled it at 7 frames a minute for its 120. Now each end is the camera's close after its frame:
    reopened a sample interval after the last open, no source error, "connected" throughout, counted in
    alpr_source_reopens_total: one connection a frame, not polled faster than once a second (REOPEN_INTERVAL_S:
    each open starts a capture process; at 5 frames/s a snapshot camera took 1.4 cores, a review)."""
    with snapshot_camera() as (url, served):
        started = time.monotonic()
        node, metrics, states = run_node(redis_url, url, enough=6, seconds=15, fps=2.0)
        took = time.monotonic() - started
    assert node.summary.ingested["gate"] >= 6 and len(served) <= node.summary.ingested["gate"] + 1, served
    assert took >= 4.5, took  # 6 frames a second apart at the soonest (at 2 frames/s: 2.5 s)
    assert "connected" in states and not states & {"reconnecting", "ended", "failed"}, states
    assert metrics.registry.get_sample_value("alpr_source_errors_total", {"camera": "gate"}) == 0
    assert metrics.registry.get_sample_value("alpr_source_reopens_total", {"camera": "gate"}) >= 5


def test_a_live_stream_failing_after_each_frame_is_a_failing_camera(redis_url):
    """An MJPEG camera (a live stream: its answer states no frame count) that ends every connection after one
    frame, as one failing or crashing does, is no snapshot camera: each end is a source error, reconnected from
    with backoff, "reconnecting". Taken for the camera's own close, it read "connected" with 0 errors and no
    alert while it gave 8% of its frames and took a core (a review)."""
    opens: list[float] = []
    jpeg = cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 256, (240, 320, 3), np.uint8))[1].tobytes()

    class Camera(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            opens.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            with suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                self.wfile.write(jpeg + b"\r\n")

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Camera) as base:
        node, metrics, states = run_node(redis_url, f"{base}/video.mjpg", enough=3, seconds=20)
    errors = metrics.registry.get_sample_value("alpr_source_errors_total", {"camera": "gate"})
    assert errors is not None and errors >= 2 and "reconnecting" in states, (errors, states)
    assert metrics.registry.get_sample_value("alpr_source_reopens_total", {"camera": "gate"}) == 0
    assert len(opens) <= 5, opens  # backing off (1 s doubling), not opened again at each frame

"""A live camera stays live: an ingest node's stream-URL camera (not declared `footage: true`) whose URL
answers a clip (a video stating its frames: a camera's boot clip, an answer not the camera's) counts a source
error and reconnects with backoff, never taken for footage that ends (a review: the camera's thread ended
for good, its claim kept, its live stream never read again, nothing counted). Real HTTP servers, real
capture processes, a private Redis."""

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
    for that hour): the clip is a source error (counted, reconnected from with backoff), and the live
    stream that follows is read, the camera's thread alive and "connected"."""
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
    assert metrics.registry.get_sample_value("alpr_source_errors_total", {"camera": "gate"}) == 1


def test_a_live_cameras_url_that_answers_only_clips_reconnects_with_backoff_never_ends(tmp_path, caplog):
    """Every answer a clip: each open a source error, said once at WARNING, "reconnecting", no pass read."""
    caplog.set_level(logging.DEBUG, logger="ingest.reconnect")
    stop, states, passes = threading.Event(), [], []

    def counted() -> None:
        if keeper.errors >= 3:
            stop.set()

    with clip_then_live(clip_bytes(tmp_path / "boot.avi"), clips=None) as (url, answers):
        keeper = SourceKeeper(url, 5.0, "gate", stop, backoff=Backoff(0.01, 0.05), live=True, on_error=counted,
                              on_state=lambda state, errors: states.append(state))  # fmt: skip
        keeper.run(lambda source: passes.append(source))
    assert passes == [] and keeper.errors == 3 and set(states) == {"reconnecting"}, (passes, states)
    assert len(answers) >= 3 and set(answers) == {"clip"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "answered with a video stating 10 frames, not a live stream" in warnings[0]


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
def test_footage_settings_on_a_stream_url_need_it_declared_footage(rtsp, fields):
    from pydantic import ValidationError

    source = "rtsp://10.0.0.5/stream" if rtsp else "http://10.0.0.40/export.mp4"
    with pytest.raises(ValidationError, match="is for footage: a stream URL is a live camera unless declared"):
        CameraConfig(id="gate", source=source, **fields)
    assert CameraConfig(id="gate", source=source, footage=True, **fields).footage
    assert not CameraConfig(id="gate", source=source).footage  # a live camera by default

"""Footage whose pass is cut short (ingest/reconnect.py): a video served over http:// whose connection
drops, a video file whose reader process is killed mid-file. Each is read on from the frame reached, with
backoff, no frame read twice; one that gets no further pass after pass is given up, "failed", at ERROR,
without blaming the file. A review found the first read again from its start every ~1.7 s for ever (the
backoff reset at each open), each pass queued as new footage, and the second "ended", its rest unread.
Real parts: a real HTTP server, a real capture process killed by SIGKILL, as the OOM killer kills it."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from common import defaults
from common.backoff import Backoff
from ingest.frame_source import FrameSource
from ingest.reconnect import SourceKeeper
from ingest.video_source import VideoSource
from tests.helpers import http_server


def write_avi(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (64, 48))
    for index in range(frames):
        writer.write(np.full((48, 64, 3), (5 * index) % 250, np.uint8))
    writer.release()
    return path


@contextmanager
def cut_server(data: bytes, requests: list[int]) -> Iterator[str]:
    """A server of `data` (no ranges) whose every connection drops halfway: its base URL."""

    class Cut(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args: object) -> None: ...

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            requests.append(1)
            self.send_response(200)
            self.send_header("Content-Type", "video/x-msvideo")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data[: len(data) // 2])  # the connection drops halfway, every time

    with http_server(Cut) as url:
        yield url


def kill_reader(source: FrameSource) -> None:
    """SIGKILL the source's capture process, as the OOM killer does."""
    assert isinstance(source, VideoSource)
    os.kill(source.capture._process.pid, signal.SIGKILL)  # noqa: SLF001 - the real child, killed for real


def test_footage_over_http_cut_short_at_the_same_place_backs_off_and_is_given_up(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="ingest.reconnect")
    data, requests = write_avi(tmp_path / "clip.avi", 40).read_bytes(), []
    stop, states, passes = threading.Event(), [], []
    read: list[int] = []

    def read_pass(source: FrameSource) -> None:
        passes.append([frame.index for frame in source.frames()])
        read.extend(passes[-1])
        if len(passes) == 10:  # (the old code read it again for ever)
            stop.set()

    with cut_server(data, requests) as base:
        keeper = SourceKeeper(f"{base}/clip.avi", 10.0, "cut", stop, backoff=Backoff(0.01, 10.0),
                              on_state=lambda state, errors: states.append((state, errors)))  # fmt: skip
        state = keeper.run(read_pass)
    assert 0 < len(passes[0]) < 40 and len(read) == len(set(read)), passes  # read on, never read twice
    assert all(later == [] for later in passes[1:]), passes  # each later pass got no further
    assert state == "failed" and len(passes) == 1 + defaults.FOOTAGE_STALLED_PASSES, (state, passes)
    assert keeper.errors == len(passes) and states[-1] == ("failed", len(passes)) and keeper.passes == 0
    assert keeper.backoff.failures == len(passes) - 1  # the wait doubled each time: no reset at an open
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "ended before its stated length" in errors[0] and "not retried" in errors[0], errors
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].endswith("; read on from there with backoff"), warnings


def test_a_files_reader_killed_mid_file_is_read_on_from_there_not_taken_for_its_end(tmp_path, caplog):
    clip = write_avi(tmp_path / "clip.avi", 100)
    states: list[str] = []
    passes: list[list[int]] = []

    def read_pass(source: FrameSource) -> None:
        passes.append([])
        for frame in source.frames():
            passes[-1].append(frame.index)
            if len(passes) == 1 and frame.index == 10:  # the first pass: its reader killed at frame 10
                kill_reader(source)

    keeper = SourceKeeper(str(clip), 10.0, "rec", threading.Event(), on_state=lambda s, e: states.append(s),
                          backoff=Backoff(0.01, 1.0))  # fmt: skip
    assert keeper.run(read_pass) == "ended"
    assert passes == [list(range(11)), list(range(11, 100))], passes  # the rest read on, nothing twice
    assert states == ["connected", "reconnecting", "connected", "ended"] and keeper.errors == 1
    assert keeper.passes == 0 and keeper.backoff.failures == 0  # one pass, read to its end
    assert "truncated" not in caplog.text and "its reader stopped" in caplog.text


def test_a_files_reader_killed_at_the_same_frame_each_time_fails_the_camera_not_blaming_the_file(tmp_path, caplog):
    clip = write_avi(tmp_path / "clip.avi", 60)
    states: list[str] = []
    passes: list[list[int]] = []

    def read_pass(source: FrameSource) -> None:  # killed at frame 20, then at each pass before getting there
        passes.append([])
        if len(passes) > 1:
            kill_reader(source)
        for frame in source.frames():
            passes[-1].append(frame.index)
            if frame.index == 20:
                kill_reader(source)

    keeper = SourceKeeper(str(clip), 10.0, "rec", threading.Event(), on_state=lambda s, e: states.append(s),
                          backoff=Backoff(0.01, 1.0))  # fmt: skip
    assert keeper.run(read_pass) == "failed"
    assert passes == [list(range(21))] + [[]] * defaults.FOOTAGE_STALLED_PASSES, passes
    assert states[-1] == "failed" and keeper.errors == 1 + defaults.FOOTAGE_STALLED_PASSES
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "its reader stopped" in errors[0] and "past frame 21;" in errors[0], errors
    assert "truncated" not in caplog.text


def capture_children() -> list[int]:
    """This process's capture children (ingest/capture_child.py), by their command lines."""
    pids = []
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in children.read_text().split():
            with suppress(OSError):
                if b"ingest.capture_child" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    pids.append(int(pid))
    return pids


def node_reading_two_seconds(node: Any) -> tuple[threading.Thread, int]:
    """`node` run on a thread of its own until its one camera's reader has played two seconds of its file: the
    thread and the reader's pid (another test's reader, still ending, is not this node's)."""
    from tests.helpers import wait_for

    before = set(capture_children())
    runner = threading.Thread(target=node.run, daemon=True)
    runner.start()
    wait_for(lambda: len(set(capture_children()) - before) == 1, 20, "the camera's reader")
    threading.Event().wait(2.0)  # two seconds of the file played
    (reader,) = set(capture_children()) - before
    return runner, reader


def test_a_node_whose_file_reader_is_killed_mid_file_queues_every_frame_once_and_ends(redis_url, tmp_path):
    """The node's camera: a file played in real time, its reader killed two seconds in. Its every frame is
    queued once (the rest read on after the backoff, under the same pass's ids, played on from there: not
    held back by the time of the first frame left), the camera "ended" with one source error counted (it
    "ended" with none, half its frames never read)."""
    from rq.serializers import JSONSerializer

    from common.config import Settings
    from common.jobs import DetectJob, parse_job
    from common.metrics import Metrics
    from common.queues import CAMERA_STATE_KEY, StageJob, connect_redis, stage_queue
    from ingest.cameras import CameraConfig
    from ingest.node import IngestNode

    clip = write_avi(tmp_path / "clip.avi", 40)  # 4 s at 10 frames/s
    connection, metrics = connect_redis(redis_url), Metrics()
    camera = CameraConfig(id="rec", source=str(clip), sample_fps=10)
    node = IngestNode([camera], Settings.load({}, redis_url=redis_url), connection, connection, metrics, None)
    runner, reader = node_reading_two_seconds(node)
    try:
        os.kill(reader, signal.SIGKILL)
        runner.join(30)
    finally:  # a node left running logged into the next tests' records (a full run: another test failed)
        node.stop.set()
        runner.join(30)
    assert not runner.is_alive(), "the node did not end"
    frames = []
    for job_id in stage_queue(connection, "detect").get_job_ids():
        job = StageJob.fetch(job_id, connection=connection, serializer=JSONSerializer)
        frames += parse_job(job.args[0], DetectJob).frames
    assert [frame.frame_index for frame in frames] == list(range(40)), [frame.frame_index for frame in frames]
    assert len({frame.frame_id for frame in frames}) == 40
    times = [frame.captured_at_s for frame in frames]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    # the backoff's 1 s, the reopening: ~1.6 s, more on a busy machine (played on from the frame left as from its
    # start: ~3.6 s and more)
    assert min(gaps) > 0 and max(gaps) < 3.2, gaps
    assert metrics.registry.get_sample_value("alpr_source_errors_total", {"camera": "rec"}) == 1
    assert json.loads(connection.hget(CAMERA_STATE_KEY, "rec") or b"{}").get("state") == "ended"

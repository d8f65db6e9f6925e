"""Footage cut short is read on from the frame reached only where it is the same footage
(ingest/reconnect.SourceKeeper.read_on, ingest/video_source.VideoSource.footage_key), and with the frames a
node before finished still passed over (ingest/camera_sampling.py). A review found a live camera served
over http:// with a stated size (taken for footage) skip its first frames at every reconnection, new
frames dropped unrecorded, and be failed for good after 3 connections; and a restarted node whose reader
was killed queue again the frames the node before had finished. Real parts: a real HTTP server, real
capture processes killed by SIGKILL, real Redis and Postgres."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import cv2
import numpy as np
import psycopg

from common.backoff import Backoff
from ingest.frame_source import FrameSource
from ingest.reconnect import SourceKeeper
from ingest.video_source import VideoSource
from tests.helpers import http_server
from tests.ingest.test_footage_cut_short import capture_children, write_avi


def flat_avi(path: Path, frames: int, level: int) -> bytes:
    """An AVI of `frames` frames, each of one grey `level`: a connection's live frames."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (64, 48))
    for _ in range(frames):
        writer.write(np.full((48, 64, 3), level, np.uint8))
    writer.release()
    return path.read_bytes()


@contextmanager
def live_camera(tmp_path: Path, connections: list[int]) -> Iterator[str]:
    """A live camera served over http://: each connection states the same size (FFmpeg guesses a frame
    count from it: taken for footage), serves new frames (a grey level of its own) and is closed after
    the same quarter of it. Its base URL."""

    class Live(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args: object) -> None: ...

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            connections.append(1)
            data = flat_avi(tmp_path / f"c{len(connections)}.avi", 200, 40 * len(connections) % 250)
            self.send_response(200)
            self.send_header("Content-Type", "video/x-msvideo")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data[: len(data) // 4])

    with http_server(Live) as url:
        yield url


def test_a_live_camera_taken_for_footage_is_read_from_its_start_at_each_connection(tmp_path):
    connections: list[int] = []
    stop, states, passes = threading.Event(), [], []

    def read_pass(source: FrameSource) -> None:
        assert not source.is_live  # (footage, by its stated length: what the review's camera was taken for)
        passes.append([(frame.index, int(frame.image[0, 0, 0])) for frame in source.frames()])
        if len(passes) == 6:
            stop.set()

    with live_camera(tmp_path, connections) as base:
        keeper = SourceKeeper(f"{base}/cam.avi", 10.0, "livecam", stop, backoff=Backoff(0.01, 0.05),
                              on_state=lambda state, errors: states.append(state))  # fmt: skip
        state = keeper.run(read_pass)
    assert state == "ended" and "failed" not in states, states  # (failed after 3 connections)
    assert len(passes) == 6 == len(connections), (len(passes), len(connections))
    for number, frames in enumerate(passes, 1):  # each connection's frames, from its first: none skipped
        assert 0 < len(frames) < 200 and [index for index, _ in frames] == list(range(len(frames))), (number, frames)
        assert {level for _, level in frames} <= set(range(40 * number % 250 - 3, 40 * number % 250 + 4)), frames
    assert keeper.passes == 5 and keeper.stalled == 0  # each a new pass: new frame ids, no stall counted


def test_the_same_footage_reopened_is_read_on_and_its_first_frame_sampled_once(tmp_path):
    """A file's footage key reads its first frame ahead: sampled once, with its pixels, as before."""
    clip = write_avi(tmp_path / "clip.avi", 30)
    source = VideoSource(str(clip), 10.0)
    key = source.footage_key()
    assert key is not None and key[0] == 30 and key[2] and source.footage_key() == key
    frames = list(source.frames())
    assert [frame.index for frame in frames] == list(range(30))
    unpeeked = list(VideoSource(str(clip), 10.0).frames())  # (no key read ahead)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, unpeeked, strict=True))
    flat_avi(tmp_path / "other.avi", 30, 200)
    same, other = VideoSource(str(clip), 10.0), VideoSource(str(tmp_path / "other.avi"), 10.0)
    try:
        assert same.footage_key() == key  # the same footage: the same key
        assert other.footage_key() not in (key, None)  # (the same length, other frames)
    finally:
        same.capture.release()
        other.capture.release()


def test_a_restarted_nodes_finished_frames_stay_passed_over_when_its_reader_is_killed(
    redis_url, postgres_url, tmp_path
):
    """Recorded footage resumed by a restarted node (frames 0-9 and 40-59 finished by the node before),
    whose reader is killed while it waits for room: the pass read on from the frame reached queued 40-59
    again (the reopened source was not told the finished frames)."""
    from alpr.cli import main
    from common.config import Settings
    from common.db import open_pool
    from common.frame_log import FrameLog
    from common.metrics import Metrics
    from common.queues import connect_redis, stage_queue
    from ingest.cameras import CameraConfig
    from ingest.ledger import FrameLedger
    from ingest.node import IngestNode
    from tests.ingest.helpers import take_queued_frames

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    clip = write_avi(tmp_path / "clip.avi", 60)
    camera = CameraConfig(id="cam", source=str(clip), sample_fps=10, realtime=False)
    connection = connect_redis(redis_url)

    def node(depth: int) -> IngestNode:
        metrics = Metrics()
        ledger = FrameLedger(lambda: FrameLog(open_pool(postgres_url, wait_s=3), patience_s=0), metrics, capacity=100)
        settings = Settings.load({}, redis_url=redis_url, max_queue_depth=depth, frames_per_job=2)
        return IngestNode([camera], settings, connection, connection, metrics, ledger)

    node(1000).run(max_seconds=20)  # the first node: all 60 frames queued, pending
    with psycopg.connect(postgres_url) as db:  # the chain finished 0-9 and 40-59 (jobs finish out of order)
        db.execute("UPDATE frames SET outcome = 'done' WHERE frame_index < 10 OR frame_index >= 40")
    connection.flushall()

    others = set(capture_children())  # (readers of sources not yet collected, if any)
    second = node(4)  # recorded footage waits for room: a quarter of 4 jobs
    runner = threading.Thread(target=second.run, kwargs={"max_seconds": 40}, daemon=True)
    runner.start()
    queue = stage_queue(connection, "detect")
    deadline = time.monotonic() + 20
    while len(queue) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    (reader,) = set(capture_children()) - others
    os.kill(reader, signal.SIGKILL)  # the OOM killer, while the footage waits for room
    seen: list[int] = []
    while runner.is_alive():
        seen += [frame.frame_index for frame in take_queued_frames(connection)]
        time.sleep(0.05)
    seen += [frame.frame_index for frame in take_queued_frames(connection)]
    assert not sorted(i for i in seen if i < 10 or i >= 40), f"frames the last node finished queued again: {seen}"
    assert set(seen) == set(range(10, 40)), sorted(set(seen))  # the rest, read on: every one queued

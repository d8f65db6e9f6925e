"""IsolatedCapture (ingest/capture_process.py): every video and camera stream is decoded in a process of
its own. A camera that declares a stream part of gigabytes is stopped at its reader's memory bound (the
node's memory untouched); a reader that crashes or hangs ends its capture alone; the camera's URL never
reaches a command line; the frames are OpenCV's own."""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import pytest

from common import defaults
from common.backoff import Backoff
from common.config import Settings
from common.errors import ConfigError
from ingest.capture_process import IsolatedCapture, resident_bytes
from ingest.reconnect import SourceKeeper
from ingest.sources import open_source
from ingest.video_source import VideoSource
from tests.helpers import mjpeg_camera, wait_for

JPEG = cv2.imencode(".jpg", np.full((240, 320, 3), 128, np.uint8))[1].tobytes()


@contextmanager
def camera_declaring_a_huge_part(frames: int = 5, megabytes: int = 600) -> Iterator[str]:
    """An MJPEG camera that sends `frames` good frames, then a part declaring 4 GB and `megabytes` of it."""

    def huge_part(stream: BinaryIO) -> None:
        stream.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % (4 << 30))
        chunk = bytes(1 << 20)
        for _ in range(megabytes):
            stream.write(chunk)

    with mjpeg_camera([JPEG], fps=25, per_connection=frames, then=huge_part) as url:
        yield url


@contextmanager
def peak_growth() -> Iterator[list[int]]:
    """This process's peak resident memory above its start while the block runs (bytes), in a list."""
    start, peak, done = resident_bytes(os.getpid()) or 0, [0], threading.Event()

    def watch() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], (resident_bytes(os.getpid()) or 0) - start)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield peak
    finally:
        done.set()
        watcher.join()


def test_a_camera_declaring_a_part_of_gigabytes_is_stopped_at_its_readers_bound_not_the_nodes():
    """FFmpeg buffers a declared part whatever its length: read in the node's process, this camera took it
    past 1.3 GB (measured: 1342 MB for 1.2 GB sent). Its reader is now stopped at its bound, the frames
    before it kept, and the stream reads as ended, the reason said."""
    with camera_declaring_a_huge_part() as url, peak_growth() as growth:
        source = open_source(url, sample_fps=100.0, memory_mb=200)
        frames = list(source.frames())
    assert len(frames) >= 3 and frames[0].image.shape == (240, 320, 3)  # those before the part (one may be probed)
    assert source.ended_because == "its reader went past its memory bound of 200 MB and was stopped"
    assert any("memory bound of 200 MB" in failure for failure in source.failures)
    assert growth[0] < 100 * 1024 * 1024


def test_a_stream_whose_reader_is_stopped_is_reconnected_and_the_reason_logged(caplog):
    caplog.set_level(logging.INFO, logger="ingest.reconnect")
    stop, states = threading.Event(), []

    def on_state(state: str, errors: int) -> None:
        states.append(state)
        if state == "reconnecting":
            stop.set()

    with camera_declaring_a_huge_part() as url:
        keeper = SourceKeeper(url, 100.0, "gate", stop, on_state=on_state, backoff=Backoff(0.05, 0.1), memory_mb=200)
        keeper.run(lambda source: None if list(source.frames()) else None)
    assert states == ["connected", "reconnecting"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["camera gate: the stream ended (its reader went past its memory bound of 200 MB and was"
                        " stopped); reconnecting with backoff"]  # fmt: skip


def test_a_video_is_read_through_its_reader_process_as_opencv_reads_it(demo_clip):
    path = str(demo_clip[0])
    direct, isolated = cv2.VideoCapture(path, cv2.CAP_FFMPEG), IsolatedCapture(path)
    try:
        for prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS, cv2.CAP_PROP_FRAME_COUNT):
            assert isolated.get(prop) == direct.get(prop)
        for _ in range(12):
            assert isolated.grab() and direct.grab()
            assert isolated.get(cv2.CAP_PROP_POS_MSEC) == direct.get(cv2.CAP_PROP_POS_MSEC)
            (ok, image), (_, expected) = isolated.retrieve(), direct.retrieve()
            assert ok and image is not None and image.flags.writeable and np.array_equal(image, expected)
    finally:
        direct.release()
        isolated.release()
    assert isolated.ended_because is None and not isolated.isOpened() and isolated.grab() is False


def test_a_reader_that_crashes_ends_its_capture_alone(demo_clip):
    capture = IsolatedCapture(str(demo_clip[0]))
    assert capture.grab()
    os.kill(capture._process.pid, signal.SIGSEGV)  # as FFmpeg's crash on a malformed stream
    assert capture.grab() is False and capture.retrieve() == (False, None)
    assert capture.ended_because == "its reader process ended on signal SIGSEGV (FFmpeg crashed?)"
    capture.release()


@pytest.mark.parametrize(
    ("sent", "said"),
    [
        (signal.SIGTERM, "was stopped by SIGTERM (a stop of the node's process group"),
        (signal.SIGKILL, "was killed (SIGKILL: by the kernel's out-of-memory"),
    ],
)
def test_a_reader_stopped_with_its_process_group_is_not_said_to_have_crashed(demo_clip, sent, said):
    """systemd's stop (KillMode=control-group) reaches the readers with the node: each camera's end said
    "FFmpeg crashed?" on an ordinary stop (a review)."""
    capture = IsolatedCapture(str(demo_clip[0]))
    assert capture.grab()
    os.kill(capture._process.pid, sent)
    assert capture.grab() is False
    assert (
        capture.ended_because is not None and said in capture.ended_because and "crashed" not in capture.ended_because
    )
    capture.release()


def test_a_reader_that_stops_answering_is_stopped(demo_clip):
    """Opened within the default wait: the open's answer comes after the child's start (Python, cv2, FFmpeg's
    open), which took over 1 s on a loaded machine: opened with wait_s=1.0, the capture was ended before the
    test stopped its child (ProcessLookupError, 2 runs of 3). The grab then waits 1 s."""
    capture = IsolatedCapture(str(demo_clip[0]))
    assert capture.isOpened(), capture.ended_because
    capture.wait_s = 1.0
    os.kill(capture._process.pid, signal.SIGSTOP)  # as FFmpeg hung past its own timeouts
    started = time.monotonic()
    assert capture.grab() is False
    assert time.monotonic() - started < 3.0
    assert capture.ended_because == "its reader did not answer within 1 s and was stopped"
    assert capture._process.poll() is not None  # killed and reaped
    capture.release()


def test_the_camera_url_never_reaches_a_command_line_and_ctrl_c_is_the_nodes():
    with mjpeg_camera([JPEG], fps=25) as url:
        secret_url = url.replace("http://", "http://admin:Summer2024@")
        capture = IsolatedCapture(secret_url, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000])
        try:
            assert capture.isOpened()
            command_line = Path(f"/proc/{capture._process.pid}/cmdline").read_bytes()
            assert b"Summer2024" not in command_line and b"video.mjpg" not in command_line
            os.kill(capture._process.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
            assert capture.grab() and capture.retrieve()[0]
        finally:
            capture.release()


def test_a_reader_whose_node_is_gone_ends(demo_clip):
    capture = IsolatedCapture(str(demo_clip[0]))
    capture._channel.sock.close()  # the node killed: its end of the pipe closes
    wait_for(lambda: capture._process.poll() is not None, 10, "the reader to end")
    assert capture._process.returncode == 0


def test_a_videos_frames_reach_the_node_from_its_reader(demo_clip):
    source = open_source(str(demo_clip[0]), sample_fps=5.0)
    assert isinstance(source, VideoSource) and isinstance(source.capture, IsolatedCapture)
    pid = source.capture._process.pid
    assert pid != os.getpid() and len(list(source.frames())) == source.expected_frames
    assert source.ended_because is None and source.capture._process.poll() is not None  # released: ended


def test_the_bound_is_the_operators_setting_and_an_unworkable_one_is_refused():
    assert Settings.load({}).capture_memory_mb == 1024
    assert Settings.load({"ALPR_CAPTURE_MEMORY_MB": "4096"}).capture_memory_mb == 4096  # an 8K camera's decoding
    with pytest.raises(ConfigError, match="CAPTURE_MEMORY_MB"):
        Settings.load({"ALPR_CAPTURE_MEMORY_MB": "64"})


def test_a_readers_frame_memory_cannot_be_shrunk_from_under_the_nodes_copy(demo_clip):
    """The pixels are left in a memory both processes map; a child that shrank it while the node copied a
    frame would end the node on SIGBUS: it is sealed against shrinking before the child starts."""
    capture = IsolatedCapture(str(demo_clip[0]))
    try:
        ok, image = capture.read()
        assert ok and image is not None and image.shape == (720, 1280, 3)
        with pytest.raises(PermissionError):
            os.ftruncate(capture._frames.fd, 0)
        image[:] = 0  # the node's own copy, not the shared memory the next frame is written to
        assert capture.read()[1].any()  # type: ignore[union-attr]
    finally:
        capture.release()


class HostileCapture(IsolatedCapture):
    child_module = "tests.ingest.hostile_capture_child"


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("half-line", "did not answer within 2 s"), ("deep", "not a message of ours (RecursionError)"),
     ("wrong-types", "an answer no reader of ours gives"), ("endless-line", "a message longer than 65536 bytes"),
     ("bigger-frame", "a frame larger than it left"),
     ("failed", "its reader failed (MemoryError: \\x1b[31mred)")],
)  # fmt: skip
def test_a_child_a_hostile_stream_took_over_holds_no_thread_nor_memory_of_the_node(mode, reason, monkeypatch):
    """Half a message held the reader's thread for ever (past its deadline, out of the node's stop); an
    answer nested 4,000 deep or of the wrong types raised out of grab() and failed the camera for good."""
    monkeypatch.setenv("HOSTILE_MODE", mode)
    started = time.monotonic()
    with peak_growth() as growth:
        capture = HostileCapture("/videos/any.mp4", wait_s=2.0)
        ok, image = capture.read() if capture.isOpened() else (False, None)
    assert not ok and image is None and not capture.isOpened()
    assert capture.ended_because is not None and reason in capture.ended_because
    assert time.monotonic() - started < 6.0 and growth[0] < 50 * 1024 * 1024
    assert capture._process.poll() is not None  # stopped and reaped
    capture.release()


def test_a_stream_whose_child_answers_wrongly_is_reconnected_not_failed_for_good(monkeypatch, caplog):
    monkeypatch.setenv("HOSTILE_MODE", "wrong-types")
    monkeypatch.setattr("ingest.video_source.IsolatedCapture", HostileCapture)
    stop, states = threading.Event(), []

    def on_state(state: str, errors: int) -> None:
        states.append(state)
        stop.set()

    keeper = SourceKeeper("http://127.0.0.1:9/video.mjpg", 5.0, "gate", stop, on_state=on_state)
    assert keeper.run(lambda source: None) == "ended" and states == ["reconnecting"]
    assert "an answer no reader of ours gives" in caplog.text


def test_a_folder_holding_an_ingest_module_runs_nothing_in_the_child(demo_clip, tmp_path, monkeypatch):
    """`-m` put the working directory first on the child's path: `alpr run` started in a folder holding an
    ingest.py ran that file in the child."""
    planted = tmp_path / "planted"
    (tmp_path / "ingest.py").write_text(f"open({str(planted)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    capture = IsolatedCapture(str(demo_clip[0]))
    try:
        assert capture.isOpened() and capture.read()[0]
    finally:
        capture.release()
    assert not planted.exists()


def test_a_child_ends_at_once_with_its_node_killed(tmp_path):
    """A node killed with -9 while FFmpeg waited on a silent camera left its child 11 s; one whose FFmpeg
    hung, for ever. The child now asks the kernel to end it with its node's thread."""
    with hung_camera() as url:
        node = subprocess.Popen(
            [sys.executable, "-c", "import sys, time; from ingest.capture_process import IsolatedCapture;"
             f" c = IsolatedCapture({url!r}, [], wait_s=600); print(c._process.pid, flush=True); time.sleep(600)"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_for(lambda: child_of(node.pid) is not None, 20, "the node's capture child")
        child = child_of(node.pid)
        node.kill()
        node.wait()
        wait_for(lambda: not Path(f"/proc/{child}").exists() or is_zombie(child), 5, "the child to end")


def test_the_decoder_runs_the_set_threads_not_one_a_core(demo_clip, monkeypatch):
    monkeypatch.setattr(defaults, "CAPTURE_DECODER_THREADS", 1)
    capture = IsolatedCapture(str(demo_clip[0]))
    try:
        assert capture.get(cv2.CAP_PROP_N_THREADS) == 1
    finally:
        capture.release()
    given = IsolatedCapture(str(demo_clip[0]), [cv2.CAP_PROP_N_THREADS, 2])  # a caller's own count stands
    try:
        assert given.get(cv2.CAP_PROP_N_THREADS) == 2
    finally:
        given.release()


@contextmanager
def hung_camera() -> Iterator[str]:
    """A camera that accepts TCP and never answers; yields its URL."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/video.mjpg"
    finally:
        server.close()


def child_of(pid: int) -> int | None:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    text = children.read_text().split() if children.exists() else []
    return int(text[0]) if text else None


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_capture_opened_past_a_thousand_descriptors_is_read(demo_clip):
    """select() refuses a descriptor past 1023 ("filedescriptor out of range"): a node of some hundreds
    of cameras, each capture holding a socket and its frames' memory, would have had its later cameras'
    captures raise at their first call. They are waited on with poll()."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this host allows {hard} descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1030)]
    try:
        capture = IsolatedCapture(str(demo_clip[0]))
        try:
            assert capture._channel.sock.fileno() >= 1024
            ok, image = capture.read()
            assert ok and image is not None and image.shape == (720, 1280, 3)
        finally:
            capture.release()
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

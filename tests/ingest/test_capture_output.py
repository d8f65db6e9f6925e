"""What a capture's child prints (ingest/capture_output.py): FFmpeg's and OpenCV's lines reach the node's
stderr, never its stdout, and none shows its camera's password, path or Basic credentials, whatever log
level the operator asks of them; a child's last lines reach it however the child ends, a line is never
split, and a node whose stderr is closed still reads its cameras."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import InputError
from ingest.capture_output import MAX_FFMPEG_LOG_LEVEL, MAX_LINE_BYTES, Scrubber, ffmpeg_log_level, source_secrets
from ingest.capture_process import IsolatedCapture
from ingest.sources import open_source
from tests.ingest.helpers import snapshot_camera

REPO = Path(__file__).resolve().parents[2]

TOKEN = "Xq7Tk3Rv9Zp2Lm5W"
"""A path that is the camera's token (a UniFi camera's)."""

SHOWN_NOWHERE = ["Pa%3dss", "Pa%3Dss", "Pa=ss", TOKEN, base64.b64encode(b"admin:Pa=ss").decode(),
                 base64.b64encode(b"admin:Pa%3dss").decode()]  # fmt: skip


@pytest.mark.parametrize(
    "environment",
    [{}, {"OPENCV_FFMPEG_LOGLEVEL": "48", "OPENCV_LOG_LEVEL": "DEBUG"}],
    ids=["opencv-default", "operator-asks-for-debug"],
)
def test_no_credential_of_a_camera_reaches_the_nodes_output(environment, capfd, monkeypatch):
    """A snapshot camera refusing the password: FFmpeg printed its URL whole on the node's stderr (`Could
    find no file or sequence with path 'http://admin:Pa%3dss@…'`), and at the level an operator asks for
    to see why, its requests with their headers on the node's stdout (a review). What is left says why,
    on stderr, the camera named by its scheme, host and port."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with snapshot_camera(b"", lambda request: False) as (base, requests):
        url = base.replace("://", "://admin:Pa%3dss@") + f"/{TOKEN}/snap.jpg"
        with pytest.raises(InputError):  # (opened, or not: FFmpeg's image2 opens a URL it cannot fetch)
            list(open_source(url, sample_fps=2.0).frames())
    out, err = capfd.readouterr()
    assert requests  # the camera was asked
    for secret in SHOWN_NOWHERE:
        assert secret not in out + err
    assert not re.search(r"Pa\d{3}ss", out + err)
    assert out == ""
    if environment:  # the operator's diagnostics, the camera named as the node's lines name it
        assert "401 Unauthorized" in err and f"{base}/…" in err


URI = f"rtsp://admin:Pa%3dss@10.0.0.5:554/{TOKEN}?channel=1"


@pytest.mark.parametrize(
    ("line", "shown"),
    [(f"Could not open file : {URI}", "Could not open file : rtsp://10.0.0.5:554/…"),
     (f"DESCRIBE rtsp://10.0.0.5:554/{TOKEN}?channel=1 RTSP/1.0", "DESCRIBE rtsp://10.0.0.5:554/… RTSP/1.0"),
     (f"SETUP rtsp://10.0.0.5:554/{TOKEN}/trackID=1", "SETUP rtsp://10.0.0.5:554/…/trackID=1"),
     (f"Authorization: Basic {base64.b64encode(b'admin:Pa=ss').decode()}", "Authorization: Basic ***"),
     ("tried Pa=ss and Pa%3dss", "tried *** and ***"),
     ("another rtsp://root:other@10.0.0.6/s1", "another rtsp://root:***@10.0.0.6/s1"),
     ("\x1b[31mred\r", "\\x1b[31mred\\r"),
     ("HTTP error 401 Unauthorized", "HTTP error 401 Unauthorized")],
)  # fmt: skip
def test_a_line_shows_nothing_of_its_cameras_url_but_where_it_is(line, shown):
    assert Scrubber(source_secrets(URI)).line(line.encode("utf-8", "surrogateescape")) == shown


@pytest.mark.parametrize(
    ("environment", "level"),
    [({}, None), ({"OPENCV_FFMPEG_LOGLEVEL": "16"}, "16"), ({"OPENCV_FFMPEG_LOGLEVEL": "-8"}, "-8"),
     ({"OPENCV_FFMPEG_LOGLEVEL": "56"}, str(MAX_FFMPEG_LOG_LEVEL)), ({"OPENCV_FFMPEG_DEBUG": "1"}, "32"),
     ({"OPENCV_FFMPEG_LOGLEVEL": "verbose"}, "0")],
)  # fmt: skip
def test_ffmpegs_level_is_the_operators_up_to_its_info_lines(environment, level):
    """FFmpeg's verbose and debug lines show each request with its headers (an Authorization among them)."""
    assert ffmpeg_log_level(environment) == level


class PrintingCapture(IsolatedCapture):
    child_module = "tests.ingest.hostile_capture_child"  # the real child, its FFmpeg open printing


PASSWORD = "S3cretPassw0rd"
CAMERA = f"rtsp://admin:{PASSWORD}@10.0.0.5:554/live"


def test_a_childs_last_line_before_it_aborts_reaches_the_nodes_stderr_scrubbed(capfd, monkeypatch):
    """FFmpeg's av_assert0 prints its line and aborts: copied by a thread in the child, the line died with
    it (1 time in 20 it came through). Read by the node, it is there each time."""
    monkeypatch.setenv("HOSTILE_MODE", "print-and-abort")
    for _ in range(3):
        capture = PrintingCapture(CAMERA)
        assert not capture.isOpened() and capture.ended_because == (
            "its reader process ended on signal SIGABRT (FFmpeg crashed?)"
        )
        err = capfd.readouterr().err
        assert "Assertion n >= 0 failed at libavcodec/h264_slice.c:123 opening rtsp://10.0.0.5:554/…" in err
        assert PASSWORD not in err and "/live" not in err


def test_a_childs_traceback_reaches_the_nodes_stderr_scrubbed(capfd, monkeypatch):
    """A child's exception left it after its output was sent to /dev/null: its reader said only "exit code
    1" (a review: setrlimit's ValueError under a node's `ulimit -v`)."""
    monkeypatch.setenv("HOSTILE_MODE", "traceback")
    capture = PrintingCapture(CAMERA)
    assert not capture.isOpened() and capture.ended_because == "its reader process ended (exit code 1)"
    out, err = capfd.readouterr()
    assert "Traceback (most recent call last):" in err and "ingest/capture_child.py" in err
    assert "RuntimeError: could not open rtsp://10.0.0.5:554/…" in err
    assert PASSWORD not in out + err and "/live" not in out + err


def test_a_long_line_is_cut_once_never_split_its_secrets_masked(capfd, monkeypatch):
    """A line was written on in 16 KiB pieces, each scrubbed alone: a password across the mark was
    shown in two halves (a review), as was another camera's. A line is cut at MAX_LINE_BYTES, once (a
    line of a megabyte is one line), a secret that starts before the cut replaced whole, and the lines
    after it come through."""
    monkeypatch.setenv("HOSTILE_MODE", "long-lines")
    capture = PrintingCapture(CAMERA)
    assert not capture.isOpened() and capture.ended_because is None
    out, err = capfd.readouterr()
    lines = err.splitlines()
    assert out == "" and "after the long lines" in lines
    assert PASSWORD[:4] not in err and PASSWORD[-4:] not in err
    assert "root:ot" not in err and "herpass" not in err
    tried = [line for line in lines if "xxxx" in line]
    assert len(tried) == 1 and " tried ***" in tried[0]
    for mark in ("xxxx", "zzzz", "yyyy"):
        (line,) = (line for line in lines if mark in line)
        assert MAX_LINE_BYTES - 50 <= len(line.encode()) <= MAX_LINE_BYTES + 50


def test_a_node_whose_stderr_is_closed_still_reads_its_cameras(demo_clip):
    """`alpr run ... 2>&-`: the child's copying of its output failed on the closed descriptor (EBADF) and
    no capture opened. What the child prints is dropped; its frames are read."""
    script = (
        "from ingest.capture_process import IsolatedCapture\n"
        f"capture = IsolatedCapture({str(demo_clip[0])!r})\n"
        "ok, image = capture.read()\n"
        "print(capture.isOpened(), capture.ended_because, ok, image.shape if ok else None, flush=True)\n"
        "capture.release()\n"
    )
    done = subprocess.run(
        ["sh", "-c", 'exec "$0" -c "$1" 2>&-', sys.executable, script], cwd=REPO, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.stdout == "True None True (720, 1280, 3)\n"


def test_a_cameras_decoder_lines_name_the_camera_as_the_nodes_lines_do(capfd, monkeypatch):
    """A node of many cameras wrote FFmpeg's lines with nothing to tell whose they were (a review): opened by the
    camera's keeper, as the ingest node and `alpr run` open it, each begins with the camera's id."""
    import threading

    from ingest.reconnect import SourceKeeper

    monkeypatch.setenv("OPENCV_FFMPEG_LOGLEVEL", "48")  # the operator asks for FFmpeg's lines
    with snapshot_camera(b"", lambda request: False) as (base, _):
        url = base.replace("://", "://admin:Pa%3dss@") + f"/{TOKEN}/snap.jpg"
        keeper = SourceKeeper(url, 2.0, "gate-3", threading.Event())
        with pytest.raises(InputError):
            list(keeper.open().frames())
    lines = [line for line in capfd.readouterr().err.splitlines() if "401 Unauthorized" in line]
    assert lines and all(line.startswith("camera gate-3: ") for line in lines), lines

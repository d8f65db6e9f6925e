"""SourceKeeper (ingest/reconnect.py), the one reconnect loop of an ingest node's cameras and of `alpr run`
on a live stream: a real MJPEG camera over HTTP that closes each connection after its frames is reopened at
its sample rate without a source error; one gone silent, or giving no frame, is reopened with backoff, logged
once at WARNING when lost; footage is read once; an error of the reader's
own is let out as it is, not taken for a drop."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

import cv2
import numpy as np
import pytest

from common.backoff import Backoff
from ingest.frame_source import FrameSource
from ingest.reconnect import ReaderError, SourceKeeper
from tests.helpers import mjpeg_camera
from tests.ingest.helpers import snapshot_camera

QUICK = (0.05, 0.1)
"""A backoff of 50 ms doubling to 100 ms: the loop's logic, not its waits (defaults: 1 s to 30 s)."""


def jpegs(count: int) -> list[bytes]:
    return [cv2.imencode(".jpg", np.full((48, 64, 3), 20 * index, np.uint8))[1].tobytes() for index in range(count)]


def test_a_camera_closing_each_connection_after_its_frames_is_reopened_at_its_rate_without_an_error(caplog):
    """A camera that closes each connection after serving its frames (a snapshot URL: one JPEG a connection)
    was a drop at each close: a source error each (AlprCameraFailing paged a healthy camera), "reconnecting"
    between frames, and its frames sampled at the growing backoff (7 a minute at 2 frames/s). Each close is
    now a reopening: no error, "connected" throughout, counted apart; reopened a sample interval after the
    last open (not flat out); said at INFO once, at DEBUG after."""
    caplog.set_level(logging.DEBUG, logger="ingest.reconnect")
    stop, states, counted, reopened, connections = threading.Event(), [], [], [], []
    passes: list[int] = []

    def read_pass(source: FrameSource) -> None:
        assert source.is_live
        passes.append(sum(1 for _ in source.frames()))
        if len(passes) == 4:
            stop.set()  # as a node's stop, or `alpr run`'s signal, during the fourth connection

    scene = np.random.default_rng(7).integers(0, 256, (120, 160, 3), np.uint8)
    jpeg = cv2.imencode(".jpg", scene)[1].tobytes()
    timer = threading.Timer(30.0, stop.set)  # (however it goes, it ends)
    timer.start()
    with snapshot_camera(jpeg, lambda request: connections.append(time.monotonic()) or True) as (base, _):
        keeper = SourceKeeper(f"{base}/snapshot.jpg", 1.0, "gate", stop, on_error=lambda: counted.append(1),
                              on_state=lambda state, errors: states.append((state, errors)),
                              on_reopen=lambda: reopened.append(1), backoff=Backoff(*QUICK), live=True)  # fmt: skip
        try:
            assert keeper.run(read_pass) == "ended"
        finally:
            timer.cancel()
    assert len(connections) == 4 and passes == [1] * 4, passes
    assert keeper.errors == len(counted) == 0 and keeper.reopens == len(reopened) == 3 and keeper.passes == 0
    assert states == [("connected", 0), ("ended", 0)]  # never "reconnecting"
    # one open a sample interval (1 s) at most, not polled flat out (0.1 to 0.4 s an open): the requests'
    # arrivals, 3 intervals apart, each late by its open's own time (0.1 to 0.4 s, whose spread a gap has)
    assert connections[-1] - connections[0] >= 2.5, connections
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "ingest.reconnect"]
    assert not [message for level, message in lines if level in ("WARNING", "ERROR")], lines
    infos = [message for level, message in lines if level == "INFO"]
    assert len(infos) == 2 and infos[0].startswith("camera gate: connected to http://127.0.0.1:"), infos
    assert infos[1].startswith("camera gate: the camera closed the connection after 1 frames (") and infos[1].endswith(
        "): reopened, no error (a snapshot URL serves a frame a connection)"
    ), infos  # once: the later closes at DEBUG


@pytest.mark.parametrize("ending", ["silent", "no_frame"])
def test_a_stream_gone_silent_or_giving_no_frame_is_still_a_drop_reconnected_with_backoff(ending, caplog):
    """What is no close by the camera after its frames is still a source error, said at WARNING, reconnected
    from with backoff: a stream silent after its frames until the read timeout (10 s), a connection that gives
    no frame."""
    caplog.set_level(logging.DEBUG, logger="ingest.reconnect")
    stop, states = threading.Event(), []

    def silent(wfile) -> None:  # (a camera hung: the connection open, nothing sent)
        wfile.flush()
        stop.wait(15)

    frames, then = (3, silent) if ending == "silent" else (0, None)
    with mjpeg_camera(jpegs(1), fps=50, per_connection=frames, then=then) as url:
        keeper = SourceKeeper(url, 2.0, "gate", stop, on_state=lambda state, errors: states.append(state),
                              on_error=stop.set, backoff=Backoff(*QUICK))  # fmt: skip
        assert keeper.run(lambda source: list(source.frames())) == "ended"
    assert keeper.errors == 1 and keeper.reopens == 0 and states[-1] == "reconnecting", states
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    said = "no frame within the read timeout)" if ending == "silent" else "cannot connect"
    assert len(warnings) == 1 and said in warnings[0] and "reconnecting with backoff" in warnings[0], warnings


def test_a_stop_during_the_backoff_ends_the_loop_without_another_attempt():
    stop, connections = threading.Event(), []
    with mjpeg_camera(jpegs(2), fps=50, per_connection=0, connections=connections) as url:  # (no frame: a drop)
        keeper = SourceKeeper(url, 25.0, "gate", stop, backoff=Backoff(60.0, 60.0))
        runner = threading.Thread(target=keeper.run, args=(lambda source: list(source.frames()),), daemon=True)
        runner.start()
        while keeper.errors == 0 and runner.is_alive():  # the drop: now it waits a minute
            runner.join(0.05)
        attempted = len(connections)  # an open that failed asks once more whether the camera redirects
        time.sleep(0.5)
        stop.set()
        runner.join(5)
    assert attempted == 2  # the open, and one question whether it redirects: no more
    assert not runner.is_alive() and len(connections) == attempted and keeper.errors == 1


def test_footage_is_read_once_and_ends(tmp_path):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (64, 48))
    for index in range(10):
        writer.write(np.full((48, 64, 3), 20 * index, np.uint8))
    writer.release()
    states, passes = [], []
    keeper = SourceKeeper(str(clip), 5.0, "file", threading.Event(), on_state=lambda s, e: states.append(s))
    assert keeper.run(lambda source: passes.append(len(list(source.frames())))) == "ended"
    assert passes == [5] and states == ["connected", "ended"] and keeper.errors == 0


def test_a_looped_image_folder_names_an_entry_it_does_not_read_once_not_every_pass(tmp_path, caplog):
    """A FIFO or folder named as an image is named in a WARNING: a looping camera opened the folder again each
    pass and said it again each time (a review: a log flooded). Once per entry for the camera's passes, and
    again only for an entry that changed (a FIFO made a folder) or came back after it went."""
    import os

    caplog.set_level(logging.WARNING, logger="ingest.sources")
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((20, 30, 3), np.uint8))
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "upload.png").mkdir()
    stop, passes = threading.Event(), []

    def read_pass(source: FrameSource) -> None:
        passes.append(len(list(source.frames())))
        if len(passes) == 4:  # an entry changed: named again, alone
            (tmp_path / "pipe.jpg").unlink()
            (tmp_path / "pipe.jpg").mkdir()
        stop.set() if len(passes) == 6 else None

    keeper = SourceKeeper(str(tmp_path), 5.0, "gate", stop, loop=True)
    assert keeper.run(read_pass) == "ended" and passes == [1] * 6
    said = [record.getMessage() for record in caplog.records if "named as images" in record.getMessage()]
    assert len(said) == 2, said  # was 6, one a pass
    assert "2 entries" in said[0] and "'pipe.jpg'" in said[0] and "'upload.png'" in said[0]
    assert "1 entries" in said[1] and "'pipe.jpg'" in said[1] and "upload.png" not in said[1]


@pytest.mark.parametrize("error", [sqlite3.OperationalError("database is locked"), OSError(28, "No space left")])
def test_an_error_of_the_readers_own_is_let_out_as_it_is_not_taken_for_a_drop(error):
    """`alpr run`'s cores and log run inside the pass: a full disk (an OSError) was a dropped stream to
    the loop, reopened for ever; a database error was swallowed as a camera failure."""
    connections: list[float] = []

    def read_pass(source: FrameSource) -> None:
        for _ in source.frames():
            raise ReaderError(error) from error

    with mjpeg_camera(jpegs(2), fps=50, connections=connections) as url:
        keeper = SourceKeeper(url, 25.0, "gate", threading.Event(), backoff=Backoff(*QUICK))
        with pytest.raises(type(error)) as raised:
            keeper.run(read_pass)
    assert raised.value is error and keeper.errors == 0 and len(connections) == 1


@pytest.mark.parametrize("refusal", [401, 403])
def test_a_camera_refusing_the_credentials_is_said_so_and_tried_again_only_after_minutes(refusal, caplog):
    """A camera answering 401 to a wrong password was retried at the reconnect backoff, 7 times in 90 s
    (~120 an hour: a camera may lock the account), and the log said only "cannot connect to stream"
    (a review). Now it says the credentials were refused, at ERROR, without the password, the camera
    is "failed" meanwhile, and it is opened again only after defaults.CREDENTIALS_RETRY_S."""
    import http.server

    from tests.helpers import http_server

    caplog.set_level(logging.DEBUG, logger="ingest.reconnect")
    logins: list[str | None] = []

    class Camera(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            logins.append(self.headers.get("Authorization"))
            self.send_response(refusal)
            self.send_header("WWW-Authenticate", 'Basic realm="camera"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    stop, states = threading.Event(), []
    with http_server(Camera) as base:
        keeper = SourceKeeper(f"{base.replace('://', '://admin:WrongPass@')}/mjpeg", 2.0, "gate", stop,
                              on_state=lambda state, errors: states.append(state))  # fmt: skip
        runner = threading.Thread(target=keeper.run, args=(lambda source: None,), daemon=True)
        runner.start()
        try:
            time.sleep(4.0)  # at the reconnect backoff (1 s, 2 s...): three opens by now
            assert len(logins) == (2 if refusal == 401 else 1), logins  # one open (401: asked, then the login)
        finally:
            stop.set()
            runner.join(10)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    reason = "401 Unauthorized" if refusal == 401 else "403 Forbidden"
    assert len(errors) == 1 and f"credentials refused ({reason})" in errors[0], errors
    assert "WrongPass" not in caplog.text and states == ["failed"]


def test_ffmpegs_words_for_refused_credentials_are_known_over_http_and_rtsp():
    from ingest.capture_output import refusal

    assert refusal(b"[OPENCV:FFMPEG:24] HTTP error 401 Unauthorized") == "401 Unauthorized"
    assert refusal(b"[OPENCV:FFMPEG:16] method DESCRIBE failed: 401 (Unauthorized)") == "401 Unauthorized"
    assert refusal(b"[OPENCV:FFMPEG:16] method DESCRIBE failed: 403 Forbidden") == "403 Forbidden"
    assert refusal(b"Traceback: 401 Unauthorized") is None  # FFmpeg's lines only


CUT_SHORT = [
    ("rtsp://admin:1234/5678@127.0.0.1:9/x", ["admin", "1234", "5678"]),
    ("http://admin:4242#k@127.0.0.1:9/snap.jpg", ["admin", "4242"]),
    ("rtsp://1234/abcd@127.0.0.1:9/live", ["1234", "abcd"]),
]
"""Passwords typed raw with a '/' or '#' after 1-5 digits: a URL parser ends the host there and takes
`user:digits` for host and port; each, with the user name and password pieces no line may show."""


@pytest.mark.parametrize(("uri", "secrets"), CUT_SHORT)
def test_a_url_whose_password_ends_its_host_early_is_refused_for_good_without_a_piece_of_it(uri, secrets, caplog):
    """Such a URL was opened (host `admin`, port 1234), its failure logged as `rtsp://admin:1234/…` at
    every reconnection, which masking misses: no '@' follows (a review). It is refused now, said at ERROR
    without the user name or password, and not retried: it never connects."""
    from common.credentials import install_log_masking

    caplog.set_level(logging.DEBUG)
    install_log_masking()  # as every alpr command does at start (the test's capture handler is the root's)
    stop, states = threading.Event(), []
    keeper = SourceKeeper(uri, 5.0, "gate", stop, on_state=lambda state, errors: states.append(state),
                          backoff=Backoff(*QUICK))  # fmt: skip
    timer = threading.Timer(3.0, stop.set)  # (the old code retried until stopped)
    timer.start()
    try:
        assert keeper.run(lambda source: None) == "failed" and states == ["failed"]
    finally:
        timer.cancel()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "must be written %2F, %3F or %23" in errors[0], errors
    assert f"camera gate: source {uri.split(':')[0]}://… has an '@' after its host" in errors[0]
    assert not any(secret in caplog.text for secret in secrets), caplog.text

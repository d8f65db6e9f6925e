"""A camera cannot send its ingest node elsewhere: no HTTP redirect, no playlist naming other URLs, no
protocol but the streams' (never a local file) — and the operator's own FFmpeg options cannot loosen
that; and one camera's open does not hold up another's (each capture opens in its own process)."""

import http.server
import os
import socket
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
import pytest

from common.errors import InputError
from ingest import ffmpeg_open
from ingest.capture_process import IsolatedCapture
from ingest.ffmpeg_open import (
    CAPTURE_OPTIONS_VARIABLE,
    FILE_OPTIONS,
    SCHEME_PROTOCOLS,
    STREAM_OPTIONS,
    capture_options,
    joined_options,
    open_capture,
)
from ingest.sources import open_source
from tests.helpers import http_server, mjpeg_camera, wait_for
from tests.ingest.helpers import snapshot_camera


@contextmanager
def hostile_camera(target_url: str) -> Iterator[str]:
    """A camera whose /redirect answers 302 to `target_url` and whose /live.m3u8 is an HLS playlist
    naming a segment there (.ts: FFmpeg fetches segments with a media file's extension only); yields
    its base URL."""
    segment = target_url.rsplit("/", 1)[0] + "/segment0.ts"

    class Camera(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", target_url)
                self.end_headers()
                return
            body = f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{segment}\n#EXT-X-ENDLIST\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.apple.mpegurl")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Camera) as base:
        yield base


@pytest.fixture
def internal_service() -> Iterator[tuple[str, list[float]]]:
    """An MJPEG server standing for an address on the node's own network; yields its URL and the list
    of connections it was asked for."""
    jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 200, np.uint8))[1].tobytes()
    connections: list[float] = []
    with mjpeg_camera([jpeg], fps=25, connections=connections) as url:
        yield url, connections


@pytest.mark.parametrize("path", ["/redirect", "/live.m3u8"])
def test_a_camera_cannot_send_the_node_to_another_address(internal_service, path):
    """FFmpeg followed the redirect (or fetched the playlist's segment) and the node ingested the internal
    server's frames. A redirect is said by where it points (asked once, following nothing)."""
    internal_url, connections = internal_service
    said = f"redirects to {internal_url.rsplit('/', 1)[0]}: put" if path == "/redirect" else "cannot connect to stream"
    with hostile_camera(internal_url) as camera, pytest.raises(InputError, match=said):
        open_source(camera + path, sample_fps=5.0)
    assert connections == []


def test_the_operators_options_still_apply_but_cannot_loosen_ours(internal_service, monkeypatch):
    internal_url, connections = internal_service
    loosening = "max_redirects;5|format_whitelist;hls,mpjpeg|protocol_whitelist;http,tcp,file,hls"
    monkeypatch.setenv(CAPTURE_OPTIONS_VARIABLE, loosening)
    with hostile_camera(internal_url) as camera:
        for path, said in (("/redirect", "redirects to http://127.0.0.1:"), ("/live.m3u8", "cannot connect to stream")):
            with pytest.raises(InputError, match=said):
                open_source(camera + path, sample_fps=5.0)
    assert connections == []
    assert os.environ[CAPTURE_OPTIONS_VARIABLE] == loosening  # left as the operator set it
    # theirs come first, ours after them; a key of ours and a pair FFmpeg would misread are dropped (one
    # without its `;` swallowed the pair after it: our whitelist)
    ours = {"max_redirects": "0", "protocol_whitelist": "http,tcp"}
    assert joined_options("rtsp_transport;tcp|max_redirects;5|oops|", ours) == (
        "rtsp_transport;tcp|max_redirects;0|protocol_whitelist;http,tcp"
    )
    monkeypatch.delenv(CAPTURE_OPTIONS_VARIABLE)
    capture = IsolatedCapture(internal_url)  # the camera itself is read
    assert capture.read()[0]
    capture.release()
    assert CAPTURE_OPTIONS_VARIABLE not in os.environ and len(connections) == 1  # set in the capture's process


@pytest.mark.parametrize(
    "uri",
    ["http://cam/video.mjpg", "HTTPS://cam/video.mjpg", "rtsp://admin:pw@cam:554/s1", "rtsps://cam/s1",
     "rtmp://cam/live", "udp://@:1234", "tcp://cam:9000"],
)  # fmt: skip
def test_every_stream_opens_the_streams_protocols_only_and_never_a_file(uri):
    """One set for every stream (the union of the schemes' own: opens of one set run side by side), which
    holds no `file` (a stream reaches no local file), no playlist's protocol and no redirect."""
    options = capture_options(uri)
    assert options == STREAM_OPTIONS and options["max_redirects"] == "0"
    protocols = set(options["protocol_whitelist"].split(","))
    assert protocols == {p for scheme in SCHEME_PROTOCOLS.values() for p in scheme.split(",")}
    assert not protocols & {"file", "pipe", "fd", "hls", "concat", "concatf", "crypto", "data", "subfile", "cache"}
    assert not protocols & {"rtsp", "rtsps", "satip"}  # what an RTSP server's redirect opens (test below)
    assert not set(options["format_whitelist"].split(",")) & {"hls", "dash", "concat", "sdp", "rtp", "image2pipe"}
    assert capture_options("/videos/cam1.mp4") == FILE_OPTIONS == {"protocol_whitelist": "file"}


@pytest.mark.parametrize("uri", ["gopher://cam/1", "file:///etc/passwd", "hls+http://cam/live.m3u8", "ftp://cam/a.mp4"])
def test_a_url_of_another_scheme_is_never_handed_to_ffmpeg(uri, monkeypatch):
    monkeypatch.setattr(ffmpeg_open, "cv2", types.SimpleNamespace(VideoCapture=cv2.VideoCapture, CAP_FFMPEG=0))
    opened: list[tuple] = []
    monkeypatch.setattr(ffmpeg_open.cv2, "VideoCapture", lambda *args: opened.append(args) or cv2.VideoCapture())
    assert capture_options(uri) is None
    assert not open_capture(uri).isOpened()
    assert opened == [()]  # an empty capture: FFmpeg never asked


@contextmanager
def hung_camera() -> Iterator[tuple[str, list[socket.socket]]]:
    """A camera that accepts TCP connections and never answers (one mid-reboot, a half-dead link): yields
    its URL and the connections it holds; closing them (and the listening socket) ends their opens."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.1)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:  # the timeout, or the socket closed
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/video.mjpg", held
    finally:
        done.set()
        thread.join(5)
        server.close()
        for connection in held:
            connection.close()


def test_a_hung_camera_does_not_hold_up_another_cameras_open():
    """Each open held one process-wide lock for the whole of OpenCV's open (FFmpeg's connect and probe,
    up to the open timeout): a camera that accepts TCP and never answers held every other camera's
    connect and reconnect (a review: 0.11 s alone, 19.85 s behind two hung ones). The healthy camera now
    opens while the hung ones' opens are still under way."""
    jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 200, np.uint8))[1].tobytes()
    hung_timeout = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 20_000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 20_000]
    hung_ended: list[bool] = []
    healthy: list[bool] = []

    def open_and_note(url: str, params: list[int], noted: list[bool]) -> None:
        capture = IsolatedCapture(url, params)
        noted.append(capture.isOpened())
        capture.release()

    with hung_camera() as (hung_url, held), mjpeg_camera([jpeg], fps=25) as healthy_url:
        hung = [threading.Thread(target=open_and_note, args=(hung_url, hung_timeout, hung_ended)) for _ in range(3)]
        for thread in hung:
            thread.start()
        wait_for(lambda: held, 10, "a hung camera's open to connect")
        opener = threading.Thread(target=open_and_note, args=(healthy_url, [], healthy))
        opener.start()
        wait_for(lambda: healthy or hung_ended, 60, "the healthy camera's open, or a hung one's timeout")
        healthy_then, hung_ended_then, held_at_once = list(healthy), list(hung_ended), len(held)
    for thread in [*hung, opener]:  # the hung camera gone: their opens fail at once
        thread.join(30)
    assert healthy_then == [True] and hung_ended_then == [], (
        f"the healthy camera's open {healthy_then} waited for a hung camera's to time out {hung_ended_then}"
    )
    assert hung_ended == [False] * 3
    assert held_at_once == 3  # the hung cameras' opens under way side by side too


def test_a_files_open_waits_for_no_streams_open(demo_clip):
    """Opens shared the node's one FFmpeg options variable, so a video file's open (the file protocol
    alone) waited for every stream's open under way, up to its 10 s timeout behind a hung camera. Each
    capture now sets its options in its own process: the file opens while the hung camera's opens go on."""
    hung_timeout = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 20_000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 20_000]
    hung_ended: list[bool] = []

    def open_hung(url: str) -> None:
        capture = IsolatedCapture(url, hung_timeout)
        hung_ended.append(capture.isOpened())
        capture.release()

    with hung_camera() as (hung_url, held):
        hung = [threading.Thread(target=open_hung, args=(hung_url,)) for _ in range(2)]
        for thread in hung:
            thread.start()
        wait_for(lambda: len(held) == 2, 10, "the hung camera's opens to connect")
        started = time.monotonic()
        video = IsolatedCapture(str(demo_clip[0]))
        opened_in_s, still_hung = time.monotonic() - started, not hung_ended
        assert video.read()[0]
        video.release()
    for thread in hung:
        thread.join(30)
    assert still_hung and opened_in_s < 5.0
    assert hung_ended == [False, False]


@contextmanager
def rtsp_server(answer: Callable[[str, str], str]) -> Iterator[tuple[str, list[str]]]:
    """A bare RTSP server on a free local port: each request's first line is noted and answered with
    `answer(method, cseq)` (a status line and headers); yields its base URL and those lines."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.1)
    requests: list[str] = []
    done = threading.Event()

    def serve(connection: socket.socket) -> None:
        buffer = b""
        with connection:
            connection.settimeout(5)
            while not done.is_set():
                try:
                    data = connection.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while b"\r\n\r\n" in buffer:
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    lines = head.decode("latin-1").split("\r\n")
                    requests.append(lines[0])
                    cseq = next((line[5:].strip() for line in lines if line.lower().startswith("cseq:")), "0")
                    connection.sendall(f"{answer(lines[0].split(' ')[0], cseq)}\r\n\r\n".encode())

    def accept() -> None:
        while not done.is_set():
            try:
                connection = server.accept()[0]
            except OSError:  # the timeout, or the socket closed
                continue
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"rtsp://127.0.0.1:{server.getsockname()[1]}", requests
    finally:
        done.set()
        thread.join(5)
        server.close()


@pytest.mark.parametrize("scheme", ["rtsp", "satip"])  # the two FFmpeg's RTSP client follows
def test_an_rtsp_cameras_redirect_is_refused_by_the_protocol_whitelist(scheme, monkeypatch):
    """README said FFmpeg follows an RTSP server's own redirect (a 3xx answer) with no option to refuse
    it. Left to itself it does (checked here first); but the redirect opens the new URL by its protocol,
    rtsp (or satip), which no whitelist of ours names (the rtsp demuxer opens the camera's own URL without
    asking it): refused before the other server hears of it."""
    monkeypatch.setenv(CAPTURE_OPTIONS_VARIABLE, "rtsp_flags;prefer_tcp")  # OpenCV's default: FFmpeg left to itself
    timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]
    with rtsp_server(lambda method, cseq: f"RTSP/1.0 404 Not Found\r\nCSeq: {cseq}") as (target, target_requests):
        moved = f"{scheme}{target.removeprefix('rtsp')}/live"

        def camera_answer(method: str, cseq: str) -> str:
            if method == "DESCRIBE":
                return f"RTSP/1.0 302 Moved Temporarily\r\nCSeq: {cseq}\r\nLocation: {moved}"
            return f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN"

        with rtsp_server(camera_answer) as (camera, camera_requests):
            cv2.VideoCapture(f"{camera}/stream", cv2.CAP_FFMPEG, timeouts).release()
            wait_for(lambda: target_requests, 10, "FFmpeg left to itself to follow the redirect")
            target_requests.clear()
            camera_requests.clear()
            with pytest.raises(InputError, match="cannot connect to stream"):
                open_source(f"{camera}/stream", sample_fps=5.0)
            time.sleep(0.5)
    assert any(line.startswith("DESCRIBE ") for line in camera_requests)  # it was sent the redirect
    assert target_requests == []


@pytest.mark.parametrize(
    ("userinfo", "path", "right"),
    [("admin:Pa%3dss@", "/snap.jpg", lambda r: r.credentials == "admin:Pa=ss"),
     ("", "/snap.jpg?pwd=Pa%3dss&x=.jpg", lambda r: parse_qs(urlsplit(r.path).query).get("pwd") == ["Pa=ss"])],
    ids=["userinfo", "query"],
)  # fmt: skip
def test_a_snapshot_url_holding_a_pattern_is_fetched_with_its_own_password_only(userinfo, path, right):
    """FFmpeg's image2, which reads a snapshot URL (.jpg), took `%3d` in it (a password's `=` percent-encoded)
    for a frame number's pattern: the camera was tried with Pa000ss, Pa001ss... some 30 wrong passwords (an
    account locked out; a review). It is read as one image now: each request carries the password given
    (or, before the camera asks for it, none)."""
    jpeg = cv2.imencode(".jpg", np.full((240, 320, 3), 90, np.uint8))[1].tobytes()
    with snapshot_camera(jpeg, right) as (base, requests):
        frames = list(open_source(base.replace("://", f"://{userinfo}") + path, sample_fps=2.0).frames())
    wrong = [request for request in requests if not right(request) and (request.credentials or not userinfo)]
    assert wrong == [], f"{len(wrong)} of {len(requests)} requests with another password: {wrong[:3]}"
    assert len(frames) == 1 and any(right(request) for request in requests)

"""A camera cannot send its ingest node elsewhere: no HTTP redirect, no playlist naming other URLs, no
protocol but its scheme's — and the operator's own FFmpeg options cannot loosen that."""

import http.server
import os
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np
import pytest

from common.errors import InputError
from ingest.ffmpeg_open import (
    CAPTURE_OPTIONS_VARIABLE,
    NEUTRAL_OPTIONS,
    capture_options,
    joined_options,
    open_capture,
)
from ingest.sources import open_source
from tests.helpers import http_server, mjpeg_camera


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
    server's frames."""
    internal_url, connections = internal_service
    with hostile_camera(internal_url) as camera, pytest.raises(InputError, match="cannot connect to stream"):
        open_source(camera + path, sample_fps=5.0)
    assert connections == []


def test_the_operators_options_still_apply_but_cannot_loosen_ours(internal_service, monkeypatch):
    internal_url, connections = internal_service
    loosening = "max_redirects;5|format_whitelist;hls,mpjpeg|protocol_whitelist;http,tcp,file,hls"
    monkeypatch.setenv(CAPTURE_OPTIONS_VARIABLE, loosening)
    with hostile_camera(internal_url) as camera:
        for path in ("/redirect", "/live.m3u8"):
            with pytest.raises(InputError, match="cannot connect to stream"):
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
    capture = open_capture(internal_url)  # the camera itself is read
    assert capture.read()[0]
    capture.release()
    assert os.environ[CAPTURE_OPTIONS_VARIABLE] == NEUTRAL_OPTIONS and len(connections) == 1  # OpenCV's default


@pytest.mark.parametrize(
    ("uri", "protocols", "redirects"),
    [
        ("http://cam/video.mjpg", "http,tcp", "0"),
        ("HTTPS://cam/video.mjpg", "https,tls,tcp", "0"),
        ("rtsp://admin:pw@cam:554/s1", "tcp,udp,rtp,http", None),
        ("rtmp://cam/live", "rtmp,tcp", None),
        ("udp://@:1234", "udp", None),
        ("tcp://cam:9000", "tcp", None),
        ("gopher://cam/1", "none", None),
    ],
)
def test_each_scheme_opens_its_own_protocols_only(uri, protocols, redirects):
    options = capture_options(uri)
    assert options["protocol_whitelist"] == protocols
    assert options.get("max_redirects") == redirects
    assert "hls" not in options["format_whitelist"].split(",")
    assert capture_options("/videos/cam1.mp4") == {"protocol_whitelist": "file"}

"""What a capture's child prints (ingest/capture_output.py): FFmpeg's and OpenCV's lines reach the node's
stderr, never its stdout, and none shows its camera's password, path or Basic credentials, whatever log
level the operator asks of them."""

from __future__ import annotations

import base64
import re

import pytest

from common.errors import InputError
from ingest.capture_output import MAX_FFMPEG_LOG_LEVEL, ffmpeg_log_level, scrubbed, source_secrets
from ingest.sources import open_source
from tests.ingest.helpers import snapshot_camera

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
    assert scrubbed(line, source_secrets(URI)) == shown


@pytest.mark.parametrize(
    ("environment", "level"),
    [({}, None), ({"OPENCV_FFMPEG_LOGLEVEL": "16"}, "16"), ({"OPENCV_FFMPEG_LOGLEVEL": "-8"}, "-8"),
     ({"OPENCV_FFMPEG_LOGLEVEL": "56"}, str(MAX_FFMPEG_LOG_LEVEL)), ({"OPENCV_FFMPEG_DEBUG": "1"}, "32"),
     ({"OPENCV_FFMPEG_LOGLEVEL": "verbose"}, "0")],
)  # fmt: skip
def test_ffmpegs_level_is_the_operators_up_to_its_info_lines(environment, level):
    """FFmpeg's verbose and debug lines show each request with its headers (an Authorization among them)."""
    assert ffmpeg_log_level(environment) == level

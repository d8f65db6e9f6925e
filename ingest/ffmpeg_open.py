"""What FFmpeg may do while it reads a camera's stream or a video file, and the one way ingest opens
them (`open_capture`).

Left to itself, FFmpeg goes wherever a source sends it: it follows a camera's HTTP redirect to any
host, reads an HLS or DASH playlist or a concat list naming other URLs (another host, a loopback
address, a local file) and fetches them. A camera could so make its ingest node fetch an address on
the node's own network and ingest what came back (a review: 16 frames from a loopback server). Every
source is opened with:

- only its own scheme's protocols (FFmpeg's `protocol_whitelist`): http:// reads over http and tcp,
  rtsp:// over tcp, udp and rtp (or tunnelled over http), a file over file (a local playlist cannot
  reach the network);
- only the container formats cameras send (`format_whitelist`): RTSP, multipart and plain MJPEG, a
  single JPEG (a snapshot URL), MPEG-TS, FLV, raw H.264/H.265, MP4, Matroska, AVI — no playlist or list demuxer
  (hls, dash, concat) that names other URLs;
- no HTTP redirect (`max_redirects` 0): a camera's URL names where its frames come from;
- RTSP over TCP first (`rtsp_flags` prefer_tcp), as OpenCV does when given no options.

Left open: FFmpeg follows an RTSP server's own redirect (a 3xx answer) with no option to refuse it, so
an RTSP camera can still send the node to another RTSP server; and FFmpeg bounds neither a stream
part's length nor a mid-stream frame's size (README, Safe by default).

OpenCV takes FFmpeg's options only from the environment variable OPENCV_FFMPEG_CAPTURE_OPTIONS, read
while a capture opens; it is set for each open under a lock (the environment is the process's), after
any options the operator put there, so theirs still apply (rtsp_transport, say) but cannot loosen these
(`joined_options`)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from urllib.parse import urlsplit

import cv2

CAPTURE_OPTIONS_VARIABLE = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
"""The environment variable OpenCV reads FFmpeg's options from: `key;value` pairs joined by `|`."""

CAMERA_FORMATS = (
    "rtsp", "mpjpeg", "mjpeg", "jpeg_pipe", "image2", "mpegts", "flv", "live_flv", "h264", "hevc", "mov", "matroska",
    "avi",
)  # fmt: skip
"""FFmpeg's demuxers a stream may be read with ("mov" names mp4, "matroska" webm; "image2" a snapshot URL
ending in .jpg): what cameras and encoders send, none of them a list of other URLs."""

SCHEME_PROTOCOLS = {
    "http": "http,tcp",
    "https": "https,tls,tcp",
    "rtsp": "tcp,udp,rtp,http",
    "rtsps": "tls,tcp,udp,rtp,srtp,https,http",
    "rtmp": "rtmp,tcp",
    "udp": "udp",
    "tcp": "tcp",
}
"""FFmpeg's protocols a stream URL of each scheme may open: its own, and those it is carried on (RTSP
also over HTTP: `rtsp_transport http`, to the camera's own host)."""

FILE_PROTOCOLS = "file"
"""A video file reads itself only: a playlist or concat list among the files reaches no network."""

_environment_lock = threading.Lock()
"""OpenCV reads its options from the process's environment: one open sets them at a time."""


def capture_options(uri: str) -> dict[str, str]:
    """FFmpeg's options for opening `uri`: a stream URL's by its scheme (a scheme not known here gets no
    protocol at all, so it does not open), a video file's otherwise."""
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    if not scheme:
        return {"protocol_whitelist": FILE_PROTOCOLS}
    options = {
        "protocol_whitelist": SCHEME_PROTOCOLS.get(scheme, "none"),
        "format_whitelist": ",".join(CAMERA_FORMATS),
    }
    if scheme in ("http", "https"):
        options["max_redirects"] = "0"
    if scheme in ("rtsp", "rtsps"):
        options["rtsp_flags"] = "prefer_tcp"
    return options


def joined_options(operator_options: str | None, options: dict[str, str]) -> str:
    """OPENCV_FFMPEG_CAPTURE_OPTIONS's value: the operator's own `key;value` pairs first, but for keys we
    set and pairs FFmpeg would misread (no `;`: it swallowed the pair after it, our whitelist), ours after."""
    pairs = [pair for pair in (operator_options or "").split("|") if ";" in pair and pair.split(";")[0] not in options]
    return "|".join([*pairs, *(f"{key};{value}" for key, value in options.items())])


NEUTRAL_OPTIONS = "rtsp_flags;prefer_tcp"
"""What the variable holds between our opens when the operator set none: OpenCV's own default when it is
unset (other captures, of files this process wrote, open as before); it is never unset again, since
unsetting reshuffles the environment that other threads (libpq's, OpenSSL's) may be reading."""


def open_capture(uri: str, params: Sequence[int] = ()) -> cv2.VideoCapture:
    """A capture of `uri` through FFmpeg under `capture_options(uri)`; `params` are OpenCV's open
    parameters (timeouts). Check `isOpened()`: a source refused by the options does not open."""
    with _environment_lock:
        operator_options = os.environ.get(CAPTURE_OPTIONS_VARIABLE)
        if operator_options == NEUTRAL_OPTIONS:  # ours, left by the open before
            operator_options = None
        os.environ[CAPTURE_OPTIONS_VARIABLE] = joined_options(operator_options, capture_options(uri))
        try:
            return cv2.VideoCapture(uri, cv2.CAP_FFMPEG, list(params))
        finally:
            os.environ[CAPTURE_OPTIONS_VARIABLE] = NEUTRAL_OPTIONS if operator_options is None else operator_options

"""What FFmpeg may do while it reads a camera's stream or a video file, and the one way ingest opens
them (`open_capture`).

Left to itself, FFmpeg goes wherever a source sends it: it follows a camera's HTTP redirect to any
host, reads an HLS or DASH playlist or a concat list naming other URLs (another host, a loopback
address, a local file) and fetches them. A camera could so make its ingest node fetch an address on
the node's own network and ingest what came back (a review: 16 frames from a loopback server). Every
stream is opened with one set of options (`STREAM_OPTIONS`):

- only the protocols stream URLs are carried on (FFmpeg's `protocol_whitelist`, `STREAM_PROTOCOLS`:
  http, https, rtsp's tcp, udp, rtp and srtp, tls, rtmp), never `file`: no local file is reachable
  from a stream; a scheme not in SCHEME_PROTOCOLS is not handed to FFmpeg at all;
- only the container formats cameras send (`format_whitelist`): RTSP, multipart and plain MJPEG, a
  single JPEG (a snapshot URL), MPEG-TS, FLV, raw H.264/H.265, MP4, Matroska, AVI — no playlist or list demuxer
  (hls, dash, concat) that names other URLs;
- no HTTP redirect (`max_redirects` 0): a camera's URL names where its frames come from;
- RTSP over TCP only (`rtsp_transport` tcp). OpenCV's own choice, TCP first (`rtsp_flags` prefer_tcp), fell
  back to RTP over UDP when a camera refused TCP (a 461 answer, as many do), and UDP takes its packets
  from anyone: any host that could reach the node's RTP port had its own frames ingested as the camera's
  (a review), and a camera naming another host in its answer (`source=`) had the node send UDP there. UDP
  is the operator's choice, camera by camera (`rtsp_transport: udp` in the cameras file, `alpr run
  --rtsp-transport udp`), and then with `rtsp_flags` filter_src (`UDP_RTSP_OPTIONS`): packets from any
  address but the one the camera's answer names are dropped;
- a snapshot URL read as one image (`pattern_type` none): FFmpeg's image2 took a `%3d` in it (a password's
  `=` percent-encoded) for a frame number's pattern, and tried the camera with some 30 wrong passwords
  (`Pa000ss`, `Pa001ss`...: an account locked out), printing the URL whole (what FFmpeg prints is
  scrubbed of it now: ingest/capture_output.py).

A video file is opened with the `file` protocol alone (`FILE_OPTIONS`): a playlist or concat list among
the files reaches no network.

One set for every stream, not one per scheme (http:// over http and tcp alone, rtsp:// over tcp, udp,
rtp and http): the union loosens nothing real, as a nested open comes only from a redirect (refused) or
from a demuxer that names URLs (none is allowed), and neither the URL's own scheme (checked here) nor
`file` is widened.

OpenCV takes FFmpeg's options only from the environment variable OPENCV_FFMPEG_CAPTURE_OPTIONS, read as
a capture opens. Each capture is opened in a process of its own (ingest/capture_process.py), which sets
the variable once for its one open (`open_capture`), after any options the operator put there, so theirs
still apply (a timeout, say) but cannot loosen these (`joined_options`; an `rtsp_transport` there no
longer applies: it is the camera's own). Before, every open shared the node's one variable: opens of
different sets (a stream's, a file's) had to take turns under a process-wide lock, and a file's open
waited for every stream's open under way, up to its 10 s timeout.

An RTSP server's own redirect (a 3xx answer), which FFmpeg follows with no option to refuse it, is
refused by the protocol whitelist: FFmpeg opens the new URL by its protocol (rtsp, or satip), which no
set here names (the camera's own rtsp:// URL is opened by its demuxer, without asking the whitelist).
tests/ingest/test_ffmpeg_open.py holds this against an FFmpeg that changes it.

FFmpeg bounds neither a stream part's length nor a mid-stream frame's size: the capture's process is
held to a memory bound (ingest/capture_process.py)."""

from __future__ import annotations

import os
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
"""The stream schemes FFmpeg is given, and the protocols a URL of each is carried on (its own, those
under it; RTSP also over HTTP: `rtsp_transport http`, to the camera's own host). Their union is what
every stream may open (`STREAM_PROTOCOLS`); a URL of another scheme is never opened."""

STREAM_PROTOCOLS = ",".join(dict.fromkeys(p for protocols in SCHEME_PROTOCOLS.values() for p in protocols.split(",")))
"""Every stream scheme's protocols, and no other: not `file`, nor a playlist's (hls, concat, crypto...),
nor rtsp, rtsps or satip, which an RTSP server's redirect opens (a camera's own rtsp:// URL needs none)."""

STREAM_OPTIONS = {
    "protocol_whitelist": STREAM_PROTOCOLS,
    "format_whitelist": ",".join(CAMERA_FORMATS),
    "max_redirects": "0",
    "rtsp_transport": "tcp",
    "pattern_type": "none",
}
"""FFmpeg's options for every stream (each option applies only where it means something: max_redirects
to HTTP, rtsp_transport to RTSP, pattern_type to a snapshot URL's image2)."""

RTSP_TRANSPORTS = ("tcp", "udp")
"""How an RTSP camera's packets may come: over its RTSP connection (the default), or as RTP over UDP where
the operator chose it for the camera (`UDP_RTSP_OPTIONS`)."""

UDP_RTSP_OPTIONS = {"rtsp_transport": "udp", "rtsp_flags": "filter_src"}
"""STREAM_OPTIONS's RTSP transport where UDP is chosen: RTP packets from any address but the one the
camera's SETUP answer names are dropped (without it, any host on the network reaching the node's RTP port
had its frames ingested). That address is still the camera's to name (`source=`): a camera chosen for UDP
is trusted to name itself."""

FILE_PROTOCOLS = "file"
"""A video file reads itself only: a playlist or concat list among the files reaches no network."""

FILE_OPTIONS = {"protocol_whitelist": FILE_PROTOCOLS}
"""FFmpeg's options for a video file."""


def rtsp_transport_problem(uri: str, rtsp_transport: str) -> str | None:
    """Why `rtsp_transport` cannot be chosen for `uri`, or None: UDP is for an rtsp:// or rtsps:// URL only
    (another source would take the choice silently and keep to its own transport)."""
    if rtsp_transport not in RTSP_TRANSPORTS:
        return f"rtsp_transport must be one of {', '.join(RTSP_TRANSPORTS)}, got {str(rtsp_transport)[:20]!r}"
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    if rtsp_transport == "udp" and scheme not in ("rtsp", "rtsps"):
        return "rtsp_transport udp is for an rtsp:// or rtsps:// source only"
    return None


def capture_options(uri: str, rtsp_transport: str = "tcp") -> dict[str, str] | None:
    """FFmpeg's options for opening `uri`: STREAM_OPTIONS for a URL of a scheme in SCHEME_PROTOCOLS (with
    UDP_RTSP_OPTIONS where `rtsp_transport` is "udp"), FILE_OPTIONS for a path; None for a URL of any other
    scheme, or a transport not in RTSP_TRANSPORTS: not opened."""
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    if rtsp_transport not in RTSP_TRANSPORTS:
        return None
    if not scheme:
        return dict(FILE_OPTIONS)
    if scheme not in SCHEME_PROTOCOLS:
        return None
    return {**STREAM_OPTIONS, **UDP_RTSP_OPTIONS} if rtsp_transport == "udp" else dict(STREAM_OPTIONS)


def joined_options(operator_options: str | None, options: dict[str, str]) -> str:
    """OPENCV_FFMPEG_CAPTURE_OPTIONS's value: the operator's own `key;value` pairs first, but for keys we
    set and pairs FFmpeg would misread (no `;`: it swallowed the pair after it, our whitelist), ours after."""
    pairs = [pair for pair in (operator_options or "").split("|") if ";" in pair and pair.split(";")[0] not in options]
    return "|".join([*pairs, *(f"{key};{value}" for key, value in options.items())])


def open_capture(uri: str, params: Sequence[int] = (), rtsp_transport: str = "tcp") -> cv2.VideoCapture:
    """A capture of `uri` through FFmpeg under `capture_options(uri, rtsp_transport)` (after the operator's
    own options); `params` are OpenCV's open parameters (timeouts). Check `isOpened()`: a source refused by
    the options, or a URL of a scheme not in SCHEME_PROTOCOLS (never handed to FFmpeg), does not open. The options are
    left in this process's environment: it is called by a capture's own process, once
    (ingest/capture_process.py), never where other opens or threads could meet it."""
    options = capture_options(uri, rtsp_transport)
    if options is None:
        return cv2.VideoCapture()
    os.environ[CAPTURE_OPTIONS_VARIABLE] = joined_options(os.environ.get(CAPTURE_OPTIONS_VARIABLE), options)
    return cv2.VideoCapture(uri, cv2.CAP_FFMPEG, list(params))

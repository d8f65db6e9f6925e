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
- RTSP over TCP first (`rtsp_flags` prefer_tcp), as OpenCV does when given no options.

A video file is opened with the `file` protocol alone (`FILE_OPTIONS`): a playlist or concat list among
the files reaches no network.

One set for every stream, not one per scheme (http:// over http and tcp alone, rtsp:// over tcp, udp,
rtp and http): OpenCV takes FFmpeg's options only from the environment variable
OPENCV_FFMPEG_CAPTURE_OPTIONS, read as a capture opens, so options that differ from one open to the
next must be set for each open and held until it has read them — and OpenCV reads them inside its open,
which includes FFmpeg's connect and stream probing, up to the open timeout. Per-scheme options were so
set under one process-wide lock held for the whole open: a camera that accepted TCP and never answered
held it 10 s per attempt, and every other camera's connect and reconnect waited behind it (a review: a
healthy camera opening in 0.11 s alone took 19.85 s behind two hung ones; behind eight, a camera that
dropped its stream did not reconnect within 68 s; 100 RTSP cameras started one at a time). The union
loosens nothing real: a nested open comes only from a redirect (refused) or from a demuxer that names
URLs (none is allowed), and neither the URL's own scheme (checked here) nor `file` is widened. Stream
opens so share their options and run at once (`OptionSetLock`); a file's open, whose options differ,
never overlaps one (it waits for the streams' opens in progress, at most their open timeout, and
streams arriving meanwhile wait for it: it is not starved). OpenCV itself also held one lock of its
own over every FFmpeg open in the process (the same 10 s behind each hung camera, whatever ours did),
unless OPENCV_FFMPEG_IS_THREAD_SAFE is 1: FFmpeg (4.0 on) opens separate captures safely side by side,
so it is set, unless the operator set it (0: one open at a time again, for an FFmpeg built without
threads).

An RTSP server's own redirect (a 3xx answer), which FFmpeg follows with no option to refuse it, is
refused by the protocol whitelist: FFmpeg opens the new URL by its protocol (rtsp, or satip), which no
set here names (the camera's own rtsp:// URL is opened by its demuxer, without asking the whitelist).
tests/ingest/test_ffmpeg_open.py holds this against an FFmpeg that changes it.

Left open: FFmpeg bounds neither a stream part's length nor a mid-stream frame's size (README, Safe by
default).

The variable is set for a group of opens of one option set as the first of them begins and given
back as the last ends, after any options the operator put there, so theirs still apply (rtsp_transport,
say) but cannot loosen these (`joined_options`); between opens it holds what the operator set, or
NEUTRAL_OPTIONS. It is rewritten only while no open of ours is under way, so never while OpenCV may be
reading it."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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
    "rtsp_flags": "prefer_tcp",
}
"""FFmpeg's options for every stream (each option applies only where it means something: max_redirects
to HTTP, rtsp_flags to RTSP)."""

FILE_PROTOCOLS = "file"
"""A video file reads itself only: a playlist or concat list among the files reaches no network."""

FILE_OPTIONS = {"protocol_whitelist": FILE_PROTOCOLS}
"""FFmpeg's options for a video file."""


def capture_options(uri: str) -> dict[str, str] | None:
    """FFmpeg's options for opening `uri`: STREAM_OPTIONS for a URL of a scheme in SCHEME_PROTOCOLS,
    FILE_OPTIONS for a path; None for a URL of any other scheme, which is not opened."""
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    if not scheme:
        return dict(FILE_OPTIONS)
    return dict(STREAM_OPTIONS) if scheme in SCHEME_PROTOCOLS else None


def joined_options(operator_options: str | None, options: dict[str, str]) -> str:
    """OPENCV_FFMPEG_CAPTURE_OPTIONS's value: the operator's own `key;value` pairs first, but for keys we
    set and pairs FFmpeg would misread (no `;`: it swallowed the pair after it, our whitelist), ours after."""
    pairs = [pair for pair in (operator_options or "").split("|") if ";" in pair and pair.split(";")[0] not in options]
    return "|".join([*pairs, *(f"{key};{value}" for key, value in options.items())])


NEUTRAL_OPTIONS = "rtsp_flags;prefer_tcp"
"""What the variable holds between our opens when the operator set none: OpenCV's own default when it is
unset (other captures, of files this process wrote, open as before); it is never unset again, since
unsetting reshuffles the environment that other threads (libpq's, OpenSSL's) may be reading."""

THREAD_SAFE_VARIABLE = "OPENCV_FFMPEG_IS_THREAD_SAFE"
"""1: OpenCV takes no lock of its own around an FFmpeg open (read at each open). Without it, OpenCV
held one process-wide lock over each open, connect and probe included: a hung camera held every other
camera's open for its whole open timeout (a review), which no lock of ours could spare them."""

# Set when ingest first imports this, before a node starts its threads: adding a variable reshuffles
# the environment (replacing a value does not), so the opens themselves only ever replace values.
os.environ.setdefault(THREAD_SAFE_VARIABLE, "1")
os.environ.setdefault(CAPTURE_OPTIONS_VARIABLE, NEUTRAL_OPTIONS)


@dataclass(eq=False)
class _Waiter:
    """An open waiting for its option set's turn (`OptionSetLock`)."""

    key: tuple[tuple[str, str], ...]
    admitted: bool = False


class OptionSetLock:
    """Opens of one option set at once, of different sets never: OPENCV_FFMPEG_CAPTURE_OPTIONS holds one
    set at a time (a group mutual exclusion). The first open of a set, finding none under way, sets the
    variable to it (`joined_options`, after the operator's own); the others of that set join it while
    no other set waits; the last to end hands the variable to the set that has waited longest (all its
    waiting opens go at once) or gives it back to what the operator had set (NEUTRAL_OPTIONS where
    nothing). The variable is so written only while no open is under way: never while OpenCV may be
    reading it.

    An open of another set arriving stops later opens of the set under way from joining it: a video
    file's open waits for the streams' opens in progress (each ends within its open timeout), not for
    every stream that reconnects meanwhile (with 100 cameras, some would always be opening)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._active: tuple[tuple[str, str], ...] | None = None
        self._holders = 0
        self._waiting: list[_Waiter] = []
        self._operator_options: str | None = None

    @contextmanager
    def holding(self, options: dict[str, str]) -> Iterator[None]:
        """The variable holds `options` (after the operator's) for the length of the block."""
        key = tuple(options.items())
        with self._condition:
            if self._holders == 0 and not self._waiting:
                operator_options = os.environ.get(CAPTURE_OPTIONS_VARIABLE)
                self._operator_options = None if operator_options == NEUTRAL_OPTIONS else operator_options
                self._begin(key, 1)
            elif self._active == key and not self._waiting:
                self._holders += 1
            else:
                self._wait_turn(_Waiter(key))
        try:
            yield
        finally:
            with self._condition:
                self._leave()

    def _wait_turn(self, waiter: _Waiter) -> None:
        """Wait (the condition held) until `waiter`'s set is under way with it among its opens."""
        self._waiting.append(waiter)
        try:
            self._condition.wait_for(lambda: waiter.admitted)
        except BaseException:  # interrupted (KeyboardInterrupt): counted as an open it never holds
            if waiter.admitted:
                self._leave()
            else:
                self._waiting.remove(waiter)
            raise

    def _begin(self, key: tuple[tuple[str, str], ...], holders: int) -> None:
        """Set `key`'s options for `holders` opens (none under way)."""
        self._active, self._holders = key, holders
        os.environ[CAPTURE_OPTIONS_VARIABLE] = joined_options(self._operator_options, dict(key))

    def _leave(self) -> None:
        """One open ended: the last of its set hands the variable on, or gives it back."""
        self._holders -= 1
        if self._holders:
            return
        if self._waiting:
            key = self._waiting[0].key
            admitted = [waiter for waiter in self._waiting if waiter.key == key]
            self._waiting = [waiter for waiter in self._waiting if waiter.key != key]
            self._begin(key, len(admitted))
            for waiter in admitted:
                waiter.admitted = True
            self._condition.notify_all()
            return
        self._active = None
        os.environ[CAPTURE_OPTIONS_VARIABLE] = self._operator_options or NEUTRAL_OPTIONS


_options_lock = OptionSetLock()
"""The process's one: OpenCV reads its options from the process's environment."""


def open_capture(uri: str, params: Sequence[int] = ()) -> cv2.VideoCapture:
    """A capture of `uri` through FFmpeg under `capture_options(uri)`; `params` are OpenCV's open
    parameters (timeouts). Check `isOpened()`: a source refused by the options, or a URL of a scheme not
    in SCHEME_PROTOCOLS (never handed to FFmpeg), does not open. Streams open at once, side by side; a
    video file's open waits for those under way (`OptionSetLock`)."""
    options = capture_options(uri)
    if options is None:
        return cv2.VideoCapture()
    with _options_lock.holding(options):
        return cv2.VideoCapture(uri, cv2.CAP_FFMPEG, list(params))

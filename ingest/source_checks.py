"""What can be told of a frame source before it is sampled: the form of its URI (a stream URL or a
file or folder path, `is_stream_uri`; what is wrong with it, `uri_syntax_problem`, credentials masked)
and the start-up check of a source (`check_source`): a URL's syntax, a file's or folder's presence and
readability, a video's stated frame size and its first frame. Bad input (missing path, corrupt video,
empty folder, malformed URL) raises InputError with a one-line message in which a URL's credentials
are masked. The sources themselves (opening and sampling) are ingest/sources.py (a folder, `open_source`) and
ingest/video_source.py (a video file or stream)."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from urllib.parse import urlsplit

import cv2

from common import defaults
from common.credentials import authority_cut_short, mask_url
from common.errors import InputError
from common.frame_store import pixels_problem
from ingest.capture_process import IsolatedCapture

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
SUPPORTED_SCHEME_NAMES = tuple(prefix.removesuffix("://") for prefix in STREAM_SCHEMES)
LISTENING_SCHEME_NAMES = frozenset({"udp", "tcp"})
"""Schemes where an empty host means "listen on every interface" (udp://@:1234): a port is needed instead."""

URL_LIKE_PREFIX = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):")
"""`scheme:` at the start of a source: a URL, or a broken one (a Windows drive letter is one character)."""
BROKEN_STREAM_PREFIX = re.compile(rf"^(?P<scheme>{'|'.join(SUPPORTED_SCHEME_NAMES)})(?!://)(?::|//)", re.IGNORECASE)
"""A supported scheme's name followed by `:` or `//` but not `://`: rtsp//host, rtsp:/host, http:host."""
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def is_utf8(text: str) -> bool:
    """Whether `text` is valid UTF-8: a file name of other bytes comes from the OS with surrogates in it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_stream_uri(uri: str) -> bool:
    """Whether `uri` names a stream (a supported scheme followed by ://) rather than a file or folder."""
    return uri.lower().startswith(STREAM_SCHEMES)


def unshowable_problem(uri: str) -> str | None:
    """Why `uri` is refused where no masking could show it safely, or None: a stream URL with whitespace
    (where a password with a space or tab ends cannot be told), or a URL (scheme://) with an '@' after its
    host (`authority_cut_short`: what a URL parser takes for its host and port is the user name and the
    password's start, which masking does not see as credentials, no '@' following them)."""
    if (is_stream_uri(uri) or BROKEN_STREAM_PREFIX.match(uri)) and re.search(r"\s", uri):
        return "a stream URL source contains whitespace (write a space in it as %20)"
    url = URL_LIKE_PREFIX.match(uri)
    if url is None or not uri[url.end() :].startswith("//") or not authority_cut_short(uri):
        return None
    return (
        f"source {url['scheme'][:20]}://… has an '@' after its host (in its path, query or fragment): a '/', '?' or"
        " '#' in the user name or password must be written %2F, %3F or %23 (an '@' in the path or query, %40)"
    )


def uri_syntax_problem(uri: str) -> str | None:
    """What is wrong with the form of `uri` (credentials masked), or None. Nothing is opened: a stream
    URL must have a supported scheme and a host; something that looks like a mistyped URL
    (rtsp//host, rtsp:/host, http:host) is refused rather than taken for a file path; so is a URL with
    an '@' after its host (`authority_cut_short`): rtsp://admin:1234/5678@cam, a password typed with a
    raw '/', was read as host `admin`, port 1234, and shown so (a review). An '@' meant in a camera's
    path or query is written %40: which of the two it is cannot be told."""
    if not uri.strip():
        return "source is empty"
    if not is_utf8(uri):  # OpenCV crashed the process on such a name (a segmentation fault)
        return f"source {ascii(uri)[1:-1][:300]} is not valid UTF-8 (a name in another encoding): rename it"
    if problem := unshowable_problem(uri):
        return problem
    shown = mask_url(uri)
    if uri != uri.strip():
        return f"source {shown!r} has leading or trailing whitespace"
    if CONTROL_CHARACTERS.search(uri):
        return f"source {shown!r} contains control characters"
    if broken := BROKEN_STREAM_PREFIX.match(uri):
        name = broken["scheme"].lower()
        return f"source {shown} looks like a malformed {name} URL: expected {name}://host/..."
    scheme = URL_LIKE_PREFIX.match(uri)
    if scheme is None or not uri[scheme.end() :].startswith("//"):
        return None  # a file or folder path
    name = scheme["scheme"].lower()
    if name not in SUPPORTED_SCHEME_NAMES:
        return (
            f"source {shown}: unsupported URL scheme {name!r}; supported: {', '.join(SUPPORTED_SCHEME_NAMES)}"
            " (a file or folder is given as a plain path)"
        )
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return f"source {shown} is not a valid URL (its host, port or credentials cannot be parsed)"
    if not parts.netloc:
        return f"source {shown} has no host (expected {name}://host/...)"
    if not parts.hostname and (name not in LISTENING_SCHEME_NAMES or port is None):
        needed = (
            f"{name}://host:port or {name}://@:port to listen"
            if name in LISTENING_SCHEME_NAMES
            else f"{name}://host/..."
        )
        return f"source {shown} has no host (expected {needed})"
    return None


def check_source(uri: str, memory_mb: int = defaults.CAPTURE_MEMORY_MB) -> None:
    """Raise InputError if `uri` can never work: a malformed or unsupported URL; a path that does not
    exist, cannot be read, is neither a regular file nor a folder, or is a 0-byte file; a video OpenCV
    cannot open or whose first frame cannot be decoded (truncated, corrupt); a folder with no images.
    A stream URL is only checked for its form, never opened (a live camera may be down at start and
    is retried later). Messages are one line, with any URL credentials masked."""
    if problem := uri_syntax_problem(uri):
        raise InputError(problem)
    if is_stream_uri(uri):
        return
    shown = mask_url(uri)
    path = Path(uri)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"source {shown} does not exist") from None
    except OSError as error:
        raise InputError(f"source {shown} cannot be read: {error.strerror or error}") from None
    if stat.S_ISDIR(mode):
        check_image_folder(path, shown)
    elif stat.S_ISREG(mode):
        check_video_file(path, shown, memory_mb=memory_mb)
    else:
        raise InputError(f"source {shown} is neither a regular file nor a folder")


def is_image_entry(path: Path) -> bool:
    """An image folder's entry to read: named by IMAGE_SUFFIXES and a regular file, a link (to nothing, to
    itself, to a folder or a FIFO: `Path.is_file()` is False for them without a word, and they were left
    out unrecorded, a review), or one that cannot be looked at (a link into a folder the node may not
    enter): reading it records why it gave no frame (`corrupt`), where letting its error out would stop
    the whole camera. A FIFO or folder that is no link is not an image of the folder."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return False
    try:
        return path.is_symlink() or path.is_file()
    except OSError:
        return True


def check_image_folder(folder: Path, shown: str) -> None:
    """The folder can be listed and holds at least one image file (by suffix); `shown` is its masked name."""
    try:
        has_images = any(is_image_entry(p) for p in folder.iterdir())
    except OSError as error:
        raise InputError(f"image folder {shown} cannot be listed: {error.strerror or error}") from None
    if not has_images:
        raise InputError(f"image folder {shown} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")


def stated_size_problem(capture: IsolatedCapture, max_pixels: int) -> str | None:
    """Why the frames an opened video or stream states (its width and height, known once opened) are
    refused (more than `max_pixels`), or None, also when it states none. Checked before any frame is
    decoded: a 3 MB video of 16000 x 16000 frames took 1.9 GB a frame to find each one too large, and
    three cameras on it took an ingest node past 5 GB."""
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width <= 0 or height <= 0:
        return None
    return pixels_problem(width, height, max_pixels)


def check_video_file(
    path: Path, shown: str, max_pixels: int = defaults.MAX_FRAME_PIXELS, memory_mb: int = defaults.CAPTURE_MEMORY_MB
) -> None:
    """The file is not empty, can be read, and OpenCV opens it, its frames are within `max_pixels`, and
    it decodes its first frame."""
    try:
        with path.open("rb") as video:
            first_bytes = video.read(1)
    except OSError as error:
        raise InputError(f"video {shown} cannot be read: {error.strerror or error}") from None
    if not first_bytes:
        raise InputError(f"video {shown} is empty (0 bytes)")
    timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, defaults.STREAM_OPEN_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, defaults.STREAM_OPEN_TIMEOUT_MS]  # fmt: skip
    capture = IsolatedCapture(str(path), timeouts, memory_mb=memory_mb)
    try:
        if not capture.isOpened():
            raise InputError(f"cannot open video (corrupt or unsupported): {shown}")
        if problem := stated_size_problem(capture, max_pixels):
            raise InputError(f"video {shown} has frames of {problem}")
        decoded, image = capture.read()
        if not decoded or image is None:
            why = capture.ended_because or "truncated or corrupt video"
            raise InputError(f"no frame could be decoded from {shown} ({why})")
    finally:
        capture.release()

"""What a capture's child prints (ingest/capture_child.py), kept from showing its source's credentials.

FFmpeg and OpenCV print their own lines in the child, which the node's stderr and stdout took as they
were: a snapshot camera's URL with its password (`Could find no file or sequence with path
'http://admin:Pa%3dss@…'`), and at FFmpeg's debug level (OPENCV_FFMPEG_LOGLEVEL 48) each request with
its headers. The node masks its own log lines (common/credentials.py), but these never pass through it
(a review). So in the child (`scrub_output`):

- everything written to its stdout and stderr (FFmpeg's lines, which OpenCV prints on stdout once the
  operator sets a level, OpenCV's, Python's) goes through a pipe to a thread that writes it on to the
  node's stderr a line at a time, the source's secrets replaced (`source_secrets`: the URL as its
  scheme, host and port, `shown_source`; its password, path and query, and the Basic credentials made of
  them) and any URL's credentials masked (`mask_url`), control characters written out; `alpr run`'s
  stdout, its report, gets none of it;
- FFmpeg's level is held to MAX_FFMPEG_LOG_LEVEL (its info lines): its verbose and debug ones show each
  request and its headers, an Authorization among them. Its errors and warnings (`method SETUP failed:
  461 Unsupported Transport`, `HTTP error 401 Unauthorized`) still reach the node's stderr where the
  operator asks for them (`alpr` sets OPENCV_FFMPEG_LOGLEVEL to -8, quiet, unless it is set)."""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from common.credentials import MASK, escape_controls, mask_url, shown_source

FFMPEG_LOG_LEVEL_VARIABLE = "OPENCV_FFMPEG_LOGLEVEL"
"""The variable OpenCV sets FFmpeg's log level by (FFmpeg's numbers: 16 errors, 24 warnings, 48 debug)."""

FFMPEG_DEBUG_VARIABLE = "OPENCV_FFMPEG_DEBUG"
"""Set alone, OpenCV logs FFmpeg at its verbose level (40)."""

MAX_FFMPEG_LOG_LEVEL = 32
"""FFmpeg's info level: the most of FFmpeg's log a child prints (verbose and debug lines show requests)."""

MAX_LINE_BYTES = 16 * 1024
"""A line is written on at this length at the latest, its end or not."""

JOIN_S = 0.5
"""How long a child ending waits for its last lines to be written on (its reader waits 1 s for it to end)."""


def ffmpeg_log_level(environment: dict[str, str]) -> str | None:
    """OPENCV_FFMPEG_LOGLEVEL's value for the child: the operator's (or the verbose level that
    OPENCV_FFMPEG_DEBUG alone stands for) held to MAX_FFMPEG_LOG_LEVEL; None where neither is set
    (OpenCV's own: FFmpeg's errors)."""
    given = environment.get(FFMPEG_LOG_LEVEL_VARIABLE)
    if given is None:
        return None if FFMPEG_DEBUG_VARIABLE not in environment else str(MAX_FFMPEG_LOG_LEVEL)
    try:
        level = int(given.strip())
    except ValueError:  # OpenCV reads it with atoi: what does not parse is 0, FFmpeg's panic level
        level = 0
    return str(min(level, MAX_FFMPEG_LOG_LEVEL))


def source_secrets(uri: str) -> list[tuple[str, str]]:
    """What of `uri` a line may not show, each with what stands for it, longest first: the URL whole,
    raw and percent-decoded, with and without its user:password (`shown_source`); its path and query,
    together and apart (`/…`, `…`: a UniFi camera's path is its token); its password, or a lone user
    token, raw and decoded, and the Basic credentials made of them (`***`). A file's path, nothing."""
    if "://" not in uri:
        return []
    try:
        parts = urlsplit(uri)
    except ValueError:
        return [(uri, shown_source(uri))]
    shown = shown_source(uri)
    host = parts.netloc.rpartition("@")[2]
    rest = uri.split(parts.netloc, 1)[1] if parts.netloc else ""
    bare = f"{parts.scheme}://{host}{rest}"
    secrets = [(form, shown) for url in (uri, bare) for form in (url, unquote(url))]
    for part, stands in ((rest, "/…"), (parts.path, "/…"), (parts.query, "…")):
        if part.strip("/"):
            secrets += [(form, stands) for form in (part, unquote(part))]
    user, has_password, password = parts.netloc.rpartition("@")[0].partition(":")
    token = password if has_password else user
    if token:
        secrets += [(form, MASK) for form in (token, unquote(token))]
        for basic in (f"{user}:{password}", f"{unquote(user)}:{unquote(password)}"):
            secrets.append((base64.b64encode(basic.encode("utf-8", "surrogateescape")).decode(), MASK))
    return sorted({form: stands for form, stands in secrets if form}.items(), key=lambda s: -len(s[0]))


def scrubbed(line: str, secrets: list[tuple[str, str]]) -> str:
    """`line` with each of `secrets` replaced, any URL's credentials masked and control characters written
    out."""
    for secret, stands in secrets:
        line = line.replace(secret, stands)
    return escape_controls(mask_url(line))


def copy_scrubbed(source_fd: int, target_fd: int, secrets: list[tuple[str, str]]) -> None:
    """Write what comes from `source_fd` to `target_fd` a line at a time, scrubbed, until its end; read to
    its end even where the target takes nothing more (a closed pipe): the writers would block."""
    pending = b""
    with contextlib.suppress(OSError), open(source_fd, "rb", buffering=0) as source:
        while chunk := source.read(MAX_LINE_BYTES):
            pending += chunk
            lines = pending.split(b"\n")
            pending = lines.pop()
            if len(pending) >= MAX_LINE_BYTES:
                lines, pending = [*lines, pending], b""
            write_lines(target_fd, lines, secrets)
    write_lines(target_fd, [pending] if pending else [], secrets)


def write_lines(target_fd: int, lines: list[bytes], secrets: list[tuple[str, str]]) -> None:
    """`lines`, scrubbed, written to `target_fd` (nothing where it takes nothing)."""
    text = "".join(f"{scrubbed(line.decode('utf-8', 'backslashreplace'), secrets)}\n" for line in lines)
    data = text.encode("utf-8", "backslashreplace")
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(target_fd, data) :]


def line_buffered_c_stdout() -> None:
    """C's stdout written a line at a time (OpenCV prints FFmpeg's lines there; to a pipe, C holds them
    until the process ends), where the C library lets it be reached."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None)
        libc.setvbuf(ctypes.c_void_p.in_dll(libc, "stdout"), None, 1, 0)  # _IOLBF


def scrub_output(uri: str) -> Callable[[], None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, FFmpeg's and OpenCV's writes too)
    through `scrubbed` to its stderr as it was, and hold FFmpeg's log level (`ffmpeg_log_level`); call
    before FFmpeg is first used. Returns what to call at the end: the last lines written on, and 1 and 2
    left on /dev/null."""
    if (level := ffmpeg_log_level(dict(os.environ))) is not None:
        os.environ[FFMPEG_LOG_LEVEL_VARIABLE] = level
    line_buffered_c_stdout()
    target = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)
    copier = threading.Thread(target=copy_scrubbed, args=(read_end, target, source_secrets(uri)), daemon=True)
    copier.start()

    def finish() -> None:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
            ctypes.CDLL(None).fflush(None)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
        copier.join(JOIN_S)
        if not copier.is_alive():  # (else it still writes there: left open, the process ending)
            os.close(target)

    return finish

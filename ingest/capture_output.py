"""What a capture's child prints (ingest/capture_child.py), kept from showing its source's credentials.

FFmpeg and OpenCV print their own lines in the child, which the node's stderr and stdout took as they
were: a snapshot camera's URL with its password (`Could find no file or sequence with path
'http://admin:Pa%3dss@…'`), and at FFmpeg's debug level (OPENCV_FFMPEG_LOGLEVEL 48) each request with
its headers. The node masks its own log lines (common/credentials.py), but these never pass through it
(a review). So:

- the child's stdout and stderr (FFmpeg's lines, which OpenCV prints on stdout once the operator sets a
  level, OpenCV's, Python's tracebacks) are one pipe that its reader, in the node, reads (`relay_output`,
  a thread of its own: a child printing while the node calls nothing of it never blocks on a full pipe)
  and writes to the node's stderr a line at a time, the source's secrets replaced (`source_secrets`:
  the URL as its scheme, host and port, `shown_source`; its password, path and query, and the Basic
  credentials made of them) and any URL's credentials masked (`mask_url`), control characters written
  out; `alpr run`'s stdout, its report, gets none of it. Read in the node, what a child prints last
  reaches the node's stderr however the child ends: an FFmpeg assertion's line before its abort() and
  a Python traceback were lost with a thread copying them in the child. A node whose stderr is closed
  or refuses the write (`2>&-`, a full disk) drops the lines and reads on: the capture goes on;
- a line is written whole up to MAX_LINE_BYTES; past it, cut there once (what follows to its end
  dropped, `LINE_CUT` said in its place), never split into lines scrubbed apart, which showed a secret
  that ran across the split; a secret that starts before the cut is replaced whole (`Scrubber`), and a
  last word holding a ':' dropped (another URL's user:password cut before its '@', `without_cut_word`);
- FFmpeg's level is held to MAX_FFMPEG_LOG_LEVEL (its info lines, `ffmpeg_log_level`, set in the
  child's environment by its reader): its verbose and debug ones show each request and its headers, an
  Authorization among them. Its errors and warnings (`method SETUP failed: 461 Unsupported Transport`,
  `HTTP error 401 Unauthorized`) still reach the node's stderr where the operator asks for them (`alpr`
  sets OPENCV_FFMPEG_LOGLEVEL to -8, quiet, unless it is set);
- the child runs FFmpeg at its warning level at least (REFUSAL_LOG_LEVEL), so that a camera refusing
  the credentials (`HTTP error 401 Unauthorized`, `method DESCRIBE failed: 403 Forbidden`) is known
  (`refusal`, told to the capture: its open's error says "credentials refused"); FFmpeg's lines past the
  level the operator asked for (`shown_level`) are read for that, never written."""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import re
import sys
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
"""The most of one line a child prints that reaches the node's stderr (bytes, before scrubbing): a longer
line is cut there, once, the rest of it to its end dropped. A reader holds at most this, the longest of
its source's secrets and one read (READ_BYTES)."""

LINE_CUT = f"… [line cut at {MAX_LINE_BYTES // 1024} KiB]"
"""What ends a line cut at MAX_LINE_BYTES."""

READ_BYTES = 64 * 1024
"""The most a reader takes from its child's pipe at once."""

REFUSAL_LOG_LEVEL = 24
"""FFmpeg's warning level, the least a child runs FFmpeg at: its HTTP errors' (`HTTP error 401 ...`)."""

OPENCV_DEFAULT_LEVEL = 16
"""FFmpeg's level where neither variable is set (OpenCV's own: FFmpeg's errors)."""

FFMPEG_LINE = re.compile(rb"\[OPENCV:FFMPEG:(-?\d+)\]")
"""How OpenCV starts a line of FFmpeg's it prints: its level."""

REFUSED = re.compile(rb"\b(401|403):? \(?(Unauthorized|Forbidden)\b")
"""FFmpeg's words for a camera refusing the credentials: HTTP's (`HTTP error 401 Unauthorized`) and
RTSP's (`method DESCRIBE failed: 401 (Unauthorized)`, or without the brackets)."""


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


def child_levels(environment: dict[str, str]) -> tuple[str, int]:
    """FFmpeg's level for the child (at least REFUSAL_LOG_LEVEL) and the level whose lines are shown (the
    operator's, `ffmpeg_log_level`)."""
    given = ffmpeg_log_level(environment)
    shown = int(given) if given is not None else OPENCV_DEFAULT_LEVEL
    return str(max(shown, REFUSAL_LOG_LEVEL)), shown


def refusal(line: bytes) -> str | None:
    """The refusal an FFmpeg line tells ("401 Unauthorized", "403 Forbidden"), or None."""
    if not FFMPEG_LINE.match(line):
        return None
    found = REFUSED.search(line)
    return f"{found.group(1).decode()} {found.group(2).decode()}" if found else None


def shown_line(line: bytes, shown_level: int) -> bool:
    """Whether a child's line is written: not an FFmpeg line past the level the operator asked for."""
    level = FFMPEG_LINE.match(line)
    return level is None or int(level.group(1)) <= shown_level


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


class Scrubber:
    """Lines as the node's stderr may show them: each of a source's secrets (`source_secrets`) replaced
    where it starts, the longest first, any URL's credentials masked and control characters written out."""

    def __init__(self, secrets: list[tuple[str, str]]) -> None:
        forms = {form.encode("utf-8", "surrogateescape"): stands for form, stands in secrets}
        ordered = sorted(forms, key=len, reverse=True)
        self._stands = {form: stands.encode("utf-8", "surrogateescape") for form, stands in forms.items()}
        self._pattern = re.compile(b"|".join(map(re.escape, ordered))) if ordered else None
        self.overlap = len(ordered[0]) if ordered else 0
        """How far past MAX_LINE_BYTES a line is held: a secret starting before the cut ends within it."""

    def line(self, raw: bytes) -> str:
        """`raw` (one line, without its end) as shown: cut at MAX_LINE_BYTES, `LINE_CUT` added, where
        longer; a secret starting before the cut replaced whole, never cut in two."""
        cut = len(raw) > MAX_LINE_BYTES
        limit = MAX_LINE_BYTES if cut else len(raw)
        kept, at = [], 0
        for found in self._pattern.finditer(raw, 0, limit + self.overlap) if self._pattern else ():
            if found.start() >= limit:
                break
            kept += [raw[at : found.start()], self._stands[found[0]]]
            at = found.end()
        kept.append(raw[at:limit])
        shown = b"".join(kept)
        if cut:
            shown = without_cut_word(shown)
        text = escape_controls(mask_url(shown.decode("utf-8", "backslashreplace")))
        return f"{text}{LINE_CUT}" if cut else text


def without_cut_word(line: bytes) -> bytes:
    """`line`, cut, without its last word where that holds a ':': a URL's user:password cut before its
    '@', which `mask_url` does not know (the source's own secrets are replaced whole, `Scrubber`)."""
    start = max(line.rfind(space) for space in (b" ", b"\t", b"\r", b"\v", b"\f")) + 1
    return line[:start] if b":" in line[start:] else line


def node_stderr() -> int | None:
    """The node's stderr as a file descriptor, None where it has none (started with it closed: its
    descriptor 2 may be any file the node opened since)."""
    try:
        return sys.__stderr__.fileno() if sys.__stderr__ is not None else None
    except (OSError, ValueError):
        return None


def relay_output(
    source_fd: int,
    uri: str,
    target_fd: int | None,
    shown_level: int = MAX_FFMPEG_LOG_LEVEL,
    on_refused: Callable[[str], None] | None = None,
    label: str | None = None,
) -> None:
    """Write what comes from `source_fd` (a child's stdout and stderr) to `target_fd` a line at a time,
    scrubbed of `uri`'s secrets (`Scrubber`), until its end, and close it; read to its end whatever
    `target_fd` takes (nothing where it is None, closed or full): the child would block on its writes.
    FFmpeg's lines past `shown_level` are not written; one telling the credentials refused is told to
    `on_refused` ("401 Unauthorized"). With `label` (the camera's id), each line begins "camera LABEL: ", as
    the node's own lines do: a node of many cameras wrote FFmpeg's lines with nothing to tell whose they were."""
    scrubber, pending, dropping = Scrubber(source_secrets(uri)), b"", False
    prefix = f"camera {escape_controls(label)}: " if label is not None else ""

    def shown(lines: list[bytes]) -> list[str]:
        for line in lines:
            if on_refused is not None and (refused := refusal(line)):
                on_refused(refused)
        return [prefix + scrubber.line(line) for line in lines if shown_line(line, shown_level)]

    try:
        while chunk := os.read(source_fd, READ_BYTES):
            if dropping:  # the rest of a line cut: dropped to its end
                end = chunk.find(b"\n")
                if end < 0:
                    continue
                chunk, dropping = chunk[end + 1 :], False
            *lines, pending = (pending + chunk).split(b"\n")
            if len(pending) > MAX_LINE_BYTES + scrubber.overlap:  # cut now, not held to its end
                lines.append(pending)
                pending, dropping = b"", True
            write_lines(target_fd, shown(lines))
        if pending:
            write_lines(target_fd, shown([pending]))
    except OSError:  # (the pipe's end lost: not ours to say)
        pass
    finally:
        os.close(source_fd)


def write_lines(target_fd: int | None, lines: list[str]) -> None:
    """`lines` written to `target_fd`, each ended; nothing where it takes nothing."""
    if target_fd is None or not lines:
        return
    data = "".join(f"{line}\n" for line in lines).encode("utf-8", "backslashreplace")
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(target_fd, data) :]


def line_buffered_c_stdout() -> None:
    """C's stdout written a line at a time (OpenCV prints FFmpeg's lines there; to a pipe, C holds them
    until the process ends, and loses them where it aborts), where the C library lets it be reached."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None)
        libc.setvbuf(ctypes.c_void_p.in_dll(libc, "stdout"), None, 1, 0)  # _IOLBF

"""Reading a file an operator hands us (the cameras file, a watch-list CSV, the receivers file, a
secret file): a regular file only (a FIFO would block, /dev/zero never end, a device be touched),
bounded in size, UTF-8 (a byte-order mark allowed), every fault one clear error naming the file (or
what the caller calls it) and where, never its text."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

from common.errors import AlprError

MAX_SECRET_FILE_BYTES = 64 * 1024
"""A secret file (a password, a token) holds one line; more is a mistake (or /dev/zero)."""


def _size_text(max_bytes: int) -> str:
    if max_bytes >= 1024 * 1024 and max_bytes % (1024 * 1024) == 0:
        return f"{max_bytes // (1024 * 1024)} MiB"
    return f"{max_bytes // 1024:,} KiB" if max_bytes >= 1024 and max_bytes % 1024 == 0 else f"{max_bytes} bytes"


def os_reason(problem: Exception) -> str:
    """An OSError's own words without its file name (`No such file or directory`), else the message."""
    return str(problem.strerror if isinstance(problem, OSError) and problem.strerror else problem)


class NotRegularFileError(Exception):
    """A FIFO, a device, a socket or a folder where a regular file was expected."""

    def __str__(self) -> str:
        return "it is not a regular file"


def read_regular_bytes(path: Path, max_bytes: int) -> bytes:
    """Up to max_bytes + 1 bytes of the regular file at `path` (symbolic links followed; more than
    max_bytes means the file is too long); OSError, ValueError (a NUL in the path) or
    NotRegularFileError. A FIFO, device or socket is never opened for reading."""
    if not stat.S_ISREG(os.stat(path).st_mode):  # before opening: opening a device or FIFO acts on it
        raise NotRegularFileError()
    # Non-blocking, so a FIFO swapped in since the check cannot hold the open; no controlling tty.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise NotRegularFileError()
        fcntl.fcntl(descriptor, fcntl.F_SETFL, fcntl.fcntl(descriptor, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(descriptor, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(descriptor)


def shown_path(path: Path) -> str:
    """A path as a message shows it: as it is, or escaped where it holds what a terminal would act on (a
    file named `list\\nimported 2 entries\\e[8m.csv` made a failed import look done)."""
    text = str(path)
    return text if text.isprintable() else ascii(text)


def read_text_file(
    path: Path, max_bytes: int, error: type[AlprError], label: str | None = None, too_large: str = ""
) -> str:
    """The file's text; `error` (InputError, ConfigError) when it does not exist, is not a regular
    file, cannot be read, is larger than `max_bytes` or is not UTF-8 (with the line of the first bad
    byte). Messages begin with `label`, by default the path (a caller whose path may itself be a
    misplaced secret names the file otherwise); `too_large` is said after the size of a file larger (what
    the limit is tied to)."""
    name = shown_path(path) if label is None else label
    try:
        raw = read_regular_bytes(path, max_bytes)
    except FileNotFoundError:
        raise error(f"{name}: cannot read: it does not exist") from None
    except (OSError, ValueError, NotRegularFileError) as problem:
        raise error(f"{name}: cannot read: {os_reason(problem)}") from None
    if len(raw) > max_bytes:
        raise error(f"{name}: larger than {_size_text(max_bytes)}{too_large}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as problem:
        line = raw.count(b"\n", 0, problem.start) + 1
        raise error(f"{name}: line {line}: not UTF-8") from None

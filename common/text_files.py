"""Reading a text file an operator hands us (the cameras file, a watch-list CSV, the receivers file, a
secret file): a regular file only (a FIFO would block, /dev/zero never end), bounded in size, UTF-8
(a byte-order mark allowed), every fault one clear error naming the file and where, never its text."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from common.errors import AlprError

MAX_SECRET_FILE_BYTES = 64 * 1024
"""A secret file (a password, a token) holds one line; more is a mistake (or /dev/zero)."""


def _size_text(max_bytes: int) -> str:
    if max_bytes >= 1024 * 1024 and max_bytes % (1024 * 1024) == 0:
        return f"{max_bytes // (1024 * 1024)} MiB"
    return f"{max_bytes // 1024} KiB" if max_bytes >= 1024 and max_bytes % 1024 == 0 else f"{max_bytes} bytes"


def read_text_file(path: Path, max_bytes: int, error: type[AlprError]) -> str:
    """The file's text; `error` (InputError, ConfigError) when it does not exist, is not a regular
    file, cannot be read, is larger than `max_bytes` or is not UTF-8 (with the line of the first bad
    byte)."""
    try:  # non-blocking: opening a FIFO with no writer would otherwise wait for ever
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(f"{path}: cannot read: it does not exist") from None
    except (OSError, ValueError) as problem:  # ValueError: a NUL in the path
        reason = problem.strerror if isinstance(problem, OSError) and problem.strerror else problem
        raise error(f"{path}: cannot read: {reason}") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise error(f"{path}: cannot read: it is not a regular file")
    with os.fdopen(descriptor, "rb") as file:
        try:
            raw = file.read(max_bytes + 1)
        except OSError as problem:
            raise error(f"{path}: cannot read: {problem.strerror or problem}") from None
    if len(raw) > max_bytes:
        raise error(f"{path}: larger than {_size_text(max_bytes)}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as problem:
        line = raw.count(b"\n", 0, problem.start) + 1
        raise error(f"{path}: line {line}: not UTF-8") from None

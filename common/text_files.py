"""Reading a text file an operator hands us (a watch-list CSV, the receivers file): bounded in size,
UTF-8 (a byte-order mark allowed), every fault one clear error naming the file and where."""

from __future__ import annotations

from pathlib import Path

from common.errors import AlprError


def read_text_file(path: Path, max_bytes: int, error: type[AlprError]) -> str:
    """The file's text; `error` (InputError, ConfigError) when it cannot be read, is larger than
    `max_bytes` or is not UTF-8 (with the line of the first bad byte)."""
    try:
        with path.open("rb") as file:
            raw = file.read(max_bytes + 1)
    except (OSError, ValueError) as problem:  # ValueError: a NUL in the path
        reason = problem.strerror if isinstance(problem, OSError) and problem.strerror else problem
        raise error(f"{path}: cannot read: {reason}") from None
    if len(raw) > max_bytes:
        size = f"{max_bytes // (1024 * 1024)} MiB" if max_bytes >= 1024 * 1024 else f"{max_bytes} bytes"
        raise error(f"{path}: larger than {size}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as problem:
        line = raw.count(b"\n", 0, problem.start) + 1
        raise error(f"{path}, line {line}: not UTF-8") from None

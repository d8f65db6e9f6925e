"""The node-wide check of its cameras' capture memory (`warn_capture_memory`, at an ingest node's start):
each video's or camera's capture child is held to ALPR_CAPTURE_MEMORY_MB (ingest/capture_process.py), but
nothing bounded them together — 6 cameras of endless MJPEG parts reached 1,476 MB at 256 each, and 16 at the
default could ask for 16 GB at once (a review). The node warns when its cameras times the bound exceed the
memory available to it: its cgroup's limit or the host's MemAvailable, the smaller. A budget the children
share is not kept: each child's bound is enforced by the node's reader of that child alone, and a shared one
would stop whichever camera happened to grow last; a container's memory limit is the node-wide bound."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ingest.cameras import CameraConfig
from ingest.source_checks import is_stream_uri

log = logging.getLogger("ingest.node")

CGROUP_LIMIT_FILES = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
"""Where this process's cgroup states its memory limit: cgroup v2's, then v1's."""

MEMINFO_FILE = Path("/proc/meminfo")
"""Where the host states the memory it has available (MemAvailable)."""

NO_CGROUP_LIMIT_BYTES = 1 << 60
"""A cgroup limit at or above this is none (v1 writes 9223372036854771712 for no limit; v2 writes `max`)."""

MB = 1024 * 1024
"""Bytes in a megabyte as ALPR_CAPTURE_MEMORY_MB counts them."""


def cgroup_limit_bytes() -> int | None:
    """This process's cgroup memory limit in bytes, or None where there is none or none can be read."""
    for path in CGROUP_LIMIT_FILES:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < NO_CGROUP_LIMIT_BYTES:
            return int(text)
        return None  # `max`, or v1's no limit
    return None


def mem_available_bytes() -> int | None:
    """The host's MemAvailable in bytes, or None where it cannot be read."""
    try:
        lines = MEMINFO_FILE.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name == "MemAvailable" and (fields := value.split()) and fields[0].isdigit():
            return int(fields[0]) * 1024  # (kB)
    return None


def available_memory() -> tuple[int, str] | None:
    """The memory available to this process in bytes, and what says so: its cgroup's limit or the host's
    MemAvailable, the smaller; None where neither can be read."""
    known = [(size, what) for size, what in ((cgroup_limit_bytes(), "this process's cgroup memory limit"),
             (mem_available_bytes(), "the host's MemAvailable")) if size is not None]  # fmt: skip
    return min(known) if known else None


def capture_cameras(cameras: Sequence[CameraConfig]) -> int:
    """How many of `cameras` read through a capture child: streams and video files (an image folder does not)."""
    return sum(1 for c in cameras if is_stream_uri(c.source) or not Path(c.source).is_dir())


def warn_capture_memory(cameras: Sequence[CameraConfig], capture_memory_mb: int) -> bool:
    """Warn when the capture children of `cameras` may together hold more than the memory available to this
    process; whether it warned."""
    count = capture_cameras(cameras)
    available = available_memory()
    if not count or available is None or count * capture_memory_mb * MB <= available[0]:
        return False
    size, what = available
    log.warning("capture memory: %d cameras x %d MB (ALPR_CAPTURE_MEMORY_MB) = %d MB, more than the %d MB available"
                " to this node (%s): their captures together may exhaust it; lower ALPR_CAPTURE_MEMORY_MB or run"
                " fewer cameras per node", count, capture_memory_mb, count * capture_memory_mb, size // MB,
                what)  # fmt: skip
    return True

"""Helpers of the ingest tests: letting go of a reader blocked on a FIFO (what the old code did)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def release_fifo(fifo: Path) -> None:
    """Let a reader blocked opening `fifo` go (open and close its other end); nothing when none waits."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

"""How long redacted frames stay on disk: `delete_expired_frames(keep_dir, max_age_s)` removes kept
frames older than the age limit (and the day folders it empties). A duty of the redactor pool: each
redactor worker runs it every KEEP_SWEEP_S between jobs, so no operator cron job is needed."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path


def delete_expired_frames(keep_dir: Path, max_age_s: float, now: float | None = None) -> int:
    """Delete `keep_dir/<camera>/<day>/*.jpg` files last written more than `max_age_s` ago; returns
    how many. Files another worker deletes meanwhile are skipped."""
    if not keep_dir.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - max_age_s
    deleted = 0
    for day in keep_dir.glob("*/*"):
        if not day.is_dir() or day.is_symlink():
            continue
        for path in day.glob("*.jpg"):
            with contextlib.suppress(FileNotFoundError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    deleted += 1
        with contextlib.suppress(OSError):  # not empty, or gone: both fine
            day.rmdir()
    return deleted

"""Kept frames: where they go (never outside the keep folder) and how long they stay."""

import os
import time

import pytest

from redactor_worker.retention import delete_expired_frames
from redactor_worker.worker import kept_path


@pytest.mark.parametrize(("camera", "frame"), [("..", "a:b"), (".", ".."), ("../../etc", "x/../../y"), ("", "")])
def test_kept_paths_stay_inside_the_keep_folder(tmp_path, camera, frame):
    path = kept_path(tmp_path, camera, frame, 0.0)
    assert path.resolve().is_relative_to(tmp_path) and path.parent.parent.parent == tmp_path
    assert not any(part.startswith(".") for part in path.relative_to(tmp_path).parts)


def test_frames_past_the_age_limit_are_deleted_and_empty_days_removed(tmp_path):
    now = time.time()
    old_day, new_day = tmp_path / "cam" / "2026-01-01", tmp_path / "cam" / "2026-11-25"
    old_day.mkdir(parents=True)
    new_day.mkdir(parents=True)
    for day, name, age_h in (
        (old_day, "a.jpg", 80),
        (old_day, "b.jpg", 73),
        (new_day, "c.jpg", 71),
        (new_day, "d.jpg", 1),
    ):
        path = day / name
        path.write_bytes(b"jpeg")
        os.utime(path, (now - age_h * 3600, now - age_h * 3600))
    (new_day / "notes.txt").write_text("not a kept frame")
    assert delete_expired_frames(tmp_path, 72 * 3600, now) == 2
    assert not old_day.exists() and sorted(p.name for p in new_day.iterdir()) == ["c.jpg", "d.jpg", "notes.txt"]
    assert delete_expired_frames(tmp_path / "missing", 3600, now) == 0

"""Kept frames: where they go (never outside the keep folder) and how long they stay."""

import os
import time
from pathlib import Path

import pytest

from ingest.camera_run import CameraRun
from ingest.cameras import CameraConfig
from redactor_worker.kept_frames import LinkedKeepFolderError, delete_expired_frames, write_kept
from redactor_worker.worker import kept_path


@pytest.mark.parametrize(("camera", "frame"), [("..", "a:b"), (".", ".."), ("../../etc", "x/../../y"), ("", "")])
def test_kept_paths_stay_inside_the_keep_folder(tmp_path, camera, frame):
    path = kept_path(tmp_path, camera, frame, 0.0)
    assert path.resolve().is_relative_to(tmp_path) and path.parent.parent.parent == tmp_path
    assert not any(part.startswith(".") for part in path.relative_to(tmp_path).parts)


def keep(path: Path, age_h: float, now: float) -> Path:
    """A file at `path`, last written `age_h` hours before `now`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"jpeg")
    os.utime(path, (now - age_h * 3600, now - age_h * 3600))
    return path


def test_frames_past_the_age_limit_are_deleted_and_empty_days_removed(tmp_path):
    now = time.time()
    old = [keep(kept_path(tmp_path, "cam", f"cam:1700000000000:{i}", now - age_h * 3600), age_h, now)
           for i, age_h in ((0, 200), (1, 96), (2, 73))]  # fmt: skip
    new = [keep(kept_path(tmp_path, "cam", f"cam:f0a1:2:{i}", now - age_h * 3600), age_h, now)
           for i, age_h in ((3, 71), (4, 1))]  # fmt: skip
    notes = keep(new[0].parent / "notes.txt", 100, now)
    assert delete_expired_frames(tmp_path, 72 * 3600, now) == 3
    assert not any(path.exists() for path in old)
    # a day folder goes once its whole day is past the cutoff: certain 96 h back, not for 73 h
    assert not old[0].parent.exists() and not old[1].parent.exists()
    assert all(path.exists() for path in [*new, notes])
    assert delete_expired_frames(tmp_path / "missing", 3600, now) == 0


def test_a_partial_kept_frame_left_by_a_killed_writer_is_swept_as_a_frame_is(tmp_path):
    """write_private leaves `.<frame>.<random>.partial` behind when its writer is killed mid-write."""
    now = time.time()
    frame = kept_path(tmp_path, "cam", "cam:1700000000000:0", now - 100 * 3600)
    old, recent = (keep(frame.with_name(f".{frame.name}.{tag}.partial"), age_h, now) for tag, age_h in (
        ("a1b2_c3d", 100), ("zz9_0aaa", 1)))  # fmt: skip
    foreign = [keep(frame.with_name(name), 100, now) for name in (
        ".notes.txt.a1b2c3d4.partial", f".{frame.name}.partial", f".{frame.name}.a1b2c3d4.part")]  # fmt: skip
    assert delete_expired_frames(tmp_path, 72 * 3600, now) == 1
    assert not old.exists() and recent.exists() and all(path.exists() for path in foreign)


def test_the_sweep_touches_nothing_the_redactor_did_not_write(tmp_path):
    """ALPR_KEEP_DIR set carelessly (a home folder): its photos, dot folders and empty folders stay, old
    or not; only the kept frames go, then the day and camera folders they leave empty."""
    now, old_h = time.time(), 120
    old_day = time.strftime("%Y-%m-%d", time.gmtime(now - old_h * 3600))
    frame = keep(kept_path(tmp_path, "gate-1", "gate-1:1700000000000:7", now - old_h * 3600), old_h, now)
    foreign = [
        keep(tmp_path / "Pictures" / "2023" / "holiday.jpg", old_h, now),
        keep(tmp_path / "Pictures" / old_day / "holiday.jpg", old_h, now),  # a dated folder: not a frame's name
        keep(tmp_path / "Pictures" / old_day / "Pictures_trip_1.JPG", old_h, now),
        keep(tmp_path / "gate-9" / old_day / "gate-2_1700000000000_7.jpg", old_h, now),  # another camera's
        keep(tmp_path / "gate-1" / "backup" / "gate-1_1700000000000_8.jpg", old_h, now),  # not in a day folder
        keep(tmp_path / ".cache" / old_day / "_cache_1_2.jpg", old_h, now),  # hidden: no camera's folder
        keep(tmp_path / "gate-1_1700000000000_9.jpg", old_h, now),  # not in a camera's folder
    ]
    outside = keep(tmp_path.parent / f"{tmp_path.name}-outside" / old_day / "cam_1_1.jpg", old_h, now)
    (tmp_path / "cam").symlink_to(outside.parent.parent)  # a link to a folder elsewhere is not followed
    empty = [tmp_path / ".config" / "emptyapp", tmp_path / "project" / "cache", tmp_path / "2023-01-01",
             tmp_path / ".hidden" / "2023-01-01", tmp_path / "Music", tmp_path / "gate-1" / "2023-02-30"]  # fmt: skip
    for folder in empty:
        folder.mkdir(parents=True)
    assert delete_expired_frames(tmp_path, 72 * 3600, now) == 1
    assert not frame.exists() and not frame.parent.exists()
    assert all(path.exists() for path in [*foreign, outside, *empty])
    assert (tmp_path / "gate-1").is_dir()  # not emptied: the sweep removes only what it emptied


def test_an_empty_folder_of_a_recent_day_stays(tmp_path):
    """A worker makes a day folder, then writes the frame into it: a sweep between the two leaves it."""
    now = time.time()
    today = kept_path(tmp_path, "cam", "cam:1:0", now).parent
    today.mkdir(parents=True)
    old = keep(kept_path(tmp_path, "cam", "cam:1:1", now - 100 * 3600), 100, now)
    other = keep(kept_path(tmp_path, "lane", "lane:1:1", now - 100 * 3600), 100, now)
    assert delete_expired_frames(tmp_path, 72 * 3600, now) == 2
    assert today.is_dir() and not old.parent.exists() and not other.parent.parent.exists()


def test_a_kept_frame_is_written_though_a_sweep_removes_its_camera_folder_meanwhile(tmp_path, monkeypatch):
    # the sweep removes a camera folder it empties; a redactor that had just made it for a new frame
    # (mkdir of the camera, then of the day) found its day folder's parent gone
    path = kept_path(tmp_path, "cam", "cam_1700000000000_0", time.time())
    made = Path.mkdir

    def swept_between(self: Path, *args: object, **kwargs: object) -> None:
        made(self, *args, **kwargs)
        if self == path.parent.parent and not getattr(swept_between, "done", False):  # the camera's, still empty
            swept_between.done = True  # type: ignore[attr-defined]
            self.rmdir()  # what the sweep does to an empty camera folder

    monkeypatch.setattr(Path, "mkdir", swept_between)
    write_kept(path, b"jpeg")
    assert path.read_bytes() == b"jpeg"


def test_a_kept_frame_is_for_its_owner_only_and_never_written_through_a_link(tmp_path):
    """Kept frames show cars, faces and places: 0600 in 0700 folders. A camera folder linked elsewhere
    (another disk) is refused — the sweep follows no link, so its frames would never be deleted — and a
    link planted at a frame's name is not followed (it would overwrite what it points at)."""
    keep_dir = tmp_path / "kept"
    keep_dir.mkdir()
    path = kept_path(keep_dir, "cam", "cam:1:0", time.time())
    write_kept(path, b"jpeg")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert {oct(p.stat().st_mode & 0o777) for p in (path.parent, path.parent.parent)} == {"0o700"}
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    planted = kept_path(keep_dir, "cam", "cam:1:1", time.time())
    planted.symlink_to(victim)
    with pytest.raises(OSError):
        write_kept(planted, b"jpeg")
    assert victim.read_text() == "precious"
    elsewhere = tmp_path / "bigger-disk"
    elsewhere.mkdir()
    (keep_dir / "cam2").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(LinkedKeepFolderError, match="cam2 is a symbolic link"):
        write_kept(kept_path(keep_dir, "cam2", "cam2:1:0", time.time()), b"jpeg")
    assert list(elsewhere.iterdir()) == []


def test_the_sweep_looks_only_into_days_that_can_hold_a_frame_old_enough(tmp_path, monkeypatch):
    """Every kept file was looked at in every sweep (2.2 s a 100,000, the worker taking no job meanwhile);
    a day that began after the cutoff (and the clocks' margin) holds none to delete."""
    from pathlib import Path as PathType

    now = time.time()
    old = keep(kept_path(tmp_path, "cam", "cam:1:0", now - 100 * 3600), 100, now)
    recent = keep(kept_path(tmp_path, "cam", "cam:1:1", now), 0, now)
    listed: list[PathType] = []
    iterdir = PathType.iterdir
    monkeypatch.setattr(PathType, "iterdir", lambda self: listed.append(self) or iterdir(self))
    assert delete_expired_frames(tmp_path, 72 * 3600, now) == 1
    assert not old.exists() and recent.exists()
    assert [folder.name for folder in listed if folder.parent.name == "cam"] == [old.parent.name]
    ahead = kept_path(tmp_path, "cam", "cam:1:2", now + 2 * 86400, now=now + 2 * 86400)  # filed by an earlier
    keep(ahead, 100, now)  # version under its capture day (a clock days ahead), or by a redactor's clock ahead
    assert delete_expired_frames(tmp_path, 72 * 3600, now) == 1 and not ahead.exists()  # its day looked into


@pytest.mark.parametrize(("loop", "file_tag", "tag"), [
    (False, None, None),  # a stream
    (False, None, "f0a1"), (True, None, "f0a1"),  # a video file, played once or looping
    (False, "afd61491f10b", None), (True, "afd61491f10b", None),  # an image of a folder, once or looping
])  # fmt: skip
def test_every_kind_of_frame_id_the_ingest_makes_is_swept(tmp_path, loop, file_tag, tag):
    """The sweep matches the names the ingest's frame ids give: a looping image folder's frames (their
    position `<run>.<pass>`) were kept for ever."""
    now = time.time()
    run = CameraRun(CameraConfig(id="gate", source="rtsp://cam/1", loop=loop), run_ms=1796345848613, tag=tag)
    run.passes = 2
    frame_id = run.frame_id_at(7, file_tag)
    frame = keep(kept_path(tmp_path, "gate", frame_id, now - 100 * 3600), 100, now)
    partial = keep(frame.with_name(f".{frame.name}.a1b2c3d4.partial"), 100, now)
    assert delete_expired_frames(tmp_path, 72 * 3600, now) == 2, frame_id  # the frame and its partial
    assert not frame.exists() and not partial.exists()


def test_a_frame_dated_ahead_of_the_clock_goes_at_the_age_limit(tmp_path):
    """A review: recorded footage read faster than it plays (or an ingest host's clock ahead) dates frames
    ahead; filed under that day to come, a frame written at T0 and dated T0 + 30 h was passed over with
    its day (begun after the cutoff) until 100 h, for a limit of 72 h. It is filed under the day written."""
    written = 1_700_000_000.0
    path = kept_path(tmp_path, "cam", "cam:1:0", written + 30 * 3600, now=written)
    keep(path, 0, written)
    assert path.parent.name == time.strftime("%Y-%m-%d", time.gmtime(written))
    assert delete_expired_frames(tmp_path, 72 * 3600, now=written + 71 * 3600) == 0
    assert delete_expired_frames(tmp_path, 72 * 3600, now=written + 73 * 3600) == 1 and not path.exists()


def test_an_earlier_attempt_of_a_frame_dated_ahead_is_found_either_side_of_midnight(tmp_path):
    from redactor_worker.kept_frames import earlier_kept_paths

    midnight = 1_700_006_400.0  # 2023-11-15 00:00 UTC
    assert time.gmtime(midnight)[3:6] == (0, 0, 0)
    ahead, before = midnight + 3 * 86400, kept_path(tmp_path, "cam", "cam:1:0", midnight + 3 * 86400, now=midnight - 60)
    assert earlier_kept_paths(tmp_path, "cam", "cam:1:0", ahead, now=midnight + 60) == [
        kept_path(tmp_path, "cam", "cam:1:0", ahead, now=midnight + 60),
        before,
    ]
    past = midnight - 10 * 86400  # one day only for a frame dated before both
    assert earlier_kept_paths(tmp_path, "cam", "cam:1:0", past, now=midnight + 60) == [
        kept_path(tmp_path, "cam", "cam:1:0", past)
    ]


def test_a_frame_that_cannot_be_deleted_is_passed_over_and_the_sweep_goes_on(tmp_path, monkeypatch, caplog):
    """A review: one kept file held by hand (immutable, read-only) raised out of the sweep, every sweep,
    and no frame of the cameras after it was deleted."""
    from pathlib import Path as PathType

    now = time.time()
    frames = [keep(kept_path(tmp_path, f"cam{i}", f"cam{i}:1:0", now - 100 * 3600), 100, now) for i in range(4)]
    held = frames[1]
    unlink = PathType.unlink

    def refuse(self: PathType, missing_ok: bool = False) -> None:
        if self == held:
            raise PermissionError(1, "Operation not permitted")
        unlink(self, missing_ok)

    monkeypatch.setattr(PathType, "unlink", refuse)
    assert delete_expired_frames(tmp_path, 72 * 3600, now) == 3
    assert held.exists() and not any(path.exists() for path in frames if path != held)
    assert "1 kept frames past their age could not be deleted" in caplog.text and "not permitted" in caplog.text

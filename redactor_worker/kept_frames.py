"""Kept frames on disk: where the redactor writes each one (`kept_path`: `<camera id>/<UTC date>/<frame
id>.jpg` under the keep folder) and how long it stays (`delete_expired_frames`). The sweep touches only
what that layout names: a folder named as a camera, a folder in it named as a date, a file in that named
as one of the camera's frames, whole or partial (a writer killed mid-write leaves one); anything else in
the keep folder (an operator's photos, dot folders, an empty project folder) is left alone, whatever its
age. A duty of the redactor pool: each redactor worker sweeps every KEEP_SWEEP_S between jobs, so no
operator cron job is needed."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Container
from datetime import UTC, datetime
from pathlib import Path

from common.jobs import CAMERA_ID_PATTERN
from common.private_files import PARTIAL_SUFFIX, make_private_folders, write_private

log = logging.getLogger(__name__)

REDACTOR_CLOCK_SKEW_S = 3600.0
"""How far the clock of the redactor that filed a kept frame may be from the sweeping host's: a day
folder that began more than this after the sweep's cutoff (and not after now) holds no frame to delete,
as no frame is filed under a day before that day began (`kept_path`). A day still to come is always
looked into (kept there by an earlier version, or by a redactor whose clock ran ahead: its files go as
much later as it was ahead)."""

DAY_FORMAT = "%Y-%m-%d"
"""A day folder's name: the UTC date its frames were captured on (or written on, if that was earlier)."""

DAY_S = 86400.0
"""Seconds in a day folder's day."""

DAY_NAME = re.compile(r"\d{4}-\d{2}-\d{2}")
"""The shape of a day folder's name (the date itself is checked too)."""


def _path_safe(name: str) -> str:
    """A file name of letters, digits and `-_.`, never starting with a dot (no `..`, no hidden file)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return "_" + safe[1:] if safe.startswith(".") or not safe else safe


def kept_path(keep_dir: Path, camera_id: str, frame_id: str, captured_at_s: float, now: float | None = None) -> Path:
    """keep_dir/<camera>/<UTC date>/<frame id>.jpg, with path-unsafe characters replaced: the date the frame
    was captured on, or the date it is written on (`now`, the clock's by default) if that is earlier. A
    frame dated ahead of the clock (recorded footage read faster than it plays, an ingest host's clock
    ahead) was filed under a day to come, and the sweep, which passes over days begun after its cutoff,
    kept it days past the age limit once that day came (30 h ahead: 100 h for a 72 h limit)."""
    written_at_s = time.time() if now is None else now
    day = datetime.fromtimestamp(min(captured_at_s, written_at_s), UTC).strftime(DAY_FORMAT)
    return keep_dir / _path_safe(camera_id) / day / f"{_path_safe(frame_id)}.jpg"


def earlier_kept_paths(
    keep_dir: Path, camera_id: str, frame_id: str, captured_at_s: float, now: float | None = None
) -> list[Path]:
    """Where an attempt of a frame's job in the day before `now` kept it (`kept_path` as of then): one
    path, or two for a frame dated ahead of the clock, written either side of midnight."""
    now_s = time.time() if now is None else now
    paths = (kept_path(keep_dir, camera_id, frame_id, captured_at_s, when) for when in (now_s, now_s - DAY_S))
    return list(dict.fromkeys(paths))


class LinkedKeepFolderError(OSError):
    """A camera or day folder of the keep folder is a symbolic link: frames written through it would
    never be swept (the sweep follows no link), so none are."""


def is_whole_jpeg(path: Path) -> bool:
    """Whether the file at `path` ends as a JPEG does (its end-of-image marker): a kept frame cut short
    (written by hand, or by a version whose writes were not atomic) does not."""
    try:
        with path.open("rb") as handle:
            handle.seek(-2, os.SEEK_END)
            return handle.read(2) == b"\xff\xd9"
    except OSError:  # missing, shorter than 2 bytes, unreadable
        return False


def write_kept(path: Path, jpeg: bytes) -> None:
    """Write a kept frame at `path` (kept_path's), for its owner only (common/private_files.py), making
    its folders; once more if a sweep removed the camera folder it had just emptied between the
    folders' making and the write. Refuses a camera or day folder that is a link (LinkedKeepFolderError)
    and a link planted at the frame's name (OSError)."""
    for attempt in range(2):
        try:
            for folder in (path.parent.parent, path.parent):
                if folder.is_symlink():
                    raise LinkedKeepFolderError(
                        f"{folder} is a symbolic link: the keep folder's sweep follows no link, so frames kept"
                        " through it would never be deleted; mount the larger disk as ALPR_KEEP_DIR instead"
                    )
            make_private_folders(path.parent)
            write_private(path, jpeg)
            return
        except FileNotFoundError:
            if attempt:
                raise


def is_camera_name(name: str) -> bool:
    """Whether `name` is a camera folder's: a camera id as jobs carry it (never a dot first)."""
    return re.fullmatch(CAMERA_ID_PATTERN, name) is not None


def day_start_s(name: str) -> float | None:
    """The Unix time a day folder's day began (UTC), or None when `name` is no real date YYYY-MM-DD."""
    if not DAY_NAME.fullmatch(name):
        return None
    try:
        return datetime.strptime(name, DAY_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def is_day_name(name: str) -> bool:
    """Whether `name` is a day folder's: a real date written YYYY-MM-DD."""
    return day_start_s(name) is not None


def is_frame_name(camera: str, name: str) -> bool:
    """Whether `name` is a kept frame's of `camera`: `make_frame_id`'s `<camera>:<run>:<position>` made
    path-safe, then `.jpg`. A position is a number, or `<run>.<pass>` for an image of a looping folder
    (whose frames were once kept for ever, their names unmatched)."""
    return re.fullmatch(re.escape(camera) + r"_[A-Za-z0-9_.-]+_[0-9]+(?:\.[0-9]+)?\.jpg", name) is not None


def is_partial_frame_name(camera: str, name: str) -> bool:
    """Whether `name` is a kept frame's of `camera` while written (common.private_files.write_private's
    `.<frame>.<8 random>.partial`): left behind by a writer killed mid-write, it is swept as a frame is."""
    found = re.fullmatch(rf"\.(?P<frame>.+)\.[a-z0-9_]{{8}}{re.escape(PARTIAL_SUFFIX)}", name)
    return found is not None and is_frame_name(camera, found["frame"])


def is_ours(camera: str, name: str) -> bool:
    """Whether the sweep may delete the file `name` of a camera's day folder: a kept frame, whole or partial."""
    return is_frame_name(camera, name) or is_partial_frame_name(camera, name)


def _entries(folder: Path) -> list[Path]:
    """What `folder` holds; nothing when it is gone meanwhile (another worker's sweep) or unreadable."""
    with contextlib.suppress(OSError):
        return list(folder.iterdir())
    return []


def _folders(parent: Path, fits: Callable[[str], bool]) -> list[Path]:
    """The real folders (no links) in `parent` whose names fit."""
    return [path for path in _entries(parent) if fits(path.name) and path.is_dir() and not path.is_symlink()]


def _delete_expired_in(
    day: Path, camera: str, spared: Container[tuple[str, str]], cutoff: float, failed: list[tuple[Path, OSError]]
) -> int:
    """Delete the camera's frames in one day folder last written before `cutoff`, but those `spared`; how
    many. One another worker deletes meanwhile is skipped; one that cannot be deleted
    is added to `failed`."""
    deleted = 0
    for path in _entries(day):
        if not is_ours(camera, path.name) or (camera, path.name) in spared:
            continue
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                path.unlink()
                deleted += 1
        except FileNotFoundError:
            pass
        except OSError as error:
            failed.append((path, error))
    return deleted


def kept_name(camera_id: str, frame_id: str) -> tuple[str, str]:
    """A kept frame's camera folder and file name (`kept_path`'s), as `delete_expired_frames` spares it."""
    return _path_safe(camera_id), f"{_path_safe(frame_id)}.jpg"


def delete_expired_frames(
    keep_dir: Path, max_age_s: float, now: float | None = None, spared: Container[tuple[str, str]] = ()
) -> int:
    """Delete the kept frames (`kept_path`'s layout only) last written more than `max_age_s` ago, but
    those `spared` ((camera folder, file name), `kept_name`'s: the frames alerts cite, their evidence:
    they were deleted after 72 h while `alpr db prune` kept their records), and the empty folders of days
    that ended before that (a camera folder too, when this emptied it: a day folder a worker has just made
    for a frame is never removed under it); returns how many frames. Files another worker deletes
    meanwhile are skipped; one that cannot be deleted (no permission, a read-only or immutable file: held
    as evidence by hand) is passed over with one warning a sweep, and the sweep goes on (it stopped there,
    every sweep, and no frame of a camera after it was deleted)."""
    if not keep_dir.is_dir():
        return 0
    now_s = time.time() if now is None else now
    cutoff = now_s - max_age_s
    deleted, failed = 0, list[tuple[Path, OSError]]()
    for camera in _folders(keep_dir, is_camera_name):
        emptied = False
        for day in _folders(camera, is_day_name):
            start_s = day_start_s(day.name)
            if (
                start_s is not None and cutoff + REDACTOR_CLOCK_SKEW_S < start_s <= now_s
            ):  # a recent day: no frame of it
                continue  # old enough (every kept file was stat'ed, every sweep: 2.2 s a 100,000, the worker idle)
            deleted += _delete_expired_in(day, camera.name, spared, cutoff, failed)
            if start_s is not None and start_s + DAY_S <= cutoff:  # never a recent day, made for a frame now
                with contextlib.suppress(OSError):  # not empty, or gone: both fine
                    day.rmdir()
                    emptied = True
        if emptied:  # its last day gone with this sweep
            with contextlib.suppress(OSError):
                camera.rmdir()
    if failed:
        path, error = failed[0]
        log.warning("%d kept frames past their age could not be deleted (%s: %s)", len(failed), path,
                    error.strerror or type(error).__name__)  # fmt: skip
    return deleted

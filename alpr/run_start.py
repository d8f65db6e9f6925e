"""What `alpr run` makes before its first frame, in an order where a refused start leaves nothing behind: its
--out folder is checked and made first (`made_out_folder`), its two logs opened last (`opened_logs`); a log
that fails to open closes the one opened before it, removes the SQLite file this run created (never one that
was there) and the --out folders this run made. A run refused for its --out folder once left an empty SQLite
log, its `-wal` and `-shm` beside it; one whose sightings' log failed left the plate log's pool open."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from alpr.standalone_output import OUTPUT_NAMES, make_out_folder
from common.config import Settings
from common.plate_log import PlateLog, open_plate_log
from common.private_files import FILE_MODE, make_private_folders, refuse_link, sqlite_side_files
from common.sighting_log import SightingLog, open_sighting_log


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and the folders above it that are not there, the deepest first."""
    missing = []
    for each in (folder, *folder.parents):
        if os.path.lexists(each):
            break
        missing.append(each)
    return missing


def remove_made(folders: list[Path]) -> None:
    """The folders a refused run made, the deepest first, each only while empty (nothing else is touched)."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def made_out_folder(out_dir: Path | None) -> list[Path]:
    """Check and make the --out folder (make_out_folder: refused where others may write in it or above it, or
    it cannot be made) and refuse a link at the name of what the run writes in it, before any log is opened;
    the folders made, to be removed if the start is refused later. Refused here, the folders made are removed."""
    if out_dir is None:
        return []
    made = missing_folders(out_dir.absolute())
    try:
        make_out_folder(out_dir, "the redacted frames")
        for name in OUTPUT_NAMES:
            refuse_link(out_dir / name)
    except BaseException:
        remove_made(made)
        raise
    return made


def created_sqlite_log(path: Path) -> list[Path]:
    """The SQLite log at `path` created empty, 0600, by this run where no file is there (an empty file is a new
    log to SQLite), with any folders above it made: what this run made, to remove if its start is refused.
    Nothing where a file is there (or one appears meanwhile: it is not this run's)."""
    made = missing_folders(path.absolute().parent)
    make_private_folders(path.parent)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return made
    os.close(descriptor)
    return [path, *(side for side in sqlite_side_files(path) if not os.path.lexists(side)), *made]


def remove_created(created: list[Path]) -> None:
    """What `created_sqlite_log` and `made_out_folder` made: files unlinked, folders removed while empty."""
    for each in created:
        with contextlib.suppress(OSError):
            if each.is_dir() and not each.is_symlink():
                each.rmdir()
            else:
                each.unlink()


@contextlib.contextmanager
def opened_logs(settings: Settings, out_made: list[Path]) -> Iterator[tuple[PlateLog, SightingLog]]:
    """The run's plate and sighting logs, closed on leaving. Where one fails to open, what was opened is
    closed and what this run made (a new SQLite file, the folders in `out_made`) is removed before the error
    goes on; a log that was there is kept as it is."""
    password = settings.secret("database_password")
    created: list[Path] = []
    with contextlib.ExitStack() as opened:
        try:
            if not settings.database_url:
                created = created_sqlite_log(settings.sqlite_path)
            plate_log = open_plate_log(settings.database_url, settings.sqlite_path, password)
            opened.callback(plate_log.close)
            sighting_log = open_sighting_log(settings.database_url, settings.sqlite_path, password)
            opened.callback(sighting_log.close)
        except BaseException:
            opened.close()
            remove_created([*created, *out_made])
            raise
        yield plate_log, sighting_log

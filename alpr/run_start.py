"""What `alpr run` makes before its first frame, in an order where a refused start leaves nothing behind: its SQLite
log's name is checked before anything is made (`check_sqlite_log`), its --out folder is checked and made first
(`made_out_folder`), its two logs opened last (`opened_logs`); a log that fails to open closes the one opened
before it, removes the SQLite file this run created (never one that was there, nor one a connection opened since)
and the --out folders this run made. A run refused for its --out folder once left an empty SQLite log, its `-wal`
and `-shm` beside it; one whose sightings' log failed left the plate log's pool open. What is removed is removed
through a descriptor of its folder, and only while the entry at its name is still the one made (`Made`): a
refusal's cleanup by path deleted the operator's own log once another user swapped a folder the run had made for
a link (a review)."""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from alpr.standalone_output import OUTPUT_NAMES, make_out_folder
from common.config import Settings
from common.errors import ConfigError
from common.plate_log import PlateLog, open_plate_log
from common.private_files import (
    FILE_MODE,
    make_private_folders,
    refuse_link,
    sqlite_side_files,
    unmade_because,
    unmade_folder,
)
from common.shared_folders import refuse_shared_folder
from common.sighting_log import SightingLog, open_sighting_log
from common.sqlite_log import check_run_log


@dataclass(frozen=True)
class Made:
    """A folder or file this run made: its path, and its (st_dev, st_ino) as made. A file's `beside` are the
    files SQLite keeps beside a log (sqlite_side_files) that were there when it was created."""

    path: Path
    identity: tuple[int, int]
    beside: frozenset[str] = frozenset()


def made_folders(folders: list[Path]) -> list[Made]:
    """`folders`, each this run's mkdir made (make_private_folders), as `Made`; one gone meanwhile left out."""
    made = []
    for folder in folders:
        with contextlib.suppress(OSError):
            status = folder.lstat()
            made.append(Made(folder, (status.st_dev, status.st_ino)))
    return made


def remove_made(made: list[Made]) -> None:
    """What this run made, in the order given (the deepest first), each through a descriptor of its folder
    opened without following a link, and only while the entry at its name is still the one made: a folder
    while empty; a file while empty and no file SQLite keeps beside it has come since (no connection opened
    it: another run that opened the log meanwhile, it being there, had it removed under it, a review).
    Nothing else is touched; what cannot be removed is left."""
    for each in made:
        with contextlib.suppress(OSError):
            folder = os.open(each.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                remove_if_made(folder, each)
            finally:
                os.close(folder)


def remove_if_made(folder: int, made: Made) -> None:
    """`remove_made`'s step for one entry, in the folder open at descriptor `folder`."""
    name = made.path.name
    status = os.stat(name, dir_fd=folder, follow_symlinks=False)
    if (status.st_dev, status.st_ino) != made.identity:
        return
    if stat.S_ISDIR(status.st_mode):
        os.rmdir(name, dir_fd=folder)
        return
    if status.st_size == 0 and not any(
        side.name not in made.beside and there(folder, side.name) for side in sqlite_side_files(made.path)
    ):
        os.unlink(name, dir_fd=folder)


def there(folder: int, name: str) -> bool:
    """Whether an entry named `name` is in the folder open at descriptor `folder` (a link too)."""
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def sqlite_named(args: argparse.Namespace) -> str:
    """What named `alpr run`'s SQLite log, for a refusal to say: --sqlite where given, else ALPR_SQLITE_PATH
    (set, or its default: the variable names another)."""
    return "--sqlite" if getattr(args, "sqlite_path", None) is not None else "ALPR_SQLITE_PATH"


def check_sqlite_log(path: Path, named: str) -> None:
    """ConfigError, before anything is created or changed, where `alpr run`'s SQLite log at `path` (`named` by
    the flag or variable sqlite_named says) cannot be made, where that is known before trying (unmade_folder:
    `--sqlite /etc/hostname/x.sqlite` said a bare `NotADirectoryError: [Errno 20] ...`), or names a file that is
    there and is not a log `alpr run` wrote (check_run_log): another program's database had the plate tables
    written beside its own and was made 0600, where export, search and prune refuse it (a review). A missing
    or empty file is a new log: created (or filled) as ever."""
    if problem := unmade_folder(path):
        raise ConfigError(f"{named} {path} cannot be made: {problem}: name another file")
    try:
        there = path.lstat()
    except FileNotFoundError:
        return
    if there.st_size or not stat.S_ISREG(there.st_mode):  # a link, a folder: refused by the check too
        check_run_log(path)


def made_out_folder(out_dir: Path | None) -> list[Made]:
    """Check and make the --out folder (make_out_folder: refused where others may write in it or above it, or
    it cannot be made) and refuse a link at the name of what the run writes in it, before any log is opened;
    the folders made, to be removed if the start is refused later. Refused here, the folders made are removed."""
    if out_dir is None:
        return []
    made: list[Path] = []
    try:
        make_out_folder(out_dir, "the redacted frames", made=made)
        for name in OUTPUT_NAMES:
            refuse_link(out_dir / name)
    except BaseException:
        remove_made(made_folders(made))
        raise
    return made_folders(made)


def created_sqlite_log(path: Path, named: str = "--sqlite") -> list[Made]:
    """The SQLite log at `path` created empty, 0600, by this run where no file is there (an empty file is a new
    log to SQLite), with any folders above it made: what this run made, to remove if its start is refused.
    Nothing where a file is there (or one appears meanwhile: it is not this run's). Refused before anything is
    made where others may write in a folder on the way (refuse_shared_folder; the log's own opening checks it
    again): they could swap a folder made for a link. A folder that cannot be made (`/proc/x`) is a ConfigError
    naming the log as `named`; the folders made are removed where the file cannot be created (a name too long)."""
    refuse_shared_folder(path.parent, "the plate log", warn=False)  # the log's opening warns of a group
    folders: list[Path] = []
    try:
        try:
            make_private_folders(path.parent, folders)
        except OSError as error:  # a bare `FileNotFoundError: [Errno 2] ...`, as --out's was
            raise ConfigError(
                f"{named} {path} cannot be made: {unmade_because(error, path.parent)}: name another file"
            ) from None
        beside = frozenset(side.name for side in sqlite_side_files(path) if os.path.lexists(side))
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            descriptor = os.open(path, flags, FILE_MODE)
        except FileExistsError:
            return made_folders(folders)
    except BaseException:
        remove_made(made_folders(folders))
        raise
    try:
        status = os.fstat(descriptor)
    finally:
        os.close(descriptor)
    return [Made(path, (status.st_dev, status.st_ino), beside), *made_folders(folders)]


@contextlib.contextmanager
def opened_logs(
    settings: Settings, out_made: list[Made], named: str = "--sqlite"
) -> Iterator[tuple[PlateLog, SightingLog]]:
    """The run's plate and sighting logs, closed on leaving. Where one fails to open, what was opened is
    closed and what this run made (a new SQLite file no connection opened, the folders in `out_made`) is
    removed before the error goes on (remove_made); a log that was there is kept as it is. `named`: what named the
    SQLite log, for a refusal (sqlite_named)."""
    password = settings.secret("database_password")
    created: list[Made] = []
    with contextlib.ExitStack() as opened:
        try:
            if not settings.database_url:
                created = created_sqlite_log(settings.sqlite_path, named)
            plate_log = open_plate_log(settings.database_url, settings.sqlite_path, password)
            opened.callback(plate_log.close)
            sighting_log = open_sighting_log(settings.database_url, settings.sqlite_path, password)
            opened.callback(sighting_log.close)
        except BaseException:
            opened.close()
            remove_made([*created, *out_made])
            raise
        yield plate_log, sighting_log

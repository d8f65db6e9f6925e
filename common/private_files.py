"""Files that hold plates, places and times — kept frames, sighting snapshots, the SQLite logs, the
redacted output of `alpr run`, CSV exports — made for their owner only: files 0600 in folders 0700
(their pixels are blurred at the plates, not at faces, cars and places), and never written through a
link planted at a file's name."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from common.errors import ConfigError

FILE_MODE = 0o600
"""A private file: its owner reads and writes it."""

FOLDER_MODE = 0o700
"""A private folder: its owner lists and enters it."""


def make_private_folders(path: Path) -> None:
    """`path` and any missing folders above it, each made 0700 (folders already there keep their mode:
    the operator's choice)."""
    missing = []
    for folder in (path, *path.parents):
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:  # another worker made it meanwhile
            if not folder.is_dir():
                raise
            continue
        os.chmod(folder, FOLDER_MODE)  # whatever the umask


def open_private(path: Path, truncate: bool = True) -> int:
    """A descriptor of the file at `path` opened for writing, created 0600 and made 0600 if it was
    there (whatever its mode); OSError (ELOOP) where `path` is a symbolic link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_TRUNC if truncate else 0)
    descriptor = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(descriptor, FILE_MODE)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def write_private(path: Path, data: bytes) -> None:
    """Write `data` as the whole of the private file at `path` (open_private)."""
    with open(open_private(path), "wb") as handle:
        handle.write(data)


def create_private(path: Path) -> None:
    """The file at `path` made private before another library opens it by name (SQLite, a video
    encoder); its content is kept."""
    os.close(open_private(path, truncate=False))


def keep_private(path: Path) -> None:
    """A file another library opens by name made private: created 0600 when missing, made 0600 when
    its owner is this user (one it cannot change, read-only to it, is read as it is: `alpr export`).
    A symbolic link at its name is refused (ConfigError): the library would write through it."""
    if path.is_symlink():
        raise ConfigError(
            f"{path} is a symbolic link: plates are never written through a link planted at a file's name;"
            " name the file itself"
        )
    if not path.exists():
        create_private(path)
    elif path.stat().st_uid == os.geteuid():
        with contextlib.suppress(OSError):  # a read-only file system: read as it is
            os.chmod(path, FILE_MODE)

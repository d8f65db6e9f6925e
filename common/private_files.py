"""Files that hold plates, places and times — kept frames, sighting snapshots, the SQLite logs, the
redacted output of `alpr run`, CSV exports — made for their owner only: files 0600 in folders 0700
(their pixels are blurred at the plates, not at faces, cars and places), and never written through a
link planted at a file's name; and no core file of a process that holds frames (`forbid_core_dumps`)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
import resource
import secrets
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from common.errors import ConfigError
from common.shared_folders import refuse_shared_folder

log = logging.getLogger(__name__)

FILE_MODE = 0o600
"""A private file: its owner reads and writes it."""

FOLDER_MODE = 0o700
"""A private folder: its owner lists and enters it."""

SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""


def make_private_folders(path: Path, made: list[Path] | None = None) -> None:
    """`path` and any missing folders above it, each made 0700 (folders already there keep their mode:
    the operator's choice). Each folder this call's mkdir made is put first in `made`, where given, as it is
    made (so the deepest comes first, and a failure part way leaves those made listed): what a caller may
    remove again. Never one that was there: `new/../cases` names `cases` through `new`, and `cases` there
    was listed as made, and removed (a review)."""
    missing = []
    for folder in (path, *path.parents):
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:  # another worker made it meanwhile (or `..` named one there)
            if not folder.is_dir():
                raise
            continue
        if made is not None:
            made.insert(0, folder)
        os.chmod(folder, FOLDER_MODE)  # whatever the umask


def unmade_folder(path: Path) -> str | None:
    """Why the missing `path` (a folder, or a file to make in one: a SQLite log) cannot be made, where that is
    known before trying: the nearest path above it that is there is a file (`/etc/hostname/x`: a bare
    `NotADirectoryError: [Errno 20] ...` was the message, a review), or a folder this user may not write in;
    None otherwise (what fails only when tried, `/proc/x`, is said by `unmade_because`)."""
    if path.exists():
        return None
    above = next((each for each in path.absolute().parents if each.exists()), Path("/"))
    if not above.is_dir():
        return f"{above} is a file, not a folder"
    if not os.access(above, os.W_OK | os.X_OK):
        return f"this user may not write in {above}"
    return None


def unmade_because(error: OSError, folder: Path) -> str:
    """Why make_private_folders(`folder`) failed with `error`, in words: `--out /proc/x` said a bare
    `FileNotFoundError: [Errno 2] ...` (a review)."""
    failed = Path(error.filename or folder)
    return f"no folder {failed.name} could be made in {failed.parent} ({error.strerror or error})"


def foreign_file(path: Path, uid: int) -> ConfigError:
    """The refusal of a file at `path` owned by user `uid`, not this process's."""
    return ConfigError(
        f"{path} is another user's file (uid {uid}): plates are written only to this user's own files, never"
        " to one another user made (they would read them); remove it, or name another file"
    )


def open_private(path: Path, truncate: bool = True) -> int:
    """A descriptor of the file at `path` opened for writing, created 0600 and made 0600 if it was
    there (whatever its mode); OSError (ELOOP) where `path` is a symbolic link, ConfigError where it is
    another user's file (root made it 0600 and wrote plates in it, and its owner read them: a review),
    refused before it is changed."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        if (owner := os.fstat(descriptor).st_uid) != os.geteuid():
            raise foreign_file(path, owner)
        os.fchmod(descriptor, FILE_MODE)
        if truncate:
            os.ftruncate(descriptor, 0)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


PARTIAL_SUFFIX = ".partial"
"""The end of a file's name while it is written whole beside it (`.<name>.<8 random>.partial`)."""


def durably_replaced(written: Path, path: Path) -> None:
    """`written` in the place of `path`, on the disk: its bytes synced before the rename, the folder
    after it. Without, a power cut or a crash of the host could keep the rename but not the bytes (ext4's
    delayed allocation, XFS): an empty file at a kept frame's name, recorded kept, its raw frame deleted."""
    synced = os.open(written, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(synced)
    finally:
        os.close(synced)
    os.replace(written, path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


@contextlib.contextmanager
def _written_beside(path: Path) -> Iterator[tuple[int, Path]]:
    """A new private file (0600, made with O_EXCL: no link followed, whatever the umask) beside `path`,
    open for the block; it takes the place of `path` (os.replace) only when the block succeeds, and is
    removed when the block fails. A process killed meanwhile leaves it behind under its partial name.
    Durable once this returns (durably_replaced)."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
    try:
        yield descriptor, Path(temporary)
        durably_replaced(Path(temporary), path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_private(path: Path, data: bytes) -> None:
    """Write `data` as the whole of the private file at `path`, at once (written beside it, then renamed
    over it): a writer killed mid-write leaves a partial file, never a file cut short at `path` (a kept
    frame cut short was taken for a whole one). OSError (ELOOP) where a symbolic link stands at `path`."""
    write_whole(path, data, 0o600)


def write_whole(path: Path, data: bytes, mode: int) -> None:
    """`write_private`, the file given `mode` (a calibration file the workers of other users read)."""
    if path.is_symlink():
        raise OSError(errno.ELOOP, "a symbolic link stands at the file's name", str(path))
    with _written_beside(path) as (descriptor, _), open(descriptor, "wb") as handle:
        handle.write(data)
        os.fchmod(descriptor, mode)


def create_private(path: Path) -> None:
    """The file at `path` made private before another library opens it by name (SQLite, a video
    encoder); its content is kept."""
    os.close(open_private(path, truncate=False))


def refuse_link(path: Path) -> None:
    """ConfigError where a symbolic link stands at `path`: a library opening it by name, or a file
    replacing it, would write plates through it or in its place."""
    if path.is_symlink():
        raise ConfigError(
            f"{path} is a symbolic link: plates are never written through a link planted at a file's name;"
            " name the file itself"
        )


SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
"""The ends of the names of the files SQLite keeps beside a database while it writes it (common/sqlite_log:
the log is in WAL mode): the write-ahead log, which holds the pages written since the last checkpoint
(plates), its index in shared memory, and the rollback journal of a log not yet in WAL mode. SQLite opens
each by name, following a link there, and makes each with the database's mode."""


def sqlite_side_files(path: Path) -> list[Path]:
    """The files SQLite keeps beside the database at `path`, there or not (SQLITE_SIDE_FILES)."""
    return [path.with_name(path.name + end) for end in SQLITE_SIDE_FILES]


def check_sqlite_side_files(path: Path) -> None:
    """ConfigError where a symbolic link, or anything but a regular file, stands at the name of a file
    SQLite keeps beside the database at `path` (its `-wal`, `-shm`, `-journal`); nothing is changed.
    SQLite opens them by name and follows a link: one planted at `reads.sqlite-wal` took the log's pages,
    plates among them, into whatever file it named, though the log itself refuses a link."""
    for side in sqlite_side_files(path):
        try:
            status = side.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(status.st_mode):
            raise ConfigError(
                f"{side} is a symbolic link beside the SQLite log: SQLite would write the log's pages (plates)"
                " through it; remove it"
            )
        if not stat.S_ISREG(status.st_mode):
            raise ConfigError(f"{side} is not a regular file: SQLite keeps its own file of the log there; remove it")


SQLITE_LOG_NAMED = "--sqlite or ALPR_SQLITE_PATH names the SQLite log file"
"""What a refused SQLite log's message says of where it was named: by the flag or the variable (it said
--sqlite alone, to an operator who had set the variable)."""


def check_sqlite_file(path: Path) -> None:
    """ConfigError unless the file at `path` is missing, or a regular file that is empty or an SQLite
    database (its header), and no link or other file stands where SQLite keeps its files beside it
    (check_sqlite_side_files); nothing is changed. `--sqlite` naming a folder or a video was made 0600
    before SQLite refused it: the folder could no longer be entered, the video's mode was changed."""
    refuse_link(path)
    check_sqlite_side_files(path)
    try:  # not blocking on a FIFO, and the file checked is the one read
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise ConfigError(f"{path} is not a regular file: {SQLITE_LOG_NAMED}")
        header = os.read(descriptor, len(SQLITE_HEADER))
    finally:
        os.close(descriptor)
    if header and header != SQLITE_HEADER:
        raise ConfigError(f"{path} is not an SQLite database: {SQLITE_LOG_NAMED}")


def keep_private(path: Path) -> None:
    """An SQLite file (SQLite opens it by name; every command that opens one writes to it) made private:
    created 0600 when missing, made 0600 when there (on a read-only file system it is read as it is).
    Another user's file is refused: `alpr run` wrote the plates it read into a log another user had made
    0666 beforehand, who read them (a review). A symbolic link at its name, anything but a regular file
    and a file that is neither empty nor an SQLite database are refused too (ConfigError), each before
    anything is changed (check_sqlite_file). So are the files SQLite keeps beside it, `-wal` and `-shm`
    in WAL mode (common/sqlite_log), which hold its pages: those there are made 0600 too, another user's
    refused; those SQLite makes later take the log's mode, 0600. One left readable by all (the log made
    0644 for a while, then a run) stayed so when only the log was made private again."""
    refuse_shared_folder(path.parent, "the plate log")
    check_sqlite_file(path)
    files = [path, *sqlite_side_files(path)]
    for file in files:
        try:
            owner = file.stat().st_uid
        except FileNotFoundError:  # missing, or a side file the last connection to the log removed meanwhile
            continue
        if owner != os.geteuid():
            raise foreign_file(file, owner)
    if not path.exists():
        create_private(path)
    for file in files:
        with contextlib.suppress(OSError):  # a read-only file system: read as it is; a side file not there
            os.chmod(file, FILE_MODE)


@contextlib.contextmanager
def replaced_privately(path: Path) -> Iterator[TextIO]:
    """A new private file (0600) beside `path`, open as text for the block (newline="", as the csv module
    wants) to write the whole of `path` in; it takes the place of `path` only when the block succeeds, and
    is gone when it fails. An export used to open its CSV with O_TRUNC before reading a row: one that
    failed (the SQLite log named as the CSV, a database that is down, a full disk) had emptied the file
    already. The file has no name while it is written (`_nameless_beside`): an export killed by SIGKILL
    or the OOM killer left `.<name>.<8 random>.partial`, 12.7 MB of plate rows, for good (a review); where
    the file system cannot, this user's such files untouched for STALE_PARTIAL_S are removed first. A
    symbolic link at `path` and anything but a regular file there are refused (ConfigError) before
    anything is written, as are another user's file there and a folder others may write in or reach
    through their link (refuse_shared_folder): root's export replaced a user's own file, and went through
    their link."""
    refuse_link(path)
    if path.exists() and not path.is_file():
        raise ConfigError(f"{path} is not a regular file: name the file to write")
    if not path.parent.is_dir():  # it failed on the partial file, a bare FileNotFoundError
        raise ConfigError(f"{path.parent} is not a folder: name a file in a folder that exists")
    refuse_shared_folder(path.parent, "the file")
    if path.exists() and (owner := path.stat().st_uid) != os.geteuid():
        raise foreign_file(path, owner)
    remove_stale_partials(path)
    with _nameless_beside(path) as descriptor, open(descriptor, "w", newline="", closefd=False) as handle:
        yield handle


STALE_PARTIAL_S = 60.0
"""A partial file (`.<name>.<8 random>.partial`) untouched for this long is a killed writer's: a writer
still at work touches its file as it writes."""


def remove_stale_partials(path: Path) -> None:
    """Remove this user's regular files beside `path` named as its partial files are (`_written_beside`)
    and untouched for STALE_PARTIAL_S: a writer killed before the end left them, and nothing else ever
    would (the folder is this user's: `refuse_shared_folder`)."""
    named = re.compile(rf"\.{re.escape(path.name)}\.[A-Za-z0-9_]{{8}}{re.escape(PARTIAL_SUFFIX)}")
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        if not named.fullmatch(entry.name):
            continue
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove: left as it is
            status = entry.stat(follow_symlinks=False)
            stale = time.time() - status.st_mtime > STALE_PARTIAL_S
            if stale and stat.S_ISREG(status.st_mode) and status.st_uid == os.geteuid():
                os.unlink(entry.path)


@contextlib.contextmanager
def _nameless_beside(path: Path) -> Iterator[int]:
    """A new private file (0600) with no name yet, in the folder of `path` (O_TMPFILE), open for the block:
    a process killed meanwhile leaves nothing behind (the kernel frees a file no name holds). When the
    block succeeds it is synced, linked beside `path` under a partial name (by /proc/self/fd: linkat with
    AT_EMPTY_PATH needs a capability) and renamed over `path`, or linked at `path` itself where nothing is
    there; the folder synced after. Where the file system or the kernel has no O_TMPFILE, or /proc is not
    mounted, it is `_written_beside`'s partial file, named from the start."""
    try:
        descriptor = os.open(path.parent, getattr(os, "O_TMPFILE", 0) | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE)
    except OSError:  # EOPNOTSUPP, EISDIR (a kernel before 3.11), or no O_TMPFILE at all (the folder itself)
        descriptor = -1
    if descriptor < 0 or not os.path.exists(f"/proc/self/fd/{descriptor}"):
        if descriptor >= 0:
            os.close(descriptor)
        with _written_beside(path) as (named, _):
            try:
                yield named
            finally:
                os.close(named)
        return
    try:
        os.fchmod(descriptor, FILE_MODE)  # whatever the umask
        yield descriptor
        os.fsync(descriptor)
        _link_in_place(f"/proc/self/fd/{descriptor}", path)
    finally:
        os.close(descriptor)


def _link_in_place(source: str, path: Path) -> None:
    """The nameless file at `source` (/proc/self/fd/N) given the name `path`, in place of a file there.
    Linked by linkat(AT_SYMLINK_FOLLOW) in the folder opened (os.link calls link(2) where given no folder
    descriptor, which links /proc's own link: EXDEV)."""
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            os.link(source, path.name, dst_dir_fd=folder, follow_symlinks=True)  # nothing there: its name at once
        except FileExistsError:
            while True:
                partial = f".{path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
                try:
                    os.link(source, partial, dst_dir_fd=folder, follow_symlinks=True)
                    break
                except FileExistsError:
                    continue
            try:
                os.replace(partial, path.name, src_dir_fd=folder, dst_dir_fd=folder)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(partial, dir_fd=folder)
                raise
        os.fsync(folder)
    finally:
        os.close(folder)


PR_SET_DUMPABLE = 4
"""prctl(2)'s option that sets whether the process may be dumped (0: no core, whatever the limits)."""


def forbid_core_dumps() -> None:
    """No core file of this process, ever: a crash in a native library (FFmpeg, OpenCV, ONNX Runtime)
    wrote its memory to disk, decoded frames with their plates unblurred in it (a 321 MB core from
    `alpr run` held a frame the reader read at 0.999: a privacy review). The core size limit goes to 0
    for good (its hard limit too), and on Linux the process is marked not dumpable, which a core
    handler piped to (systemd-coredump, apport) also honours; where either is refused, the other holds."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)

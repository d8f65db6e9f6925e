"""Files that hold plates, places and times — kept frames, sighting snapshots, the SQLite logs, the
redacted output of `alpr run`, CSV exports — made for their owner only: files 0600 in folders 0700
(their pixels are blurred at the plates, not at faces, cars and places), and never written through a
link planted at a file's name; and no core file of a process that holds frames (`forbid_core_dumps`)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import grp
import logging
import os
import pwd
import re
import resource
import secrets
import stat
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, TextIO

from common.errors import AlprError, ConfigError

log = logging.getLogger(__name__)

FILE_MODE = 0o600
"""A private file: its owner reads and writes it."""

FOLDER_MODE = 0o700
"""A private folder: its owner lists and enters it."""

SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""


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


def foreign_file(path: Path, uid: int) -> ConfigError:
    """The refusal of a file at `path` owned by user `uid`, not this process's."""
    return ConfigError(
        f"{path} is another user's file (uid {uid}): plates are written only to this user's own files, never"
        " to one another user made (they would read them); remove it, or name another file"
    )


def others_may_write(folder: Path, host_owner: bool = False) -> bool:
    """Whether a user but this process's (and root) may create, rename or delete files in `folder`: it is
    another user's, or writable by others, or by a group with another member, or by a user or group an ACL
    names (acl_writers), without the sticky bit (/tmp's, which keeps each file its owner's). There, a file
    checked private could be swapped for another's, or for a link, before a library opens it by name. A
    user's own private group (Debian's umask 002 makes folders 775) is no one else. With `host_owner`, a
    folder whose owner is unknown here is taken as a host user's seen from a container (compose mounts a
    host folder with its owner's id), not another's. False when the folder is missing (it will be made
    0700), or a file is on the way to it (making it says so: ALPR_LEDGER_SPOOL_DIR naming `clip.mp4/spool`)."""
    try:
        status = folder.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    if status.st_uid not in (os.geteuid(), 0) and not (host_owner and user_name(status.st_uid) is None):
        return True
    if status.st_mode & stat.S_ISVTX:
        return False
    group_writes = bool(status.st_mode & stat.S_IWGRP) and group_has_others(status.st_gid, status.st_uid)
    return bool(status.st_mode & stat.S_IWOTH) or group_writes or bool(acl_writers(folder, status))


ACL_ACCESS = "system.posix_acl_access"
"""The extended attribute that holds a file's POSIX access ACL (`setfacl`), in the kernel's binary form: a
little-endian version (2), then 8 bytes an entry: its tag (u16), permissions (u16), user or group id (u32)."""

ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK = 0x02, 0x04, 0x08, 0x10
"""The tags of an ACL entry naming a user, of the owning group's (whose permissions the mode's group bits no
longer are where there is a mask), naming a group, and of the mask that bounds all three."""

ACL_WRITE = 0x02
"""An ACL entry's write permission."""


def acl_entries(path: Path) -> list[tuple[int, int, int]]:
    """The (tag, permissions, id) entries of the POSIX access ACL of the file at `path` (links followed); none
    where it has none, the file system keeps none, or it cannot be read."""
    try:
        data = os.getxattr(path, ACL_ACCESS)
    except OSError:  # ENODATA: no ACL; ENOTSUP / EOPNOTSUPP: none kept there; gone meanwhile
        return []
    if len(data) < 4 or struct.unpack_from("<I", data)[0] != 2:
        return []
    return [struct.unpack_from("<HHI", data, at) for at in range(4, len(data) - 7, 8)]


def acl_writers(path: Path, status: os.stat_result) -> list[str]:
    """Who but the owner of the file at `path` (its `status`), this process's user and root may write it by its
    ACL: each user (`user NAME`) and each group with another member (`group NAME`) an entry names with write
    permission, where the mask allows it. The mode does not show them: `setfacl -m u:nobody:rw` on a 0644 file
    made it 0664, its group the owner's own, and nobody rewrote a job key taken without a word (a review)."""
    entries = acl_entries(path)
    if not any(tag == ACL_MASK and perm & ACL_WRITE for tag, perm, _ in entries):
        return []
    writers = []
    for tag, perm, number in entries:
        if not perm & ACL_WRITE:
            continue
        if tag == ACL_USER and number not in (status.st_uid, os.geteuid(), 0):
            writers.append(f"user {user_name(number) or number}")
        elif tag == ACL_GROUP and group_has_others(number, status.st_uid):
            try:
                writers.append(f"group {grp.getgrgid(number).gr_name}")
            except KeyError:
                writers.append(f"group {number}")
    return writers


def user_name(uid: int) -> str | None:
    """The name of user `uid`, None where this system knows none (a host's user, seen from a container; or a
    directory's user while the directory cannot be reached)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


class Changeable(NamedTuple):
    """Why users of this host but a file's owner and root may write it (`why`, for a message's parentheses),
    and what makes it its owner's alone (`fix`, which ends a message)."""

    why: str
    fix: str


OWNER_ALONE = "make it writable by its owner alone: chmod go-w on it"
"""The fix of a file others may write by its mode."""


def by_acl(writers: list[str]) -> Changeable:
    """The Changeable of a file whose ACL lets `writers` (acl_writers) write it."""
    return Changeable(
        f"an ACL lets {', '.join(writers)} write it",
        "make it writable by its owner alone: setfacl -b on it (its ACL removed), or setfacl -x on those entries",
    )


def others_may_change_file(path: Path) -> Changeable | None:
    """Why a user but the owner of the file at `path` (links followed) and root may write it, None where none
    may: it is writable by others, or by a group with another member (a user's own private group is no one
    else; a group unknown here, as a host's in a container, is taken to have), or by a user or group its ACL
    names (acl_writers; its mode's group bits are then the ACL's mask, the owning group's own entry is asked).
    Its owner is not asked here (others_may_change): compose mounts a secret with the host user's id, no user
    of the container's. None where it cannot be read."""
    try:
        status = path.stat()
    except (OSError, ValueError):
        return None
    if writers := acl_writers(path, status):
        return by_acl(writers)
    group_obj = [perm for tag, perm, _ in acl_entries(path) if tag == ACL_GROUP_OBJ]
    group_bit = bool(group_obj[0] & ACL_WRITE) if group_obj else bool(status.st_mode & stat.S_IWGRP)
    group_writes = group_bit and bool(status.st_mode & stat.S_IWGRP) and group_has_others(status.st_gid, status.st_uid)
    if status.st_mode & stat.S_IWOTH or group_writes:
        return Changeable(f"mode {stat.S_IMODE(status.st_mode):04o}", OWNER_ALONE)
    return None


def unknown_group_writes(path: Path) -> int | None:
    """The group id where the file at `path` may be written by its group alone and looks like a host user's
    own, seen from a container (compose mounts a file with the host's modes and ids): its group's number is its
    owner's (useradd's private group) and this system knows neither; None otherwise. Who is in it cannot be
    told here: a file made under the usual umask 002 is mode 0664, its group the host user's own. Narrow on
    purpose (a review): another user's file, or a shared group, is not. Nor can a failed lookup be told
    from an unknown id (both are KeyError): while a directory service (LDAP, sssd) is unreachable, a file
    of its user's own, its group's number the user's (as FreeIPA makes them), reads as this case, a WARNING
    and not refused, whoever else that group holds."""
    try:
        status = path.stat()
    except (OSError, ValueError):
        return None
    if not status.st_mode & stat.S_IWGRP or status.st_mode & stat.S_IWOTH or status.st_gid != status.st_uid:
        return None
    for lookup, number in ((pwd.getpwuid, status.st_uid), (grp.getgrgid, status.st_gid)):
        try:
            lookup(number)
            return None
        except KeyError:
            continue
    return status.st_gid


def others_may_change(path: Path, what: str, harm: str) -> Changeable | None:
    """The one rule for a file whose writer chooses what a process does (an `ALPR_*_FILE` secret, the alert
    receivers file, a receiver's secret file or MQTT `ca_file`, the cameras file, a watch-list CSV,
    `--source-file`): why users of this host but its owner and root may write it, so it is refused; None
    where none may. They may where a folder on the way to it (its own included, links followed) is another
    user's or others may write in it without the sticky bit (open_folder_above): they could put a file of
    theirs in its place (a 0600 secret in a 0777 folder was swapped for another user's, and read at the next
    start: a review); where another user known here owns it (a user unknown here is taken as a host's, seen
    from a container: compose mounts a secret with the host user's id; so is a directory's user while its
    lookup fails, as in unknown_group_writes); and where its mode or its ACL lets
    them (others_may_change_file: a named ACL entry showed as mode 0664 and was taken). Writable by a group
    that looks like a host user's own seen from a container (`unknown_group_writes`) it is not: a WARNING
    names `what` (never a secret file's path: it may be the secret) with the `harm` of others writing it,
    and `chmod g-w`. Each check had its own rule: a receivers file under umask 002 was a WARNING in a
    container, a secret file made beside it the same way was refused (a review)."""
    if (above := open_folder_above(path, host_owner=True)) is not None:
        return Changeable(
            f"{above}, a folder on the way to it, is another user's or others may write in it without the sticky"
            " bit: they could put a file of theirs in its place",
            f"move it to a folder only its owner and root may write in, or chmod o-w (and g-w, where its group has"
            f" others; setfacl -b, where an ACL lets others) on {above}, or chmod +t on it",
        )
    try:
        status = path.stat()
    except (OSError, ValueError):
        return None
    if status.st_uid not in (os.geteuid(), 0) and (name := user_name(status.st_uid)) is not None:
        return Changeable(
            f"it is {name}'s file (uid {status.st_uid}), who may change it", "make it this user's or root's own (chown)"
        )
    if writers := acl_writers(path, status):  # before the WARNING below: the mode's group bits are the mask
        return by_acl(writers)
    if (gid := unknown_group_writes(path)) is not None:
        log.warning(
            "%s (mode %04o) may be written by its group, %d, a host user's own as seen from a container (neither"
            " known here): if others are in it, %s; chmod g-w on it", what, file_mode(path), gid, harm,
        )  # fmt: skip
        return None
    return others_may_change_file(path)


def refuse_if_others_may_change(path: Path, what: str, harm: str, error: type[AlprError] = ConfigError) -> None:
    """`error` where users of this host but the owner of the file at `path` and root may write it
    (others_may_change: a WARNING instead where its group looks like a host user's own seen from a container),
    for a file an operator edits that chooses what a process does: the cameras file, a watch-list CSV,
    `alpr run --source-file`. Each was taken at 0666: a local user could change a camera's source or region
    of interest, or take a plate off the stolen list (a review). The message names `what` (the file, as it
    may be shown), why (its mode, an ACL, a folder, its owner) and the `harm` of others writing it ("they
    ..."), and the fix (`chmod go-w`, ...)."""
    if changeable := others_may_change(path, what, harm):
        raise error(f"{what} may be written by other users of this host ({changeable.why}): {harm}; {changeable.fix}")


def file_mode(path: Path) -> int:
    """The permission bits of the file at `path` (links followed), as `chmod` takes them."""
    return stat.S_IMODE(path.stat().st_mode)


def group_has_others(gid: int, owner: int | None = None) -> bool:
    """Whether group `gid` has a member other than this process's user and `owner`, the user whose file or
    folder it is (listed in it, or its primary group); an unknown group is taken to have, as is any where
    this process's user is unknown. The owner may write her file whatever its group: counted as another
    through her own private group, a 0664 watch list read by root (`sudo alpr watchlist import`) was
    refused though only she and root could write it (a review)."""
    mine = {os.geteuid()} if owner is None else {os.geteuid(), owner}
    try:
        members = set(grp.getgrgid(gid).gr_mem)
        names = {pwd.getpwuid(os.geteuid()).pw_name}
    except KeyError:
        return True
    with contextlib.suppress(KeyError):  # an owner unknown here is listed in no group by name
        names |= {pwd.getpwuid(owner).pw_name} if owner is not None else set()
    return bool(members - names) or any(user.pw_gid == gid and user.pw_uid not in mine for user in pwd.getpwall())


def link_others_control(folder: Path, hops: int = 0) -> Path | None:
    """The first symbolic link on the way to `folder` (its path as written, and each link's target in
    turn) that a user but this process's (and root) made, or may swap as it stands in a folder they may
    write in; None where there is none. A folder checked through such a link was the link's target, which
    its maker could turn elsewhere: an export into a folder another user owned went through their link
    `cases -> /etc` (a review), and a root-owned link to theirs did too."""
    current = Path(folder.absolute().anchor)
    for part in folder.absolute().parts[1:]:
        current = current / part
        if not current.is_symlink():
            continue
        if current.lstat().st_uid not in (os.geteuid(), 0) or others_may_write(current.parent):
            return current
        if hops < MAX_LINK_HOPS:
            target = Path(os.readlink(current))
            if (found := link_others_control(current.parent / target, hops + 1)) is not None:
                return found
    return None


MAX_LINK_HOPS = 40
"""Links followed from one to the next (the kernel's own limit is 40)."""


def open_folder_above(folder: Path, host_owner: bool = False) -> Path | None:
    """The first folder passed through on the way to `folder` (from the root, each link on the way followed
    as the kernel does, to its target's folders) that another user owns or others may write in without the
    sticky bit (others_may_write); None where there is none. `folder` itself is not one of them. Whoever
    may write in such a folder may rename the folder below it away and put a link in its place: with
    `--out shared/out` and `shared` 0777, another user did that mid-run, and 17 of 18 sighting snapshots
    went where the link pointed (a review). The usual safe-path rule: each folder above writable by this
    user or root alone, or sticky (/tmp: each entry stays its owner's). `host_owner`: others_may_write's."""
    return next((above for above in folders_on_the_way(folder) if others_may_write(above, host_owner)), None)


def folders_on_the_way(folder: Path) -> Iterator[Path]:
    """Each folder passed through on the way to `folder`, from the root, each link on the way followed as the
    kernel does, to its target's folders; `folder` itself and those left by `..` (by their parent, none of
    theirs) are not among them."""
    current = Path(folder.absolute().anchor)
    pending = list(folder.absolute().parts[1:])
    hops = 0
    while pending:
        if pending[0] != "..":
            yield current
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            current = current.parent
            continue
        following = current / part
        if following.is_symlink() and hops < MAX_LINK_HOPS:
            hops += 1
            target = Path(os.readlink(following))
            if target.is_absolute():
                current = Path(target.anchor)
            pending = [*target.parts[1 if target.is_absolute() else 0 :], *pending]
            continue
        current = following


def foreign_owner(folder: Path) -> str | None:
    """Where `folder` is another user's (neither this process's user nor root owns it), that user ("uid
    1000, alice"); None otherwise, or where it cannot be read."""
    try:
        owner = folder.stat().st_uid
    except (OSError, ValueError):
        return None
    if owner in (os.geteuid(), 0):
        return None
    try:
        return f"uid {owner}, {pwd.getpwuid(owner).pw_name}"
    except KeyError:
        return f"uid {owner}"


def write_bits_to_remove(folder: Path) -> str:
    """What `chmod` takes away so that only the owner of `folder` may write in it: `o-w`, `g-w` (where its group
    has another member), or both."""
    status = folder.stat()
    bits = ["g-w"] if status.st_mode & stat.S_IWGRP and group_has_others(status.st_gid, status.st_uid) else []
    return ",".join(["o-w"] * bool(status.st_mode & stat.S_IWOTH) + bits) or "go-w"


def group_of_a_container(folder: Path) -> str | None:
    """Where `folder` is writable by its group alone (this user's or root's, not sticky) and who else is in that
    group cannot be told here, the group, as a WARNING names it: one that looks like a host user's own seen
    from a container (unknown_group_writes: `docker run --user $(id -u):$(id -g)` on a checkout of mode 0775),
    or one of this process's own groups unknown here (a Kubernetes fsGroup: the volume root:2000, mode 2775,
    2000 among the pod's groups). Other pods given the same fsGroup may write there too: warned of, not
    refused, as a file of such a group is (others_may_change). None otherwise."""
    try:
        status = folder.stat()
    except (OSError, ValueError):
        return None
    if status.st_uid not in (os.geteuid(), 0) or status.st_mode & (stat.S_IWOTH | stat.S_ISVTX):
        return None
    if unknown_group_writes(folder) is not None:
        return f"its group, {status.st_gid}, a host user's own as seen from a container (neither known here)"
    try:
        grp.getgrgid(status.st_gid)
        return None  # known here: its members decide (group_has_others)
    except KeyError:
        pass
    if status.st_mode & stat.S_IWGRP and status.st_gid in {os.getegid(), *os.getgroups()}:
        return f"its group, {status.st_gid}, one of this process's own and not known here (a Kubernetes fsGroup)"
    return None


def refuse_open_folder_above(folder: Path, what: str, named: str = "", warn: bool = True) -> None:
    """ConfigError, its message begun with `named` (the setting's name and a colon, or nothing), where a
    folder on the way to `folder`, which holds `what`, is one others may change (open_folder_above). The
    message says why: another user's folder (no mode keeps its owner out: root running in a user's checkout
    was told to chmod it, to no avail, a review) or one others may write in (chmod). Where only its group
    may write in it and who is in it cannot be told here (group_of_a_container), a WARNING instead (`warn`)."""
    for above in folders_on_the_way(folder):
        if not others_may_write(above):
            continue
        on_the_way = f"{named}{above}, a folder on the way to {folder.absolute()},"
        harm = "they could rename the folder below it away and put a link in its place, and"
        harm += f" {what} would be written where it points"
        if (group := group_of_a_container(above)) is not None:
            if warn:
                log.warning(
                    "%s may be written in by %s: if others are in it, %s; chmod g-w on it", on_the_way, group, harm
                )
            continue
        if (owner := foreign_owner(above)) is not None:
            raise ConfigError(
                f"{on_the_way} is another user's ({owner}): {harm}; no mode keeps its owner out: run as that user, or"
                " name a folder elsewhere (this user's or root's, as is every folder above it), or chown it to this"
                " user where it need not stay theirs"
            )
        raise ConfigError(
            f"{on_the_way} is one others may write in without the sticky bit (mode {file_mode(above):04o}): {harm};"
            f" chmod {write_bits_to_remove(above)} on {above}, or chmod +t on it (/tmp's sticky bit), or name a"
            " folder elsewhere (setfacl -b where an ACL lets others write in it)"
        )


def refuse_shared_folder(folder: Path, what: str, named: str = "", warn: bool = True) -> None:
    """ConfigError where another user may write in `folder` (others_may_write), which holds `what`, or
    made or may swap a link on the way to it (link_others_control), or may write in a folder above it
    (refuse_open_folder_above, which `warn`s of a group it cannot tell); the message begun with `named`, and
    saying whether the folder is another user's (chmod cannot help) or others may write in it."""
    if (link := link_others_control(folder)) is not None:
        raise ConfigError(
            f"{named}{link} is a link another user made or may swap: {what} would be written wherever they point"
            " it; name a folder of this user's own by its own path"
        )
    swapped = f"{what} would be written where they could swap a file for theirs or for a link"
    if (owner := foreign_owner(folder)) is not None:
        raise ConfigError(
            f"{named}{folder.absolute()} is another user's folder ({owner}): {swapped}; no mode keeps its owner"
            " out: run as that user, or name a folder of this user's own"
        )
    if others_may_write(folder):
        raise ConfigError(
            f"{named}{folder.absolute()} is a folder others may write in without the sticky bit (mode"
            f" {file_mode(folder):04o}): {swapped}; name a folder of this user's own, or chmod"
            f" {write_bits_to_remove(folder)} on it (setfacl -b where an ACL lets others write in it)"
        )
    refuse_open_folder_above(folder, what, named, warn)


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

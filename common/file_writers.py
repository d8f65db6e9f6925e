"""Who but a file's owner and root may change it or the folders on the way to it: its mode, its group's
members, its POSIX ACL (`acl_writers`), its owner, a folder on the way others may write in (`open_folder_above`);
and the one rule for a file whose writer chooses what the chain does (`others_may_change`: secrets, the
receivers file, the cameras file, a watch-list CSV, `--source-file`): refused, or a WARNING where who may
write it cannot be told from inside a container."""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from common.errors import AlprError, ConfigError

log = logging.getLogger(__name__)


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
    return bool(status.st_mode & stat.S_IWOTH) or group_may_write(folder, status) or bool(acl_writers(folder, status))


def group_may_write(path: Path, status: os.stat_result) -> bool:
    """Whether the group of the file or folder at `path` (its `status`) may write it and has a member but its
    owner and this process's user (group_has_others): by its mode's group bit, or where it has an ACL, by the
    owning group's own entry (ACL_GROUP_OBJ) within the mask (the mode's group bits are then the mask). One
    rule for files and folders: with `g::r-x` and mask rwx a folder was refused, a file of that ACL taken (a
    review)."""
    if not status.st_mode & stat.S_IWGRP:
        return False
    group_obj = [perm for tag, perm, _ in acl_entries(path) if tag == ACL_GROUP_OBJ]
    if group_obj and not group_obj[0] & ACL_WRITE:
        return False
    return group_has_others(status.st_gid, status.st_uid)


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
    if status.st_mode & stat.S_IWOTH or group_may_write(path, status):
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
    user's or others may write in it without the sticky bit (folder_others_may_change, a WARNING where only a
    group of a container may): they could put a file of theirs in its place (a 0600 secret in a 0777 folder
    was swapped for another user's, and read at the next start: a review); where another user known here
    owns it (a user unknown here is taken as a host's, seen from a container: compose mounts a secret with
    the host user's id; so is a directory's user while its lookup fails, as in unknown_group_writes); and
    where its mode or its ACL lets them (others_may_change_file: a named ACL entry showed as mode 0664 and
    was taken). Writable by a group that looks like a host user's own seen from a container
    (`unknown_group_writes`) it is not: a WARNING names `what` (never a secret file's path: it may be the
    secret) with the `harm` of others writing it, and `chmod g-w`. Each check had its own rule: a receivers
    file under umask 002 was a WARNING in a container, a secret file made beside it the same way was refused
    (a review)."""
    for above in folders_on_the_way(path):
        if (changeable := folder_others_may_change(above, what, harm)) is not None:
            return changeable
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


def folder_others_may_change(folder: Path, what: str, harm: str) -> Changeable | None:
    """Why users but this process's and root may put a file of theirs in `folder`, on the way to the file
    others_may_change asks of (`what`, with the `harm` of others writing it), None where none may: it is another
    user's (no mode keeps its owner out: root reading a user's file in her home was told to chmod it, to no
    avail, a review), or others may write in it by its mode or its ACL (chmod, setfacl). Where only a group
    of a container may write in it (group_of_a_container: a host user's own, a Kubernetes fsGroup), a WARNING,
    as for plate-data folders (shared_folders) and for the file's own group (unknown_group_writes): a receiver's
    secret file in an ALPR_ALERT_SECRETS_DIR made 0775 under umask 002 was refused, its folder for frames
    warned of (a review). A user unknown here owning it is taken as a host's (others_may_write's `host_owner`)."""
    if not others_may_write(folder, host_owner=True):
        return None
    on_the_way = f"{folder}, a folder on the way to it,"
    if (owner := foreign_owner(folder, host_owner=True)) is not None:
        return Changeable(
            f"{on_the_way} is another user's ({owner}), who could put a file of theirs in its place",
            "no mode keeps its owner out: run as that user, or copy the file to a folder of this user's or root's",
        )
    if (group := group_of_a_container(folder, host_owner=True)) is not None:
        log.warning(
            "%s: %s, a folder on the way to it, may be written in by %s: if others are in it, they could put a file"
            " of theirs in its place, and %s; chmod g-w on it", what, folder, group, harm,
        )  # fmt: skip
        return None
    try:
        status = folder.stat()
    except (OSError, ValueError):
        return None
    bits = ["o-w"] * bool(status.st_mode & stat.S_IWOTH) + ["g-w"] * group_may_write(folder, status)
    writers = acl_writers(folder, status)
    why = [f"mode {stat.S_IMODE(status.st_mode):04o}"] * bool(bits)
    why += [f"an ACL lets {', '.join(writers)} write in it"] * bool(writers)
    fix = [f"chmod {','.join(bits)} on {folder}"] * bool(bits) + [f"setfacl -b on {folder}"] * bool(writers)
    return Changeable(
        f"{on_the_way} is one others may write in without the sticky bit ({', '.join(why)}): they could put a file"
        " of theirs in its place",
        f"move it to a folder only its owner and root may write in, or {' and '.join(fix)}, or chmod +t on it",
    )


def foreign_owner(folder: Path, host_owner: bool = False) -> str | None:
    """Where `folder` is another user's (neither this process's user nor root owns it), that user ("uid
    1000, alice"); None otherwise, or where it cannot be read. With `host_owner`, a user unknown here is
    taken as a host's seen from a container (others_may_write's), not another."""
    try:
        owner = folder.stat().st_uid
    except (OSError, ValueError):
        return None
    if owner in (os.geteuid(), 0):
        return None
    if (name := user_name(owner)) is None:
        return None if host_owner else f"uid {owner}"
    return f"uid {owner}, {name}"


def own_unknown_group(gid: int) -> bool:
    """Whether group `gid` is one of this process's own and not known here (a Kubernetes fsGroup: the pod's
    volumes root:2000, mode 2775, 2000 among its groups and in no /etc/group)."""
    try:
        grp.getgrgid(gid)
        return False
    except KeyError:
        return gid in {os.getegid(), *os.getgroups()}


def group_of_a_container(folder: Path, host_owner: bool = False) -> str | None:
    """Where `folder` is writable by its group alone (this user's or root's, not sticky, no ACL entry letting
    others: acl_writers) and who else is in that group cannot be told here, the group, as a WARNING names it:
    one that looks like a host user's own seen from a container (unknown_group_writes: `docker run --user
    $(id -u):$(id -g)` on a checkout of mode 0775), or one of this process's own groups unknown here
    (own_unknown_group). Other pods given the same fsGroup may write there too: warned of, not refused, by
    both rules (shared_folders' for plate-data folders, folder_others_may_change for a file in it). An ACL is
    not hidden by it: a checkout whose ACL let www-data write was only warned of, and www-data swapped the
    out folder for a link (a review). `host_owner`: others_may_write's. None otherwise."""
    try:
        status = folder.stat()
    except (OSError, ValueError):
        return None
    if status.st_uid not in (os.geteuid(), 0) and not (host_owner and user_name(status.st_uid) is None):
        return None
    if status.st_mode & (stat.S_IWOTH | stat.S_ISVTX) or acl_writers(folder, status):
        return None
    if unknown_group_writes(folder) is not None:
        return f"its group, {status.st_gid}, a host user's own as seen from a container (neither known here)"
    if status.st_mode & stat.S_IWGRP and own_unknown_group(status.st_gid):
        return f"its group, {status.st_gid}, one of this process's own and not known here (a Kubernetes fsGroup)"
    return None


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

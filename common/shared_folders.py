"""Folders that hold plate data, refused where another user may write in them or in a folder on the way to
them (`refuse_shared_folder`): whoever may write there may swap a file for theirs, or a folder for a link, and
plates would be written where they point; the message says why and what mends it."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from common.errors import ConfigError
from common.file_writers import (
    MAX_LINK_HOPS,
    acl_writers,
    file_mode,
    folders_on_the_way,
    foreign_owner,
    group_may_write,
    group_of_a_container,
    others_may_write,
    own_unknown_group,
)

log = logging.getLogger(__name__)


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


def write_bits_to_remove(folder: Path) -> str:
    """What `chmod` takes away so that only the owner of `folder` may write in it: `o-w`, `g-w` (where its group
    has another member), or both."""
    status = folder.stat()
    bits = ["g-w"] if group_may_write(folder, status) else []
    return ",".join(["o-w"] * bool(status.st_mode & stat.S_IWOTH) + bits) or "go-w"


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
            f" folder elsewhere ({acl_hint(above)})"
        )


def acl_hint(folder: Path) -> str:
    """The end of a message refusing `folder`: the users and groups its ACL lets write in it (acl_writers) and
    `setfacl -b`, or where it has none, that hint for an ACL the caller may add."""
    try:
        writers = acl_writers(folder, folder.stat())
    except (OSError, ValueError):
        writers = []
    if writers:
        return f"its ACL lets {', '.join(writers)} write in it: setfacl -b on it"
    return "setfacl -b where an ACL lets others write in it"


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
        # an fsGroup volume's root is root's: the pod's user cannot chmod it, but may make a folder in it
        volume = ", or make it a subfolder of the volume" * own_unknown_group(folder.stat().st_gid)
        raise ConfigError(
            f"{named}{folder.absolute()} is a folder others may write in without the sticky bit (mode"
            f" {file_mode(folder):04o}): {swapped}; name a folder of this user's own, or chmod"
            f" {write_bits_to_remove(folder)} on it{volume} ({acl_hint(folder)})"
        )
    refuse_open_folder_above(folder, what, named, warn)

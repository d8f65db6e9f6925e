"""The receivers file's secrets (common/alerts.load_receivers): a webhook's `secret` and an MQTT receiver's
`password`, written in place or read from the file a `secret_file` / `password_file` names
(`read_secret_file`); who may write the receivers file (`refuse_if_others_may_change`: whoever writes it
names where alerts go); and who else may read the secrets written in place (`warn_if_others_may_read`). A
receivers file made under the usual umask 022 (0644, in /etc/alpr of 0755) held every webhook's HMAC key
and the broker's password for any local user to read, and nothing said so (a review): whoever reads a
webhook's secret can sign alerts it takes for the alert pool's. That is said at the alert pool's start,
never refused: compose shows the file to the containers only if others may read it, and the secrets then
belong in secret files, under a folder of mode 0700 (deploy/make-secrets.sh's)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Collection
from pathlib import Path

from common.errors import ConfigError
from common.file_writers import file_mode, group_has_others, others_may_change
from common.text_files import MAX_SECRET_FILE_BYTES, read_text_file

log = logging.getLogger(__name__)

SECRET_FILE_FIELDS = {"secret_file": "secret", "password_file": "password"}
"""Fields of a receiver that name a file holding a secret (Docker and Kubernetes secrets), and the
field the file's content becomes."""


def read_secret_file(path: Path, name: str, settings: dict[str, object], file_field: str, field_name: str) -> str:
    """The secret in the file a receiver's `file_field` names (popped from `settings`), its spaces and line
    ends around it left out. Refused: the secret written in place too (the file silently won), and a file
    that holds nothing else (an MQTT password of nothing loaded, and the broker refused every delivery).
    Neither the path (it may be the secret, written there by mistake) nor the secret is in a message. A
    file others may write is refused, but where its group is a host user's own as a container sees it: a
    WARNING (common/file_writers.others_may_change, the receivers file's rule: under umask 002 a secret
    file was refused there, the receivers file beside it not; a review)."""
    where = f"{path}: receiver {name}:"
    if field_name in settings:
        raise ConfigError(f"{where} set {field_name} or {file_field}, not both")
    secret_path = Path(str(settings.pop(file_field)))
    secret = read_text_file(secret_path, MAX_SECRET_FILE_BYTES, ConfigError, f"{where} its {file_field}").strip()
    if not secret:
        raise ConfigError(f"{where} its {file_field}: the file it names is empty (or holds only spaces and line ends)")
    if changeable := others_may_change(secret_path, f"{where} its {file_field}", f"they set the {field_name}"):
        raise ConfigError(
            f"{where} its {file_field}: the file it names may be written by other users of this host"
            f" ({changeable.why}): whoever writes it sets the {field_name}; {changeable.fix}"
        )
    return secret


def others_may_read(path: Path) -> bool:
    """Whether a user but the owner of the file at `path` (links followed) and root may read it: the file
    is readable by others, or by a group with another member (`group_has_others`), and every folder above
    it lets them through (a 0644 file in a folder of mode 0700 is its owner's alone). False where it
    cannot be read."""
    try:
        real = path.resolve(strict=True)
        status = real.stat()
        folders = [folder.stat() for folder in real.parents]
    except (OSError, ValueError, RuntimeError):
        return False
    world = bool(status.st_mode & stat.S_IROTH) and all(_through(folder) for folder in folders)
    group = bool(status.st_mode & stat.S_IRGRP) and group_has_others(status.st_gid, status.st_uid)
    return world or (group and all(_through(folder, status.st_gid) for folder in folders))


def _through(folder: os.stat_result, gid: int | None = None) -> bool:
    """Whether others may go through `folder`, or, given its `gid`, the members of the file's group."""
    return bool(folder.st_mode & stat.S_IXOTH) or (folder.st_gid == gid and bool(folder.st_mode & stat.S_IXGRP))


def refuse_if_others_may_change(path: Path) -> None:
    """ConfigError where other users of this host may write the receivers file at `path`: whoever writes it
    names where alerts go (a URL of theirs gets every plate) and the secret files they are signed with. It
    was taken whatever its mode, while a secret file others may write was refused. Writable by a group unknown
    here (a host's, from a container) it is a WARNING (common/file_writers.others_may_change, the rule of
    the secret files too): the shipped compose file checked out under umask 002 (0664, the host user's own
    group) stopped the alert pool at every start (a review)."""
    if changeable := others_may_change(path, f"the receivers file {path}", "they choose where the alerts go"):
        raise ConfigError(
            f"{path}: other users of this host may write it ({changeable.why}): whoever writes it names where the"
            f" alerts go and what signs them; {changeable.fix}"
        )


def warn_if_others_may_read(path: Path, holders: Collection[str]) -> None:
    """A WARNING where the receivers file at `path` holds secrets in place (`holders`: the receivers that
    write a `secret` or `password` there) and other users of this host may read it; the secrets never
    shown."""
    if holders and others_may_read(path):
        log.warning(
            "the receivers file %s (mode %04o) holds the secrets of %s in place, and other users of this host"
            " may read it: whoever reads a webhook's secret can sign alerts it takes for the alert pool's. Move"
            " each to a secret_file / password_file in a folder of mode 0700, or chmod go-r the receivers file",
            path, file_mode(path), ", ".join(sorted(holders)),
        )  # fmt: skip

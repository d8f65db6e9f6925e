"""Files that hold a stream's URL with its password (`alpr run --source-file`, the cameras file) and that
other users of this host may read: said with a WARNING at start, never refused (the receivers file's rule,
common/receiver_secrets.warn_if_others_may_read). --source-file exists to keep the password off the
command line, which `ps` shows every user, yet a --source-file of mode 0644 (umask 022) showed it to
every local user without a word (a review). Neither the URL nor its password is in the message: the file
is named, and the cameras whose sources hold one. A file of a user unknown here is a host user's seen from a
container (compose mounts the cameras file so, kept at 0644 in the host's secrets folder of mode 0700, which
the container does not see): not warned of, as the file rules take such a file (common/file_writers)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

from common.credentials import mask_url
from common.file_writers import file_mode, user_name
from common.receiver_secrets import others_may_read
from common.text_files import shown_path

log = logging.getLogger(__name__)


def holds_credentials(url: str) -> bool:
    """Whether `url` carries a credential that log lines mask (common/credentials.mask_url): a password in
    its user info (or a lone token there, taken for one), or one in its path or query (password=, pwd=,
    token=, ...).

    >>> holds_credentials("rtsp://admin:hunter2@cam/live"), holds_credentials("rtsp://cam/live?token=x")
    (True, True)
    >>> holds_credentials("rtsp://cam:554/live"), holds_credentials("/videos/gate.mp4")
    (False, False)
    """
    return mask_url(url) != url


def warn_if_others_may_read_credentials(path: Path, label: str, holders: Collection[str] = ()) -> None:
    """A WARNING where other users of this host may read the file at `path` (`others_may_read`: its read
    bits, its group's members and the folders above it), said as `label` (`--source-file FILE`, `the cameras
    file FILE`), which holds a URL with a credential (the caller has found one): `holders` names the cameras
    whose sources hold one. The URL is not shown, masked or not. A file whose owner is unknown here (a host
    user's, seen from a container: the folders above it on the host cannot be seen) is not warned of."""
    if not others_may_read(path) or user_name(path.stat().st_uid) is None:
        return
    which = f" (the sources of {', '.join(sorted(holders))})" if holders else ""
    log.warning(
        "%s (mode %04o) holds a stream URL with its password or token%s, and other users of this host may read it:"
        " whoever reads it may watch the camera and log in to it. chmod go-r %s",
        label, file_mode(path), which, shown_path(path),
    )  # fmt: skip

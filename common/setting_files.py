"""The files `ALPR_X_FILE` variables name, read as the value of ALPR_X (Docker/Kubernetes secrets):
what a file may hold and who may write it, and the refusals, which name the variable, never the path or
what the file holds."""

from __future__ import annotations

from pathlib import Path

from common.errors import ConfigError
from common.file_writers import OWNER_ALONE, others_may_change
from common.text_files import MAX_SECRET_FILE_BYTES, read_text_file

JOB_KEY_FILE_TRAILER = " \t\r\n"
"""What ALPR_JOB_KEY_FILE's key ends with that is not part of it: spaces, tabs, line ends. One role's key
file with a trailing space gave it another key, and every job between it and the others was refused."""


def read_setting_file(variable: str, path: str) -> str:
    """The value in a secret file (Docker/Kubernetes `*_FILE` convention), without its final newline.
    The message of a failure names the variable, never the path (a secret written there by mistake
    would be logged) nor what the file holds. A file other users of the host may write is refused: one at
    0666 set the Redis password or the job key (which jobs every role runs) for anyone local (a review);
    one others may read is not (compose mounts its secrets 0644, in a folder of mode 0700), nor one whose group
    is a host user's own as a container sees it: a WARNING (common/file_writers.others_may_change, the rule
    of the receivers file and a receiver's secret file too)."""
    label = f"{variable}: the file it names"
    value = read_text_file(Path(path), MAX_SECRET_FILE_BYTES, ConfigError, label).rstrip("\r\n")
    setting = variable.removesuffix("_FILE")
    if changeable := others_may_change(Path(path), label, f"they set {setting}"):  # read first: /dev/zero's 0666
        raise ConfigError(
            f"{label} may be written by other users of this host ({changeable.why}): whoever writes it sets"
            f" {setting}; {changeable.fix}{' (others may still read it)' if changeable.fix == OWNER_ALONE else ''}"
        )
    return value

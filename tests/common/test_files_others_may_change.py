"""The one rule for a file whose writer chooses what the chain does (common/file_writers.others_may_change)
looks past the file's mode: a POSIX ACL entry naming another user or group with write (the mode then shows
the mask, 0664 with the owner's own group: `setfacl -m u:nobody:rw`, or a default ACL on a shared /etc/alpr),
a folder on the way to it that others may write in without the sticky bit (another user renamed a file of
theirs over a 0600 job key there), and another user's file are refused, each named; a folder or file of a
user unknown here (a host's, as compose mounts it in a container) is not. Real files, modes and ACLs (the
kernel's `system.posix_acl_access`, set here byte by byte: no `setfacl` needed); run as root."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from common.alerts import load_receivers
from common.config import Settings
from common.errors import ConfigError, InputError
from common.file_writers import others_may_change_file, others_may_write
from common.watchlist_csv import read_csv

NOBODY = 65534
HOST_USER = 54321
"""A host user's id, unknown here (as a container sees it)."""
KEY = "operator-key-0123456789"
ACL_VERSION, USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 2, 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
NO_ID = 0xFFFFFFFF

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="giving files to other users takes root")


def _set_acl(path: Path, named: list[tuple[int, int, int]], mask: int = 6, default: bool = False) -> None:
    """The POSIX ACL of `path`: its owner rw(x), its group r(x), others r(x), the `named` (tag, perm, id) entries
    and `mask`, as `setfacl` writes it (entries in tag order, then id)."""
    x = 1 if path.is_dir() else 0
    entries = [(USER_OBJ, 6 | x, NO_ID), *sorted(e for e in named if e[0] == USER), (GROUP_OBJ, 4 | x, NO_ID),
               *sorted(e for e in named if e[0] == GROUP), (MASK, mask | x, NO_ID), (OTHER, 4 | x, NO_ID)]  # fmt: skip
    data = struct.pack("<I", ACL_VERSION) + b"".join(struct.pack("<HHI", *entry) for entry in entries)
    os.setxattr(path, "system.posix_acl_default" if default else "system.posix_acl_access", data)


def _nobody_writes(path: Path) -> bool:
    """Whether user nobody may open the file at `path` for writing (the kernel's answer, ACL included), by a
    second name in a folder they may pass (pytest's are root's, 0700)."""
    passable = Path(tempfile.mkdtemp())
    try:
        os.chmod(passable, 0o711)
        os.link(path, passable / "file")
        code = f"import os; os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY}); open('{passable}/file', 'a')"
        return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    finally:
        shutil.rmtree(passable)


def _key(folder: Path, mode: int | None = 0o644) -> Path:
    key = folder / "job.key"
    key.write_text(KEY + "\n")
    if mode is not None:
        os.chmod(key, mode)
    return key


def _refusal(key: Path) -> str:
    with pytest.raises(ConfigError) as refused:
        Settings.load({"ALPR_JOB_KEY_FILE": str(key)})
    assert KEY not in str(refused.value)
    return str(refused.value)


def test_a_secret_an_acl_lets_another_user_write_is_refused_naming_them(tmp_path):
    key = _key(tmp_path)
    _set_acl(key, [(USER, 6, NOBODY)])
    assert _nobody_writes(key) and oct(key.stat().st_mode & 0o777) == "0o664"  # the mode shows the mask
    said = _refusal(key)
    assert said.startswith("ALPR_JOB_KEY_FILE: the file it names may be written by other users of this host (an"
                           " ACL lets user nobody write it): whoever writes it sets ALPR_JOB_KEY; ")  # fmt: skip
    assert "setfacl -b" in said
    _set_acl(key, [(USER, 6, NOBODY)], mask=4)  # the mask takes write from every named entry
    assert not _nobody_writes(key) and Settings.load({"ALPR_JOB_KEY_FILE": str(key)}).secret("job_key") == KEY
    _set_acl(key, [(USER, 6, 0), (USER, 4, NOBODY)])  # root, and nobody reading
    assert Settings.load({"ALPR_JOB_KEY_FILE": str(key)}).secret("job_key") == KEY


def test_a_named_group_with_write_is_refused_and_the_owning_groups_own_entry_is_asked(tmp_path):
    key = _key(tmp_path)
    _set_acl(key, [(GROUP, 6, NOBODY + 0)])  # nogroup (65534), nobody's own
    said = _refusal(key)
    assert "(an ACL lets group nogroup write it)" in said
    os.chown(key, -1, NOBODY)  # its group nogroup, that group's own entry read-only, the mask (mode) rw
    _set_acl(key, [(USER, 4, NOBODY)])
    assert oct(key.stat().st_mode & 0o777) == "0o664" and not _nobody_writes(key)
    assert not others_may_change_file(key)


def test_the_receivers_file_a_secret_file_and_the_watch_list_with_an_acl_are_refused(tmp_path):
    secret, receivers = tmp_path / "hook.secret", tmp_path / "receivers.yaml"
    secret.write_text("receiver-secret-0123456789\n")
    receivers.write_text(f"receivers:\n  ops:\n    type: webhook\n    url: https://hooks.example.org/alpr\n"
                         f"    secret_file: {secret}\n")  # fmt: skip
    for path in (secret, receivers):
        os.chmod(path, 0o644)
    assert len(load_receivers(receivers)) == 1
    acl = "(an ACL lets user nobody write it)"
    for path, said in ((secret, f"its secret_file: the file it names may be written by other users of this host {acl}"),
                       (receivers, f"other users of this host may write it {acl}")):  # fmt: skip
        _set_acl(path, [(USER, 6, NOBODY)])
        with pytest.raises(ConfigError, match=f"^{re.escape(str(receivers))}: .*{re.escape(said)}"):
            load_receivers(receivers)
        os.removexattr(path, "system.posix_acl_access")
    stolen = tmp_path / "stolen.csv"
    stolen.write_text("plate,reason\nAB12CDE,stolen\n")
    _set_acl(stolen, [(USER, 6, NOBODY)])
    with pytest.raises(InputError, match=r"\(an ACL lets user nobody write it\): they choose the plates"):
        read_csv(stolen)


def test_a_shared_config_folder_with_an_acl_is_one_others_may_write_in(tmp_path):
    """/etc/alpr shared by a default ACL: the folder and every file made in it let the named user write."""
    etc = tmp_path / "etc_alpr"
    etc.mkdir(mode=0o755)
    _set_acl(etc, [(USER, 7, NOBODY)])
    _set_acl(etc, [(USER, 6, NOBODY)], default=True)
    key = _key(etc, None)  # made as the operator makes it: the folder's default ACL gives it nobody's entry
    assert others_may_write(etc) and _nobody_writes(key)
    said = _refusal(key)
    assert f"({etc}, a folder on the way to it, is one others may write in without the sticky bit (an ACL lets" in said
    assert "user nobody write in it)" in said and f"setfacl -b on {etc}, or chmod +t on it" in said
    os.chmod(etc, 0o1755)  # sticky: nobody may no longer swap the file; its own ACL still lets them write it
    assert not others_may_write(etc) and "(an ACL lets user nobody write it)" in _refusal(key)


def test_a_private_secret_in_a_folder_others_may_write_in_is_refused(tmp_path):
    """folder_swap: a 0600 key of root's in a 0777 folder; nobody renamed a file of theirs over it."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    key = _key(shared, 0o600)
    said = _refusal(key)
    assert f"({shared}, a folder on the way to it, is one others may write in without the sticky bit (mode" in said
    assert "(mode 0777): they could put a file of theirs in its place" in said
    assert f"or chmod o-w on {shared}, or chmod +t on it" in said
    below = shared / "deeper"
    below.mkdir(mode=0o700)
    assert f"({shared}, a folder on the way to it," in _refusal(_key(below, 0o600))  # any folder above it
    os.chmod(shared, 0o1777)  # sticky, as /tmp: each file stays its owner's
    assert Settings.load({"ALPR_JOB_KEY_FILE": str(key)}).secret("job_key") == KEY
    link = tmp_path / "key.link"
    os.chmod(shared, 0o777)
    link.symlink_to(key)  # a link of this user's, in a folder of this user's, to the key in the open folder
    assert f"({shared}, a folder on the way to it," in _refusal(link)


def test_another_users_file_or_folder_is_refused_a_host_users_seen_from_a_container_is_not(tmp_path):
    """compose mounts a secret file (and ALPR_ALERT_SECRETS_DIR) with the host user's id, unknown in the
    container: taken as before. A known user's (nobody's) may be changed by them."""
    key = _key(tmp_path)
    os.chown(key, NOBODY, NOBODY)
    said = _refusal(key)
    assert f"(it is nobody's file (uid {NOBODY}), who may change it)" in said and "chown" in said
    os.chown(key, HOST_USER, HOST_USER)
    assert Settings.load({"ALPR_JOB_KEY_FILE": str(key)}).secret("job_key") == KEY
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o755)
    mounted = _key(secrets)
    os.chown(mounted, HOST_USER, HOST_USER)
    os.chown(secrets, HOST_USER, HOST_USER)
    assert Settings.load({"ALPR_JOB_KEY_FILE": str(mounted)}).secret("job_key") == KEY
    os.chown(secrets, NOBODY, NOBODY)
    assert f"({secrets}, a folder on the way to it, is another user's" in _refusal(mounted)

"""The rule for a file whose writer chooses what the chain does (file_writers.others_may_change) and the rule
for folders of plates (shared_folders.refuse_shared_folder) judge a folder on the way alike: another user's
is refused naming them, never with a mode to change (root reading a user's watch list in her home was told
`chmod +t` on it, to no avail); a folder only a group of a container may write in (a host user's own, a
Kubernetes fsGroup) is a WARNING for both (a receiver's secret in a 0775 ALPR_ALERT_SECRETS_DIR was refused,
so the alert pool stopped at start); an ACL letting others write in it is refused by both, named (it hid
behind that WARNING); the owning group's own ACL entry is asked for a folder as for a file. Real folders,
owners, modes and ACLs, set byte by byte; run as root (a review)."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import struct
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.file_writers import others_may_change, others_may_change_file, others_may_write
from common.shared_folders import refuse_shared_folder
from tests.common.test_folders_on_the_way import FS_GROUP, HOST_USER, POD_USER, as_user, open_tree

__all__ = ["open_tree"]  # the fixture, used here by its name

NOBODY, WWW_DATA = 65534, 33
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER, NO_ID = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0xFFFFFFFF

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="giving folders to other users takes root")


def _set_acl(path: Path, named: list[tuple[int, int, int]], group_obj: int = 5, mask: int = 7) -> None:
    """The POSIX access ACL of the folder at `path`: owner rwx, its own group `group_obj`, others r-x, the `named`
    (tag, perm, id) entries and `mask`, in the kernel's binary form."""
    entries = [(USER_OBJ, 7, NO_ID), *[e for e in named if e[0] == USER], (GROUP_OBJ, group_obj, NO_ID),
               *[e for e in named if e[0] == GROUP], (MASK, mask, NO_ID), (OTHER, 5, NO_ID)]  # fmt: skip
    data = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)
    os.setxattr(path, "system.posix_acl_access", data)


def _file(folder: Path, name: str = "stolen.csv", owner: int = 0, mode: int = 0o644) -> Path:
    path = folder / name
    path.write_text("plate,reason\nAB12CDE,stolen\n")
    os.chown(path, owner, owner)
    path.chmod(mode)
    return path


def test_another_users_folder_on_the_way_to_a_file_is_refused_naming_them_not_a_mode(tmp_path):
    """`sudo alpr watchlist import ~alice/stolen.csv`: her folder, 0750, then sticky as the old message said;
    the file chowned to root. No mode of hers keeps her out: the message names her and no chmod."""
    home = tmp_path / "alice"
    home.mkdir(mode=0o750)
    os.chown(home, NOBODY, NOBODY)
    stolen = _file(home)
    for mode in (0o750, 0o1750):
        home.chmod(mode)
        changeable = others_may_change(stolen, "the watch-list CSV", "they take a plate off the list")
        assert changeable is not None
        name = pwd.getpwuid(NOBODY).pw_name
        assert changeable.why.startswith(f"{home}, a folder on the way to it, is another user's (uid {NOBODY}, {name})")
        assert "could put a file of theirs in its place" in changeable.why
        assert changeable.fix.startswith("no mode keeps its owner out: run as that user, or copy the file to a")
        assert "chmod" not in changeable.fix


def test_a_folder_only_a_group_of_a_container_may_write_in_is_a_warning_for_a_file_as_for_frames(open_tree, caplog):
    """compose mounts ALPR_ALERT_SECRETS_DIR, made 0775 under umask 002, with the host user's ids (unknown here):
    a secret file in it is warned of, as the file's own group write is and as refuse_shared_folder warns of a
    folder of frames in it; a group not the owner's number is refused by both."""
    secrets = open_tree / "secrets"
    secrets.mkdir()
    os.chown(secrets, HOST_USER, HOST_USER)
    secrets.chmod(0o775)
    secret = _file(secrets, "hook_secret", HOST_USER, 0o600)
    with caplog.at_level(logging.WARNING, logger="common.file_writers"):
        assert others_may_change(secret, "receiver hook: its secret_file", "they set the secret") is None
    said = caplog.text
    assert f"receiver hook: its secret_file: {secrets}, a folder on the way to it, may be written in by its" in said
    assert f"its group, {HOST_USER}, a host user's own as seen from a container (neither known here)" in said
    assert str(secret) not in said and "chmod g-w on it" in said
    code = "from common.file_writers import refuse_if_others_may_change as r; refuse_shared_folder(folder / 'out', 'f')"
    code += "; r(folder / 'hook_secret', 'the file', 'they set it')"
    said = as_user(HOST_USER, HOST_USER, [], secrets, code)  # `docker run --user`: out folder and file alike
    assert said.count("WARNING") == 2 and said.endswith("accepted\n")
    os.chown(secrets, HOST_USER, HOST_USER + 1)  # a group not the owner's number: who is in it is not told
    assert (refused := others_may_change(secret, "the file", "they set it")) and "(mode 0775)" in refused.why
    assert f"chmod g-w on {secrets}" in refused.fix


def test_an_fsgroup_folder_on_the_way_to_a_file_is_a_warning(open_tree):
    """A pod's fsGroup volume (root:2000, 2775, 2000 among its groups, unknown here) holding the receivers file."""
    data = open_tree / "data"
    data.mkdir()
    os.chown(data, 0, FS_GROUP)
    data.chmod(0o2775)
    _file(data, "receivers.yaml", POD_USER, 0o600)
    code = "from common.file_writers import refuse_if_others_may_change as r; r(folder, 'the receivers file', 'x')"
    said = as_user(POD_USER, POD_USER, [FS_GROUP], data / "receivers.yaml", code)
    assert said.startswith(f"WARNING the receivers file: {data}, a folder on the way to it, may be written in by its")
    assert "(a Kubernetes fsGroup)" in said and said.endswith("accepted\n")
    said = as_user(POD_USER, POD_USER, [], data / "receivers.yaml", code)  # not the process's group: refused
    assert said.startswith("refused: the receivers file may be written by other users") and "(mode 2775)" in said


def test_an_acl_on_a_folder_of_a_container_is_refused_by_both_rules_naming_it(open_tree):
    """The checkout 54321:54321 0775 whose ACL lets www-data write in it: www-data could swap the out folder
    for a link, or a file for theirs; no WARNING hides it."""
    assert pwd.getpwuid(WWW_DATA).pw_name == "www-data"
    work = open_tree / "work"
    work.mkdir()
    os.chown(work, HOST_USER, HOST_USER)
    work.chmod(0o775)
    _set_acl(work, [(USER, 7, WWW_DATA)])
    source = _file(work, "sources.txt", HOST_USER, 0o600)
    said = as_user(HOST_USER, HOST_USER, [], work / "out", "refuse_shared_folder(folder, 'the redacted frames')")
    assert said.startswith(f"refused: {work}, a folder on the way to {work / 'out'}, is one others may write in")
    assert "its ACL lets user www-data write in it: setfacl -b on it" in said and "WARNING" not in said
    refused = others_may_change(source, "--source-file", "they choose the sources read")
    assert refused is not None and "an ACL lets user www-data write in it" in refused.why
    assert f"setfacl -b on {work}" in refused.fix


def test_the_owning_groups_own_acl_entry_is_asked_for_a_folder_as_for_a_file(tmp_path):
    """Its group nogroup (nobody in it) read-only by its own entry (g::r-x), mask rwx (the mode shows 0775):
    nobody may not write in it, nor the file of that ACL; both are accepted, and refused with g::rwx."""
    nogroup = grp.getgrnam("nogroup").gr_gid
    folder = tmp_path / "folder"
    folder.mkdir()
    os.chown(folder, -1, nogroup)
    inside = _file(folder, "in.csv", 0, 0o600)
    os.chown(inside, -1, nogroup)
    for path, group_obj, writes in ((folder, 5, False), (inside, 4, False), (folder, 7, True), (inside, 6, True)):
        _set_acl(path, [], group_obj, mask=7)
        assert os.stat(path).st_mode & 0o020  # the mode's group bits are the mask
        if path == folder:
            assert others_may_write(folder) is writes
        else:
            assert (others_may_change_file(inside) is not None) is writes


def test_an_fsgroup_volume_root_named_as_the_folder_is_told_to_use_a_subfolder(open_tree):
    """ALPR_LEDGER_SPOOL_DIR the fsGroup volume's root, root's: the pod's user cannot chmod g-w it."""
    data = open_tree / "data"
    data.mkdir()
    os.chown(data, 0, FS_GROUP)
    data.chmod(0o2775)
    said = as_user(POD_USER, POD_USER, [FS_GROUP], data, "refuse_shared_folder(folder, 'the frame records')")
    assert said.startswith(f"refused: {data} is a folder others may write in") and "chmod g-w on it" in said
    assert ", or make it a subfolder of the volume" in said
    os.chown(data, 0, grp.getgrnam("nogroup").gr_gid)  # a group known here, not the pod's: no volume to speak of
    with pytest.raises(ConfigError) as refused:
        refuse_shared_folder(data, "the frame records")
    assert "subfolder" not in str(refused.value)

"""What a folder on the way to a folder of plates (`alpr run --out`, ALPR_KEEP_DIR, ALPR_LEDGER_SPOOL_DIR,
the SQLite log's folder) is refused for, and what the message says to do: another user's folder is refused
whatever its mode (root running in a user's checkout was told to chmod it, to no avail: a review), a folder
others may write in is told which bits to take away. Seen from a container, a folder whose group cannot be
told (a host user's own, a Kubernetes fsGroup) is a WARNING: `docker run --user $(id -u):$(id -g)` on a
checkout of mode 0775 and a pod's fsGroup volume were refused (a review)."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.shared_folders import refuse_shared_folder

NOBODY = 65534
"""Another user's uid, and nogroup, a group with another member (nobody)."""

HOST_USER = 54321
"""A host user's id and its own group's, neither known here (as a container sees them)."""

FS_GROUP, POD_USER = 2000, 10001
"""A Kubernetes pod's fsGroup and runAsUser, neither known here (an image without them)."""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="giving folders to other users takes root")


def test_another_users_folder_on_the_way_is_refused_with_a_remedy_that_works(tmp_path):
    """`sudo make demo` in a user's checkout: chmod o-w,+t on her folder, as the message said, changed nothing."""
    theirs = tmp_path / "home" / "bob"
    (theirs / "alpr").mkdir(parents=True)
    os.chown(theirs, NOBODY, NOBODY)
    theirs.chmod(0o1755)  # followed the old advice: sticky, no one else may write; still hers to rename in
    with pytest.raises(ConfigError) as refused:
        refuse_shared_folder(theirs / "alpr" / "demo", "the plate log")
    said = str(refused.value)
    assert said.startswith(f"{theirs}, a folder on the way to {theirs / 'alpr' / 'demo'}, is another user's (uid")
    assert "run as that user" in said and "name a folder elsewhere" in said and "chown it" in said
    assert "chmod" not in said
    with pytest.raises(ConfigError) as refused:
        refuse_shared_folder(theirs, "the plate log")  # the folder itself
    said = str(refused.value)
    assert said.startswith(f"{theirs} is another user's folder (uid {NOBODY}")
    assert "run as that user" in said and "chmod" not in said


@pytest.mark.parametrize(
    ("mode", "group", "bits"),
    [(0o777, None, "o-w"), (0o775, "nogroup", "g-w"), (0o777, "nogroup", "o-w,g-w"), (0o2775, "nogroup", "g-w")],
)
def test_a_folder_others_may_write_in_is_told_which_bits_to_take_away(tmp_path, mode, group, bits):
    shared = tmp_path / "shared"
    shared.mkdir()
    if group is not None:
        os.chown(shared, -1, grp.getgrnam(group).gr_gid)
    shared.chmod(mode)
    with pytest.raises(ConfigError) as refused:
        refuse_shared_folder(shared / "out", "the redacted frames")
    said = str(refused.value)
    assert said.startswith(f"{shared}, a folder on the way to {shared / 'out'}, is one others may write in without")
    assert f"(mode {mode:04o})" in said and f"chmod {bits} on {shared}, or chmod +t on it" in said
    assert "another user's" not in said
    with pytest.raises(ConfigError) as refused:
        refuse_shared_folder(shared, "the redacted frames")
    said = str(refused.value)
    assert said.startswith(f"{shared} is a folder others may write in without the sticky bit (mode {mode:04o})")
    assert f"chmod {bits} on it" in said
    shared.chmod(mode | 0o1000)  # a positive control: sticky, as /tmp
    refuse_shared_folder(shared / "out", "the redacted frames")


@pytest.fixture
def open_tree() -> Iterator[Path]:
    """A folder every user may enter (tmp_path is root's alone), for a process that is another user."""
    tree = Path(tempfile.mkdtemp(prefix="alpr-way-"))
    tree.chmod(0o755)
    yield tree
    shutil.rmtree(tree)


def as_user(uid: int, gid: int, groups: list[int], folder: Path, checks: str) -> str:
    """What `checks` (Python, after `refuse_open_folder_above` and `refuse_shared_folder` are imported) says,
    run by a process of user `uid`, group `gid` and supplementary `groups`, its WARNINGs logged to its output
    and a refusal printed as `refused: ...`."""
    script = (
        "import logging, os, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parents[2])!r})\n"
        "from pathlib import Path\n"
        "from common.errors import ConfigError\n"
        "from common.shared_folders import refuse_open_folder_above, refuse_shared_folder\n"
        "logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format='%(levelname)s %(message)s')\n"
        f"os.setgroups({groups!r}); os.setegid({gid}); os.seteuid({uid})\n"
        f"folder = Path({str(folder)!r})\n"
        f"try:\n    {checks}\n    print('accepted')\nexcept ConfigError as error:\n    print('refused:', error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_a_host_users_checkout_seen_from_a_container_is_warned_of(open_tree):
    """`docker run --user $(id -u):$(id -g) -v $PWD:/work`: the checkout 0775 (umask 002), its owner and group
    the host user's, neither known in the container."""
    for lookup in (grp.getgrgid, pwd.getpwuid):
        with pytest.raises(KeyError):
            lookup(HOST_USER)
    work = open_tree / "work"
    work.mkdir()
    os.chown(work, HOST_USER, HOST_USER)
    work.chmod(0o775)
    said = as_user(
        HOST_USER, HOST_USER, [], work / "demo" / "out", "refuse_shared_folder(folder, 'the redacted frames')"
    )
    assert said.startswith(f"WARNING {work}, a folder on the way to {work / 'demo' / 'out'}, may be written in by its")
    assert f"its group, {HOST_USER}, a host user's own as seen from a container" in said and "chmod g-w" in said
    assert said.endswith("accepted\n")
    os.chown(work, HOST_USER, HOST_USER + 1)  # a group not the owner's number: who is in it is not told
    said = as_user(HOST_USER, HOST_USER, [], work / "demo" / "out", "refuse_shared_folder(folder, 'the frames')")
    assert said.startswith(f"refused: {work}, a folder on the way to") and "chmod g-w" in said


def test_a_kubernetes_fsgroup_volume_is_warned_of(open_tree):
    """runAsUser 10001, fsGroup 2000: the volume root:2000, mode 2775, and 2000 among the pod's groups; the
    image knows neither. Other pods given the fsGroup may write there too: a WARNING names the group."""
    with pytest.raises(KeyError):
        grp.getgrgid(FS_GROUP)
    data = open_tree / "data"
    data.mkdir()
    os.chown(data, 0, FS_GROUP)
    data.chmod(0o2775)
    check = "refuse_open_folder_above(folder, 'kept frames', 'ALPR_KEEP_DIR: ')"
    said = as_user(POD_USER, POD_USER, [FS_GROUP], data / "kept", check)
    assert said.startswith(f"WARNING ALPR_KEEP_DIR: {data}, a folder on the way to {data / 'kept'}, may be written")
    assert f"its group, {FS_GROUP}, one of this process's own and not known here (a Kubernetes fsGroup)" in said
    assert said.endswith("accepted\n")
    said = as_user(POD_USER, POD_USER, [], data / "kept", check)  # a group not the process's own
    assert said.startswith(f"refused: ALPR_KEEP_DIR: {data}, a folder on the way to") and "chmod g-w" in said
    data.chmod(0o2777)  # others may write in it: refused, whatever the group
    said = as_user(POD_USER, POD_USER, [FS_GROUP], data / "kept", check)
    assert said.startswith("refused: ") and "chmod o-w,g-w on" in said

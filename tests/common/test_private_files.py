"""Private files: what `keep_private` changes (only an SQLite log's mode), `replaced_privately` and
`write_private` (a file written whole beside its target, then put in its place)."""

import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.file_writers import others_may_change_file, others_may_write
from common.private_files import PARTIAL_SUFFIX, keep_private, open_private, replaced_privately, write_private

NOBODY = 65534
"""Another user's uid, whose files root can make."""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_an_sqlite_log_or_an_empty_or_missing_file_is_made_private(tmp_path):
    log, empty, missing = tmp_path / "log.sqlite", tmp_path / "empty.sqlite", tmp_path / "new.sqlite"
    with sqlite3.connect(log) as db:
        db.execute("CREATE TABLE t (x)")
    empty.touch()
    for path in (log, empty):
        path.chmod(0o644)
    for path in (log, empty, missing):
        keep_private(path)
        assert mode(path) == 0o600


@pytest.mark.parametrize(
    ("kind", "message"),
    [("folder", "not a regular file"), ("fifo", "not a regular file"), ("video", "not an SQLite database"),
     ("link", "symbolic link")],
)  # fmt: skip
def test_what_is_not_an_sqlite_file_is_refused_before_its_mode_is_changed(kind, message, tmp_path):
    """A folder named by --sqlite was made 0600 (unenterable), a video 0600, before SQLite refused them."""
    path = tmp_path / kind
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # never opened for reading: that would block
    elif kind == "video":
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    else:
        (tmp_path / "target.sqlite").touch()
        path.symlink_to(tmp_path / "target.sqlite")
    if kind != "link":
        path.chmod(0o755)
    before = mode(path)
    with pytest.raises(ConfigError, match=message) as refused:
        keep_private(path)
    assert mode(path) == before
    if kind != "link":  # named by the variable as well as the flag (it said --sqlite alone)
        assert str(refused.value).endswith("--sqlite or ALPR_SQLITE_PATH names the SQLite log file")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can make a file another user's")
def test_another_users_file_is_refused_before_anything_is_written_to_it(tmp_path):
    """Root made another user's 0666 log 0600 and wrote plates in it: its owner read them (a review)."""
    log, video = tmp_path / "reads.sqlite", tmp_path / "redacted.mp4"
    log.touch()
    video.write_bytes(b"another user's bytes")
    for path in (log, video):
        os.chown(path, NOBODY, NOBODY)
        path.chmod(0o666)
    with pytest.raises(ConfigError, match=rf"{log} is another user's file \(uid {NOBODY}\)"):
        keep_private(log)
    with pytest.raises(ConfigError, match="another user's file"):
        open_private(video)  # not even truncated
    assert [(mode(p), p.stat().st_size) for p in (log, video)] == [(0o666, 0), (0o666, 20)]


@pytest.mark.parametrize(
    ("file_mode", "group", "changed"),
    [(0o600, None, False), (0o644, None, False), (0o666, None, True), (0o646, None, True),
     (0o664, None, False),  # Debian's umask 002: the user's own private group, no one else in it
     (0o660, NOBODY, True), (0o640, NOBODY, False)],  # a group with another member: it may write, not read
)  # fmt: skip
def test_a_file_others_may_write_is_told(file_mode, group, changed, tmp_path):
    """A secret file anyone local may rewrite (the job key, a password) is refused by the settings; one they
    may only read is not (compose's secrets are 0644, in a folder of 0700)."""
    import grp
    import pwd

    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    if group is not None:
        if os.geteuid() != 0:
            pytest.skip("only root can give a file to another user's group")
        os.chown(secret, -1, group)
    else:
        own = pwd.getpwuid(os.geteuid())
        if grp.getgrgid(own.pw_gid).gr_mem or sum(u.pw_gid == own.pw_gid for u in pwd.getpwall()) > 1:
            pytest.skip("this user's primary group has other members")
    secret.chmod(file_mode)
    assert bool(others_may_change_file(secret)) is changed
    assert not others_may_change_file(tmp_path / "missing")


@pytest.mark.parametrize(
    ("folder_mode", "group", "shared"),
    [(0o700, None, False), (0o755, None, False), (0o777, None, True), (0o1777, None, False),
     (0o775, None, False),  # Debian's umask 002: the user's own private group, no one else in it
     (0o770, NOBODY, True), (0o2775, NOBODY, True)],  # a group with another member (nobody's own)
)  # fmt: skip
def test_a_folder_others_may_write_in_is_refused_for_plates(folder_mode, group, shared, tmp_path):
    """There a file checked private could be swapped for another's or for a link before SQLite or the
    video encoder opens it by name; /tmp's sticky bit keeps each file its owner's."""
    import grp
    import pwd

    folder = tmp_path / "out"
    folder.mkdir()
    if group is not None:
        if os.geteuid() != 0:
            pytest.skip("only root can give a folder to another user's group")
        os.chown(folder, -1, group)
    else:
        own = pwd.getpwuid(os.geteuid())
        if grp.getgrgid(own.pw_gid).gr_mem or sum(u.pw_gid == own.pw_gid for u in pwd.getpwall()) > 1:
            pytest.skip("this user's primary group has other members")
    folder.chmod(folder_mode)
    assert others_may_write(folder) is shared
    assert not others_may_write(tmp_path / "missing")
    if shared:
        with pytest.raises(ConfigError, match=f"{folder} is a folder others may write in without the sticky bit"):
            keep_private(folder / "reads.sqlite")
        assert not (folder / "reads.sqlite").exists()


@pytest.mark.parametrize("nameless", [True, False])
def test_a_replaced_file_changes_only_once_the_block_succeeds(tmp_path, monkeypatch, nameless):
    """Written with no name (O_TMPFILE), or where there is none (a kernel or file system without it) under
    a partial name beside it, removed when the block fails."""
    if not nameless:
        monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    target = tmp_path / "out.csv"
    target.write_text("before\n")
    with pytest.raises(RuntimeError), replaced_privately(target) as handle:
        handle.write("half")
        handle.flush()
        assert target.read_text() == "before\n"
        raise RuntimeError("the query failed")
    assert target.read_text() == "before\n" and os.listdir(tmp_path) == ["out.csv"]
    target.chmod(0o644)
    with replaced_privately(target) as handle:
        assert stat.S_IMODE(os.fstat(handle.fileno()).st_mode) == 0o600
        handle.write("after\n")
    assert target.read_text() == "after\n" and mode(target) == 0o600 and os.listdir(tmp_path) == ["out.csv"]
    with replaced_privately(tmp_path / "new.csv") as handle:  # nothing there: linked at its name at once
        handle.write("new\n")
    assert (tmp_path / "new.csv").read_text() == "new\n" and mode(tmp_path / "new.csv") == 0o600


@pytest.mark.parametrize("kind", ["link", "folder"])
def test_a_link_or_folder_at_the_name_is_refused_before_anything_is_written(kind, tmp_path):
    target = tmp_path / "out.csv"
    if kind == "link":
        target.symlink_to(tmp_path / "elsewhere")
    else:
        target.mkdir()
    with pytest.raises(ConfigError), replaced_privately(target):
        pytest.fail("the block ran")
    assert sorted(os.listdir(tmp_path)) == ["out.csv"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can make a link or a file another user's")
def test_a_file_is_not_written_through_another_users_link_nor_over_their_file(tmp_path):
    """Root's `alpr export --csv bobhome/cases/passwd` went through bob's link `cases -> sys` over root's
    own file, and `--csv bobhome/report.csv` replaced bob's file with root's plates (a review): the link
    above the name was never looked at, nor whose the file was."""
    system, home = tmp_path / "sys", tmp_path / "bobhome"
    system.mkdir()
    home.mkdir()
    (system / "passwd").write_text("root:x:0:0\n")
    (home / "cases").symlink_to(system)
    (home / "report.csv").write_text("bob's notes\n")
    for path in (home, home / "cases", home / "report.csv"):
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
    swappable = f"{home / 'cases'} is a link another user made or may swap"
    with pytest.raises(ConfigError, match=swappable), replaced_privately(home / "cases" / "passwd"):
        pytest.fail("the block ran")
    with pytest.raises(ConfigError, match="is another user's folder"), replaced_privately(home / "report.csv"):
        pytest.fail("the block ran")
    home.chmod(0o1777)  # a sticky folder all may write in (/tmp's): another user's file there is still theirs
    os.chown(home, 0, 0)
    with pytest.raises(ConfigError, match="another user's file"), replaced_privately(home / "report.csv"):
        pytest.fail("the block ran")
    assert (system / "passwd").read_text() == "root:x:0:0\n" and (home / "report.csv").read_text() == "bob's notes\n"
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "exports").symlink_to(home / "cases")  # root's own link, to bob's: his still decides
    with pytest.raises(ConfigError, match=swappable), replaced_privately(tmp_path / "srv" / "exports" / "passwd"):
        pytest.fail("the block ran")
    mine = tmp_path / "mine"
    mine.symlink_to(system)  # this user's own link, in a folder of its own: followed as before
    with replaced_privately(mine / "out.csv") as handle:
        handle.write("a,b\n")
    assert (system / "out.csv").read_text() == "a,b\n"


WRITE_UNDER_A_SIZE_LIMIT = """
import resource, signal, sys
from pathlib import Path
from common.private_files import write_private
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it: the write would fail, not be killed
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # the kernel kills it (SIGXFSZ) past 4 KiB
write_private(Path(sys.argv[1]), b"\\xff\\xd8" + bytes(100_000) + b"\\xff\\xd9")
"""


def test_a_writer_killed_mid_write_leaves_the_file_whole_and_a_partial_beside_it(tmp_path):
    """A kept frame was written in place: its writer killed mid-write left a file cut short under the
    frame's name. Here the kernel kills the writer 4 KiB into a 100 KB write."""
    target = tmp_path / "frame.jpg"
    write_private(target, b"before")
    killed = subprocess.run([sys.executable, "-c", WRITE_UNDER_A_SIZE_LIMIT, str(target)], cwd=Path.cwd(), check=False)
    assert killed.returncode == -signal.SIGXFSZ
    assert target.read_bytes() == b"before"
    (partial,) = (p for p in tmp_path.iterdir() if p != target)
    assert partial.name.startswith(".frame.jpg.") and partial.name.endswith(PARTIAL_SUFFIX)
    assert partial.stat().st_size == 4096 and mode(partial) == 0o600
    write_private(target, b"after")
    assert target.read_bytes() == b"after" and mode(target) == 0o600


def test_write_private_refuses_a_link_at_the_name(tmp_path):
    victim, target = tmp_path / "victim.txt", tmp_path / "frame.jpg"
    victim.write_text("precious")
    target.symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        write_private(target, b"jpeg")
    assert victim.read_text() == "precious" and sorted(os.listdir(tmp_path)) == ["frame.jpg", "victim.txt"]


def test_a_written_file_is_on_the_disk_before_its_name_and_its_name_after(tmp_path, monkeypatch):
    """No fsync was made: after a power cut a kept frame could be an empty file at its own name, recorded
    kept, its raw frame deleted. The real calls are made; they are only watched, in order."""
    calls: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def watched_fsync(descriptor: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        fsync(descriptor)

    def watched_replace(source: str | Path, target: str | Path) -> None:
        calls.append(("replace", str(target)))
        replace(source, target)

    monkeypatch.setattr(os, "fsync", watched_fsync)
    monkeypatch.setattr(os, "replace", watched_replace)
    frame = tmp_path / "cam_1_0.jpg"
    write_private(frame, b"\xff\xd8jpeg\xff\xd9")
    assert [kind for kind, _ in calls] == ["fsync", "replace", "fsync"]
    assert calls[0][1].startswith(str(tmp_path / ".cam_1_0.jpg.")) and calls[1:] == [
        ("replace", str(frame)), ("fsync", str(tmp_path)),
    ]  # fmt: skip
    assert frame.read_bytes() == b"\xff\xd8jpeg\xff\xd9"


def test_a_folder_above_others_may_write_in_is_found_on_the_way_links_and_all(tmp_path):
    """With `--out shared/out` and `shared` 0777, another user renamed `out` away mid-run and put a link in
    its place: 17 of 18 snapshots went where it pointed (a review). Every folder passed through on the way
    counts, through links too; the folder itself does not (refuse_shared_folder's own check), nor one left by
    `..`, nor a sticky one (/tmp)."""
    from common.file_writers import open_folder_above
    from common.shared_folders import refuse_shared_folder

    shared, mine = tmp_path / "shared", tmp_path / "mine"
    (shared / "deep").mkdir(parents=True)
    mine.mkdir()
    (mine / "link").symlink_to(shared / "deep")  # this user's own link, in its own folder, into the open one
    (mine / "relative").symlink_to(Path("..") / "shared")
    for path in (shared / "out", shared / "deep" / "out", mine / "link" / "out", mine / "relative" / "out"):
        shared.chmod(0o755)
        assert open_folder_above(path) is None
        shared.chmod(0o777)
        assert open_folder_above(path) == shared, path
        with pytest.raises(ConfigError, match=re.escape(f"{shared}, a folder on the way to {path}, is one others")):
            refuse_shared_folder(path, "the redacted frames")
        shared.chmod(0o1777)  # sticky: each entry stays its owner's
        assert open_folder_above(path) is None
        refuse_shared_folder(path, "the redacted frames")
    shared.chmod(0o777)
    assert open_folder_above(shared) is None  # the folder itself: others_may_write's, another message
    assert open_folder_above(shared / ".." / "mine" / "out") is None
    assert open_folder_above(mine / "out") is None and open_folder_above(tmp_path / "missing" / "a" / "b") is None
    if os.geteuid() == 0:  # another user's folder above, though only they may write in it
        shared.chmod(0o755)
        os.chown(shared, NOBODY, NOBODY)
        assert open_folder_above(mine / "link" / "out") == shared

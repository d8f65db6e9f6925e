"""Private files: what `keep_private` changes (only an SQLite log's mode) and `replaced_privately`
(a file written whole beside its target, then put in its place)."""

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.private_files import keep_private, replaced_privately


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
    with pytest.raises(ConfigError, match=message):
        keep_private(path)
    assert mode(path) == before


def test_a_replaced_file_changes_only_once_the_block_succeeds(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("before\n")
    with pytest.raises(RuntimeError), replaced_privately(target) as partial:
        partial.write_text("half")
        assert target.read_text() == "before\n"
        raise RuntimeError("the query failed")
    assert target.read_text() == "before\n" and os.listdir(tmp_path) == ["out.csv"]
    target.chmod(0o644)
    with replaced_privately(target) as partial:
        assert mode(partial) == 0o600
        partial.write_text("after\n")
    assert target.read_text() == "after\n" and mode(target) == 0o600 and os.listdir(tmp_path) == ["out.csv"]


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

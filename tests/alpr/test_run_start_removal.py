"""What a refused `alpr run` start removes is what it made, and nothing else (a review of alpr/run_start.py): a
log named below a folder others may write in is refused before anything is made (the run made the folder and
the file, and its cleanup, by path, deleted the operator's own log elsewhere once another user swapped the
fresh folder for a link); a created log or folder swapped meanwhile is left; `..` in --out never has a folder
that was there counted as made; a log another run opened meanwhile is not removed under it; folders made for
a log that cannot be created are removed; and the source opened is released before the refusal is said."""

from __future__ import annotations

import io
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import alpr.run_start as run_start
from alpr.cli import main
from common.config import Settings
from common.errors import ConfigError
from common.plate_log import open_plate_log
from tests.alpr.test_export import write_log
from tests.alpr.test_run_log_refusals import black_clip


def names(folder: Path) -> list[str]:
    return sorted(each.name for each in folder.iterdir())


def sqlite_settings(log: Path) -> Settings:
    return Settings(sqlite_path=log, database_url=None)


def before_plate_log(monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[Path], None]) -> None:
    """Run `meanwhile(log)` as the plate log is about to open: what another user (or run) does in that moment."""
    real = run_start.open_plate_log

    def opening(database_url: str | None, sqlite_path: Path, password: str | None = None) -> Any:
        meanwhile(sqlite_path)
        return real(database_url, sqlite_path, password)

    monkeypatch.setattr(run_start, "open_plate_log", opening)


def refused_start(log: Path, error: type[BaseException] = ConfigError) -> None:
    with pytest.raises(error), run_start.opened_logs(sqlite_settings(log), []):
        pass


def test_a_log_below_an_open_folder_is_refused_before_anything_is_made(tmp_path, monkeypatch):
    """Another user may write in `shared`: once the run made `shared/new` and the log in it, they swapped
    `new` for a link to the operator's own log folder, and the refusal's cleanup deleted that log (trial 33)."""
    shared, mine = tmp_path / "shared", tmp_path / "mine"
    shared.mkdir()
    shared.chmod(0o777)
    mine.mkdir()
    own_log = write_log(mine / "reads.sqlite", ["KPX4721"])

    def swap(log: Path) -> None:  # the other user's swap, in the moment they would win the race
        os.rename(log.parent, shared / "moved")
        os.symlink(mine, log.parent)

    before_plate_log(monkeypatch, swap)
    refused_start(shared / "new" / "reads.sqlite")
    assert own_log.exists()
    assert names(shared) == []  # nothing made there, so nothing to swap


def test_a_created_log_swapped_for_another_file_is_left(tmp_path, monkeypatch):
    """The file at the log's name is no longer the one the run created: it is not the run's to remove."""
    log = tmp_path / "logs" / "reads.sqlite"

    def swap(log: Path) -> None:
        os.rename(log, tmp_path / "created.sqlite")
        log.write_bytes(b"")  # another file, empty too, in its place
        raise KeyboardInterrupt

    before_plate_log(monkeypatch, swap)
    refused_start(log, KeyboardInterrupt)
    assert log.exists()  # the file put there stays; the folder holding it too
    assert names(tmp_path) == ["created.sqlite", "logs"]


def test_a_created_folder_swapped_for_a_link_is_not_gone_through(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    own_log = write_log(mine / "reads.sqlite", ["KPX4721"])

    def swap(log: Path) -> None:
        os.rename(log.parent, tmp_path / "moved")
        os.symlink(mine, log.parent)
        raise KeyboardInterrupt

    before_plate_log(monkeypatch, swap)
    refused_start(tmp_path / "new" / "reads.sqlite", KeyboardInterrupt)
    assert own_log.exists() and names(mine) == ["reads.sqlite"]
    assert (tmp_path / "new").is_symlink()  # not the run's folder: left as it is


def test_a_new_log_refused_before_any_connection_is_removed_with_its_folders(tmp_path, monkeypatch):
    def interrupted(log: Path) -> None:
        raise KeyboardInterrupt

    before_plate_log(monkeypatch, interrupted)
    refused_start(tmp_path / "a" / "b" / "reads.sqlite", KeyboardInterrupt)
    assert names(tmp_path) == []


@pytest.mark.parametrize("interrupted_in", ["open_plate_log", "open_sighting_log"])
def test_a_new_log_another_run_opened_is_not_removed_under_it(interrupted_in, tmp_path, monkeypatch):
    """Run A created the log (O_EXCL), run B opened it (there already: not B's), then A was interrupted at
    its start (Ctrl-C): A removed the log B was writing, B's reads going to a file no name held."""
    log = tmp_path / "reads.sqlite"
    others: list[Any] = []
    real = getattr(run_start, interrupted_in)

    def other_run_opens(*args: Any, **kwargs: Any) -> Any:
        others.append(open_plate_log(None, log))  # run B
        raise KeyboardInterrupt  # the operator's Ctrl-C lands in A's start

    monkeypatch.setattr(run_start, interrupted_in, other_run_opens)
    try:
        refused_start(log, KeyboardInterrupt)
        assert log.exists()
    finally:
        for other in others:
            other.close()
    monkeypatch.setattr(run_start, interrupted_in, real)
    with sqlite3.connect(log) as connection:  # B's log, whole: its tables there
        assert connection.execute("SELECT count(*) FROM plate_reads").fetchone() == (0,)
    connection.close()


def test_folders_made_for_a_log_that_cannot_be_created_are_removed(tmp_path):
    """os.open refused the log's name (too long): the folders made for it stayed."""
    refused_start(tmp_path / "new" / "sub" / ("x" * 300 + ".sqlite"), OSError)
    assert names(tmp_path) == []


def test_an_existing_folder_reached_through_dotdot_is_not_removed(tmp_path, monkeypatch, capsys):
    """--out new/../cases_done, cases_done there and empty: it was counted made (`new/..` and all) and removed
    when the start was refused."""
    monkeypatch.delenv("ALPR_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    clip, log = black_clip(tmp_path / "clip.mp4"), write_log(tmp_path / "reads.sqlite", ["KPX4721"])
    with sqlite3.connect(log) as connection:  # a log whose sightings' table cannot be opened: refused
        connection.execute("DROP TABLE IF EXISTS sightings")
        connection.execute("CREATE VIEW sightings AS SELECT plate_text AS plate FROM plate_reads")
    connection.close()
    (tmp_path / "cases_done").mkdir()
    args = ["run", str(clip), "--out", "new/../cases_done", "--sqlite", str(log), "--no-progress"]
    assert main(args) == 2
    assert "alpr: error: " in capsys.readouterr().err
    assert names(tmp_path) == ["cases_done", "clip.mp4", "reads.sqlite"]  # `new` made and removed; cases_done kept


def children() -> set[int]:
    """This process's child processes."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            found.add(int(entry.name))
    return found


class ChildrenWhenRefused(io.StringIO):
    """stderr that notes this process's children as the refusal is written (the command's frames still held)."""

    def __init__(self) -> None:
        super().__init__()
        self.counted: list[set[int]] = []

    def write(self, text: str) -> int:
        if text.startswith("alpr: error"):
            self.counted.append(children())
        return super().write(text)


def test_the_source_opened_is_released_before_a_refusal_is_said(tmp_path, monkeypatch):
    """The video's reader (an FFmpeg process of its own) stayed open after a refusal that came after the
    source was opened: an in-process caller of `main` kept it."""
    monkeypatch.delenv("ALPR_DATABASE_URL", raising=False)
    clip = black_clip(tmp_path / "clip.mp4")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    before = children()
    stderr = ChildrenWhenRefused()
    monkeypatch.setattr(sys, "stderr", stderr)
    args = ["run", str(clip), "--out", str(shared / "out"), "--sqlite", str(tmp_path / "r.sqlite"), "--no-progress"]
    assert main(args) == 2
    assert "alpr: error: " in stderr.getvalue()
    assert len(stderr.counted) == 1 and stderr.counted[0] - before == set(), stderr.counted

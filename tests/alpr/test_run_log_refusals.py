"""What `alpr run` refuses of the log it is told to write, before anything is created or changed, through
the real CLI: a SQLite file that is another program's database (plate tables were added beside its own and
it was made 0600), and a Postgres schema not at this release's version (the run migrated it, out of order
and without re-granting the roles, where every other command says to run `alpr db upgrade`); and the
--out folders and SQLite logs it cannot make, said in words rather than as an exception's class (a review)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import cv2
import numpy as np
import psycopg
import pytest

from alpr.cli import main
from common.migrations import MIGRATIONS
from tests.alpr.test_export import mode, write_log

VERSIONS = [version for version, _ in MIGRATIONS]


def black_clip(path: Path) -> Path:
    """Three black frames: no plate, a run through every stage in a second."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 5.0, (64, 48))
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    return path


def tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return sorted(name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))


def run(clip: Path, tmp_path: Path, *log: str) -> int:
    return main(["run", str(clip), "--out", str(tmp_path / "out"), "--no-progress", *log])


def test_another_programs_sqlite_database_is_refused_and_left_as_it_was(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ALPR_DATABASE_URL", raising=False)
    clip, app = black_clip(tmp_path / "clip.mp4"), tmp_path / "app.db"
    with sqlite3.connect(app) as connection:
        connection.execute("CREATE TABLE users (name TEXT)")
        connection.execute("INSERT INTO users VALUES ('alice')")
    app.chmod(0o644)
    before = app.read_bytes()
    assert run(clip, tmp_path, "--sqlite", str(app)) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"alpr: error: {app} is not an alpr run log (it has none of its tables): --sqlite or" \
        " ALPR_SQLITE_PATH names the SQLite log file", err  # fmt: skip
    assert app.read_bytes() == before and mode(app) == 0o644 and tables(app) == ["users"]
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["app.db", "clip.mp4"]


def test_a_new_an_empty_and_an_existing_run_log_are_written(tmp_path, capsys, monkeypatch):
    """The positive control: the check refuses only a file that is there, not empty, and no run log."""
    monkeypatch.delenv("ALPR_DATABASE_URL", raising=False)
    clip, new, empty = black_clip(tmp_path / "clip.mp4"), tmp_path / "new.sqlite", tmp_path / "empty.sqlite"
    empty.touch()
    existing = write_log(tmp_path / "existing.sqlite", ["KPX4721"])
    for log in (new, empty, existing):
        assert run(clip, tmp_path, "--sqlite", str(log)) == 0, capsys.readouterr().err
        assert {"plate_reads", "sightings"} <= set(tables(log)) and mode(log) == 0o600
    with sqlite3.connect(existing) as connection:
        assert connection.execute("SELECT plate_text FROM plate_reads").fetchall() == [("KPX4721",)]


def schema_tables(url: str) -> set[str]:
    with psycopg.connect(url) as db:
        return {name for (name,) in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}


def test_an_unmigrated_or_older_postgres_schema_is_refused_and_not_migrated(tmp_path, postgres_url, capsys):
    clip = black_clip(tmp_path / "clip.mp4")
    assert run(clip, tmp_path, "--database-url", postgres_url) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"alpr: error: the database schema is not at version {VERSIONS[-1]}; run `alpr db upgrade`", err
    assert schema_tables(postgres_url) == set()  # not one migration applied, not even their record
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    with psycopg.connect(postgres_url) as db:  # one version behind, as after this release is installed
        db.execute("DELETE FROM schema_migrations WHERE version = %s", (VERSIONS[-1],))
    capsys.readouterr()
    assert run(clip, tmp_path, "--database-url", postgres_url) == 2
    assert "run `alpr db upgrade`" in capsys.readouterr().err
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT max(version) FROM schema_migrations").fetchone() == (VERSIONS[-2],)
        db.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (VERSIONS[-1],))
    assert run(clip, tmp_path, "--database-url", postgres_url) == 0  # the positive control: current, it runs
    assert "3 frames" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("out", "says"),
    [
        ("/etc/hostname/x", "--out /etc/hostname/x cannot be made: /etc/hostname is a file, not a folder"),
        ("/proc/x", "--out /proc/x cannot be made: no folder x could be made in /proc (No such file or directory)"),
    ],
)
def test_an_out_folder_that_cannot_be_made_is_said_in_words(out, says, tmp_path, capsys):
    clip = black_clip(tmp_path / "clip.mp4")
    assert main(["run", str(clip), "--out", out, "--sqlite", str(tmp_path / "r.sqlite"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"alpr: error: {says}") and "Error" not in err[0], err


@pytest.mark.parametrize(
    ("flag", "log", "says"),
    [
        ("--sqlite", "/etc/hostname/x.sqlite", "/etc/hostname is a file, not a folder"),
        ("--sqlite", "/proc/x/r.sqlite", "no folder x could be made in /proc (No such file or directory)"),
        ("ALPR_SQLITE_PATH", "/etc/hostname/x.sqlite", "/etc/hostname is a file, not a folder"),
    ],
)
def test_a_sqlite_log_that_cannot_be_made_is_said_in_words_and_nothing_is_left(
    flag, log, says, tmp_path, capsys, monkeypatch
):
    """`--sqlite /etc/hostname/x.sqlite` ended with `NotADirectoryError: [Errno 20] Not a directory: ...`, and one in
    /proc with a FileNotFoundError: said as --out's are, naming the flag or the variable that named the log, and
    refused before the --out folder is made (or removed again)."""
    monkeypatch.delenv("ALPR_DATABASE_URL", raising=False)
    monkeypatch.delenv("ALPR_SQLITE_PATH", raising=False)
    clip, given = black_clip(tmp_path / "clip.mp4"), ["--sqlite", log] if flag == "--sqlite" else []
    if flag == "ALPR_SQLITE_PATH":
        monkeypatch.setenv("ALPR_SQLITE_PATH", log)
    assert run(clip, tmp_path, *given) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"alpr: error: {flag} {log} cannot be made: {says}: name another file"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_an_empty_out_is_refused_and_nothing_written_in_the_working_folder(tmp_path, capsys, monkeypatch):
    clip = black_clip(tmp_path / "clip.mp4")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["run", str(clip), "--out", "", "--sqlite", "r.sqlite", "--no-progress"])
    assert exited.value.code == 2 and "argument --out: empty: name a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]

"""A refused `alpr run` leaves nothing behind, through the real CLI: every refusal of its --out folder or its
detector device comes before the SQLite log is made (a run refused for a --out under a folder others may write
in left an empty `reads.sqlite`, its `-wal` and `-shm` beside it), a log refused leaves no --out folder made,
an existing log is never removed, and a log that fails to open closes what was opened before it (the plate log's
Postgres session stayed open, counted in pg_stat_activity, when the sightings' pool could not connect)."""

from __future__ import annotations

import io
import os
import sqlite3
import sys
import time
from pathlib import Path

import psycopg
import pytest

from alpr.cli import main
from alpr.start_checks import cuda_devices
from tests.alpr.test_export import write_log
from tests.alpr.test_run_log_refusals import black_clip


def names(folder: Path) -> list[str]:
    return sorted(each.name for each in folder.iterdir())


def open_folder(path: Path) -> Path:
    path.mkdir()
    path.chmod(0o777)
    return path


REFUSED_OUT = {
    "below an open folder": lambda tmp: open_folder(tmp / "shared") / "a" / "out",
    "an open folder itself": lambda tmp: open_folder(tmp / "shared"),
    "in /proc": lambda tmp: Path("/proc/x"),
}


@pytest.mark.parametrize("where", list(REFUSED_OUT))
def test_an_out_folder_refused_leaves_no_log(where, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ALPR_DATABASE_URL", raising=False)
    clip, log = black_clip(tmp_path / "clip.mp4"), tmp_path / "logs" / "reads.sqlite"
    before = names(tmp_path)
    out = REFUSED_OUT[where](tmp_path)
    made = names(tmp_path)
    assert main(["run", str(clip), "--out", str(out), "--sqlite", str(log), "--no-progress"]) == 2
    assert "alpr: error: " in capsys.readouterr().err
    assert names(tmp_path) == made and not (tmp_path / "logs").exists(), names(tmp_path)
    assert set(made) - set(before) <= {"shared"}
    assert not (tmp_path / "shared").exists() or not names(tmp_path / "shared")  # nothing made in it either


@pytest.mark.skipif(cuda_devices("onnx") != 0, reason="a CUDA device is there: the device is not refused")
def test_a_detector_device_refused_leaves_no_log_and_no_out_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ALPR_DATABASE_URL", raising=False)
    monkeypatch.setenv("ALPR_DETECTOR_BACKEND", "onnx")
    monkeypatch.setenv("ALPR_DETECTOR_DEVICE", "cuda")
    clip = black_clip(tmp_path / "clip.mp4")
    args = ["run", str(clip), "--out", str(tmp_path / "out"), "--sqlite", str(tmp_path / "r.sqlite"), "--no-progress"]
    assert main(args) == 2
    assert "ALPR_DETECTOR_DEVICE: cuda asked for" in capsys.readouterr().err
    assert names(tmp_path) == ["clip.mp4"]


def test_an_existing_log_is_kept_when_the_out_folder_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ALPR_DATABASE_URL", raising=False)
    clip, log = black_clip(tmp_path / "clip.mp4"), write_log(tmp_path / "reads.sqlite", ["KPX4721"])
    before = log.read_bytes()
    out = open_folder(tmp_path / "shared") / "out"
    assert main(["run", str(clip), "--out", str(out), "--sqlite", str(log), "--no-progress"]) == 2
    capsys.readouterr()
    assert log.read_bytes() == before and names(tmp_path) == ["clip.mp4", "reads.sqlite", "shared"]


def test_a_refused_postgres_log_leaves_no_out_folder(tmp_path, postgres_url, capsys):
    """The schema is not migrated: refused once the --out folder is checked and made, which is then removed."""
    clip = black_clip(tmp_path / "clip.mp4")
    out = tmp_path / "cases" / "out"
    assert main(["run", str(clip), "--out", str(out), "--database-url", postgres_url, "--no-progress"]) == 2
    assert "run `alpr db upgrade`" in capsys.readouterr().err
    assert names(tmp_path) == ["clip.mp4"]


def descriptors_on(path: Path) -> int:
    """How many of this process's file descriptors are open on `path`."""
    found = 0
    for each in Path("/proc/self/fd").iterdir():
        try:
            found += os.readlink(each) == str(path)
        except OSError:
            continue
    return found


def test_a_sighting_log_that_fails_to_open_closes_the_plate_log(tmp_path, capsys, monkeypatch):
    """A run log whose `sightings` is a view: the plate log opens, the sightings' index cannot be made."""
    monkeypatch.delenv("ALPR_DATABASE_URL", raising=False)
    clip, log = black_clip(tmp_path / "clip.mp4"), write_log(tmp_path / "reads.sqlite", ["KPX4721"])
    with sqlite3.connect(log) as connection:
        connection.execute("DROP TABLE IF EXISTS sightings")
        connection.execute("CREATE VIEW sightings AS SELECT plate_text AS plate FROM plate_reads")
    connection.close()
    args = ["run", str(clip), "--out", str(tmp_path / "out"), "--sqlite", str(log), "--no-progress"]
    assert main(args) == 2
    assert "alpr: error: " in capsys.readouterr().err
    assert descriptors_on(log) == 0
    with sqlite3.connect(log) as connection:  # a log there before is never removed
        assert connection.execute("SELECT plate_text FROM plate_reads").fetchall() == [("KPX4721",)]
    connection.close()
    assert not (tmp_path / "out").exists()


def sessions_of(url: str, user: str) -> int:
    with psycopg.connect(url, autocommit=True) as db:
        row = db.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (user,)).fetchone()
    return int(row[0]) if row else 0


class SessionsWhenRefused(io.StringIO):
    """stderr that counts a user's Postgres sessions as the refusal is written: an `alpr run` process is still
    there then, whatever the garbage collector closes once the command's frames are let go."""

    def __init__(self, url: str, user: str) -> None:
        super().__init__()
        self.url, self.user = url, user
        self.counted: list[int] = []

    def write(self, text: str) -> int:
        if text.startswith("alpr: error"):
            deadline = time.monotonic() + 3  # a backend closed is gone from pg_stat_activity a moment later
            while (count := sessions_of(self.url, self.user)) and time.monotonic() < deadline:
                time.sleep(0.1)
            self.counted.append(count)
        return super().write(text)


def test_a_sighting_pool_that_cannot_connect_closes_the_plate_pool(tmp_path, private_postgres, monkeypatch):
    """A role allowed one session: the plate log's pool takes it, the sightings' pool is refused. The plate
    pool's session is closed before the refusal is said (it stayed open, its pool left to the collector)."""
    admin = private_postgres.url
    assert main(["db", "upgrade", "--database-url", admin]) == 0
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute("CREATE ROLE runner LOGIN CONNECTION LIMIT 1")
        db.execute("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO runner")
    runner = admin.replace("postgres@", "runner@", 1)
    clip = black_clip(tmp_path / "clip.mp4")
    stderr = SessionsWhenRefused(admin, "runner")
    monkeypatch.setattr(sys, "stderr", stderr)
    args = ["run", str(clip), "--out", str(tmp_path / "out"), "--database-url", runner, "--no-progress"]
    assert main(args) == 2
    assert "too many connections" in stderr.getvalue(), stderr.getvalue()
    assert stderr.counted == [0]
    assert sessions_of(admin, "runner") == 0 and names(tmp_path) == ["clip.mp4"]

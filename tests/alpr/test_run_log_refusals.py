"""What `alpr run` refuses of the log it is told to write, before anything is created or changed, through
the real CLI: a SQLite file that is another program's database (plate tables were added beside its own and
it was made 0600), and a Postgres schema not at this release's version (the run migrated it, out of order
and without re-granting the roles, where every other command says to run `alpr db upgrade`); and the
--out folders it cannot make, said in words rather than as an exception's class (a review)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import psycopg

from alpr.cli import main
from common.migrations import MIGRATIONS

VERSIONS = [version for version, _ in MIGRATIONS]


def black_clip(path: Path) -> Path:
    """Three black frames: no plate, a run through every stage in a second."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 5.0, (64, 48))
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    return path


def run(clip: Path, tmp_path: Path, *log: str) -> int:
    return main(["run", str(clip), "--out", str(tmp_path / "out"), "--no-progress", *log])


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

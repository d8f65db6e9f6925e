"""`alpr export` is recorded, on real Postgres and in `alpr run`'s SQLite file: who, why, what (reads or
sightings) and to which file, when and as which login (Postgres's to say), before a row is written; the
record can be neither changed nor erased, the workers' role may add to it but not read it, the pruner's
may do neither, and an export whose record cannot be written writes nothing."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from alpr.cli import main
from common.plate_log import open_plate_log, record
from tests.alpr.test_export import write_log
from tests.common.test_plate_log import FRAME, READS
from tests.helpers import reader_role, workers_role

RECORD = "SELECT exported_by, database_user, reason, exported, csv_path FROM plate_exports ORDER BY id"

FORGED = (
    "INSERT INTO plate_exports (exported_at, exported_by, database_user, reason, exported, csv_path)"
    " VALUES ('2026-01-01', 'chief', 'postgres', 'case 1', 'reads', '/elsewhere.csv')"
)
"""A record dated back and naming another login."""


def logged(postgres_url: str, tmp_path: Path) -> None:
    """The schema upgraded, and two reads logged."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    log = open_plate_log(postgres_url, tmp_path / "unused.sqlite")
    try:
        assert record(log, FRAME, READS) == 2
    finally:
        log.close()


def test_an_export_is_recorded_with_who_why_what_and_where_and_the_record_kept(postgres_url, tmp_path, capsys):
    logged(postgres_url, tmp_path)
    url = ["--database-url", postgres_url]
    assert main(["export", "--csv", str(tmp_path / "reads.csv"), "--reason", "case 2026-114", *url]) == 0
    assert capsys.readouterr().out.strip().endswith("(export recorded)")
    sightings_csv = tmp_path / "sub" / ".." / "sightings.csv"
    (tmp_path / "sub").mkdir()
    assert (
        main(["export", "--csv", str(sightings_csv), "--sightings", "--reason", "hand-over", "--by", "clerk 7", *url])
        == 0
    )
    with psycopg.connect(postgres_url) as db:
        rows = db.execute(RECORD).fetchall()
        recent = db.execute("SELECT bool_and(exported_at > now() - interval '1 minute') FROM plate_exports").fetchone()
    login = rows[0][0]
    assert rows == [
        (login, "postgres", "case 2026-114", "reads", str(tmp_path / "reads.csv")),
        ("clerk 7", "postgres", "hand-over", "sightings", str(tmp_path / "sightings.csv")),  # its absolute path
    ]
    assert login and recent == (True,)
    for erasing in ("UPDATE plate_exports SET reason = 'x'", "DELETE FROM plate_exports", "TRUNCATE plate_exports"):
        with psycopg.connect(postgres_url) as db, pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            db.execute(erasing)


def test_postgres_says_when_and_as_whom_whatever_an_insert_says(postgres_url, tmp_path):
    logged(postgres_url, tmp_path)
    with psycopg.connect(postgres_url) as db:  # even the owner's insert
        db.execute(FORGED)
        db.commit()
        row = db.execute(
            "SELECT database_user, exported_at > now() - interval '1 minute' FROM plate_exports"
        ).fetchone()
    assert row == ("postgres", True)


def test_the_workers_role_may_export_but_neither_read_nor_change_the_record(postgres_url, tmp_path, capsys):
    logged(postgres_url, tmp_path)
    with workers_role(postgres_url) as (role, as_workers):
        target = tmp_path / "reads.csv"
        assert main(["export", "--csv", str(target), "--reason", "case 9", "--database-url", as_workers]) == 0
        assert len(target.read_text().splitlines()) == 3
        for statement in (
            "SELECT * FROM plate_exports",
            "UPDATE plate_exports SET reason = 'x'",
            "DELETE FROM plate_exports",
            "TRUNCATE plate_exports",
        ):
            with psycopg.connect(as_workers) as worker, pytest.raises(psycopg.errors.InsufficientPrivilege):
                worker.execute(statement)  # who took the log away is the owner's to audit
        with psycopg.connect(as_workers) as worker:
            worker.execute(FORGED)
        with psycopg.connect(postgres_url) as admin:
            rows = admin.execute(
                "SELECT database_user, exported_at > now() - interval '1 minute', exported_by, reason"
                " FROM plate_exports ORDER BY id"
            ).fetchall()
        assert rows[0][:2] == (role, True) and rows[0][3] == "case 9"
        assert rows[1] == (role, True, "chief", "case 1")  # the forged login and date overridden


@pytest.mark.parametrize("rights", ["select-only", "pruner"])
def test_an_export_whose_record_cannot_be_written_writes_nothing_and_says_what_to_grant(
    rights, postgres_url, tmp_path, capsys
):
    """A role that may read the log but not add to the record (SELECT alone, as an export needed before;
    the prune's role) is refused whole: the earlier CSV kept, no partial file, nothing recorded."""
    logged(postgres_url, tmp_path)
    target = tmp_path / "reads.csv"
    target.write_text("an earlier export\n")
    with reader_role(postgres_url, rights) as (role, url):
        capsys.readouterr()
        assert main(["export", "--csv", str(target), "--reason", "case 9", "--database-url", url]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("alpr: error:"), error
    assert f"role {role} may not add to the record of exports (INSERT on plate_exports)" in error[0]
    assert "export as the workers' role" in error[0] and "nothing was exported" in error[0]
    assert f"--grant {role}" not in error[0]  # the workers' rights given the pruner's role undid its being apart
    assert target.read_text() == "an earlier export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reads.csv"]  # no partial file left
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT count(*) FROM plate_exports").fetchone() == (0,)


def test_alpr_runs_sqlite_log_records_its_exports_in_the_file(tmp_path, capsys, monkeypatch):
    log = write_log(tmp_path / "reads.sqlite", ["KPX4721"])
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--csv", "reads.csv", "--reason", "case 5", "--sqlite", str(log)]) == 0
    assert (
        main(["export", "--csv", "s.csv", "--sightings", "--reason", "case 5", "--by", "clerk", "--sqlite", str(log)])
        == 0
    )
    connection = sqlite3.connect(log)
    try:
        rows = connection.execute("SELECT exported_by, reason, exported, csv_path FROM plate_exports").fetchall()
        login = rows[0][0]
        assert rows == [
            (login, "case 5", "reads", str(tmp_path / "reads.csv")),  # absolute, though named relative
            ("clerk", "case 5", "sightings", str(tmp_path / "s.csv")),
        ]
        for erasing in ("UPDATE plate_exports SET reason = 'x'", "DELETE FROM plate_exports"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                connection.execute(erasing)
    finally:
        connection.close()


def test_an_sqlite_export_whose_record_cannot_be_written_writes_nothing(tmp_path, capsys):
    """A log holding a plate_exports table of another shape: the record cannot be added, so nothing is read."""
    log = write_log(tmp_path / "reads.sqlite", ["KPX4721"])
    with closing(sqlite3.connect(log)) as db, db:  # closed: the log's -wal and -shm go with it (WAL)
        db.execute("CREATE TABLE plate_exports (id INTEGER PRIMARY KEY, note TEXT)")
    target = tmp_path / "reads.csv"
    target.write_text("an earlier export\n")
    assert main(["export", "--csv", str(target), "--reason", "case 5", "--sqlite", str(log)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "the export could not be recorded in" in error[0], error
    assert "nothing was exported" in error[0]
    assert target.read_text() == "an earlier export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reads.csv", "reads.sqlite"]  # no partial file left


def test_the_workers_role_may_not_choose_a_records_id_and_so_block_the_next_exports(postgres_url, tmp_path):
    """A worker broken into inserted records with the ids the sequence would give next: every export
    after failed to be recorded (UniqueViolation), so exported nothing, until the sequence passed them."""
    logged(postgres_url, tmp_path)
    with workers_role(postgres_url) as (_, as_workers):
        for table, columns in (
            ("plate_exports", "(id, exported_by, reason, exported, csv_path) SELECT g, 'x', 'xxx', 'reads', '/x'"),
            ("plate_searches", "(id, searched_by, reason, plate, within, found) SELECT g, 'x', 'xxx', 'A', 1, 0"),
        ):
            with psycopg.connect(as_workers) as worker, pytest.raises(psycopg.errors.InsufficientPrivilege):
                worker.execute(f"INSERT INTO {table} {columns} FROM generate_series(1, 100) AS g")
        target = tmp_path / "reads.csv"
        assert main(["export", "--csv", str(target), "--reason", "case 9", "--database-url", as_workers]) == 0

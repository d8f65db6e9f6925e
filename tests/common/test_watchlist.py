"""Watch-lists (common/watchlist.py, its entry, index and cache modules, `alpr watchlist`): a table of
matches (exact, look-alikes at half an edit, expiry, empty plate, best of several), the CSV import on the
real Postgres (all or nothing, the faulty line named, idempotent), the command's add/remove/list and its
one-line errors, and the workers' cached copy (reloaded after refresh_s, not before; kept through an
outage of a Postgres of its own)."""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from alpr.cli import main
from common import defaults
from common.config import Settings
from common.db import open_pool
from common.errors import ConfigError, InputError
from common.plate_text import plate_distance
from common.schema_upgrade import upgrade
from common.watchlist import WatchList
from common.watchlist_cache import WatchListCache
from common.watchlist_csv import MAX_CSV_BYTES, MAX_CSV_ROWS, read_csv
from common.watchlist_entry import WatchEntry, normalise_plate
from common.watchlist_index import WatchMatch, match_lists

NOW_S = datetime(2030, 6, 1, tzinfo=UTC).timestamp()
PAST = datetime(2030, 5, 1, tzinfo=UTC)
FUTURE = datetime(2030, 7, 1, tzinfo=UTC)


def match_plate(plate: str, entries: list[WatchEntry], max_distance: float, now_s: float) -> WatchMatch | None:
    """The nearest match on any list (ties by list, then plate)."""
    matches = match_lists(plate, entries, max_distance, now_s)
    return min(matches, key=lambda m: (m.distance, m.entry.list_name, m.entry.plate), default=None)


def cache_match(cache: WatchListCache, plate: str, max_distance: float) -> WatchMatch | None:
    """The cache's nearest match now."""
    found = cache.match_lists(plate, max_distance, time.time())
    return min(found, key=lambda m: (m.distance, m.entry.list_name, m.entry.plate), default=None)


def entries(*plates: str, expires_at: datetime | None = None) -> list[WatchEntry]:
    return [WatchEntry(plate, f"reason {plate}", expires_at=expires_at) for plate in plates]


@pytest.mark.parametrize(
    ("plate", "listed", "max_distance", "expected"),
    [
        ("AB123CD", entries("AB123CD"), 1.0, ("AB123CD", 0.0)),  # exact
        ("AB123CD", entries("AB123CD"), 0.0, ("AB123CD", 0.0)),  # exact, even at 0
        ("ABO123", entries("AB0123"), 1.0, ("AB0123", 0.5)),  # O/0 look-alike: half an edit
        ("ABO123", entries("AB0123"), 0.0, None),  # ... but not exact
        ("AB8123", entries("ABB123"), 0.5, ("ABB123", 0.5)),  # B/8
        ("ABOI23", entries("AB0123"), 1.0, ("AB0123", 1.0)),  # two look-alikes: one edit
        ("AB123CX", entries("AB123CD"), 1.0, ("AB123CD", 1.0)),  # one ordinary substitution, at the limit
        ("AB123CX", entries("AB123CD"), 0.5, None),  # ... over a lower one
        ("AB123XY", entries("AB123CD"), 1.0, None),  # two substitutions
        ("AB123C", entries("AB123CD"), 1.0, ("AB123CD", 1.0)),  # one deletion
        ("AB12", entries("AB123CD"), 3.0, ("AB123CD", 3.0)),  # three deletions within 3
        ("AB123CD", entries("AB123CD", expires_at=PAST), 3.0, None),  # expired: never, not even exact
        ("AB123CD", entries("AB123CD", expires_at=FUTURE), 1.0, ("AB123CD", 0.0)),  # not yet expired
        ("", entries("AB"), 3.0, None),  # an empty plate never matches (distance 2 would)
        ("AB123CD", [], 3.0, None),  # an empty list
        ("XY1234", entries("XY1235", "XY1234", "XY1233"), 1.0, ("XY1234", 0.0)),  # exact first
        ("KLM45G", entries("KLM45X", "KLM456", "KLM4"), 1.0, ("KLM456", 0.5)),  # nearest: G/6 over X
        ("KLM45G", entries("ZZZZZZ", "KLM45X"), 1.0, ("KLM45X", 1.0)),
    ],
)
def test_match_plate(plate, listed, max_distance, expected):
    match = match_plate(plate, listed, max_distance, NOW_S)
    assert (match and (match.entry.plate, match.distance)) == (expected or None)
    if match:
        assert match.plate == plate and match.entry in listed


@pytest.mark.parametrize("max_distance", [0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
def test_match_plate_finds_what_comparing_with_every_entry_finds(max_distance):
    """The lower bounds that skip entries never skip a match: against a brute force on random plates
    over a few characters (look-alikes among them), so that near misses are common."""
    rng = random.Random(int(max_distance * 10))
    for _ in range(200):
        listed = entries(*{"".join(rng.choices("O0DQB8XY", k=rng.randint(1, 7))) for _ in range(20)})
        plate = "".join(rng.choices("O0DQB8XY", k=rng.randint(1, 7)))
        reach = {e.plate: min(max_distance, 0.5) if len(e.plate) < defaults.WATCH_FUZZY_MIN_CHARS else max_distance
                 for e in listed}  # fmt: skip
        within = [(plate_distance(plate, e.plate), e.list_name, e.plate) for e in listed]
        within = [found for found in within if found[0] <= reach[found[2]]]
        match = match_plate(plate, listed, max_distance, NOW_S)
        if within:
            assert match is not None and (match.distance, match.entry.list_name, match.entry.plate) == min(within)
        else:
            assert match is None


@pytest.mark.parametrize(("listed", "read", "matched"), [
    ("A1", "A1", True), ("A1", "AI", True),  # a look-alike swap
    ("A1", "A2", False), ("A1", "A12", False), ("K9X", "K9Y", False),  # a whole edit: 5.6% of two-character plates
    ("KPX47", "KPX48", True), ("KPX4721", "KPX4781", True),  # five characters and more: within the distance
])  # fmt: skip
def test_a_short_listed_plate_matches_within_a_look_alike_only(listed, read, matched):
    """Within a whole edit, a listed A1 matched 72 of the 1,295 other two-character plates (a review)."""
    assert (match_plate(read, entries(listed), 1.0, NOW_S) is not None) == matched


def test_a_plate_on_several_lists_matches_each_list_with_its_nearest_entry():
    """It matched the alphabetically first list alone: `a_parking` (unpaid) hid `stolen`."""
    listed = [WatchEntry("ABC1234", "unpaid parking", "a_parking"), WatchEntry("ABC1234", "armed", "stolen"),
              WatchEntry("ABC1235", "near", "stolen"), WatchEntry("XYZ9999", "other", "z_list")]  # fmt: skip
    matches = match_lists("ABC1234", listed, 1.0, NOW_S)
    assert [(m.entry.list_name, m.entry.reason, m.distance) for m in matches] == [
        ("a_parking", "unpaid parking", 0.0), ("stolen", "armed", 0.0),
    ]  # fmt: skip
    assert match_plate("ABC1234", listed, 1.0, NOW_S) == matches[0]  # the nearest overall: the first list


def test_an_entry_stops_matching_when_it_expires():
    listed = entries("AB123CD", expires_at=datetime.fromtimestamp(NOW_S + 10, UTC))
    assert match_plate("AB123CD", listed, 1.0, NOW_S) is not None
    assert match_plate("AB123CD", listed, 1.0, NOW_S + 10) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("ab-123 cd", "AB123CD"), ("A.B.1", "AB1"), ("X" * 16, "X" * 16), ("", None), ("AB_12", None),
     ("ÄB12", None), ("X" * 17, None), ("AB\n12", "AB12"), ("--", None),
     ("KPX4721ı", None), ("ſTRAßE1", None), ("ﬁX123", None)],  # upper-cased: KPX4721I, STRASSE1, FIX123
)  # fmt: skip
def test_entry_parse_normalises_or_refuses_saying_why(text, expected):
    if expected is None:
        with pytest.raises(InputError, match="not a plate"):
            WatchEntry.parse(text, "reason")
    else:
        assert WatchEntry.parse(text, "reason").plate == expected


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("AB12CDÖ", "not a plate: 7 characters, 1 not A-Z or 0-9 ("),
        ("KPX-47?21", "not a plate: 8 characters, 1 not A-Z or 0-9 ("),
        (" - . ", "not a plate: nothing left once spaces, - and . are dropped ("),
        ("KPX4721" * 3, "not a plate: 21 characters, more than 16 ("),
        ("ab_1" * 5, "not a plate: 20 characters, more than 16, 5 not A-Z or 0-9 ("),
    ],
)
def test_a_text_that_is_no_plate_is_refused_saying_why_without_quoting_it(text, said):
    """A review: the message quoted the text ("not a plate: 'AB12CDÖ'"), which `alpr watchlist add -`, `alpr
    search -` and `alpr watchlist import` print on stderr, kept by cron and systemd. Now it says what is
    wrong, by counts."""
    with pytest.raises(InputError) as refused:
        normalise_plate(text)
    assert str(refused.value).startswith(said)
    assert "KPX" not in str(refused.value) and "AB12" not in str(refused.value) and "'" not in str(refused.value)


@pytest.fixture()
def pool(postgres_url: str) -> Iterator[ConnectionPool]:
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    opened = open_pool(postgres_url)
    yield opened
    opened.close()


def write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "list.csv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


GOOD_CSV = """\ufeffplate,reason,expires_at,list
AB 123 CD,stolen,,
xy-9876,"unpaid fines, twice",2030-07-01T12:00:00+02:00,police
QQ1,note,2030-07-01,
"""


def test_import_csv_adds_every_entry_and_again_changes_nothing(pool, tmp_path):
    watch = WatchList(pool)
    assert import_csv(watch, write(tmp_path, GOOD_CSV)) == (3, 3)
    expected = [
        WatchEntry("AB123CD", "stolen"),
        WatchEntry("QQ1", "note", expires_at=datetime(2030, 7, 2, tzinfo=UTC)),  # a date: listed through it
        WatchEntry("XY9876", "unpaid fines, twice", "police", datetime(2030, 7, 1, 10, tzinfo=UTC)),
    ]
    assert watch.entries() == expected
    assert import_csv(watch, write(tmp_path, GOOD_CSV)) == (3, 3)  # an upsert: no duplicates, no error
    assert watch.entries() == expected
    assert import_csv(watch, write(tmp_path, "reason,plate\nrecovered,AB123CD\n")) == (1, 1)  # any column order
    assert watch.entries()[0] == WatchEntry("AB123CD", "recovered")


def test_a_plate_named_again_in_its_list_is_one_entry_and_its_last_row_counts(pool, tmp_path):
    watch = WatchList(pool)
    csv = "plate,reason,list\nAB1,first,\nab-1,second,\nAB1,elsewhere,police\nCD2,x,\n"
    assert import_csv(watch, write(tmp_path, csv)) == (3, 4)
    assert watch.entries() == [
        WatchEntry("AB1", "second"), WatchEntry("CD2", "x"), WatchEntry("AB1", "elsewhere", "police")
    ]  # fmt: skip


HEADER = "line 1: the header must be plate,reason[,expires_at][,list]: "
"""How a wrong import header's message begins."""


def import_csv(watch: WatchList, path: Path) -> tuple[int, int]:
    """What `alpr watchlist import` does: the file read and checked whole, then imported; (entries, rows)."""
    rows = read_csv(path)
    return watch.import_rows(rows).written, len(rows)


def many_rows(count: int) -> str:
    return "plate,reason\n" + "".join(f"P{i},r\n" for i in range(count))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "line 1: empty file"),
        ("plate\nAB1\n", HEADER + "no column reason"),
        (
            "plate,reason,colour\nAB1,x,red\n",
            HEADER + "column 3: not one of plate, reason, expires_at, list",
        ),
        (
            "plate,reason,plate\nAB1,x,AB2\n",
            HEADER + "named twice: plate",
        ),
        ("\n\nplate,reason,colour\nAB1,x,red\n", "line 3: the header must be"),  # a blank line is no empty file
        # the wrong file imported (a secret): its first line was printed whole, and a crafted one 9 MB long
        (
            "whsec_9f8e7d6c5b4a39281706f5e4d3c2b1a0\n",
            HEADER + "column 1: not one of",
        ),
        (
            ",".join(["x" * 100_000] * 90) + "\n",
            HEADER + "column 1, 2, 3 and 87 more: not one of",
        ),
        ("plate," * 200_000 + "reason\n", HEADER + "named twice: plate"),  # counted in one pass: it took hours
        ("plate,reason\nAB1,x\nCD2\n", "line 3: 1 columns, the header has 2"),  # a missing column
        ("plate,reason\nAB1,x\nCD2,y,z\n", "line 3: 3 columns"),
        (
            "plate,reason\nAB1,x\n\nAB@2,y\n",
            "line 4: not a plate: 4 characters, 1 not A-Z or 0-9",
        ),  # blank lines count as lines
        ("plate,reason\nAB1,x\nCD2,\n", "line 3: a reason needs 1 to 200"),
        ("plate,reason\nAB1," + "x" * 201 + "\n", "line 2: a reason needs 1 to 200"),
        ("plate,reason\nAB1,x\x00\n", "line 2: a reason needs 1 to 200 printable"),
        ('plate,reason\nAB1,x\nAB2,"two\nlines"\n', "line 3: a reason needs 1 to 200 printable"),  # where it starts
        ("plate,reason,expires_at\nAB1,x,2030-01-01\nCD2,y,tomorrow\n", "line 3: not an ISO-8601 date"),
        ("plate,reason,list\nAB1,x,a list\n", "line 2: not a list name"),
        (b"plate,reason\nAB1,x\nCD2,caf\xe9\n", "line 3: not UTF-8"),
        ('plate,reason\nAB1,"x"y\nCD2,z\n', "line 2: not CSV"),
        ('plate,reason\nAB1,x\nCD2,"z\n\n\n', "line 3: not CSV"),  # a quote never closed
        (many_rows(MAX_CSV_ROWS) + "\n", None),  # the most accepted (and a blank line is no entry)
        (many_rows(MAX_CSV_ROWS + 1), f"line {MAX_CSV_ROWS + 2}: more than {MAX_CSV_ROWS} entries"),
        (  # the byte limit says what it is tied to: it was an unsaid 10 MiB, under the row cap's realistic files
            "plate,reason\nAB1,x\n" + "#" * MAX_CSV_BYTES,
            "larger than 100,000 KiB (1 KiB a row for the 100,000 rows one import takes at most)",
        ),
    ],
)
def test_a_faulty_csv_imports_nothing_and_names_its_line(pool, tmp_path, content, message):
    watch = WatchList(pool)
    watch.add(WatchEntry("KEEP1", "listed before"))
    path = write(tmp_path, content)
    if message is None:  # the positive control: the same shape of file, within the limits, imports
        assert import_csv(watch, path) == (MAX_CSV_ROWS, MAX_CSV_ROWS)
        assert len(watch.entries()) == MAX_CSV_ROWS + 1
        return
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}(, |: ){re.escape(message)}") as raised:
        import_csv(watch, path)
    assert "\n" not in str(raised.value) and "whsec" not in str(raised.value) and len(str(raised.value)) < 500
    assert watch.entries() == [WatchEntry("KEEP1", "listed before")]


def alpr(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, list[str], list[str]]:
    code = main(["watchlist", *argv, "--database-url", url])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_add_remove_import_and_list_through_the_command(pool, postgres_url, capsys, tmp_path):
    capsys.readouterr()
    path = write(tmp_path, "plate,reason\nZZ9,from a file\n")
    assert alpr(capsys, postgres_url, "import", str(path)) == (0, ["imported 1 entries"], [])
    path = write(tmp_path, "plate,reason\nZZ9,from a file\nZZ9,again\nZZ8,x\n")
    assert alpr(capsys, postgres_url, "import", str(path)) == (
        0, ["imported 2 entries (1 rows named a plate of their list again: the last of them counts)"], []
    )  # fmt: skip
    assert alpr(capsys, postgres_url, "remove", "ZZ8")[0] == 0
    assert alpr(capsys, postgres_url, "remove", "ZZ9")[0] == 0
    assert alpr(capsys, postgres_url, "add", "ab-123 cd", "--reason", "stolen car") == (
        0, ["AB123CD is on the list default"], []
    )  # fmt: skip
    code, _, err = alpr(capsys, postgres_url, "add", "XY1", "--reason", "old", "--expires", "2001-01-01", "--list", "p")
    assert code == 0 and err == ["alpr: note: that expiry has passed; the entry matches nothing until it is changed"]
    code, out, _ = alpr(capsys, postgres_url, "list")
    assert code == 0 and len(out) == 2 and out[1].split() == ["AB123CD", "default", "never", "stolen", "car"]
    code, out, _ = alpr(capsys, postgres_url, "list", "--all")
    assert out[2].split() == ["XY1", "p", "2001-01-02T00:00:00+00:00", "old"]  # listed through 1 January
    no_plate = ["alpr: that plate is not on the list default; it is on 1 other list: p (give --list)"]  # no plate:
    # not on stderr, which cron and systemd keep
    assert alpr(capsys, postgres_url, "remove", "XY1") == (1, [], no_plate)
    assert alpr(capsys, postgres_url, "remove", "xy1", "--list", "p") == (0, ["XY1 removed from the list p"], [])
    assert alpr(capsys, postgres_url, "list", "--all")[1][1:] == out[1:2]


def test_remove_names_the_list_as_add_does_and_an_import_of_past_expiries_says_so(pool, postgres_url, capsys, tmp_path):
    """`add --list " hot "` listed the plate on hot, which `remove --list " hot "` did not find (and a list
    name of terminal escapes went to the terminal raw); an import whose expiries had all passed said only
    "imported": every entry matched nothing, and `list` showed none of them. A file name is escaped."""
    capsys.readouterr()
    assert alpr(capsys, postgres_url, "add", "ZZZ999", "--reason", "r", "--list", " hot ")[1] == [
        "ZZZ999 is on the list hot"
    ]
    assert alpr(capsys, postgres_url, "remove", "ZZZ999", "--list", " hot ") == (
        0,
        ["ZZZ999 removed from the list hot"],
        [],
    )
    for action in (["add", "ZZZ998", "--reason", "r"], ["remove", "ZZZ998"]):  # blank: refused, not `default`
        with pytest.raises(SystemExit):
            alpr(capsys, postgres_url, *action, "--list", " ")
        assert "--list: a list's name cannot be empty" in capsys.readouterr().err
    code, out, err = alpr(capsys, postgres_url, "remove", "ZZZ998", "--list", "\x1b[2J\x1b]0;x\x07")
    assert code == 2 and err == [
        "alpr: error: no list is named '\\x1b[2J\\x1b]0;x\\x07': 1-64 letters, digits, '_', '.', '-'"
    ]
    path = write(tmp_path, "plate,reason,expires_at\nOLD111,x,2024-07-01\nNEW111,y,\n")
    code, out, err = alpr(capsys, postgres_url, "import", str(path))
    assert (code, out) == (0, ["imported 2 entries"])
    assert err == [  # no plate on stderr, which cron and systemd keep
        "alpr: note: 1 of them expired already: they match nothing until changed (`alpr watchlist list --all`"
        " shows them)"
    ]
    crafted = tmp_path / "list\nimported 2 entries\x1b[8m.csv"
    crafted.write_text("plate,reason\nBAD?,x\n")
    code, out, err = alpr(capsys, postgres_url, "import", str(crafted))
    assert code == 2 and len(err) == 1 and "\x1b" not in err[0] and "\\n" in err[0] and "line 2: not a plate" in err[0]


def test_a_bad_database_url_flag_is_named_as_the_flag(capsys):
    """It was named ALPR_DATABASE_URL, which the operator never set (flags were found one level deep)."""
    assert main(["watchlist", "list", "--database-url", "mysql://x"]) == 2
    error = capsys.readouterr().err
    assert "--database-url:" in error and "ALPR_DATABASE_URL" not in error


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["add", "AB#1", "--reason", "x"], "alpr: error: not a plate: 4 characters, 1 not A-Z or 0-9"),
        (["add", "AB1", "--reason", "x", "--expires", "soon"], "alpr: error: not an ISO-8601 date or time: 'soon'"),
        (["remove", "A B C D E F G H I J K L M N O P Q"], "alpr: error: not a plate: 17 characters, more than 16 ("),
        (["import", "/nonexistent/list.csv"], "alpr: error: /nonexistent/list.csv: cannot read"),
    ],
)
def test_bad_input_ends_with_one_error_line(pool, postgres_url, capsys, argv, message):
    capsys.readouterr()
    code, out, err = alpr(capsys, postgres_url, *argv)
    assert (code, out, len(err)) == (2, [], 1) and err[0].startswith(message)
    assert WatchList(pool).entries() == []


def test_the_command_needs_a_database_with_the_schema(postgres_url, capsys, monkeypatch):
    monkeypatch.delenv("ALPR_DATABASE_URL", raising=False)
    assert main(["watchlist", "list"]) == 2
    assert "set ALPR_DATABASE_URL" in capsys.readouterr().err
    code, out, err = alpr(capsys, postgres_url, "list")  # no `alpr db upgrade` yet
    assert (code, out) == (2, []) and err[0].endswith("run `alpr db upgrade`")
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    capsys.readouterr()
    assert alpr(capsys, postgres_url, "list")[:2] == (
        0,
        ["plate            list             expires                   reason"],
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_loads_the_entries_only_when_the_table_changed_by_any_means(pool):
    """A 100,000-entry list took 0.4 s to load, every refresh, in every sighting worker: now only when
    the table's change count (a trigger, migration 9) moved — a row written by hand in SQL included."""
    watch, clock = WatchList(pool), Clock()
    watch.add(WatchEntry("AB1", "first"))
    loads = []
    entries = watch.entries
    watch.entries = lambda **kwargs: loads.append(1) or entries(**kwargs)  # type: ignore[method-assign]
    cache = WatchListCache(watch, refresh_s=5.0, clock=clock)
    assert [e.plate for e in cache.current()] == ["AB1"] and len(loads) == 1
    clock.now += 5
    assert [e.plate for e in cache.current()] == ["AB1"] and len(loads) == 1  # unchanged: not loaded again
    with pool.connection() as connection:
        connection.execute("INSERT INTO watchlist (plate, reason) VALUES ('CD2', 'by hand')")
    clock.now += 5
    assert cache_match(cache, "CD2", 0.0) is not None and len(loads) == 2


def test_a_role_granted_the_watchlist_alone_writes_and_matches_through_the_change_count(pool, postgres_url):
    """The change count is kept by a trigger that runs as its owner (a writer needs no grant on it) and
    in the schema it was made in; a reader not granted the count (no `--grant` after migration 9)
    loads the entries every refresh, as before, rather than none."""
    import uuid

    role = f"wl_{uuid.uuid4().hex[:8]}"
    schema = postgres_url.rsplit("%3D", 1)[1]
    with pool.connection() as connection:
        connection.execute(f"CREATE ROLE {role}")
        connection.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        connection.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON watchlist TO {role}")
    try:
        with pool.connection() as connection:
            before = connection.execute("SELECT version FROM watchlist_version").fetchone()[0]  # type: ignore[index]
        with psycopg.connect(postgres_url) as connection:
            connection.execute(f"SET ROLE {role}")
            connection.execute("SET search_path TO public")  # a hand-written INSERT naming the schema
            connection.execute(f"INSERT INTO {schema}.watchlist (plate, reason) VALUES ('AB1', 'by hand')")
        with pool.connection() as connection:
            assert connection.execute("SELECT version FROM watchlist_version").fetchone()[0] > before  # type: ignore[index]
        with psycopg.connect(postgres_url) as connection:
            connection.execute(f"SET ROLE {role}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                connection.execute("SELECT version FROM watchlist_version")
        as_role = open_pool(postgres_url.replace("options=", f"options=-crole%3D{role}%20"), wait_s=3)
        try:
            assert cache_match(WatchListCache(WatchList(as_role), refresh_s=5.0), "AB1", 0.0) is not None
        finally:
            as_role.close()
    finally:
        with pool.connection() as connection:
            connection.execute(f"DROP OWNED BY {role}")
            connection.execute(f"DROP ROLE {role}")


def test_the_cache_reloads_after_refresh_s_and_not_before(pool):
    watch, clock = WatchList(pool), Clock()
    watch.add(WatchEntry("AB1", "first"))
    cache = WatchListCache(watch, refresh_s=5.0, clock=clock)
    assert [e.plate for e in cache.current()] == ["AB1"]
    watch.add(WatchEntry("CD2", "second"))
    clock.now += 4.9
    assert cache_match(cache, "CD2", 0.0) is None  # not before refresh_s
    clock.now += 0.1
    match = cache_match(cache, "CD2", 0.0)  # the positive control: after it
    assert match is not None and match.entry.reason == "second"


def test_the_cache_keeps_the_last_entries_through_an_outage_and_reloads_after_it(caplog, private_postgres):
    """A Postgres of its own, stopped and started again: no raising stand-in."""
    server = private_postgres
    pool = open_pool(server.url)
    upgrade(pool)
    try:
        watch, clock = WatchList(pool), Clock()
        watch.add(WatchEntry("AB1", "first"))
        cache = WatchListCache(watch, refresh_s=5.0, clock=clock)
        assert cache_match(cache, "AB1", 0.0) is not None
        server.stop()
        clock.now += 5.0
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="common.watchlist_cache"):
            assert cache_match(cache, "AB1", 0.0) is not None  # the entries loaded before
        assert time.monotonic() - started < defaults.DB_ATTEMPT_S + 5  # one bounded attempt, not the pool's 30 s
        [warning] = [r.getMessage() for r in caplog.records if r.name == "common.watchlist_cache"]
        assert warning.startswith("watch-lists not reloaded (") and warning.endswith(
            "); matching against the 1 entries loaded before"
        ), warning
        server.start()
        watch.remove("AB1")  # the pool replaces its broken connection
        clock.now += 4.0
        assert cache_match(cache, "AB1", 0.0) is not None  # the next reload is due refresh_s after the failed attempt
        clock.now += 1.0
        assert cache_match(cache, "AB1", 0.0) is None
    finally:
        pool.close()


def test_the_watch_settings_have_defaults_and_bounds():
    settings = Settings.load({})
    assert (settings.watch_max_distance, settings.early_match_min_confidence, settings.watch_refresh_s) == (
        defaults.WATCH_MAX_DISTANCE, defaults.WATCH_READ_MIN_CONFIDENCE, defaults.WATCH_REFRESH_S
    )  # fmt: skip
    assert Settings.load({"ALPR_WATCH_MAX_DISTANCE": "0.5"}).watch_max_distance == 0.5
    for variable, value in [("ALPR_WATCH_MAX_DISTANCE", "3.5"), ("ALPR_WATCH_READ_MIN_CONFIDENCE", "1.1"),
                            ("ALPR_WATCH_REFRESH_S", "0")]:  # fmt: skip
        with pytest.raises(ConfigError, match=variable):
            Settings.load({variable: value})


def test_an_expired_entry_is_left_out_unless_asked(pool):
    watch = WatchList(pool)
    watch.add(WatchEntry("OLD1", "gone", expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    watch.add(WatchEntry("NEW1", "here", expires_at=datetime.now(UTC) + timedelta(hours=1)))
    assert [e.plate for e in watch.entries()] == ["NEW1"]
    assert [e.plate for e in watch.entries(include_expired=True)] == ["NEW1", "OLD1"]


def test_a_row_written_by_hand_with_a_reason_no_command_takes_still_matches(pool, caplog):
    """A reason with a tab, a line break or a no-break space, written by hand in SQL (its table checks its
    length only): the entry was skipped with a warning naming no plate, and the stolen car it listed
    raised no alert (fail-open). Its reason is made one line."""
    watch = WatchList(pool)
    watch.add(WatchEntry.parse("AB1", "stolen\u00a0van"))  # pasted from a web page: a no-break space
    with pool.connection() as connection:  # what the CSV import and the command refuse, straight in SQL
        connection.execute("INSERT INTO watchlist (plate, reason) VALUES ('CD2', E'stolen\\nvan'),"
                           " ('EF3', E' \\t'), ('GH4', E'case\\t41\\u202e')")  # fmt: skip
    cache = WatchListCache(watch, refresh_s=60.0)
    with caplog.at_level(logging.WARNING):
        assert [(e.plate, e.reason) for e in cache.current()] == [
            ("AB1", "stolen van"), ("CD2", "stolen van"), ("EF3", "?"), ("GH4", "case 41"),
        ]  # fmt: skip
    assert all(cache_match(cache, plate, 0.0) is not None for plate in ("AB1", "CD2", "EF3", "GH4"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    ("text", "ends"),
    [
        ("2030-07-01", datetime(2030, 7, 2, tzinfo=UTC)),  # a date alone: through that day
        ("20300701", datetime(2030, 7, 2, tzinfo=UTC)),
        ("2030-W27-1", datetime(2030, 7, 2, tzinfo=UTC)),  # the same day as an ISO week date: it ended as it began
        ("2030W271", datetime(2030, 7, 2, tzinfo=UTC)),
        ("2030-W27", datetime(2030, 7, 8, tzinfo=UTC)),  # a week alone: through its Sunday
        ("2030-07-01T00:00+02:00", datetime(2030, 6, 30, 22, tzinfo=UTC)),
        ("2030-07-01T00:00", datetime(2030, 7, 1, tzinfo=UTC)),  # a time says when
        ("2030-07-01T12:00:00+02:00", datetime(2030, 7, 1, 10, tzinfo=UTC)),
        ("", None),
        ("9999-12-31", None),  # how many systems write "never": it overflowed (a traceback)
        ("9999-W52", None),  # its Sunday added past 9999: refused as "not an expiry from 1970 on"
        ("9999-12-31T23:00:00-05:00", None),  # stored as year 10000: no worker could load the lists after it
    ],
)
def test_an_expiry_given_as_a_date_lists_the_plate_through_that_day(text, ends):
    from common.watchlist_entry import parse_expiry

    assert parse_expiry(text) == ends


def test_a_long_pass_is_judged_the_same_whether_or_not_the_lists_were_reloaded_meanwhile(pool):
    """Entries expired more than `expired_within_s` ago are not loaded; one loaded before it expired
    stayed in the cache while the table did not change, and a parked car's pass that began while it was
    listed alerted or not by whether someone edited a list meanwhile. Judged as of `expired_within_s` ago
    at the latest, both caches agree."""
    now = time.time()
    watch, clock = WatchList(pool), Clock()
    watch.add(WatchEntry("PARKED1", "stolen", expires_at=datetime.fromtimestamp(now + 50, UTC)))
    wall = [now]
    kept = WatchListCache(watch, refresh_s=5.0, clock=clock, expired_within_s=100.0, wall_clock=lambda: wall[0])
    assert kept.match_lists("PARKED1", 0.0, now - 10)  # seen 10 s ago, the entry runs 50 s more
    wall[0] = now + 120  # it closes after the entry expired, within the window: listed when seen
    assert kept.match_lists("PARKED1", 0.0, now - 10)
    wall[0] = now + 400  # it closes long after the entry expired; no list changed meanwhile
    clock.now += 5
    assert not kept.match_lists("PARKED1", 0.0, now - 10)
    assert kept.match_lists("PARKED1", 0.0, now - 10, now_s=now + 120)  # now as the caller says (Postgres's)


@pytest.mark.parametrize(
    "text",
    ["0001-01-01T00:00:00+05:00", "1960-01-01", "2030-13-01",
     "2030-07-01-05:00", "2030-07-01+02:00", "20300701-05:00", "2030-W27-1+02:00"],  # a date "in" a zone: was read
)  # fmt: skip
def test_an_expiry_the_log_cannot_keep_is_refused_clearly(text):  # as a time of day (05:00 UTC), a day early
    from common.watchlist_entry import parse_expiry

    with pytest.raises(InputError, match="expiry from 1970 on|not an ISO-8601"):
        parse_expiry(text)


def test_a_row_written_by_hand_past_year_9999_neither_stops_the_loading_nor_is_lost(pool):
    """Postgres keeps years Python cannot: one such row failed every load, and the workers matched nothing."""
    watch = WatchList(pool)
    watch.add(WatchEntry("AB1", "stolen"))
    with pool.connection() as connection:
        connection.execute("INSERT INTO watchlist (plate, reason, expires_at) VALUES ('CD2', 'x', '10000-01-01+00'),"
                           " ('EF3', 'y', '0001-01-01 BC')")  # fmt: skip
    cache = WatchListCache(watch, refresh_s=60.0)
    assert cache_match(cache, "AB1", 0.0) is not None and cache_match(cache, "CD2", 0.0) is not None  # never ends
    assert cache_match(cache, "EF3", 0.0) is None and "EF3" in [e.plate for e in watch.entries(include_expired=True)]


def test_every_change_to_a_watch_list_is_recorded_by_postgres_for_the_owner_alone(postgres_url, tmp_path, capsys):
    """Who listed a plate, changed it or took it off, when, as which login and operator: after a removal
    nothing anywhere named the plate, nor who had listed it (an audit). Written by Postgres's triggers
    however the list is changed, append-only, and no other role may read or touch it."""
    from tests.helpers import workers_role

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    with workers_role(postgres_url) as (role, as_workers):  # the login Compose's commands run as

        def alpr_as(*argv: str) -> int:
            return main(["watchlist", *argv, "--database-url", as_workers])

        assert alpr_as("add", "KPX4721", "--reason", "stolen, case 41", "--by", "officer 7") == 0
        assert alpr_as("add", "KPX4721", "--reason", "stolen, case 41", "--expires", "2030-01-01") == 0  # changed
        assert alpr_as("add", "KPX4721", "--reason", "stolen, case 41", "--expires", "2030-01-01") == 0  # the same
        assert alpr_as("import", str(write(tmp_path, "plate,reason\nKPX4721,recovered?\nABC123,amber alert\n")),
                       "--by", "officer 9") == 0  # fmt: skip
        assert alpr_as("remove", "KPX4721", "--by", "officer 7") == 0
        assert alpr_as("add", "XY1", "--reason", "x", "--by", "officer\n7") == 2  # one line, as every operator
        assert "--by:" in capsys.readouterr().err
        with psycopg.connect(as_workers, autocommit=True) as worker:
            worker.execute("UPDATE watchlist SET reason = 'hand-written' WHERE plate = 'ABC123'")
            for statement in (
                "SELECT * FROM watchlist_changes",
                "DELETE FROM watchlist_changes",
                "UPDATE watchlist_changes SET changed_by = 'x'",
                "INSERT INTO watchlist_changes (change, list_name, plate) VALUES ('added', 'd', '1')",
                "SELECT nextval('watchlist_changes_id_seq')",  # gaps in the record's ids
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    worker.execute(statement)
    with psycopg.connect(postgres_url, autocommit=True) as owner:
        owner.execute("TRUNCATE watchlist")
        rows = owner.execute(
            "SELECT database_user = %s, changed_by, change, plate, reason, expires_at IS NOT NULL, was_reason"
            " FROM watchlist_changes ORDER BY id", (role,)
        ).fetchall()  # fmt: skip
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            owner.execute("DELETE FROM watchlist_changes")
    login = rows[1][1]
    assert rows == [
        (True, "officer 7", "added", "KPX4721", "stolen, case 41", False, None),
        (True, login, "changed", "KPX4721", "stolen, case 41", True, "stolen, case 41"),
        (True, "officer 9", "changed", "KPX4721", "recovered?", False, "stolen, case 41"),  # one statement
        (True, "officer 9", "added", "ABC123", "amber alert", False, None),
        (True, "officer 7", "removed", "KPX4721", None, False, "recovered?"),
        (True, None, "changed", "ABC123", "hand-written", False, "amber alert"),
        (False, None, "removed", "ABC123", None, False, "hand-written"),
    ]

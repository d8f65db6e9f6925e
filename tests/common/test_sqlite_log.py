"""`alpr run`'s SQLite log shared by several commands at once (common/sqlite_log.py): a running `alpr run`
writes on while `alpr export --sqlite` streams the log and `alpr db prune --sqlite` deletes from it (a
review: either ended the run with `database is locked`); the files WAL keeps beside the log are as
private as the log itself; a write still locked out ends the run with a line that says why."""

from __future__ import annotations

import csv
import os
import sqlite3
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from common.errors import ConfigError, OutputError
from common.frame_store import frame_key
from common.jobs import FrameRef
from common.plate_log import COLUMNS, SqlitePlateLog
from common.sighting_log import SqliteSightingLog
from common.types import PlateCandidate, PlateRead

REPO = Path(__file__).resolve().parents[2]

OLD_ROWS_SQL = (
    f"INSERT INTO plate_reads ({', '.join(COLUMNS)})"
    " VALUES ('cam', ?, ?, ?, ?, 0, ?, 0.9, 'us', 1, '[]', 0, 0, 1, 1, 0.9, '{}')"
)


def log_of_old_reads(path: Path, rows: int, age_days: float) -> Path:
    """An `alpr run` log at `path` holding `rows` reads captured `age_days` ago (one executemany)."""
    SqlitePlateLog(path).close()
    captured_at = (datetime.now(UTC) - timedelta(days=age_days)).isoformat()
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.executemany(
                OLD_ROWS_SQL, ((f"cam:old:{n}", n, float(n), captured_at, f"KPX{n % 10000}") for n in range(rows))
            )
    finally:
        connection.close()
    return path


def live_frame(index: int) -> tuple[FrameRef, list[PlateRead]]:
    """A frame of a running `alpr run`, captured now, with one read."""
    frame_id = f"cam:live:{index}"
    frame = FrameRef(frame_id=frame_id, camera_id="cam", seq=index, frame_index=index, captured_at_s=time.time(),
                     source_time_s=float(index), key=frame_key(frame_id), region="us")  # fmt: skip
    return frame, [PlateRead((0.0, 0.0, 90.0, 30.0), 0.9, (PlateCandidate("KPX4721", 0.95, "us"),))]


def count(path: Path, where: str = "1", *values: object) -> int:
    connection = sqlite3.connect(path)
    try:
        (found,) = connection.execute(f"SELECT count(*) FROM plate_reads WHERE {where}", values).fetchone()
        return int(found)
    finally:
        connection.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


EXPORT_PAUSED_MIDWAY = """
import sys
import common.plate_log as plate_log
write_csv = plate_log.write_csv
def paused_midway(rows, columns, path):  # the export's SELECT open, a row in hand: as a long export is
    def rows_paused():
        for index, row in enumerate(rows):
            if index == 100:
                print("paused", flush=True)
                sys.stdin.readline()
            yield row
    return write_csv(rows_paused(), columns, path)
plate_log.write_csv = paused_midway
from alpr.cli import main
sys.exit(main(sys.argv[1:]))
"""
"""`alpr export` run as it is, but for a pause in its stream of rows, after the 100th, until a line
comes on its stdin: an export of 2 million reads streams for 25 s, this one for as long as the test
writes (no log of millions of rows, and no race with the export's end)."""


def test_an_export_streaming_the_log_never_holds_back_the_running_alpr_runs_writes(tmp_path):
    """A review: `alpr export --sqlite` of a log `alpr run` was writing held its SHARED lock for the
    whole of its SELECT (25 s for 2 million reads); the run's next commit waited 5 s, failed `database is
    locked`, and the run ended. In WAL mode the export reads the log as it was when it began, and every
    write of the run goes through while it streams."""
    path = log_of_old_reads(tmp_path / "reads.sqlite", 2000, age_days=1)
    run_log = SqlitePlateLog(path)  # the running `alpr run`
    export = subprocess.Popen(
        [sys.executable, "-c", EXPORT_PAUSED_MIDWAY, "export", "--reason", "case 12", "--csv",
         str(tmp_path / "out.csv"), "--sqlite", str(path)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    written: list[int] = []
    try:
        assert export.stdout is not None
        if export.stdout.readline().strip() == "paused":  # the export mid-stream, its SELECT open
            written = [run_log.record_many([live_frame(index)]) for index in range(5)]
    finally:
        out, err = export.communicate("\n", timeout=120)
        run_log.close()
    assert written == [1] * 5, err
    assert export.returncode == 0 and "wrote 2000 reads" in out, err  # the log as it was when the export began
    with (tmp_path / "out.csv").open(newline="") as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == 2000
    assert count(path, "frame_id LIKE 'cam:live:%'") == 5


def test_a_prune_deletes_in_batches_that_the_running_alpr_runs_writes_go_between(tmp_path):
    """A review: `alpr db prune --sqlite` (from cron) deleted the whole backlog in one transaction (2
    million reads, 14.8 s: the first prune after an upgrade), and the running `alpr run`'s next write
    failed `database is locked` after 5 s. The prune now deletes SQLITE_BATCH_ROWS rows a transaction:
    every write of the run succeeds, and some land while the prune is under way, old reads deleted and
    others still to go (with one transaction, a write sees all of them or none)."""
    rows = 40_000  # 8 batches
    path = log_of_old_reads(tmp_path / "reads.sqlite", rows, age_days=40)
    cutoff = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    run_log = SqlitePlateLog(path)  # the running `alpr run`, a frame's reads at a time
    env = {**os.environ, "ALPR_RETENTION_DAYS": "30"}
    prune = subprocess.Popen([sys.executable, "-m", "alpr.cli", "db", "prune", "--sqlite", str(path)], cwd=REPO,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    old_left_after_writes, index = [], 0
    try:
        while prune.poll() is None:
            assert run_log.record_many([live_frame(index)]) == 1
            left = run_log.connection.execute("SELECT count(*) FROM plate_reads WHERE captured_at < ?", (cutoff,))
            old_left_after_writes.append(int(left.fetchone()[0]))
            index += 1
            time.sleep(0.01)
        out, err = prune.communicate(timeout=120)
    finally:
        if prune.poll() is None:
            prune.kill()
        run_log.close()
    assert prune.returncode == 0 and f"{rows} plate_reads" in out, err
    mid_prune = [left for left in old_left_after_writes if 0 < left < rows]
    assert mid_prune, f"no write went in while the prune deleted (old reads left after each: {old_left_after_writes})"
    assert count(path, "captured_at < ?", cutoff) == 0 and count(path, "frame_id LIKE 'cam:live:%'") == index


def log_sightings_with_snapshots(path: Path, folder: Path, seen_at_s: list[float]) -> None:
    """A sighting of KPX4721 seen at each of `seen_at_s`, `s<index>`, with its snapshot `s<index>.jpg`
    in `folder`, logged in the SQLite log at `path`."""
    from common.types import Sighting

    log = SqliteSightingLog(path)
    for index, at_s in enumerate(seen_at_s):
        snapshot = folder / f"s{index}.jpg"
        snapshot.write_bytes(b"\xff\xd8jpeg\xff\xd9")
        sighting = Sighting(
            sighting_id=f"s{index}", camera_id="cam", plate="KPX4721", confidence=0.9, first_seen_s=at_s,
            last_seen_s=at_s, reads=1, best_frame_id="cam:1:0", best_box_xyxy=(0, 0, 9, 3), best_confidence=0.9,
            texts=(("KPX4721", 1),),
        )  # fmt: skip
        log.record_many([(sighting, str(snapshot))])
    log.close()


def test_a_prune_in_batches_deletes_every_old_sighting_and_its_snapshot(tmp_path, monkeypatch):
    """Batches of two: each old sighting's row and snapshot go, whichever batch it falls in; a new one stays."""
    from common import retention

    monkeypatch.setattr(retention, "SQLITE_BATCH_ROWS", 2)
    monkeypatch.setattr(retention, "SQLITE_BATCH_PAUSE_S", 0.0)
    path, folder = tmp_path / "reads.sqlite", tmp_path / "sightings"
    folder.mkdir()
    now = datetime.now(UTC)
    log_sightings_with_snapshots(
        path, folder, [(now - timedelta(days=age)).timestamp() for age in (50, 45, 40, 35, 31, 1)]
    )
    pruned = retention.prune_sqlite_log(path, now - timedelta(days=30))
    assert pruned.rows == {"plate_reads": 0, "sightings": 5} and pruned.snapshots_left == []
    assert sorted(p.name for p in folder.iterdir()) == ["s5.jpg"]
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("SELECT sighting_id FROM sightings").fetchall() == [("s5",)]
    finally:
        connection.close()


KILLED_IN_THE_PAUSE = """
import os, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
import common.retention as retention
retention.SQLITE_BATCH_ROWS = 2
retention.time.sleep = lambda seconds: os.kill(os.getpid(), 9)  # killed in the pause after the first batch
retention.prune_sqlite_log(Path(sys.argv[1]), datetime.now(UTC) - timedelta(days=30))
"""


def test_a_prune_killed_between_batches_leaves_no_snapshot_of_a_row_it_deleted(tmp_path):
    """A review: the snapshots went once after the last batch; a prune killed between two left those of
    the batches done on disk for good (unblurred cars past their retention), their rows gone, so no later
    prune saw them. Each batch's snapshots go as it commits."""
    from common import retention

    path, folder = tmp_path / "reads.sqlite", tmp_path / "sightings"
    folder.mkdir()
    log_sightings_with_snapshots(path, folder, [(datetime.now(UTC) - timedelta(days=60)).timestamp()] * 5)
    repo = Path(__file__).resolve().parents[2]
    killed = subprocess.run([sys.executable, "-c", KILLED_IN_THE_PAUSE, str(path)], cwd=repo, check=False)
    connection = sqlite3.connect(path)
    try:
        (left,) = connection.execute("SELECT count(*) FROM sightings").fetchone()
    finally:
        connection.close()
    assert killed.returncode == -9 and left == 3  # one batch of two committed
    assert sorted(p.name for p in folder.iterdir()) == ["s2.jpg", "s3.jpg", "s4.jpg"]
    retention.prune_sqlite_log(path, datetime.now(UTC) - timedelta(days=30))
    assert list(folder.iterdir()) == []


TERMINATED_IN_THE_FIRST_BATCH = """
import os, signal, sys
import common.retention as retention
from alpr.cli import main
# started as from a terminal: a signal the test's runner ignores (SIGHUP under nohup, a CI runner's) is inherited
# ignored, and the prune rightly leaves it so (alpr/ingest_command.on_stop_signals): it then ran to the end, exit 0
signal.signal(getattr(signal, sys.argv[2]), signal.SIG_DFL)
retention.SQLITE_BATCH_ROWS = 2
deleting = retention._delete_snapshots
def signalled(snapshots, pruned):  # cron's or systemd's SIGTERM, a dropped ssh's SIGHUP, as the first batch's go
    os.kill(os.getpid(), getattr(signal, sys.argv[2]))
    deleting(snapshots, pruned)
retention._delete_snapshots = signalled
sys.exit(main(["db", "prune", "--sqlite", sys.argv[1]]))
"""


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGHUP"])
def test_a_prune_told_to_stop_ends_after_the_batch_in_hand_with_its_snapshots_deleted(tmp_path, signal_name):
    """SIGTERM killed `alpr db prune --sqlite` where it was: between a batch's commit and its snapshots'
    deletion, those stayed on disk for good (their rows gone), and the rest of a mistaken prune of a
    month's log went on at SIGINT's KeyboardInterrupt only. It now ends as the Postgres prune does: after
    the batch in hand, its snapshots deleted, saying how far it got, exit 1; the next prune goes on."""
    path, folder = tmp_path / "reads.sqlite", tmp_path / "sightings"
    folder.mkdir()
    log_sightings_with_snapshots(path, folder, [(datetime.now(UTC) - timedelta(days=60)).timestamp()] * 5)
    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    stopped = subprocess.run([sys.executable, "-c", TERMINATED_IN_THE_FIRST_BATCH, str(path), signal_name], cwd=repo,
                             env=env,
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert stopped.returncode == 1, stopped.stderr
    assert "stopped by a signal; deleted so far what was captured before" in stopped.stdout
    assert stopped.stdout.strip().endswith(": 0 plate_reads, 2 sightings, 0 plate_searches, 0 plate_exports")
    assert sorted(p.name for p in folder.iterdir()) == ["s2.jpg", "s3.jpg", "s4.jpg"]  # the batch's went with it
    again = subprocess.run([sys.executable, "-m", "alpr.cli", "db", "prune", "--sqlite", str(path)], cwd=repo, env=env,
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert again.returncode == 0
    assert again.stdout.strip().endswith(": 0 plate_reads, 3 sightings, 0 plate_searches, 0 plate_exports")
    assert list(folder.iterdir()) == []


def test_the_logs_wal_and_shm_files_are_for_its_owner_only_whatever_the_umask(tmp_path):
    """WAL keeps the pages written since the last checkpoint (plates) in `<log>-wal`, beside its index
    `<log>-shm`, while the log is open: 0600 as the log is, under a umask that lets all read."""
    path = tmp_path / "reads.sqlite"
    umask = os.umask(0)
    try:
        run_log = SqlitePlateLog(path)
        try:
            run_log.record_many([live_frame(0)])
            sides = [tmp_path / "reads.sqlite-wal", tmp_path / "reads.sqlite-shm"]
            assert [mode(side) for side in sides] == [0o600, 0o600]
        finally:
            run_log.close()
    finally:
        os.umask(umask)
    assert mode(path) == 0o600


def test_wal_and_shm_files_left_readable_by_all_are_made_private_again(tmp_path):
    """SQLite makes them with the log's mode: a log made 0644 for a while left them so, and opening the
    log again made the log 0600, not them. Every command that opens the log now makes them 0600 too."""
    path = tmp_path / "reads.sqlite"
    run_log = SqlitePlateLog(path)
    try:
        run_log.connection.execute("PRAGMA journal_mode = wal")  # as the log is now, whatever the code under test
        run_log.record_many([live_frame(0)])
        sides = [tmp_path / "reads.sqlite-wal", tmp_path / "reads.sqlite-shm"]
        for file in (path, *sides):
            file.chmod(0o644)
        SqliteSightingLog(path).close()  # another command opens it while the run writes
        assert [mode(file) for file in (path, *sides)] == [0o600, 0o600, 0o600]
    finally:
        run_log.close()


@pytest.mark.parametrize("end", ["-wal", "-shm", "-journal"])
def test_a_link_at_the_name_of_a_file_sqlite_keeps_beside_the_log_is_refused(end, tmp_path, capsys):
    """SQLite opens its files beside the log by name and follows a link there: the log's pages, plates,
    went into whatever file it named, though a link at the log's own name was refused."""
    from alpr.cli import main

    path = tmp_path / "reads.sqlite"
    SqlitePlateLog(path).close()
    target = tmp_path / "elsewhere.bin"
    target.write_bytes(b"someone else's")
    target.chmod(0o644)
    side = tmp_path / f"reads.sqlite{end}"
    side.symlink_to(target)
    for log_type in (SqlitePlateLog, SqliteSightingLog):
        with pytest.raises(ConfigError, match=f"reads.sqlite{end} is a symbolic link beside the SQLite log"):
            log_type(path)
    for command in (["db", "prune"], ["export", "--reason", "case 1", "--csv", str(tmp_path / "out.csv")]):
        assert main([*command, "--sqlite", str(path)]) == 2
        assert f"reads.sqlite{end} is a symbolic link" in capsys.readouterr().err
    assert target.read_bytes() == b"someone else's" and mode(target) == 0o644
    side.unlink()
    side.mkdir()  # not a file either
    with pytest.raises(ConfigError, match=f"reads.sqlite{end} is not a regular file"):
        SqlitePlateLog(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can make a file another user's")
def test_another_users_file_beside_the_log_is_refused_before_it_is_changed(tmp_path):
    """A `-wal` another user made: SQLite would write the log's pages into a file they read."""
    path = tmp_path / "reads.sqlite"
    SqlitePlateLog(path).close()
    side = tmp_path / "reads.sqlite-wal"
    side.touch()
    os.chown(side, 65534, 65534)
    side.chmod(0o666)
    with pytest.raises(ConfigError, match=r"reads.sqlite-wal is another user's file \(uid 65534\)"):
        SqlitePlateLog(path)
    assert mode(side) == 0o666 and side.stat().st_size == 0


def test_a_write_locked_out_past_the_busy_timeout_stops_the_run_with_a_line_that_says_why(tmp_path, monkeypatch):
    """Past the busy timeout (a transaction left open elsewhere) the run's write failed with a bare
    `OperationalError: database is locked`; now an OutputError names the log and what may hold it, and
    no plate. The reads in hand are not logged, so the run stops rather than go on without them."""
    from common import sqlite_log

    monkeypatch.setattr(sqlite_log, "BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "reads.sqlite"
    run_log = SqlitePlateLog(path)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # an `sqlite3` shell inside BEGIN
        with pytest.raises(OutputError, match=f"the SQLite log {path} stayed locked by another process") as error:
            run_log.record_many([live_frame(0)])
        assert "the reads of 1 frame(s) were not logged" in str(error.value) and "KPX" not in str(error.value)
        holder.execute("ROLLBACK")
        assert run_log.record_many([live_frame(0)]) == 1  # the lock let go: the log takes writes again
    finally:
        holder.close()
        run_log.close()


def test_a_log_an_older_version_made_read_meanwhile_stays_in_its_mode_for_now(tmp_path, caplog):
    """A review: the switch to WAL of a log still in the rollback journal's mode, which another process
    was reading (an old export, an sqlite3 shell), waited 60 s and failed the command `database is
    locked`; it stays in its mode for now, with a warning, and is switched at a later open."""
    from common.sqlite_log import connect_log

    path = tmp_path / "reads.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE plate_reads (x)")
    old.execute("INSERT INTO plate_reads VALUES (1)")
    old.commit()
    os.chmod(path, 0o600)
    old.execute("BEGIN")
    old.execute("SELECT * FROM plate_reads").fetchall()  # a reader's SHARED lock, held
    started = time.monotonic()
    with caplog.at_level("WARNING"):
        connection = connect_log(path)
    try:
        assert time.monotonic() - started < 30 and "stays in journal mode delete" in caplog.text
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    finally:
        connection.close()
        old.rollback()
        old.close()
    connection = connect_log(path)  # no reader now: switched
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        connection.close()

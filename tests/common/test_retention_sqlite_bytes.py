"""`alpr db prune --sqlite` leaves no trace of the plates it deletes in the log's file: SQLite keeps a
deleted row's bytes in its free pages (and the write-ahead log) until they happen to be reused, so the
plates past the retention were still read back from the file with `strings` (a review)."""

from __future__ import annotations

import time
from pathlib import Path

from alpr.cli import main


def _log_of(path: Path, plates_by_age_days: dict[str, float]) -> None:
    """An `alpr run` log at `path` with a read and a sighting of each plate, seen that many days ago."""
    from common.frame_store import frame_key
    from common.jobs import FrameRef
    from common.plate_log import SqlitePlateLog
    from common.sighting_log import SqliteSightingLog
    from common.types import PlateCandidate, PlateRead, Sighting

    reads, sightings = SqlitePlateLog(path), SqliteSightingLog(path)
    for index, (plate, age_days) in enumerate(plates_by_age_days.items()):
        at_s = time.time() - age_days * 86400
        frame = FrameRef(frame_id=f"cam:1:{index}", camera_id="cam", seq=index, frame_index=index, captured_at_s=at_s,
                         source_time_s=0.0, key=frame_key(f"cam:1:{index}"), region="us")  # fmt: skip
        reads.record_many([(frame, [PlateRead((0, 0, 9, 3), 0.9, (PlateCandidate(plate, 0.95, "us"),))])])
        sighting = Sighting(
            sighting_id=f"cam:cam:1:{index}:0", camera_id="cam", plate=plate, confidence=0.9, first_seen_s=at_s,
            last_seen_s=at_s + 3, reads=1, best_frame_id=frame.frame_id, best_box_xyxy=(0, 0, 9, 3),
            best_confidence=0.9, texts=((plate, 1),),
        )  # fmt: skip
        sightings.record_many([(sighting, None)])
    reads.close()
    sightings.close()


def _bytes_of(path: Path) -> bytes:
    """The log's file and those SQLite keeps beside it, as a reader of the disk finds them."""
    return b"".join(file.read_bytes() for file in (path, *path.parent.glob(path.name + "-*")) if file.is_file())


def test_a_pruned_plate_is_gone_from_the_sqlite_file_not_only_from_its_queries(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPR_DATABASE_URL", "postgresql://alpr@127.0.0.1:1/city")  # the flag names the log
    path = tmp_path / "reads.sqlite"
    _log_of(path, {"OLDPL8TE": 40, "NEWPL8TE": 1})
    assert b"OLDPL8TE" in _bytes_of(path)
    assert main(["db", "prune", "--sqlite", str(path)]) == 0
    content = _bytes_of(path)
    assert b"NEWPL8TE" in content  # kept: within the retention
    assert b"OLDPL8TE" not in content


def test_a_prune_leaves_no_trace_while_alpr_run_holds_the_log_open(tmp_path, monkeypatch):
    """A running `alpr run` keeps a connection open (the write-ahead log stays): the pages a prune wrote
    there held the deleted rows' old versions too."""
    import sqlite3

    monkeypatch.setenv("ALPR_DATABASE_URL", "postgresql://alpr@127.0.0.1:1/city")
    path = tmp_path / "reads.sqlite"
    _log_of(path, {"OLDPL8TE": 40, "NEWPL8TE": 1})
    running = sqlite3.connect(path)  # as `alpr run`'s log stays open
    try:
        running.execute("SELECT count(*) FROM plate_reads").fetchone()
        assert main(["db", "prune", "--sqlite", str(path)]) == 0
        assert b"OLDPL8TE" not in _bytes_of(path)
    finally:
        running.close()


def test_the_closing_checkpoint_never_holds_alpr_runs_writes_while_a_reader_holds_the_log(
    tmp_path, monkeypatch, caplog, capsys
):
    """A TRUNCATE checkpoint holds SQLite's write lock while it waits for readers: waited for as a writer waits
    (60 s), an export reading the log held `alpr run`'s writes that long at every prune (a review). Tried a
    moment at a time, the lock let go between tries, a writer that waits 2 s is never refused; the reader
    still there at the end, the prune says so, naming the file and what to do, and exits 1 (it exited 0)."""
    import logging
    import sqlite3
    import threading

    import common.retention
    import common.sqlite_log

    monkeypatch.setenv("ALPR_DATABASE_URL", "postgresql://alpr@127.0.0.1:1/city")
    monkeypatch.setattr(common.sqlite_log, "BUSY_TIMEOUT_S", 5.0)  # the old wait, shortened
    monkeypatch.setattr(common.retention, "CHECKPOINT_TRIES_S", 3.0, raising=False)
    path = tmp_path / "reads.sqlite"
    _log_of(path, {"OLDPL8TE": 40, "NEWPL8TE": 1})
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM plate_reads").fetchone()  # an export reading, its snapshot held
    refused: list[str] = []
    done = threading.Event()

    def write() -> None:  # as `alpr run` logs its reads
        writer = sqlite3.connect(path, timeout=2.0)
        writer.execute("CREATE TABLE IF NOT EXISTS run_writes (n INTEGER)")
        writer.commit()
        while not done.is_set():
            try:
                writer.execute("INSERT INTO run_writes VALUES (1)")
                writer.commit()
            except sqlite3.OperationalError as error:
                refused.append(str(error))
            time.sleep(0.05)
        writer.close()

    writing = threading.Thread(target=write)
    writing.start()
    try:
        with caplog.at_level(logging.WARNING, logger="common.retention"):
            assert main(["db", "prune", "--sqlite", str(path)]) == 1  # as a prune that left a snapshot
    finally:
        done.set()
        writing.join()
        reader.close()
    assert refused == []  # was: "database is locked", the writer held past its 2 s
    assert any("a reader held it" in record.getMessage() for record in caplog.records)
    err = capsys.readouterr().err
    assert f"may still be read from {path} and {path}-wal" in err
    assert "run the prune again once `alpr run` is stopped" in err


def test_a_prune_whose_checkpoint_a_reader_outlasts_keeps_its_deletes_and_names_the_file(tmp_path, caplog):
    """A second connection holding a read transaction (a running `alpr run`, an export) keeps the write-ahead
    log from being emptied: the prune keeps what it deleted but says where the old pages are, and
    `Pruned.old_pages_left` makes `alpr db prune --sqlite` exit 1 (it exited 0, the plates still in the files)."""
    import logging
    import sqlite3
    from datetime import UTC, datetime, timedelta

    from common.retention import prune_sqlite_log

    path = tmp_path / "reads.sqlite"
    _log_of(path, {"OLDPL8TE": 40, "NEWPL8TE": 1})
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM plate_reads").fetchone()  # its snapshot held
        with caplog.at_level(logging.WARNING, logger="common.retention"):
            pruned = prune_sqlite_log(path, datetime.now(UTC) - timedelta(days=30), checkpoint_tries_s=0.3)
        assert b"OLDPL8TE" in _bytes_of(path)  # what the warning is about
    finally:
        reader.close()
    assert pruned.rows == {"plate_reads": 1, "sightings": 1} and pruned.old_pages_left == str(path)
    (warning,) = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert f"{path}-wal" in warning and "once `alpr run`" in warning and "OLDPL8TE" not in warning
    after = sqlite3.connect(path)
    try:  # kept deleted
        assert after.execute("SELECT plate_text FROM plate_reads").fetchall() == [("NEWPL8TE",)]
    finally:
        after.close()
    assert prune_sqlite_log(path, datetime.now(UTC) - timedelta(days=30)).old_pages_left is None  # reader gone
    assert b"OLDPL8TE" not in _bytes_of(path)


def test_a_prune_that_deleted_nothing_while_a_reader_held_the_log_warns_and_exits_0(tmp_path, monkeypatch, capsys,
                                                                                      caplog):  # fmt: skip
    """Nothing past the retention, an export reading the log through the closing checkpoint: the prune exited 1
    saying "the deleted rows' old pages may still be read", of rows it never deleted (a review). A WARNING now;
    the same reader through a prune that deleted rows still exits 1 (a positive control)."""
    import logging
    import sqlite3

    import common.retention

    monkeypatch.setenv("ALPR_DATABASE_URL", "postgresql://alpr@127.0.0.1:1/city")
    monkeypatch.setattr(common.retention, "CHECKPOINT_TRIES_S", 0.3)

    def prune_while_read(path: Path) -> int:
        writer = sqlite3.connect(path)  # `alpr run` wrote since: the write-ahead log holds pages
        writer.execute("CREATE TABLE IF NOT EXISTS t(n)")
        writer.execute("INSERT INTO t VALUES (1)")
        writer.commit()
        reader = sqlite3.connect(path, isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM plate_reads").fetchone()  # an export reading
            return main(["db", "prune", "--sqlite", str(path)])
        finally:
            reader.close()
            writer.close()

    recent = tmp_path / "recent.sqlite"
    _log_of(recent, {"NEWPL8TE": 1})
    with caplog.at_level(logging.WARNING, logger="common.retention"):
        assert prune_while_read(recent) == 0
    assert "old pages may still be read" not in capsys.readouterr().err
    (warning,) = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert warning.startswith(f"the SQLite log {recent}: nothing was past the retention, but a reader held it")
    old = tmp_path / "old.sqlite"
    _log_of(old, {"OLDPL8TE": 40, "NEWPL8TE": 1})
    assert prune_while_read(old) == 1  # rows deleted, their old pages held
    assert f"may still be read from {old} and {old}-wal" in capsys.readouterr().err

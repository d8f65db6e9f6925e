import csv
from datetime import UTC, datetime

import pytest

from common import defaults
from common.errors import ConfigError
from common.frame_store import frame_key
from common.jobs import FrameRef
from common.plate_log import SqlitePlateLog, export_csv, open_plate_log, record
from common.types import PlateCandidate, PlateRead

FRAME = FrameRef(
    frame_id="cam-1:run:7", camera_id="cam-1", seq=7, frame_index=7, source_time_s=1.4,
    captured_at_s=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp(), key=frame_key("cam-1:run:7"), region="us",
    stage_ms={"detect": 12.5},
)  # fmt: skip
READS = [
    PlateRead((10, 20, 110, 60), 0.9, (PlateCandidate("KPX4721", 0.97, "LLLDDDD"), PlateCandidate("KPX472I", 0.2))),
    PlateRead((200, 20, 300, 60), 0.4, ()),  # detected, nothing legible: not a read
    PlateRead((400, 20, 500, 60), 0.7, (PlateCandidate("AB12", 0.6),)),
]


def check_log(log, tmp_path):
    assert record(log, FRAME, READS) == 2
    assert record(log, FRAME, READS) == 0  # the same frame again adds nothing
    rows = list(log.reads())
    assert [r["plate_text"] for r in rows] == ["KPX4721", "AB12"]
    assert rows[0]["format_match"] is True and rows[1]["format_match"] is False
    assert rows[0]["plate_index"] == 0 and rows[1]["plate_index"] == 2
    assert "KPX472I" in rows[0]["candidates"] and "12.5" in rows[0]["stage_ms"]
    assert export_csv(log, tmp_path / "reads.csv") == 2
    with (tmp_path / "reads.csv").open() as handle:
        exported = list(csv.DictReader(handle))
    assert exported[0]["camera_id"] == "cam-1" and exported[0]["captured_at"].startswith("2026-01-02T03:04:05")


def test_sqlite_log_is_idempotent_and_exports(tmp_path):
    log = SqlitePlateLog(tmp_path / "reads.sqlite")
    try:
        check_log(log, tmp_path)
    finally:
        log.close()


def upgraded(postgres_url: str) -> str:
    """The schema at `postgres_url` migrated, as `alpr db upgrade` does (a log opened never migrates)."""
    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    return postgres_url


def test_postgres_log_is_idempotent_and_exports(tmp_path, postgres_url):
    log = open_plate_log(upgraded(postgres_url), tmp_path / "unused.sqlite")
    try:
        check_log(log, tmp_path)
    finally:
        log.close()


def test_the_cameras_a_postgres_log_remembers_are_bounded(tmp_path, postgres_url, monkeypatch):
    """Jobs naming a new camera each grew the set of cameras handed to the sighting pool without end."""
    import psycopg

    from common import plate_log

    monkeypatch.setattr(plate_log, "REMEMBERED_CAMERAS", 3)
    log = open_plate_log(upgraded(postgres_url), tmp_path / "unused.sqlite")
    cameras = [f"bounded-{n}" for n in range(10)]
    try:
        for camera in cameras:
            frame_id = f"{camera}:run:7"
            changed = {"frame_id": frame_id, "camera_id": camera, "key": frame_key(frame_id)}
            frame = FrameRef(**{**FRAME.model_dump(), **changed})
            record(log, frame, READS)
            assert len(log.registered) <= 3
    finally:
        log.close()
    with psycopg.connect(postgres_url) as connection:
        handed = connection.execute(
            "SELECT camera_id FROM sighting_cursors WHERE camera_id LIKE 'bounded-%%' ORDER BY camera_id"
        ).fetchall()
    assert [camera for (camera,) in handed] == cameras  # every camera still handed to the sighting pool


def test_postgres_unreachable_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "DB_OPEN_WAIT_S", 1.0)  # nothing listens on port 1: no server starting to wait for
    with pytest.raises(
        ConfigError, match=r"cannot connect to Postgres at postgresql://nobody:\*\*\*@127.0.0.1:1/"
    ) as e:
        open_plate_log("postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2", tmp_path / "x.sqlite")
    assert "secret" not in str(e.value)


def test_an_export_reads_a_current_schema_and_never_migrates_one(tmp_path, postgres_url, capsys):
    import os
    import stat

    import psycopg

    from alpr.cli import main

    recorded = ["--reason", "case 1", "--database-url", postgres_url]
    assert main(["export", "--csv", str(tmp_path / "x.csv"), *recorded]) == 2  # a config error
    assert "run `alpr db upgrade`" in capsys.readouterr().err
    with psycopg.connect(postgres_url) as connection:  # the export created nothing, not even its bookkeeping
        tables = connection.execute("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()").fetchone()
    assert tables == (0,)
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    log = open_plate_log(postgres_url, tmp_path / "unused.sqlite")
    try:
        check_log(log, tmp_path)  # the export streams from a server-side cursor
    finally:
        log.close()
    assert main(["export", "--csv", str(tmp_path / "reads.csv"), *recorded]) == 0
    assert stat.S_IMODE(os.stat(tmp_path / "reads.csv").st_mode) == 0o600  # plates: its owner's only


def test_the_sqlite_log_is_for_its_owner_only(tmp_path):
    """Its reads are plates, times and places: 0600 (as the CSV export), even where it was there before."""
    from common.plate_log import SqlitePlateLog

    path = tmp_path / "logs" / "reads.sqlite"
    SqlitePlateLog(path).close()
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o700"
    path.chmod(0o644)
    SqlitePlateLog(path).close()
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_the_sqlite_logs_are_never_written_through_a_link_planted_at_their_name(tmp_path):
    """SQLite opens the log by name and follows a link there: the reads landed in whatever file the
    link named (another user's, made 0600 or not)."""
    from common.sighting_log import SqliteSightingLog

    target = tmp_path / "elsewhere.bin"
    target.write_bytes(b"someone else's")
    (tmp_path / "reads.sqlite").symlink_to(target)
    for log_type in (SqlitePlateLog, SqliteSightingLog):
        with pytest.raises(ConfigError, match="reads.sqlite is a symbolic link"):
            log_type(tmp_path / "reads.sqlite")
    assert target.read_bytes() == b"someone else's"

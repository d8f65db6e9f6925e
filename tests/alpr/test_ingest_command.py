"""`alpr ingest` at start (alpr/ingest_command.py), on a real Redis and Postgres: a node starts while
Postgres cannot be reached, as the README's outage policy has it, but not with a login Postgres refuses
for good, which no wait mends, nor as a role that lacks a right it needs: it stops with one line, as the
workers do."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np
import psycopg
import pytest

from alpr.cli import main
from common import defaults
from common.queues import connect_redis, stage_queue
from tests.helpers import as_role, free_port, write_cameras


def one_image_camera(tmp_path: Path) -> Path:
    """A cameras file of one camera reading a folder of one image (the node ends once it is sampled)."""
    folder = tmp_path / "shots"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((120, 160, 3), 90, np.uint8))
    return write_cameras(tmp_path / "cameras.yaml", [{"id": "gate", "source": str(folder)}])


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def spooled(tmp_path: Path) -> list[Path]:
    """The frame records spooled for a later node (conftest's private spool folder)."""
    folder = tmp_path / "ledger-spool"
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


@pytest.mark.parametrize("mistake", ["database", "role"])
def test_a_node_given_a_login_postgres_refuses_for_good_stops_at_start(
    mistake, postgres_url, redis_url, tmp_path, capsys
):
    """A mistyped database name (or role) ran the node: exit 0, WARNINGs only, every frame queued into the
    chain and its record only in the spool folder, for ever under a supervisor; a worker given the same
    URL refused at once (a review)."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    url = with_database(postgres_url, "alpr_no_such_db") if mistake == "database" else as_role(postgres_url, "nobody9")
    cameras = one_image_camera(tmp_path)
    assert main(["ingest", "--cameras", str(cameras), "--redis-url", redis_url, "--database-url", url]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "does not exist" in err and "no wait mends that" in err
    assert stage_queue(connect_redis(redis_url), "detect").count == 0 and not spooled(tmp_path)  # nothing sampled


def test_a_node_started_while_postgres_cannot_be_reached_still_ingests(redis_url, tmp_path, capsys, monkeypatch):
    """Nothing answers at the URL's port: Postgres may be starting or restarting, so the node starts and
    keeps its records in the spool folder until it answers (README, Postgres down)."""
    monkeypatch.setattr(defaults, "LEDGER_CLOSE_S", 1.0)  # its 15 s of tries on the way out: to no avail here
    cameras = one_image_camera(tmp_path)
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/alpr"
    assert main(["ingest", "--cameras", str(cameras), "--redis-url", redis_url, "--database-url", url]) == 0
    assert "gate: 1 frames queued" in capsys.readouterr().out and spooled(tmp_path)


def test_a_wrong_or_missing_password_stops_a_node_at_start(private_postgres, redis_url, tmp_path, capsys):
    """On a server that asks for a password (the shared one trusts every local login)."""
    with psycopg.connect(private_postgres.url, autocommit=True) as admin:
        admin.execute("ALTER ROLE postgres PASSWORD 'right-password'")
        hba = admin.execute("SHOW hba_file").fetchone()
    assert hba is not None
    Path(hba[0]).write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
    private_postgres.run("pg_ctl", "-D", str(private_postgres.data), "reload")
    cameras = one_image_camera(tmp_path)
    wrong = private_postgres.url.replace("postgres@", "postgres:wrong-password@")
    for url, said in ((wrong, "password authentication failed"), (private_postgres.url, "no password supplied")):
        assert main(["ingest", "--cameras", str(cameras), "--redis-url", redis_url, "--database-url", url]) == 2
        err = capsys.readouterr().err
        assert said in err and "wrong-password" not in err, said


@pytest.mark.parametrize(
    ("cause", "for_good"),
    [
        ('connection to server at "10.0.0.6", port 5432 failed: FATAL:  database "alpr_" does not exist', True),
        ('connection to server at "10.0.0.6", port 5432 failed: FATAL:  role "alpr_ap" does not exist', True),
        ('... failed: FATAL:  password authentication failed for user "alpr"', True),
        ("... failed: fe_sendauth: no password supplied", True),
        ('... failed: FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "alpr", database "alpr"', True),
        ('... failed: FATAL:  role "alpr_pruner" is not permitted to log in', True),
        ('... failed: FATAL:  permission denied for database "alpr"', True),
        ("... port 5432 failed: Connection refused\tIs the server running on that host", False),
        ("... port 5432 failed: FATAL:  the database system is starting up", False),
        ("... port 5432 failed: FATAL:  the database system is shutting down", False),
        ("... port 5432 failed: FATAL:  sorry, too many clients already", False),
        ('could not translate host name "postgres" to address: Name or service not known', False),
        ("... port 5432 failed: timeout expired", False),
    ],
)
def test_a_login_refused_for_good_is_told_from_an_outage(cause, for_good):
    """libpq gives a connection's error no SQLSTATE: the text says which (common/db.refused_for_good)."""
    from common.db import refused_for_good

    assert refused_for_good(cause) is for_good


def table(postgres_url: str, query: str) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(postgres_url) as connection:
        return connection.execute(query).fetchall()  # type: ignore[arg-type]


def test_a_node_whose_role_has_exactly_its_rights_records_every_frame(postgres_url, redis_url, tmp_path, caplog):
    """INGEST_NODE_RIGHTS are all a node needs: its camera registered, its frame's row, its watermark set and
    deleted at the end, the frames logged asked for and when its camera was last dated and grouped (those
    asks take a refusal for an outage: a right missing would show only at DEBUG, and as frames spooled)."""
    from common.db_rights import INGEST_NODE_RIGHTS
    from tests.helpers import role_with_rights

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    cameras = one_image_camera(tmp_path)
    with role_with_rights(postgres_url, INGEST_NODE_RIGHTS) as (_, url), caplog.at_level(logging.DEBUG):
        assert main(["ingest", "--cameras", str(cameras), "--redis-url", redis_url, "--database-url", url]) == 0
    assert "permission denied" not in caplog.text and "Postgres away" not in caplog.text
    assert not spooled(tmp_path)
    assert table(postgres_url, "SELECT camera_id FROM cameras") == [("gate",)]
    assert table(postgres_url, "SELECT camera_id, outcome FROM frames") == [("gate", "pending")]
    assert table(postgres_url, "SELECT camera_id FROM camera_watermarks") == []  # the camera no longer sampled


def test_a_node_whose_role_lacks_a_right_stops_at_start_naming_it(postgres_url, redis_url, tmp_path, capsys):
    """It started, sampled and queued its frames, and its ledger failed every write (its records spooled
    for ever) or, for the watermark's deletion, at its end; the asks before sampling took the refusal for
    an outage. Now one line, as the workers say it, before anything is sampled."""
    from common.db_rights import INGEST_NODE_RIGHTS
    from tests.helpers import refused_at_start

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    cameras = one_image_camera(tmp_path)
    refused_at_start(
        postgres_url, capsys, "ingest node", INGEST_NODE_RIGHTS, ("camera_watermarks", "DELETE"),
        ["ingest", "--cameras", str(cameras), "--redis-url", redis_url],
    )  # fmt: skip
    assert stage_queue(connect_redis(redis_url), "detect").count == 0 and not spooled(tmp_path)  # nothing sampled


def test_a_node_whose_spool_folder_cannot_be_written_stops_at_start(
    postgres_url, redis_url, tmp_path, capsys, monkeypatch
):
    """ALPR_LEDGER_SPOOL_DIR naming a file: the node logged a WARNING, ran with its frame records in memory
    alone (a kill lost them all) and exited 0 (a review). Now exit 2 before anything is sampled."""
    a_file = tmp_path / "clip.mp4"
    a_file.write_bytes(b"frames")
    monkeypatch.setenv("ALPR_LEDGER_SPOOL_DIR", str(a_file))
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    capsys.readouterr()
    cameras = one_image_camera(tmp_path)
    assert main(["ingest", "--cameras", str(cameras), "--redis-url", redis_url, "--database-url", postgres_url]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "ALPR_LEDGER_SPOOL_DIR" in err and "cannot be written" in err
    assert stage_queue(connect_redis(redis_url), "detect").count == 0

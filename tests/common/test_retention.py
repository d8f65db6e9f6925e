"""`alpr db prune` on the real Postgres: reads, sightings and frame records captured before the
retention are deleted, camera by camera in batches; what a watch-list alert cites (its frame's reads and
record, its sighting), frames still pending, and the alerts and audit records within their own retentions
(tests/common/test_record_retention.py) stay; the pruner's role (`--grant-pruner`) prunes alike, the
workers' role may not prune; a dry run deletes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alpr.cli import main
from tests.helpers import pruner_role, wait_for, workers_role

NOW = datetime.now(UTC)
OLD, RECENT = NOW - timedelta(days=40), NOW - timedelta(days=2)


def add_frame(db: psycopg.Connection, camera: str, frame_id: str, at: datetime, outcome: str = "done") -> None:
    db.execute(
        "INSERT INTO frames (frame_id, camera_id, seq, frame_index, captured_at, plates, stage_ms, outcome)"
        " VALUES (%s, %s, 0, 0, %s, 1, '{}', %s)",
        (frame_id, camera, at, outcome),
    )
    db.execute(
        "INSERT INTO plate_reads (camera_id, frame_id, frame_index, source_time_s, captured_at, plate_index,"
        " plate_text, confidence, format_match, candidates, x1, y1, x2, y2, detection_confidence, stage_ms)"
        " VALUES (%s, %s, 0, 0, %s, 0, 'KPX4721', 0.9, true, '[]', 1, 1, 2, 2, 0.9, '{}')",
        (camera, frame_id, at),
    )
    db.execute(
        "INSERT INTO sightings (sighting_id, camera_id, plate, confidence, first_seen, last_seen, reads,"
        " best_frame_id, best_confidence, x1, y1, x2, y2, texts) VALUES (%s, %s, 'KPX4721', 0.9, %s, %s, 1,"
        " %s, 0.9, 1, 1, 2, 2, '[]')",
        (f"s-{frame_id}", camera, at, at, frame_id),
    )


def remaining(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as db:
        return {
            "frames": [r[0] for r in db.execute("SELECT frame_id FROM frames ORDER BY 1")],
            "plate_reads": [r[0] for r in db.execute("SELECT frame_id FROM plate_reads ORDER BY 1")],
            "sightings": [r[0] for r in db.execute("SELECT sighting_id FROM sightings ORDER BY 1")],
        }


def unmerged_count_changes(url: str) -> int:
    """Rows of per-minute count changes (migration 21) not merged into the counts yet."""
    with psycopg.connect(url) as db:
        row = db.execute("SELECT count(*) FROM frame_count_changes").fetchone()
    return int(row[0]) if row else 0


@pytest.fixture()
def logged(postgres_url: str) -> str:
    """Two cameras' frames, reads and sightings, 40 and 2 days old; an alert citing an old one."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    with psycopg.connect(postgres_url) as db:
        for camera in ("bridge", "gate"):
            for index in range(7):
                add_frame(db, camera, f"{camera}:old:{index}", OLD + timedelta(minutes=index))
            add_frame(db, camera, f"{camera}:recent", RECENT)
        add_frame(db, "gate", "gate:old:pending", OLD, outcome="pending")  # the chain's sweep decides
        # an early alert on one read: it names no sighting (raised before the pass closed), yet the
        # sighting spanning its capture is kept (the pass's sighting was deleted: a review)
        body = {"frame_id": "gate:old:3", "sighting_id": None, "plate": "KPX4721"}
        db.execute("INSERT INTO alerts (alert_id, kind, camera_id, captured_at, body) VALUES"
                   " ('a1', 'read', 'gate', %s, %s)", (OLD + timedelta(minutes=5), json.dumps(body)))  # fmt: skip
        db.execute("INSERT INTO plate_searches (searched_by, reason, plate, within, found)"
                   " VALUES ('x', 'case 1', 'KPX4721', 1, 0)")  # fmt: skip
        db.execute("INSERT INTO plate_exports (exported_by, reason, exported, csv_path)"
                   " VALUES ('x', 'case 1', 'reads', '/x.csv')")  # fmt: skip
    return postgres_url


def test_plate_data_past_its_retention_is_pruned_but_what_an_alert_cites(logged, capsys, monkeypatch):
    import common.retention

    monkeypatch.setattr(common.retention, "BATCH_ROWS", 2)  # seven old rows a camera: four batches each
    check_pruned(logged, logged, capsys)


def test_a_sighting_is_pruned_only_once_all_of_it_is_past_the_retention(logged, capsys):
    """A car parked in view since 40 days ago, its pass still going 2 days ago: one sighting, begun before
    the cutoff. It was deleted whole by its start, its newest part with it."""
    with psycopg.connect(logged) as db:
        db.execute(
            "INSERT INTO sightings (sighting_id, camera_id, plate, confidence, first_seen, last_seen, reads,"
            " best_frame_id, best_confidence, x1, y1, x2, y2, texts) VALUES ('s-parked', 'bridge', 'KPX4721',"
            " 0.9, %s, %s, 1, 'bridge:recent', 0.9, 1, 1, 2, 2, '[]')",
            (OLD, RECENT),
        )
    assert main(["db", "prune", "--older-than-days", "30", "--database-url", logged]) == 0
    assert "s-parked" in remaining(logged)["sightings"]
    assert "s-bridge:old:0" not in remaining(logged)["sightings"]


def test_only_the_sighting_and_read_an_alert_cites_are_kept_not_other_cars_beside_it(logged, capsys):
    """Every sighting at an alert's camera spanning its capture was kept for ever (the car in the next lane,
    one parked in view), and every read of its frame (the other cars' plates in it)."""
    at = OLD + timedelta(minutes=30)
    with psycopg.connect(logged) as db:
        for sighting_id, plate, first, last, texts in (
            ("s-listed", "STOLEN1", at, at + timedelta(seconds=4), [["STOLEN1", 3], ["ST0LEN1", 1]]),
            ("s-next-lane", "NEIGHB1", at - timedelta(seconds=2), at + timedelta(seconds=5), [["NEIGHB1", 4]]),
            ("s-parked", "PARKED1", OLD, OLD + timedelta(hours=2), [["PARKED1", 90]]),
            ("s-early", "EARLY12", at, at + timedelta(seconds=9), [["EARLY12", 5], ["EARLYI2", 1]]),
        ):  # fmt: skip
            db.execute(
                "INSERT INTO sightings (sighting_id, camera_id, plate, confidence, first_seen, last_seen, reads,"
                " best_frame_id, best_confidence, x1, y1, x2, y2, texts) VALUES (%s, 'bridge', %s, 0.9, %s, %s,"
                " 1, 'bridge:cited', 0.9, 1, 1, 2, 2, %s)",
                (sighting_id, plate, first, last, json.dumps(texts)),
            )
        for index, text in enumerate(("ST0LEN1", "NEIGHB1", "EARLYI2")):  # the cited frame's reads
            db.execute(
                "INSERT INTO plate_reads (camera_id, frame_id, frame_index, source_time_s, captured_at, plate_index,"
                " plate_text, confidence, format_match, candidates, x1, y1, x2, y2, detection_confidence, stage_ms)"
                " VALUES ('bridge', 'bridge:cited', 0, 0, %s, %s, %s, 0.9, true, '[]', 1, 1, 2, 2, 0.9, '{}')",
                (at, index, text),
            )
        for alert_id, kind, body in (
            ("a-sighting", "sighting", {"frame_id": "bridge:cited", "sighting_id": "s-listed", "plate": "STOLEN1"}),
            ("a-read", "read", {"frame_id": "bridge:cited", "sighting_id": None, "plate": "EARLYI2"}),
        ):  # an alert on the closed sighting, and an early one on a read of another pass (a look-alike)
            db.execute("INSERT INTO alerts (alert_id, kind, camera_id, captured_at, body) VALUES"
                       " (%s, %s, 'bridge', %s, %s)", (alert_id, kind, at, json.dumps(body)))  # fmt: skip
    assert main(["db", "prune", "--older-than-days", "30", "--database-url", logged]) == 0
    left = remaining(logged)
    assert {"s-listed", "s-early"} <= set(left["sightings"]) and not {"s-next-lane", "s-parked"} & set(
        left["sightings"]
    )
    with psycopg.connect(logged) as db:
        texts = db.execute("SELECT plate_text FROM plate_reads WHERE frame_id = 'bridge:cited' ORDER BY 1").fetchall()
    assert texts == [("EARLYI2",), ("ST0LEN1",)]


def test_the_pruners_role_prunes_alike(logged, capsys, monkeypatch):
    """What `alpr db upgrade --grant-pruner` grants is all a prune needs (the compose `prune` service's login)."""
    import common.retention

    monkeypatch.setattr(common.retention, "BATCH_ROWS", 2)
    with pruner_role(logged) as (_, as_pruner):
        capsys.readouterr()
        check_pruned(as_pruner, logged, capsys)


def check_pruned(prune_url: str, logged: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`alpr db prune` logged in at `prune_url` deletes the rows of `logged` past the retention, and
    keeps what an alert cites, the alerts and the audit records (searches, exports)."""
    before = remaining(logged)
    changes = unmerged_count_changes(logged)
    assert changes  # the frames' inserts', left for a merge (no redactor runs here)
    assert main(["db", "prune", "--dry-run", "--database-url", prune_url]) == 0
    assert "would delete" in capsys.readouterr().out and remaining(logged) == before
    assert unmerged_count_changes(logged) == changes  # a dry run changes nothing
    assert main(["db", "prune", "--database-url", prune_url]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("deleted what was captured before") and "(30 days), alerts captured before" in out
    assert out.endswith(
        "(730 days): 14 plate_reads, 14 sightings, 13 frames, 0 alerts, 0 plate_searches, 0 plate_exports"
    )
    assert unmerged_count_changes(logged) == 0  # merged by the prune: the per-minute counts are the frames'
    with psycopg.connect(logged) as db:
        counted = "SELECT camera_id, outcome, sum(frames) FROM frame_counts GROUP BY 1, 2 ORDER BY 1, 2"
        by_frame = "SELECT camera_id, outcome, count(*) FROM frames GROUP BY 1, 2 ORDER BY 1, 2"
        assert db.execute(counted).fetchall() == db.execute(by_frame).fetchall()
    assert remaining(logged) == {
        "frames": ["bridge:recent", "gate:old:3", "gate:old:pending", "gate:recent"],
        "plate_reads": ["bridge:recent", "gate:old:3", "gate:recent"],
        "sightings": ["s-bridge:recent", "s-gate:old:5", "s-gate:recent"],
    }  # a pending frame's record is the chain's to finish; its reads and sighting are plate data like any
    with psycopg.connect(logged) as db:
        assert db.execute("SELECT count(*) FROM plate_searches").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM plate_exports").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM alerts").fetchone() == (1,)
    assert main(["db", "prune", "--older-than-days", "1", "--database-url", prune_url]) == 0
    assert remaining(logged)["sightings"] == ["s-gate:old:5"]


def test_the_audit_records_are_pruned_by_their_own_retention_not_the_plate_datas():
    from common.audit import AUDIT_TABLES
    from common.audit_retention import AUDIT_TIMES
    from common.retention import PRUNED

    assert set(AUDIT_TABLES) == set(AUDIT_TIMES) == {"plate_searches", "plate_exports"}
    assert not set(AUDIT_TABLES) & set(PRUNED)


@pytest.mark.parametrize(("setting", "flag", "named"), [
    ("0", [], "ALPR_RETENTION_DAYS"),
    (None, ["--older-than-days", "0"], "--older-than-days"),
    ("30", ["--older-than-days", "0.0"], "--older-than-days"),  # the flag over the setting, as ever
])  # fmt: skip
def test_a_retention_of_zero_keeps_everything(setting, flag, named, logged, capsys, monkeypatch, tmp_path):
    """`--older-than-days 0` means what ALPR_RETENTION_DAYS=0 does, and says so by its own name (it was
    refused, "must be a number above 0", though the setting's own error offers 0), for either log."""
    if setting is not None:
        monkeypatch.setenv("ALPR_RETENTION_DAYS", setting)
    monkeypatch.setenv("ALPR_ALERT_RETENTION_DAYS", "0")  # the alerts' own (tests/common/test_record_retention.py)
    before = remaining(logged)
    kept = f"{named} is 0: plate data is kept without limit; nothing pruned\n"
    assert main(["db", "prune", *flag, "--database-url", logged]) == 0
    assert capsys.readouterr().out == kept and remaining(logged) == before
    assert main(["db", "prune", *flag, "--sqlite", str(tmp_path / "reads.sqlite")]) == 0
    assert capsys.readouterr().out == kept


def test_the_workers_role_may_not_prune(logged, capsys):
    """Nor try one: a dry run (how an operator checks a prune's login) said "would delete" and exit 0
    for the workers' role, which the prune itself then refused."""
    with workers_role(logged) as (_, as_role):
        before = remaining(logged)
        for dry_run in ([], ["--dry-run"]):
            assert main(["db", "prune", *dry_run, "--database-url", as_role]) == 2, dry_run
            captured = capsys.readouterr()
            assert "--grant-pruner" in captured.err and len(captured.err.strip().splitlines()) == 1, dry_run
            assert (
                "missing: DELETE alerts, DELETE frames, DELETE plate_exports, SELECT plate_exports, DELETE plate_reads,"
                " DELETE plate_searches, SELECT plate_searches, DELETE sightings)"
            ) in captured.err  # told at the start
            assert "would delete" not in captured.out
        assert remaining(logged) == before


@pytest.mark.parametrize("every_h", ["0", "-1", "nan", "1e9"])
def test_a_prune_interval_out_of_reach_is_refused(every_h, postgres_url, capsys):
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    assert main(["db", "prune", "--every-h", every_h, "--database-url", postgres_url]) == 2
    assert "--every-h" in capsys.readouterr().err


def test_a_prune_every_few_hours_stops_at_once_when_told(logged, tmp_path):
    """`alpr db prune --every-h` runs as a container's process 1, which a signal it has no handler for
    does not end: Docker waited out its grace and killed it. SIGTERM between rounds ends it (exit 0)."""
    import os
    import signal
    import time

    from tests.helpers import alpr_process

    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    log = tmp_path / "prune.log"
    process = alpr_process(env, ["db", "prune", "--every-h", "6", "--database-url", logged], log)
    try:
        wait_for(lambda: "deleted what was captured" in log.read_text(), 60, "the first round")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0 and time.monotonic() - started < 5
    finally:
        process.kill()
        process.wait(10)


def test_a_prune_started_under_nohup_outlives_the_sessions_hangup(logged, tmp_path):
    """SIGHUP was made a stop for the prune (a dropped ssh session between a batch's commit and its
    snapshots), over the ignoring `nohup` had set: `nohup alpr db prune --every-h 6 &` ended with the ssh
    session (a review). An ignored SIGHUP stays ignored, as `alpr run` and `alpr ingest` leave it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    log = tmp_path / "prune.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "alpr.cli", "db", "prune", "--every-h", "6", "--database-url", logged],
            env=env, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),  # as nohup starts it
        )  # fmt: skip
    try:
        wait_for(lambda: "deleted what was captured" in log.read_text(), 60, "the first round")
        process.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        assert process.poll() is None, log.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.wait(10)


@pytest.mark.parametrize("days", ["30", "0"])
def test_a_prune_every_few_hours_serves_when_its_last_round_ended_well(logged, tmp_path, days):
    """Compose's `prune` served no metrics: one crash-looping or stuck kept plate data past its retention
    unseen (a review). Served once it is ready, as every role's. With plate data kept without limit
    (ALPR_RETENTION_DAYS 0) it ended at once, and Compose restarted it for ever (a review): it stays up,
    each round pruning nothing and ending well."""
    import os
    import time
    import urllib.request

    from tests.helpers import alpr_process, free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    env.update(ALPR_METRICS_PORT=str(port), ALPR_METRICS_ADDRESS="127.0.0.1", ALPR_RETENTION_DAYS=days)
    if days == "0":  # nothing at all pruned: the alerts kept too (their own retention)
        env.update(ALPR_ALERT_RETENTION_DAYS="0")
    log = tmp_path / "prune.log"
    process = alpr_process(env, ["db", "prune", "--every-h", "6", "--database-url", logged], log)
    try:
        said = "deleted what was captured" if days != "0" else "kept without limit; nothing pruned"
        wait_for(lambda: said in log.read_text(), 60, "the first round")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        [succeeded] = [line for line in text.splitlines() if line.startswith("alpr_prune_last_success_timestamp")]
        assert abs(float(succeeded.split()[1]) - time.time()) < 60
        deleted = "14.0" if days != "0" else "0.0"
        assert f'alpr_pruned_rows_total{{table="sightings"}} {deleted}' in text
        assert process.poll() is None  # up until stopped
    finally:
        process.kill()
        process.wait(10)


@pytest.mark.parametrize("days", ["0.0001", "0.5"])
def test_a_retention_shorter_than_a_day_is_refused_before_anything_is_deleted(days, logged, capsys, monkeypatch):
    """A prune of the last minutes deleted reads the sighting pool had not grouped yet: no sighting, no
    alert for them (a review)."""
    before = remaining(logged)
    assert main(["db", "prune", "--older-than-days", days, "--database-url", logged]) == 2
    error = capsys.readouterr().err
    assert "--older-than-days: " in error and "must be 0 (kept) or at least 1 day" in error
    monkeypatch.setenv("ALPR_RETENTION_DAYS", days)
    assert main(["db", "prune", "--database-url", logged]) == 2
    assert "ALPR_RETENTION_DAYS: " in capsys.readouterr().err
    assert remaining(logged) == before


def test_alpr_runs_sqlite_log_is_pruned_with_its_snapshots_and_audit_records_kept(tmp_path, capsys, monkeypatch):
    """`alpr run`'s log was kept without limit whatever ALPR_RETENTION_DAYS said (only Postgres was pruned)."""
    import sqlite3
    import time

    from common.frame_store import frame_key
    from common.jobs import FrameRef
    from common.plate_log import SqlitePlateLog
    from common.sighting_log import SqliteSightingLog
    from common.types import PlateCandidate, PlateRead, Sighting

    monkeypatch.setenv("ALPR_DATABASE_URL", "postgresql://alpr@127.0.0.1:1/city")  # the flag names the log
    path = tmp_path / "reads.sqlite"
    reads, sightings, snapshots = SqlitePlateLog(path), SqliteSightingLog(path), []
    for index, age_days in enumerate((40, 31, 29, 1)):
        at_s = time.time() - age_days * 86400
        frame = FrameRef(frame_id=f"cam:1:{index}", camera_id="cam", seq=index, frame_index=index, captured_at_s=at_s,
                         source_time_s=0.0, key=frame_key(f"cam:1:{index}"), region="us")  # fmt: skip
        reads.record_many([(frame, [PlateRead((0, 0, 9, 3), 0.9, (PlateCandidate("KPX4721", 0.95, "us"),))])])
        snapshot = tmp_path / "sightings" / f"cam_{index}.jpg"
        snapshot.parent.mkdir(exist_ok=True)
        snapshot.write_bytes(b"\xff\xd8jpeg\xff\xd9")
        snapshots.append(snapshot)
        sighting = Sighting(
            sighting_id=f"cam:cam:1:{index}:0", camera_id="cam", plate="KPX4721", confidence=0.9, first_seen_s=at_s,
            last_seen_s=at_s + 3, reads=1, best_frame_id=frame.frame_id, best_box_xyxy=(0, 0, 9, 3),
            best_confidence=0.9, texts=(("KPX4721", 1),),
        )  # fmt: skip
        sightings.record_many([(sighting, str(snapshot))])
    reads.close()
    sightings.close()
    assert main(["search", "KPX4721", "--reason", "case 1", "--sqlite", str(path)]) == 0  # an audit record
    assert main(["db", "prune", "--dry-run", "--sqlite", str(path)]) == 0
    assert (
        capsys.readouterr()
        .out.strip()
        .endswith("(730 days): 2 plate_reads, 2 sightings, 0 plate_searches, 0 plate_exports")
    )
    assert all(snapshot.exists() for snapshot in snapshots)
    assert main(["db", "prune", "--sqlite", str(path)]) == 0
    with sqlite3.connect(path) as connection:
        assert [row[0] for row in connection.execute("SELECT frame_id FROM plate_reads ORDER BY 1")] == [
            "cam:1:2", "cam:1:3"]  # fmt: skip
        assert connection.execute("SELECT count(*) FROM sightings").fetchone() == (2,)
        assert connection.execute("SELECT count(*) FROM plate_searches").fetchone() == (1,)
    connection.close()
    assert [snapshot.exists() for snapshot in snapshots] == [False, False, True, True]


def sqlite_log_of_sightings(path, sightings):  # type: ignore[no-untyped-def]
    """An `alpr run` log at `path` holding `sightings`: (id, last seen as a datetime, snapshot path)."""
    from common.sighting_log import SqliteSightingLog
    from common.types import Sighting

    log = SqliteSightingLog(path)
    for sighting_id, last_seen, snapshot in sightings:
        at_s = last_seen.timestamp()
        sighting = Sighting(
            sighting_id=sighting_id, camera_id="cam", plate="KPX4721", confidence=0.9, first_seen_s=at_s,
            last_seen_s=at_s, reads=1, best_frame_id="cam:1:0", best_box_xyxy=(0, 0, 9, 3), best_confidence=0.9,
            texts=(("KPX4721", 1),),
        )  # fmt: skip
        log.record_many([(sighting, str(snapshot))])
    log.close()
    return path


def test_an_sqlite_log_deletes_only_its_own_snapshots_and_names_those_left(tmp_path, capsys, monkeypatch):
    """The log's text alone chose what a prune deleted: any .jpg it named, anywhere, through a link in a
    folder above it, whoever's it was (a review: root's prune of a log another user wrote deleted root's
    files). Now only a regular .jpg of this user's in a `sightings` folder goes, reached through no link
    but this user's or root's (as `alpr run --out` takes them: refused, the snapshots were left for good);
    the others are named and the prune exits 1, each file after a refused one deleted all the same."""
    import os

    monkeypatch.setenv("ALPR_DATABASE_URL", "postgresql://alpr@127.0.0.1:1/city")  # the flag names the log
    old = NOW - timedelta(days=40)
    (tmp_path / "victim").mkdir()
    evidence = tmp_path / "victim" / "evidence.jpg"  # a file of the user's, nothing to do with alpr
    real, theirs = tmp_path / "real" / "sightings", tmp_path / "theirs" / "sightings"
    own = tmp_path / "run" / "sightings"
    for folder in (real, theirs, own):
        folder.mkdir(parents=True)
    (tmp_path / "out").symlink_to(tmp_path / "real")  # this user's own link: `alpr run --out out` took it
    (tmp_path / "bobs").symlink_to(tmp_path / "theirs")
    root = os.geteuid() == 0
    if root:  # another user's link: it could point anywhere by the time of the prune
        os.chown(tmp_path / "bobs", 65534, 65534, follow_symlinks=False)
    for file in (evidence, real / "s2.jpg", own / "s3.jpg", theirs / "s4.jpg"):
        file.write_bytes(b"\xff\xd8jpeg\xff\xd9")
    log = sqlite_log_of_sightings(tmp_path / "reads.sqlite", [
        ("s1", old, evidence), ("s2", old, tmp_path / "out" / "sightings" / "s2.jpg"), ("s3", old, own / "s3.jpg"),
        ("s4", old, tmp_path / "bobs" / "sightings" / "s4.jpg"),
    ])  # fmt: skip
    assert main(["db", "prune", "--sqlite", str(log)]) == 1
    out, err = capsys.readouterr()
    assert out.strip().endswith("(730 days): 0 plate_reads, 4 sightings, 0 plate_searches, 0 plate_exports")
    assert f"{evidence} (not a snapshot of" in err and evidence.exists()
    assert not (real / "s2.jpg").exists() and not (own / "s3.jpg").exists()
    if root:
        assert f"s4.jpg (another user's link on its path ({tmp_path / 'bobs'}))" in err and (theirs / "s4.jpg").exists()
        os.chown(log, 65534, 65534)  # another user's log names what root's prune would delete: refused at once
        assert main(["db", "prune", "--sqlite", str(log)]) == 2
        assert "is another user's log (uid 65534)" in capsys.readouterr().err


def test_an_sqlite_log_is_pruned_to_the_cutoff_on_the_cutoffs_own_day(tmp_path):
    """Times are stored as ISO 8601 text (a T between date and time) and were compared with the cutoff in
    SQLite's form (a space there): a sighting six hours past the cutoff on the same day was kept."""
    from common.retention import prune_sqlite_log

    cutoff = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    log = sqlite_log_of_sightings(tmp_path / "reads.sqlite", [
        ("before", cutoff - timedelta(hours=6), ""), ("after", cutoff + timedelta(hours=6), ""),
    ])  # fmt: skip
    assert prune_sqlite_log(log, cutoff).rows["sightings"] == 1
    import sqlite3

    with sqlite3.connect(log) as connection:
        assert [row[0] for row in connection.execute("SELECT sighting_id FROM sightings")] == ["after"]
    connection.close()


def test_a_prune_stops_between_batches_when_told(logged, capsys, monkeypatch):
    """SIGINT and SIGTERM only ended a prune between `--every-h` rounds: one started by mistake on
    millions of rows went on to the end and exited 0 (a review). It now stops after the batch in hand,
    says how far it got, and exits 1; the next prune goes on from there."""
    import os
    import signal

    from common import retention

    monkeypatch.setattr(retention, "BATCH_ROWS", 1)
    probe = retention._probe_by_index
    batches = []

    def probe_then_signal(connection):  # type: ignore[no-untyped-def]
        batches.append(1)
        if len(batches) == 1:  # during the first batch: the operator's Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
        probe(connection)

    monkeypatch.setattr(retention, "_probe_by_index", probe_then_signal)
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert main(["db", "prune", "--database-url", logged]) == 1
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    assert "stopped by a signal; deleted so far what was captured before" in capsys.readouterr().out
    assert len(batches) == 1 and len(remaining(logged)["plate_reads"]) == 17 - 1  # one batch, then it stopped


def test_a_postgres_prune_deletes_the_snapshots_alpr_run_wrote_and_names_those_left(logged, tmp_path):
    """`alpr run` with a database URL logs its sightings in Postgres with the snapshots it wrote; `alpr db
    prune` deleted the rows and left the files on disk for good, no row naming them (a review: 3 files, 277
    KB), where `--sqlite` deleted them. A prune process, logged in as the pruner's role (Compose's `prune`),
    now deletes them under the same rules as `--sqlite`, and names on stderr, exiting 1, those it leaves:
    another file than a snapshot, and one whose folder is not on its host (written by `alpr run` elsewhere)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from common.db import open_pool
    from common.sighting_log import PostgresSightingLog
    from common.types import Sighting

    folder = tmp_path / "out" / "sightings"
    folder.mkdir(parents=True)
    notes = tmp_path / "notes.jpg"  # a file of the user's, no snapshot of alpr run's
    elsewhere = "/nonexistent-host-b/out/sightings/cam_9.jpg"
    snapshots = {"s-old-0": folder / "cam_0.jpg", "s-old-1": folder / "cam_1.jpg", "s-recent": folder / "cam_2.jpg"}
    for file in (*snapshots.values(), notes):
        file.write_bytes(b"\xff\xd8jpeg\xff\xd9")
    written = [*snapshots.items(), ("s-notes", notes), ("s-elsewhere", Path(elsewhere))]
    pool = open_pool(logged)
    try:
        log = PostgresSightingLog(pool)  # as `alpr run` logs them
        for sighting_id, snapshot in written:
            at_s = (RECENT if sighting_id == "s-recent" else OLD).timestamp()
            sighting = Sighting(
                sighting_id=sighting_id, camera_id="run", plate="KPX4721", confidence=0.9, first_seen_s=at_s,
                last_seen_s=at_s + 3, reads=1, best_frame_id="run:1:0", best_box_xyxy=(0, 0, 9, 3),
                best_confidence=0.9, texts=(("KPX4721", 1),),
            )  # fmt: skip
            assert log.record_many([(sighting, str(snapshot))]) == 1
    finally:
        pool.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    env["PYTHONPATH"] = str(Path(__file__).parents[2])
    with pruner_role(logged) as (_, as_pruner):
        prune = [sys.executable, "-m", "alpr.cli", "db", "prune", "--database-url", as_pruner]
        dry = subprocess.run([*prune, "--dry-run"], capture_output=True, text=True, env=env, timeout=60)
        assert dry.returncode == 0 and all(file.exists() for file in (*snapshots.values(), notes)), dry.stderr
        done = subprocess.run(prune, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stdout.strip().endswith(
        "(730 days): 14 plate_reads, 18 sightings, 13 frames, 0 alerts, 0 plate_searches, 0 plate_exports"
    )
    assert not snapshots["s-old-0"].exists() and not snapshots["s-old-1"].exists()
    assert snapshots["s-recent"].exists() and notes.exists()  # its sighting kept; not a snapshot
    left = [line for line in done.stderr.splitlines() if "snapshot left on disk" in line]
    assert len(left) == 2 and f"{notes} (not a snapshot of" in left[0] + left[1]
    assert f"{elsewhere} (its folder is not on this host" in left[0] + left[1]
    assert remaining(logged)["sightings"] == ["s-bridge:recent", "s-gate:old:5", "s-gate:recent", "s-recent"]

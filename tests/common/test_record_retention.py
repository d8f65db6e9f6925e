"""`alpr db prune` past the alerts' and the audit records' own retentions, on the real Postgres and `alpr
run`'s SQLite log: alerts captured before ALPR_ALERT_RETENTION_DAYS go with their deliveries (but one still
being delivered), and the evidence they cited then goes by the plate data's rules, the same round; the
records of plate searches and exports made before ALPR_AUDIT_RETENTION_DAYS go; 0 keeps either; an audit
retention shorter than the plate data's is refused; a dry run counts what the prune deletes, deleting none."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from alpr.cli import main
from tests.common.test_retention import add_frame, remaining
from tests.helpers import pruner_role

NOW = datetime.now(UTC)
YEAR_AND_MORE, MONTHS = NOW - timedelta(days=400), NOW - timedelta(days=100)

ALERTS = {  # alert id: (the frame it cites, when, its deliveries' status)
    "old-delivered": ("gate:a:0", YEAR_AND_MORE, ["delivered", "failed"]),
    "old-bare": ("gate:a:1", YEAR_AND_MORE, []),
    "old-pending": ("gate:a:2", YEAR_AND_MORE, ["delivered", "pending"]),
    "old-sending": ("gate:a:3", YEAR_AND_MORE, ["sending"]),
    "recent": ("gate:b:0", MONTHS, ["delivered"]),
}


@pytest.fixture()
def alerted(postgres_url: str) -> str:
    """A frame, its read and its sighting for each alert of ALERTS, which cites it, with its deliveries."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    with psycopg.connect(postgres_url) as db:
        for alert_id, (frame_id, at, statuses) in ALERTS.items():
            add_frame(db, "gate", frame_id, at)
            body = {"frame_id": frame_id, "sighting_id": f"s-{frame_id}", "plate": "KPX4721"}
            db.execute("INSERT INTO alerts (alert_id, kind, camera_id, captured_at, body) VALUES"
                       " (%s, 'sighting', 'gate', %s, %s)", (alert_id, at, json.dumps(body)))  # fmt: skip
            for index, status in enumerate(statuses):
                db.execute("INSERT INTO alert_deliveries (alert_id, receiver, status) VALUES (%s, %s, %s)",
                           (alert_id, f"receiver-{index}", status))  # fmt: skip
    return postgres_url


def alerts_left(url: str) -> tuple[list[str], list[str]]:
    """The alerts' ids, and their deliveries' alert ids, left."""
    with psycopg.connect(url) as db:
        alerts = [row[0] for row in db.execute("SELECT alert_id FROM alerts ORDER BY 1")]
        deliveries = [row[0] for row in db.execute("SELECT DISTINCT alert_id FROM alert_deliveries ORDER BY 1")]
    return alerts, deliveries


def counts(line: str) -> str:
    """A prune's output line past its cutoffs: the rows per table."""
    return line.strip().rsplit(": ", 1)[1]


def test_alerts_past_their_retention_go_with_their_deliveries_and_then_their_evidence(alerted, capsys, monkeypatch):
    """Alerts were kept for ever, and with them the frame, read and sighting each cites: a city's retention
    policy could not be met but by SQL by hand. One still being delivered stays, with its evidence."""
    import common.retention

    monkeypatch.setattr(common.retention, "BATCH_ROWS", 1)  # a batch an alert
    before = remaining(alerted), alerts_left(alerted)
    with pruner_role(alerted) as (_, as_pruner):
        capsys.readouterr()
        assert main(["db", "prune", "--dry-run", "--database-url", as_pruner]) == 0
        dry = capsys.readouterr().out
        assert (remaining(alerted), alerts_left(alerted)) == before  # counted, nothing deleted
        assert main(["db", "prune", "--database-url", as_pruner]) == 0
        out = capsys.readouterr().out
    assert "alerts captured before" in out and "(365 days)" in out
    assert counts(out) == "2 plate_reads, 2 sightings, 2 frames, 2 alerts, 0 plate_searches, 0 plate_exports"
    assert dry.startswith("would delete") and counts(dry) == counts(out)  # the evidence they free counted too
    assert alerts_left(alerted) == (["old-pending", "old-sending", "recent"], ["old-pending", "old-sending", "recent"])
    assert remaining(alerted) == {
        "frames": ["gate:a:2", "gate:a:3", "gate:b:0"],
        "plate_reads": ["gate:a:2", "gate:a:3", "gate:b:0"],
        "sightings": ["s-gate:a:2", "s-gate:a:3", "s-gate:b:0"],
    }


def test_an_alert_retention_of_zero_keeps_every_alert_and_its_evidence(alerted, capsys, monkeypatch):
    monkeypatch.setenv("ALPR_ALERT_RETENTION_DAYS", "0")
    before = remaining(alerted), alerts_left(alerted)
    assert main(["db", "prune", "--database-url", alerted]) == 0
    out = capsys.readouterr().out
    assert "kept without limit: alerts (ALPR_ALERT_RETENTION_DAYS is 0)" in out
    assert counts(out).startswith("0 plate_reads, 0 sightings, 0 frames, 0 alerts")
    assert (remaining(alerted), alerts_left(alerted)) == before


def test_plate_data_kept_without_limit_still_lets_alerts_go_past_theirs(alerted, capsys, monkeypatch):
    """Each retention its own records: ALPR_RETENTION_DAYS=0 keeps the reads, the alerts go past theirs where
    it is set, and the audit records are kept as long as the plate data searched is (without limit)."""
    monkeypatch.setenv("ALPR_RETENTION_DAYS", "0")
    monkeypatch.setenv("ALPR_ALERT_RETENTION_DAYS", "365")
    before = remaining(alerted)
    assert main(["db", "prune", "--database-url", alerted]) == 0
    out = capsys.readouterr().out
    assert "kept without limit: plate data (ALPR_RETENTION_DAYS is 0), audit records" in out
    assert counts(out) == "0 plate_reads, 0 sightings, 0 frames, 2 alerts, 0 plate_searches, 0 plate_exports"
    assert alerts_left(alerted)[0] == ["old-pending", "old-sending", "recent"] and remaining(alerted) == before


@pytest.mark.parametrize(("environ", "flag", "named"), [
    ({"ALPR_RETENTION_DAYS": "0"}, [], "ALPR_RETENTION_DAYS"),
    ({}, ["--older-than-days", "0"], "--older-than-days"),
])  # fmt: skip
def test_plate_data_kept_without_limit_keeps_the_alerts_too_where_their_retention_is_unset(
    environ, flag, named, alerted, capsys, monkeypatch
):
    """A deployment that kept everything (ALPR_RETENTION_DAYS=0) found its alerts, and the evidence they cite,
    deleted a year after their capture by an upgrade that added their retention (a review): unset, it follows
    the plate data's kept without limit; set, it applies (above)."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    before = remaining(alerted), alerts_left(alerted)
    assert main(["db", "prune", *flag, "--database-url", alerted]) == 0
    assert capsys.readouterr().out == f"{named} is 0: plate data is kept without limit; nothing pruned\n"
    assert (remaining(alerted), alerts_left(alerted)) == before


def add_audit_records(url: str, searched: list[datetime], exported: list[datetime]) -> None:
    """Records of searches and exports made at those times (Postgres dates them itself: its stamping
    triggers are set aside for the inserts, as the owner)."""
    with psycopg.connect(url) as db:
        db.execute("ALTER TABLE plate_searches DISABLE TRIGGER plate_searches_stamped")
        db.execute("ALTER TABLE plate_exports DISABLE TRIGGER plate_exports_stamped")
        for at in searched:
            db.execute("INSERT INTO plate_searches (searched_at, searched_by, reason, plate, within, found)"
                       " VALUES (%s, 'x', 'case 1', 'KPX4721', 1, 0)", (at,))  # fmt: skip
        for at in exported:
            db.execute("INSERT INTO plate_exports (exported_at, exported_by, reason, exported, csv_path)"
                       " VALUES (%s, 'x', 'case 1', 'reads', '/x.csv')", (at,))  # fmt: skip
        db.execute("ALTER TABLE plate_searches ENABLE TRIGGER plate_searches_stamped")
        db.execute("ALTER TABLE plate_exports ENABLE TRIGGER plate_exports_stamped")


def audit_left(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as db:
        searches = db.execute("SELECT count(*) FROM plate_searches").fetchone()
        exports = db.execute("SELECT count(*) FROM plate_exports").fetchone()
    assert searches is not None and exports is not None
    return int(searches[0]), int(exports[0])


def test_audit_records_past_their_retention_are_pruned_in_postgres(postgres_url, capsys, monkeypatch):
    """The records of searches and exports (the plate searched, who, why) were kept for ever, append-only:
    the owner could not delete them either. Past ALPR_AUDIT_RETENTION_DAYS (730) the pruner deletes them;
    younger ones stay, and none a day old or less is ever deleted, by anyone."""
    import common.audit_retention

    monkeypatch.setattr(common.audit_retention, "AUDIT_BATCH_ROWS", 2)
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    old, kept = NOW - timedelta(days=800), NOW - timedelta(days=700)
    add_audit_records(postgres_url, [old, old, old, kept, NOW], [old, NOW])
    with pruner_role(postgres_url) as (_, as_pruner):
        capsys.readouterr()
        assert main(["db", "prune", "--dry-run", "--database-url", as_pruner]) == 0
        dry = capsys.readouterr().out
        assert audit_left(postgres_url) == (5, 2)
        assert main(["db", "prune", "--database-url", as_pruner]) == 0
        out = capsys.readouterr().out
    assert "audit records made before" in out and "(730 days)" in out
    assert counts(out).endswith("3 plate_searches, 1 plate_exports") and counts(dry) == counts(out)
    assert audit_left(postgres_url) == (2, 1)
    owner = psycopg.connect(postgres_url)  # the owner alike: append-only but past its retention
    with owner, pytest.raises(psycopg.errors.RaiseException, match="730 days, set by `alpr db upgrade`"):
        owner.execute("DELETE FROM plate_searches WHERE searched_at > now() - interval '1 hour'")
    owner = psycopg.connect(postgres_url)
    with owner, pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        owner.execute("UPDATE plate_exports SET reason = 'other case'")
    monkeypatch.setenv("ALPR_AUDIT_RETENTION_DAYS", "0")  # kept without limit
    assert main(["db", "prune", "--older-than-days", "1", "--database-url", postgres_url]) == 0
    assert "kept without limit: audit records" in capsys.readouterr().out and audit_left(postgres_url) == (2, 1)


def sqlite_log_with_audit(path: Path, searched: list[datetime], exported: list[datetime]) -> None:
    """An `alpr run` log (its reads' table) whose audit tables, as `alpr search` and `alpr export` make them,
    hold records made at those times."""
    from common.export_record import SQLITE_SCHEMA as EXPORTS
    from common.plate_log import SqlitePlateLog
    from common.plate_search import SQLITE_SCHEMA as SEARCHES

    SqlitePlateLog(path).close()
    with sqlite3.connect(path) as connection:
        connection.executescript(SEARCHES + EXPORTS)
        for at in searched:
            connection.execute("INSERT INTO plate_searches (searched_at, searched_by, reason, plate, within, found)"
                               " VALUES (?, 'x', 'case 1', 'KPX4721', 1, 0)", (f"{at:%F %T}",))  # fmt: skip
        for at in exported:
            connection.execute("INSERT INTO plate_exports (exported_at, exported_by, reason, exported, csv_path)"
                               " VALUES (?, 'x', 'case 1', 'reads', '/x.csv')", (f"{at:%F %T}",))  # fmt: skip
    connection.close()


def test_audit_records_past_their_retention_are_pruned_in_alpr_runs_sqlite_log(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ALPR_DATABASE_URL", raising=False)
    path = tmp_path / "reads.sqlite"
    old, kept = NOW - timedelta(days=800), NOW - timedelta(days=729)
    sqlite_log_with_audit(path, [old, old, kept], [old, NOW])
    assert main(["db", "prune", "--dry-run", "--sqlite", str(path)]) == 0
    dry = capsys.readouterr().out
    assert main(["db", "prune", "--sqlite", str(path)]) == 0
    out = capsys.readouterr().out
    assert "audit records made before" in out and "(730 days)" in out
    assert counts(out) == "0 plate_reads, 0 sightings, 2 plate_searches, 1 plate_exports" and counts(dry) == counts(out)
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM plate_searches").fetchone() == (1,)
        assert connection.execute("SELECT count(*) FROM plate_exports").fetchone() == (1,)
        with pytest.raises(sqlite3.IntegrityError, match="never within a day"):  # append-only still
            connection.execute("DELETE FROM plate_exports")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            connection.execute("UPDATE plate_searches SET reason = 'other case'")
    connection.close()
    assert main(["db", "prune", "--sqlite", str(path)]) == 0  # again: nothing more, the trigger left as made
    assert counts(capsys.readouterr().out) == "0 plate_reads, 0 sightings, 0 plate_searches, 0 plate_exports"


@pytest.mark.parametrize(("environ", "flag", "named"), [
    ({"ALPR_AUDIT_RETENTION_DAYS": "20"}, [], "ALPR_AUDIT_RETENTION_DAYS (20 days) must be 0 (kept) or at least"
     " ALPR_RETENTION_DAYS (30 days)"),
    ({"ALPR_AUDIT_RETENTION_DAYS": "35"}, ["--older-than-days", "40"], "ALPR_AUDIT_RETENTION_DAYS (35 days) must"
     " be 0 (kept) or at least --older-than-days (40 days)"),
    ({"ALPR_RETENTION_DAYS": "1000", "ALPR_AUDIT_RETENTION_DAYS": "730"}, [], "ALPR_AUDIT_RETENTION_DAYS (730 days)"
     " must be 0 (kept) or at least ALPR_RETENTION_DAYS (1000 days)"),
])  # fmt: skip
def test_an_audit_retention_shorter_than_the_plate_datas_is_refused(
    environ, flag, named, postgres_url, tmp_path, capsys, monkeypatch
):
    """The audit is how misuse of a search is found: pruned before the data searched, a look-up could no
    longer be told from the data it found. Refused before anything is deleted, for either log."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    add_audit_records(postgres_url, [NOW - timedelta(days=800)], [])
    capsys.readouterr()
    assert main(["db", "prune", *flag, "--database-url", postgres_url]) == 2
    error = capsys.readouterr().err
    assert named in error and "must outlive the plate data searched" in error and len(error.splitlines()) == 1
    assert audit_left(postgres_url) == (1, 0)
    monkeypatch.delenv("ALPR_DATABASE_URL", raising=False)
    sqlite_log_with_audit(tmp_path / "reads.sqlite", [NOW - timedelta(days=800)], [])
    assert main(["db", "prune", *flag, "--sqlite", str(tmp_path / "reads.sqlite")]) == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize(("environ", "flag"), [
    ({"ALPR_RETENTION_DAYS": "1000"}, []),
    ({}, ["--older-than-days", "1000"]),
])  # fmt: skip
def test_an_unset_audit_retention_follows_a_plate_retention_longer_than_its_default(
    environ, flag, postgres_url, tmp_path, capsys, monkeypatch
):
    """A deployment keeping plate data 1000 days, ALPR_AUDIT_RETENTION_DAYS unset, had its prune refuse to
    start after the upgrade that added the audit's retention (730 by default): Compose's `prune` restarted for
    ever, the plate data kept past its retention (a review). Unset, the audit is kept as long as the plate data
    is, where that is longer; only a value set shorter is refused (above)."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    with psycopg.connect(postgres_url) as db:
        add_frame(db, "gate", "gate:old:0", NOW - timedelta(days=1100))
    add_audit_records(postgres_url, [NOW - timedelta(days=1100), NOW - timedelta(days=900)], [])
    capsys.readouterr()
    assert main(["db", "prune", *flag, "--database-url", postgres_url]) == 0
    out = capsys.readouterr().out
    assert "captured before" in out and "audit records made before" in out and out.count("(1000 days)") == 2
    assert counts(out) == "1 plate_reads, 1 sightings, 1 frames, 0 alerts, 1 plate_searches, 0 plate_exports"
    assert audit_left(postgres_url) == (1, 0)
    monkeypatch.delenv("ALPR_DATABASE_URL", raising=False)
    sqlite_log_with_audit(tmp_path / "reads.sqlite", [NOW - timedelta(days=1100), NOW - timedelta(days=900)], [])
    assert main(["db", "prune", *flag, "--sqlite", str(tmp_path / "reads.sqlite")]) == 0
    out = capsys.readouterr().out
    assert out.count("(1000 days)") == 2
    assert counts(out) == "0 plate_reads, 0 sightings, 1 plate_searches, 0 plate_exports"


@pytest.mark.parametrize("setting", ["ALPR_ALERT_RETENTION_DAYS", "ALPR_AUDIT_RETENTION_DAYS"])
def test_a_record_retention_shorter_than_a_day_is_refused(setting, postgres_url, capsys, monkeypatch):
    monkeypatch.setenv(setting, "0.5")
    assert main(["db", "prune", "--database-url", postgres_url]) == 2
    assert f"{setting}: must be 0 (kept) or at least 1 day" in capsys.readouterr().err

"""`alpr db` and `alpr replay` as the operator types them (alpr/arguments.py, alpr/admin_commands.py): each
action takes its own flags, and a flag that does not apply is refused rather than ignored."""

from __future__ import annotations

import psycopg
import pytest

from alpr.cli import main
from common.migrations import MIGRATION_LOCKS, MIGRATIONS

VERSIONS = [version for version, _ in MIGRATIONS]


@pytest.mark.parametrize(
    ("args", "refused"),
    [
        (["db", "upgrade", "--every-h", "6"], "--every-h"),
        (["db", "upgrade", "--older-than-days", "7"], "--older-than-days"),
        (["db", "upgrade", "--sqlite", "reads.sqlite"], "--sqlite"),
        (["db", "prune", "--grant", "alpr_app"], "--grant"),
        (["db", "prune", "--grant-pruner", "alpr_pruner"], "--grant-pruner"),
    ],
)
def test_a_flag_of_the_other_db_action_is_refused_not_ignored(args, refused, capsys):
    """`db upgrade` and `db prune` shared one set of flags: `alpr db upgrade --every-h 6 --older-than-days 7`
    upgraded and said nothing of them, `alpr db prune --grant ROLE` pruned and granted nothing."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and f"unrecognized arguments: {refused}" in err
    # told with the action's own usage and name (it was the top-level `usage: alpr [-h] [-v] {setup,…}`)
    assert err.startswith(f"usage: alpr db {args[1]} [-h]") and f"\nalpr db {args[1]}: error: unrecognized" in err


def test_a_prune_without_a_database_url_names_the_sqlite_flag_too(monkeypatch, capsys):
    """It named ALPR_DATABASE_URL alone, even with ALPR_SQLITE_PATH set: `alpr run`'s log is pruned with
    `--sqlite FILE`."""
    monkeypatch.delenv("ALPR_DATABASE_URL", raising=False)
    monkeypatch.setenv("ALPR_SQLITE_PATH", "reads.sqlite")
    assert main(["db", "prune"]) == 2
    assert capsys.readouterr().err == (
        "alpr: error: set ALPR_DATABASE_URL (or --database-url) to the Postgres to prune, or --sqlite FILE to"
        " prune `alpr run`'s SQLite log\n"
    )


def schema_tables(url: str) -> set[str]:
    with psycopg.connect(url) as db:
        return {row[0] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}


def test_a_dry_run_upgrade_lists_what_it_would_apply_and_applies_nothing(postgres_url, capsys):
    """`alpr db upgrade --dry-run` applied every migration (a review): an operator previewing a production
    upgrade (migrations lock tables, 15 scans four of them) ran it for real."""
    command = ["db", "upgrade", "--dry-run", "--database-url", postgres_url]
    assert main([*command, "--grant", "alpr_app"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"would apply migrations {VERSIONS}"
    assert out[-1] == "then --grant alpr_app: not granted in a dry run"
    assert schema_tables(postgres_url) == set()  # not even the migrations' record made
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    with psycopg.connect(postgres_url) as db:  # a schema three versions behind (the last to lock a table among them)
        recorded = len(db.execute("SELECT version FROM schema_migrations").fetchall())
        db.execute("DELETE FROM schema_migrations WHERE version > %s", (VERSIONS[-4],))
    capsys.readouterr()
    assert main(command) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"would apply migrations {VERSIONS[-3:]}"
    locking = [version for version in VERSIONS[-3:] if version in MIGRATION_LOCKS]  # each named with its locks
    assert locking and [line.split()[1] for line in out if " locks " in line] == [str(v) for v in locking]
    with psycopg.connect(postgres_url) as db:
        assert len(db.execute("SELECT version FROM schema_migrations").fetchall()) == recorded - 3  # nothing applied


def audit_row(url: str) -> tuple | None:
    with psycopg.connect(url) as db:
        return db.execute("SELECT days, set_at FROM audit_retention").fetchone()


def test_a_dry_run_upgrade_says_the_audit_retention_it_would_write_and_writes_none(postgres_url, monkeypatch, capsys):
    """It listed the migrations alone: what the upgrade would write to the owner-only audit retention (migration
    26), which lets the pruner delete the audit records past it, was learnt by running it (a review). It says the
    one the settings give and the one the database holds (or that it has none yet), and writes nothing."""
    for name in ("ALPR_RETENTION_DAYS", "ALPR_AUDIT_RETENTION_DAYS", "ALPR_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    command = ["db", "upgrade", "--dry-run", "--database-url", postgres_url]
    monkeypatch.setenv("ALPR_AUDIT_RETENTION_DAYS", "400")
    assert main([*command, "--grant", "alpr_app"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == (
        "audit retention: would write 400 days (deleted past 400 days, by no one sooner); the database has no"
        " audit_retention table yet (migration 26 makes it, at 0: kept without limit)"
    )
    assert schema_tables(postgres_url) == set()
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    written = audit_row(postgres_url)
    assert written is not None and written[0] == 400
    capsys.readouterr()
    monkeypatch.setenv("ALPR_AUDIT_RETENTION_DAYS", "0")  # kept without limit from now on
    assert main(command) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "audit retention: would write 0 (kept without limit); the database holds 400 days (deleted past 400 days,"
        " by no one sooner)"
    )
    monkeypatch.setenv("ALPR_AUDIT_RETENTION_DAYS", "400")
    assert main(command) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "audit retention: 400 days (deleted past 400 days, by no one sooner), as the database holds: nothing to write"
    )
    monkeypatch.setenv("ALPR_AUDIT_RETENTION_DAYS", "10")  # shorter than the plate data's 30: the upgrade refuses it
    assert main(command) == 0
    said = capsys.readouterr().out.splitlines()[-1]
    assert said.startswith("audit retention: the database's, 400 days (deleted past 400 days, by no one sooner), left")
    assert "ALPR_AUDIT_RETENTION_DAYS (10 days) must be 0 (kept) or at least ALPR_RETENTION_DAYS (30 days)" in said
    assert audit_row(postgres_url) == written  # nothing written, set_at included


def test_replay_says_which_stages_it_replays_unless_told(capsys):
    """Its help said "default: all"; alert deliveries are replayed only with `--stage alert` (README: failed
    alerts are sent again only when asked, within --max-age-h)."""
    with pytest.raises(SystemExit) as exited:
        main(["replay", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert exited.value.code == 0 and "default: all" not in said
    assert "default: detect, ocr and redact; alert deliveries only with --stage alert" in said


@pytest.mark.parametrize("stage", [[], ["--stage", "detect"]])
def test_an_alert_age_without_the_alert_stage_is_refused(stage, redis_url, capsys):
    """`alpr replay --stage detect --max-age-h 2` replayed every failed detect job, whatever its age."""
    assert main(["replay", *stage, "--max-age-h", "2", "--redis-url", redis_url]) == 2
    assert "--max-age-h: only alert deliveries are replayed by age" in capsys.readouterr().err

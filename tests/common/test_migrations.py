"""common/migrations.py on the real Postgres, each test in a schema of its own: each migration declares
the tables it locks against the chain, no login may date a row where no reader can follow (and rows so
dated before the upgrade are deleted), and the audit records' checks cannot be turned off by a login's
own operator."""

from __future__ import annotations

import re

import psycopg
import pytest

from alpr.cli import main
from common.db import open_pool
from common.migrations import MIGRATIONS
from common.schema_upgrade import upgrade


def test_each_migration_declares_the_tables_it_locks_against_the_chain(postgres_url):
    """MIGRATION_LOCKS names, for each migration, the tables there before it that it locks in a mode the
    chain's writes or reads wait for, and the strongest such mode: what Postgres records the migration's
    transaction holding. A table left out would be waited for only once the migration's work is done."""
    from common.migrations import LOCK_MODES, MIGRATION_LOCKS

    taken: dict[int, dict[str, str]] = {}
    with psycopg.connect(postgres_url) as db:
        schema = db.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        for version, statements in MIGRATIONS:
            there = "SELECT oid FROM pg_class WHERE relkind IN ('r', 'p') AND relnamespace = %s::regnamespace"
            before = {oid for (oid,) in db.execute(there, (schema,))}
            db.execute(statements.encode())
            locks: dict[str, str] = {}
            for oid, table, held in db.execute(
                "SELECT relation, relation::regclass::text, mode FROM pg_locks WHERE pid = pg_backend_pid()"
                " AND locktype = 'relation'"
            ):
                mode = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", held.removesuffix("Lock")).upper()
                if oid in before and mode in LOCK_MODES:
                    locks[table] = max(locks.get(table, mode), mode, key=LOCK_MODES.index)
            if locks:
                taken[version] = locks
            db.commit()
    assert taken == MIGRATION_LOCKS


@pytest.mark.parametrize("when", ["infinity", "-infinity", "10000-01-01 00:00+00", "1969-12-31 23:59+00"])
def test_no_login_may_date_a_row_where_no_reader_can_follow(postgres_url, when):
    """One sighting dated 'infinity' by the workers' login failed every export and wide search, and no
    prune reached it (an audit): the times are checked by Postgres as the jobs check them."""
    from tests.helpers import workers_role

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    with workers_role(postgres_url) as (_, as_workers), psycopg.connect(as_workers, autocommit=True) as worker:
        worker.execute(
            "INSERT INTO sightings (sighting_id, camera_id, plate, confidence, first_seen, last_seen, reads,"
            " best_frame_id, best_confidence, x1, y1, x2, y2, texts) VALUES ('s1', 'gate', 'KPX4721', 0.9,"
            " now(), now(), 1, 'gate:1:0', 0.9, 1, 1, 2, 2, '[]')"
        )
        for update in ("UPDATE sightings SET last_seen = %s", "UPDATE sightings SET first_seen = %s"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):  # a sighting is written once
                worker.execute(update, (when,))
        statements = (
            "INSERT INTO frames (frame_id, camera_id, seq, frame_index, captured_at, plates, stage_ms, outcome)"
            " VALUES ('gate:1:1', 'gate', 0, 0, %s, 0, '{}', 'done')",
            "INSERT INTO plate_reads (camera_id, frame_id, frame_index, source_time_s, captured_at, plate_index,"
            " plate_text, confidence, format_match, candidates, x1, y1, x2, y2, detection_confidence, stage_ms)"
            " VALUES ('gate', 'gate:1:0', 0, 0, %s, 0, 'KPX4721', 0.9, true, '[]', 1, 1, 2, 2, 0.9, '{}')",
            "INSERT INTO alerts (alert_id, kind, camera_id, captured_at, body) VALUES ('a1', 'read', 'gate', %s, '{}')",
        )
        for statement in statements:
            with pytest.raises(psycopg.errors.CheckViolation):
                worker.execute(statement, (when,))


def test_rows_dated_out_of_reach_before_the_upgrade_are_deleted_and_the_sweeps_go_on(postgres_url, monkeypatch):
    """Left in place under migration 15's NOT VALID check, a frame dated 'infinity' refused every update,
    and the redactor's sweep of lost frames (and the keep folder's after it) failed every round."""
    import common.schema_upgrade
    from common.frame_log import FrameLog

    monkeypatch.setattr(common.schema_upgrade, "MIGRATIONS", MIGRATIONS[:14])  # a database of the version before
    pool = open_pool(postgres_url)
    try:
        upgrade(pool)
        with pool.connection() as connection:
            for frame_id, at in (("gate:x:1", "infinity"), ("gate:r:2", "2026-01-01 00:00+00")):
                connection.execute(
                    "INSERT INTO frames (frame_id, camera_id, seq, frame_index, captured_at, plates, stage_ms, outcome)"
                    " VALUES (%s, 'gate', 0, 0, %s, 0, '{}', 'pending')", (frame_id, at),
                )  # fmt: skip
            connection.execute(
                "INSERT INTO sightings (sighting_id, camera_id, plate, confidence, first_seen, last_seen, reads,"
                " best_frame_id, best_confidence, x1, y1, x2, y2, texts) VALUES ('s1', 'gate', 'KPX4721', 0.9,"
                " now(), 'infinity', 1, 'gate:r:2', 0.9, 1, 1, 2, 2, '[]')"
            )
        monkeypatch.setattr(common.schema_upgrade, "MIGRATIONS", MIGRATIONS)
        assert upgrade(pool)[0] == 15
        FrameLog(pool, 0).sweep_lost(0)  # every pending frame: the bad one failed the whole sweep
        with pool.connection() as connection:
            assert connection.execute("SELECT frame_id, outcome FROM frames").fetchall() == [("gate:r:2", "lost")]
            assert connection.execute("SELECT count(*) FROM sightings").fetchone() == (0,)
    finally:
        pool.close()


def test_the_records_checks_cannot_be_turned_off_by_a_logins_own_operator(postgres_url):
    """Migration 17's checks called an SQL function whose body was parsed with the inserting session's
    search_path: a login that could create in some schema defined its own `!~`, and a reason with a
    line break and a terminal's escape was recorded for good (a review). The operators are the ones
    resolved when the checks were made."""
    from tests.helpers import workers_role

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    with workers_role(postgres_url) as (role, as_workers):
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA own_{role} AUTHORIZATION {role}")
        try:
            with psycopg.connect(as_workers, autocommit=True) as worker:
                worker.execute(f"CREATE FUNCTION own_{role}.always(text, text) RETURNS boolean LANGUAGE sql"
                               " IMMUTABLE AS 'SELECT true'")  # fmt: skip
                worker.execute(f"CREATE OPERATOR own_{role}.!~ (FUNCTION = own_{role}.always, LEFTARG = text,"
                               " RIGHTARG = text)")  # fmt: skip
                schema = worker.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
                worker.execute(f"SET search_path = own_{role}, {schema}, pg_catalog")
                with pytest.raises(psycopg.errors.CheckViolation):
                    worker.execute("INSERT INTO plate_searches (searched_by, reason, plate, within, found)"
                                   " VALUES ('x', E'case 1\\n\\x1b[2Jforged', 'KPX4721', 1, 0)")  # fmt: skip
        finally:
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA own_{role} CASCADE")


def test_the_migrations_are_read_from_their_files_in_order_and_a_gap_or_a_stray_name_is_refused(tmp_path):
    """The package's SQL files load as versions 1..N, each file's text as it is; a folder missing a version
    (a build that dropped a file) or holding a file not named NNNN.sql is refused at import, not upgraded
    past."""
    from common.migrations import LATEST_MIGRATION, load_migrations

    assert [version for version, _ in MIGRATIONS] == list(range(1, LATEST_MIGRATION + 1))
    assert "CREATE TABLE frames" in MIGRATIONS[0][1]
    (tmp_path / "0002.sql").write_text("SELECT 2;")
    (tmp_path / "0001.sql").write_text("SELECT 1;")
    (tmp_path / "notes.txt").write_text("not SQL: passed over")
    assert load_migrations(tmp_path, latest=2) == [(1, "SELECT 1;"), (2, "SELECT 2;")]
    with pytest.raises(ValueError, match="not 1 to 3"):
        load_migrations(tmp_path, latest=3)  # the newest file missing from the build: no gap shows it
    (tmp_path / "0004.sql").write_text("SELECT 4;")
    with pytest.raises(ValueError, match="not 1 to 4"):
        load_migrations(tmp_path, latest=4)
    (tmp_path / "0004.sql").unlink()
    for stray in ("3.sql", "0003.SQL"):
        (tmp_path / stray).write_text("SELECT 3;")
        with pytest.raises(ValueError, match="named NNNN.sql"):
            load_migrations(tmp_path, latest=2)
        (tmp_path / stray).unlink()

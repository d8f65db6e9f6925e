"""common/grants.py on the real Postgres, each test in a schema of its own: the role `alpr db upgrade
--grant` names reads and adds rows but cannot change the schema nor erase the logs, updates only what the
chain updates, is granted in a schema whose name needs quoting, and is refused while it may create in the
schema or rewrite the logs through a membership; grants run at once take turns, each waiting for its turn
whatever timeouts the database sets; a release rolled back grants nothing on a newer schema; the workers'
role that runs `alpr db upgrade` on a schema behind is told to run it as the owner."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from alpr.cli import main
from common.db import open_pool
from common.frame_log import FrameLog, FrameRecord
from common.jobs import FrameRef
from common.migrations import MIGRATIONS
from common.schema_upgrade import ADVISORY_LOCK_ID
from tests.common.test_schema_upgrade import tables
from tests.conftest import unavailable
from tests.helpers import workers_role


def test_a_granted_role_reads_and_writes_rows_but_cannot_change_the_schema(postgres_url, capsys, tmp_path):
    import uuid

    from common.plate_log import PostgresPlateLog, open_plate_log
    from tests.common.test_plate_log import check_log

    role = f"alpr_app_{uuid.uuid4().hex[:8]}"
    assert main(["db", "upgrade", "--database-url", postgres_url, "--grant", role]) == 2  # no such role yet
    error = capsys.readouterr().err  # how to make it, with no password on a command line (`ps` shows them)
    assert f"no Postgres role {role}: create it first (CREATE ROLE {role} LOGIN)" in error
    assert f"psql's \\password {role}" in error and "PASSWORD" not in error
    assert main(["db", "upgrade", "--database-url", postgres_url, "--grant", "Robert'); DROP"]) == 2
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
    try:
        assert main(["db", "upgrade", "--database-url", postgres_url, "--grant", role]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == f"role {role} may read and write the tables"
        parts = urlsplit(postgres_url)
        as_role = urlunsplit(parts._replace(netloc=parts.netloc.replace("postgres@", f"{role}@")))
        plate_log = PostgresPlateLog(open_pool(as_role), owns_pool=True)  # what a worker opens
        try:
            check_log(plate_log, tmp_path)  # writes (sequences too) and reads
        finally:
            plate_log.close()
        assert main(["export", "--csv", str(tmp_path / "x.csv"), "--reason", "case 1", "--database-url", as_role]) == 0
        with psycopg.connect(as_role) as worker, pytest.raises(psycopg.errors.InsufficientPrivilege):
            worker.execute("DROP TABLE plate_reads")  # a worker broken into cannot change the schema
        with psycopg.connect(as_role) as worker, pytest.raises(psycopg.errors.InsufficientPrivilege):
            worker.execute("SELECT setval('plate_reads_id_seq', 1)")  # nor rewind an id: every insert failed
        erasing_statements = (
            "DELETE FROM plate_reads",
            "DELETE FROM alerts",
            "TRUNCATE frames",
            "DELETE FROM schema_migrations",
            "INSERT INTO schema_migrations VALUES (999)",
        )
        for erasing in erasing_statements:
            with psycopg.connect(as_role) as worker, pytest.raises(psycopg.errors.InsufficientPrivilege):
                worker.execute(erasing)  # nor erase the logs, nor make the next upgrade fail or skip one
        open_plate_log(as_role, tmp_path / "unused.sqlite").close()  # `alpr run` on a current schema, as it
        with psycopg.connect(as_role, autocommit=True) as worker:  # the watch-list count's function runs as
            worker.execute("CREATE TEMP TABLE watchlist_version (one BOOLEAN, version BIGINT)")  # the owner:
            worker.execute("INSERT INTO pg_temp.watchlist_version VALUES (true, 1)")  # a planted temporary
            worker.execute(  # table and trigger ran SQL as the owner (a superuser in Compose)
                "CREATE FUNCTION pg_temp.planted() RETURNS trigger LANGUAGE plpgsql AS"
                " $$BEGIN EXECUTE 'CREATE TABLE taken_over AS SELECT current_user AS who'; RETURN NULL; END$$"
            )
            worker.execute("CREATE TRIGGER planted AFTER UPDATE ON pg_temp.watchlist_version"
                           " FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.planted()")  # fmt: skip
            worker.execute("INSERT INTO watchlist (plate, reason) VALUES ('ABC123', 'x')")
        assert "taken_over" not in tables(postgres_url)
        with psycopg.connect(postgres_url) as admin:
            assert admin.execute("SELECT version FROM watchlist_version").fetchone() == (2,)  # the real count
        with psycopg.connect(as_role) as worker:  # what the chain does delete
            worker.execute("DELETE FROM watchlist WHERE plate = 'NONE'")
            worker.execute("DELETE FROM camera_watermarks WHERE camera_id = 'none'")
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def test_the_grant_works_in_a_schema_whose_name_needs_quoting(postgres_url):
    """The change record's sequence was looked up by an unquoted name: a schema named "Alpr" failed every
    `upgrade --grant` (a review)."""
    import uuid

    from tests.helpers import workers_role

    schema = f"Alpr_{uuid.uuid4().hex[:6]}"
    base = postgres_url.split("?")[0]
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        quoted = f"{base}?options=-csearch_path%3D%22{schema}%22"
        with workers_role(quoted) as (_, as_workers), psycopg.connect(as_workers) as worker:
            assert worker.execute("SELECT count(*) FROM watchlist").fetchone() == (0,)  # granted
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_the_workers_login_updates_only_what_the_chain_updates(postgres_url):
    """A review: it could update every column of every table; it back-dated the plate log's reads and a
    frame's capture time and rewrote an alert's body, and the next prune deleted the evidence the logs
    "cannot be erased" by it was to keep. It adds rows, and updates only a frame's outcome and the
    tables the chain keeps state in (the whole chain runs as it: tests/distributed/test_chain.py)."""
    from tests.helpers import workers_role

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("INSERT INTO frames (frame_id, camera_id, seq, frame_index, captured_at, plates, stage_ms,"
                      " outcome) VALUES ('gate:1:0', 'gate', 0, 0, now(), 1, '{}', 'pending')")  # fmt: skip
        admin.execute("INSERT INTO plate_reads (camera_id, frame_id, frame_index, source_time_s, captured_at,"
                      " plate_index, plate_text, confidence, format_match, candidates, x1, y1, x2, y2,"
                      " detection_confidence, stage_ms) VALUES ('gate', 'gate:1:0', 0, 0, now(), 0, 'KPX4721', 0.9,"
                      " true, '[]', 1, 1, 2, 2, 0.9, '{}')")  # fmt: skip
        admin.execute("INSERT INTO alerts (alert_id, kind, camera_id, captured_at, body) VALUES ('a1', 'read',"
                      " 'gate', now(), '{\"frame_id\": \"gate:1:0\"}')")  # fmt: skip
    with workers_role(postgres_url) as (_, as_workers), psycopg.connect(as_workers, autocommit=True) as worker:
        for refused in (
            "UPDATE plate_reads SET captured_at = '1970-01-02', plate_text = 'AAA0000'",
            "UPDATE frames SET captured_at = '1970-01-02'",
            "UPDATE frames SET camera_id = 'other'",
            'UPDATE alerts SET body = body || \'{"frame_id": "x:y:1"}\'',
            "UPDATE sightings SET plate = 'AAA0000'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                worker.execute(refused)
        worker.execute("UPDATE frames SET outcome = 'done', detail = NULL, done_at = now() WHERE frame_id = 'gate:1:0'")
        worker.execute("INSERT INTO camera_watermarks (camera_id, recorded_until_s) VALUES ('gate', 1) ON CONFLICT"
                       " (camera_id) DO UPDATE SET recorded_until_s = excluded.recorded_until_s")  # fmt: skip


def test_the_grant_is_refused_while_the_workers_login_may_create_in_the_schema(postgres_url, capsys):
    """A review: PostgreSQL 14 and before let every role create in `public` (kept by pg_upgrade); the
    workers' login planted an `&&` on text arrays there, which Postgres prefers to pg_catalog's, and an
    owner's `alpr search` ran it as a superuser. The grant takes CREATE from the role, and refuses while
    it has it still through PUBLIC."""
    import uuid

    role = f"alpr_app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        schema = admin.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT CREATE ON SCHEMA {schema} TO {role}, PUBLIC")
    try:
        assert main(["db", "upgrade", "--database-url", postgres_url, "--grant", role]) == 2
        assert f"may still create in schema {schema}" in capsys.readouterr().err
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC")
        assert main(["db", "upgrade", "--database-url", postgres_url, "--grant", role]) == 0
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            assert admin.execute("SELECT has_schema_privilege(%s, %s, 'CREATE')", (role, schema)).fetchone() == (
                False,)  # fmt: skip
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def test_grants_run_at_once_are_taken_one_at_a_time(postgres_url):
    """A review: four `alpr db upgrade --grant` at once failed now and then with "tuple concurrently
    updated" (Compose's every service waits on `migrate`): the grants take the upgrade's lock."""
    import subprocess
    import sys
    import uuid

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    roles = [f"alpr_app_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        for role in roles:
            admin.execute(f"CREATE ROLE {role} LOGIN")
    try:
        for _ in range(3):
            runs = [subprocess.Popen([sys.executable, "-m", "alpr.cli", "db", "upgrade", "--database-url", postgres_url,
                                      "--grant", roles[0], "--grant-pruner", roles[1]], stderr=subprocess.PIPE)
                    for _ in range(4)]  # fmt: skip
            errors = [run.communicate(timeout=120)[1].decode() for run in runs]
            assert [run.returncode for run in runs] == [0] * 4, errors
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            for role in roles:
                admin.execute(f"DROP OWNED BY {role}")
                admin.execute(f"DROP ROLE {role}")


def test_the_grant_is_refused_while_the_workers_login_may_rewrite_the_logs_through_a_membership(postgres_url, capsys):
    """A review: a member of a role that may update and delete the logs (an earlier set-up's, or
    pg_write_all_data) was granted as if it were narrowed, and back-dated and deleted the plate log."""
    import uuid

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    role, writer = (f"alpr_app_{uuid.uuid4().hex[:8]}", f"writer_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        schema = admin.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"CREATE ROLE {writer}")
        admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {writer}")
        admin.execute(f"GRANT UPDATE, DELETE ON {schema}.plate_reads TO {writer}")
        admin.execute(f"GRANT {writer} TO {role}")
    try:
        assert main(["db", "upgrade", "--database-url", postgres_url, "--grant", role]) == 2
        error = capsys.readouterr().err
        assert f"DELETE plate_reads as {writer}" in error and f"UPDATE plate_reads as {writer}" in error
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"REVOKE {writer} FROM {role}")
        assert main(["db", "upgrade", "--database-url", postgres_url, "--grant", role]) == 0
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            for name in (role, writer):
                admin.execute(f"DROP OWNED BY {name}")
                admin.execute(f"DROP ROLE {name}")


@contextmanager
def bare_role(postgres_url: str) -> Iterator[str]:
    """A new login role given nothing yet; dropped afterwards."""
    role = f"alpr_app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
    try:
        yield role
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def hold_the_upgrade_lock(postgres_url: str, seconds: float, held: threading.Event) -> None:
    """Another `alpr db upgrade` mid-migration (or a grant): the advisory lock held for `seconds`."""
    with psycopg.connect(postgres_url) as other, other.transaction():
        other.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_ID,))
        held.set()
        time.sleep(seconds)


@pytest.mark.parametrize("timeout", ["lock_timeout", "statement_timeout"])
def test_a_grant_waits_its_turn_whatever_timeouts_the_database_sets(timeout, postgres_url, capsys):
    """`ALTER DATABASE alpr SET lock_timeout = '200ms'` (managed Postgres often has one; here the URL's options,
    a session default as the database's is): a grant behind another process's upgrade failed after 200 ms with a
    bare LockNotAvailable (a review); a statement_timeout cut it alike (QueryCanceled). It waits its turn."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    url = postgres_url + f"%20-c{timeout}%3D200ms"
    held = threading.Event()
    holder = threading.Thread(target=hold_the_upgrade_lock, args=(postgres_url, 1.5, held))
    with bare_role(postgres_url) as role:
        holder.start()
        try:
            assert held.wait(10)
            capsys.readouterr()
            assert main(["db", "upgrade", "--database-url", url, "--grant", role]) == 0, capsys.readouterr().err
        finally:
            holder.join()
        assert capsys.readouterr().out.splitlines()[-1] == f"role {role} may read and write the tables"


def test_a_release_rolled_back_grants_nothing_on_the_newer_releases_tables(postgres_url, capsys):
    """A release rolled back runs Compose's `migrate` (`db upgrade --grant`) at every `up` on the schema a newer
    one migrated: its grant of ALL TABLES gave the workers' role SELECT and INSERT on the newer release's
    tables, owner-only records among them (a review: a million fake frames counted in). It grants nothing
    there, and says so: the newer release's grants stand."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    newer = MIGRATIONS[-1][0] + 1
    with bare_role(postgres_url) as role:
        with psycopg.connect(postgres_url, autocommit=True) as admin:  # the newer release's migration
            admin.execute("CREATE TABLE newer_owner_only_record (id BIGSERIAL PRIMARY KEY, who TEXT)")
            admin.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (newer,))
        capsys.readouterr()
        assert main(["db", "upgrade", "--database-url", postgres_url, "--grant", role]) == 0  # Compose's `up`
        out = capsys.readouterr().out
        assert f"role {role} not granted" in out and "the newer release's grants stand" in out
        assert "may read and write" not in out
        with psycopg.connect(postgres_url) as admin:
            row = admin.execute(
                "SELECT has_table_privilege(%s, 'newer_owner_only_record', 'SELECT'),"
                " has_table_privilege(%s, 'newer_owner_only_record', 'INSERT'),"
                " has_sequence_privilege(%s, 'newer_owner_only_record_id_seq', 'USAGE')",
                (role, role, role),
            ).fetchone()
        assert row == (False, False, False)  # was (True, True, True)


def test_the_workers_role_upgrading_a_schema_behind_is_told_to_run_it_as_the_owner(postgres_url, capsys):
    """It was told to "log in as the workers' role ... or the schema's owner": it is the workers' role (a
    review). Only the owner may migrate, and is named."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    with workers_role(postgres_url) as (role, as_workers):
        with psycopg.connect(postgres_url) as admin:  # behind: the last migration not applied
            admin.execute("DELETE FROM schema_migrations WHERE version = %s", (MIGRATIONS[-1][0],))
        capsys.readouterr()
        assert main(["db", "upgrade", "--database-url", as_workers]) == 2
        error = capsys.readouterr().err
    assert error.startswith(f"alpr: error: alpr db upgrade: Postgres role {role} may not migrate the schema ("), error
    assert "nothing was applied: run `alpr db upgrade` as the schema's owner (postgres)" in error
    assert "log in as the workers' role" not in error


RELEASE_BEFORE = "5d9e77f"
"""The release before migration 23 (frames.frame_ref): its grant_to gives UPDATE on its own list of the frames'
columns, after revoking UPDATE on every one."""


def release_before_tree(tmp_path: Path) -> Path:
    """RELEASE_BEFORE's common/ (its grant_to, as it ran), taken from this checkout's git history."""
    root = Path(__file__).resolve().parents[2]
    archive = subprocess.run(["git", "-C", str(root), "archive", RELEASE_BEFORE, "common"], capture_output=True)
    if archive.returncode != 0:
        unavailable(f"no git history holding {RELEASE_BEFORE}: {archive.stderr.decode(errors='replace')[:200]}")
    tree = tmp_path / RELEASE_BEFORE
    tree.mkdir()
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def test_a_rollbacks_grant_leaves_this_releases_redactors_their_final_records_and_sweep(postgres_url, tmp_path):
    """A rollback: the release before's Compose `migrate` (`alpr db upgrade --grant`) runs while this release's
    redactors still run (Compose recreates them after). Its grant revoked UPDATE on every column of frames and
    gave back its own list, without frame_ref, which this release's final record and sweep set NULL: both were
    refused (permission denied for table frames, a review) until the redactors were replaced. They name it no
    more; Postgres drops an ended frame's reference (migration 24's trigger), for a frame ended by either
    release."""
    tree = release_before_tree(tmp_path)
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    ref = FrameRef(frame_id="gate:1:0", camera_id="gate", seq=0, frame_index=0, captured_at_s=1.7e9,
                   source_time_s=0.0, key="alpr:frame:gate:1:0", region="us")  # fmt: skip
    with workers_role(postgres_url) as (role, as_workers):
        rolled_back = "import sys; from common.db import open_pool; from common.grants import grant_to; grant_to(open_pool(sys.argv[1]), sys.argv[2])"  # noqa: E501
        subprocess.run([sys.executable, "-c", rolled_back, postgres_url, role], cwd=tree, check=True,
                       env={**os.environ, "PYTHONPATH": str(tree)})  # fmt: skip
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            assert admin.execute(  # the release before's grant ran
                "SELECT has_column_privilege(%s, 'frames', 'outcome', 'UPDATE'),"
                " has_column_privilege(%s, 'frames', 'frame_ref', 'UPDATE')", (role, role)
            ).fetchone() == (True, False)  # fmt: skip
        pool = open_pool(as_workers, max_size=1)
        try:
            log = FrameLog(pool, 0)
            swept = ref.model_copy(update={"frame_id": "gate:1:1", "seq": 1, "frame_index": 1,
                                           "key": "alpr:frame:gate:1:1"})  # fmt: skip
            log.record_sampled([FrameRecord(ref, "pending"), FrameRecord(swept, "pending")])
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("UPDATE frames SET done_at = now() - interval '1 day' WHERE frame_id = 'gate:1:1'")
            log.record_final([FrameRecord(ref, "done")])  # was DatabaseWriteError: InsufficientPrivilege
            assert log.sweep_lost(60) == (1, 0)  # was DatabaseWriteError: InsufficientPrivilege
        finally:
            pool.close()
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT frame_id, outcome, frame_ref FROM frames ORDER BY frame_id").fetchall()
    assert rows == [("gate:1:0", "done", None), ("gate:1:1", "lost", None)]

"""The pruner's role on the real Postgres (`alpr db upgrade --grant-pruner`): it may read what a prune
reads and delete the reads, sightings and frame records, and nothing else — no row added or changed
anywhere, no other table's rows deleted, no table emptied, no schema changed, the searches' and
exports' records unread (nor an export recorded, so none made); granting again changes nothing and
takes back what it was given before; a role that would still may more (a superuser, a member of a
writing role, the workers' role) is refused, nothing changed; a prune by a role not granted fails in
one line at its start, as does one whose role may not merge the frame counts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alpr.cli import main
from common.db_rights import rights_in_schema
from tests.helpers import as_role, pruner_role, workers_role

PRUNER_RIGHTS = {
    ("schema_migrations", "SELECT"),
    ("alerts", "SELECT"),
    ("plate_reads", "SELECT"),
    ("plate_reads", "DELETE"),
    ("sightings", "SELECT"),
    ("sightings", "DELETE"),
    ("frames", "SELECT"),
    ("frames", "DELETE"),
    ("alerts", "DELETE"),  # past ALPR_ALERT_RETENTION_DAYS: their deliveries go by the cascade, the owner's
    ("alert_deliveries", "SELECT"),  # of its alert and status alone: a delivery pending or being sent keeps it
    ("plate_searches", "SELECT"),  # of the ids and times alone (below)
    ("plate_searches", "DELETE"),  # past ALPR_AUDIT_RETENTION_DAYS
    ("plate_exports", "SELECT"),
    ("plate_exports", "DELETE"),
    ("audit_retention", "SELECT"),  # the database's audit retention, the owner's to set: each delete is held to it
}
"""All a pruner may do, written out here rather than taken from the code under test."""

REFUSED = (
    "INSERT INTO plate_reads (camera_id, frame_id, frame_index, source_time_s, captured_at, plate_index,"
    " plate_text, confidence, format_match, candidates, x1, y1, x2, y2, detection_confidence, stage_ms)"
    " VALUES ('c', 'f', 0, 0, now(), 0, 'X', 0.9, true, '[]', 1, 1, 2, 2, 0.9, '{}')",
    "INSERT INTO sightings (sighting_id, camera_id, plate, confidence, first_seen, last_seen, reads,"
    " best_frame_id, best_confidence, x1, y1, x2, y2, texts) VALUES"
    " ('s', 'c', 'X', 0.9, now(), now(), 1, 'f', 0.9, 1, 1, 2, 2, '[]')",
    "INSERT INTO frames (frame_id, camera_id, seq, frame_index, captured_at, plates, stage_ms, outcome)"
    " VALUES ('f', 'c', 0, 0, now(), 1, '{}', 'done')",
    "UPDATE plate_reads SET plate_text = 'X'",
    "UPDATE sightings SET plate = 'X'",
    "UPDATE frames SET outcome = 'done'",
    "INSERT INTO alerts (alert_id, kind, camera_id, captured_at, body) VALUES ('a', 'read', 'c', now(), '{}')",
    "UPDATE alerts SET body = '{}'",
    "DELETE FROM alert_deliveries",
    "UPDATE alert_deliveries SET status = 'failed'",
    "SELECT * FROM alert_deliveries",  # its alert and status alone: not whom a hit was sent to, or their answer
    "SELECT receiver FROM alert_deliveries",
    "SELECT last_error FROM alert_deliveries",
    "SELECT * FROM plate_searches",  # who looked for which plate: the owner's to audit
    "SELECT plate, searched_by, reason FROM plate_searches",
    "SELECT * FROM plate_exports",  # who took the log away: the owner's to audit too
    "SELECT exported_by, reason, csv_path FROM plate_exports",
    "UPDATE plate_searches SET reason = 'x'",
    "INSERT INTO plate_exports (exported_by, reason, exported, csv_path) VALUES ('x', 'case 1', 'reads', '/x.csv')",
    "DELETE FROM watchlist",
    "DELETE FROM camera_watermarks",
    "DELETE FROM schema_migrations",
    "INSERT INTO schema_migrations VALUES (999)",
    "TRUNCATE frames",
    "SELECT setval('plate_reads_id_seq', 1)",
    "CREATE TABLE planted (one INTEGER)",
    "DROP TABLE frames",
    "ALTER TABLE frames ADD COLUMN planted INTEGER",
)


def rights(url: str, role: str) -> set[tuple[str, str]]:
    """What `role` may do in the schema of `url`, as Postgres reckons it."""
    with psycopg.connect(url) as db:
        row = db.execute("SELECT current_schema()").fetchone()
        assert row is not None
        return rights_in_schema(db, role, row[0])


@pytest.fixture()
def bare_role(postgres_url: str) -> Iterator[str]:
    """A login role that is given nothing; dropped afterwards."""
    role = f"alpr_pruner_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
    try:
        yield role
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def test_the_pruner_may_read_and_delete_plate_data_and_nothing_else(postgres_url: str) -> None:
    with pruner_role(postgres_url) as (role, as_pruner):
        assert rights(postgres_url, role) == PRUNER_RIGHTS
        for statement in REFUSED:
            with psycopg.connect(as_pruner) as pruner, pytest.raises(psycopg.errors.InsufficientPrivilege):
                pruner.execute(statement)
        with psycopg.connect(as_pruner) as pruner:  # what a prune does
            pruner.execute("SELECT count(*) FROM alerts")
            for table in ("plate_reads", "sightings", "frames", "alerts"):
                pruner.execute(f"DELETE FROM {table} WHERE camera_id = 'none'")
            pruner.execute("SELECT alert_id, status FROM alert_deliveries WHERE status = 'pending'")
            pruner.execute(
                "DELETE FROM plate_searches WHERE id IN (SELECT id FROM plate_searches WHERE searched_at < now())"
            )
            pruner.execute(
                "DELETE FROM plate_exports WHERE id IN (SELECT id FROM plate_exports WHERE exported_at < now())"
            )


def test_granting_the_pruner_again_changes_nothing_and_takes_back_what_it_was_given_before(
    postgres_url: str, bare_role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    capsys.readouterr()
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # say, the workers' rights, then more
        schema = admin.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        for statement in (
            "GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {role}",
            "GRANT ALL ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
            "GRANT CREATE ON SCHEMA {schema} TO {role}",
            "GRANT UPDATE (plate) ON {schema}.watchlist TO {role}",
        ):
            admin.execute(statement.format(schema=schema, role=bare_role))
    assert {"INSERT", "UPDATE", "TRUNCATE", "CREATE"} <= {right for _, right in rights(postgres_url, bare_role)}
    granted = []
    for _ in range(2):
        assert main(["db", "upgrade", "--database-url", postgres_url, "--grant-pruner", bare_role]) == 0
        granted.append(capsys.readouterr().out)
        assert rights(postgres_url, bare_role) == PRUNER_RIGHTS
    told = f"role {bare_role} may read what alpr db prune reads and delete what it deletes, nothing more"
    assert granted[0] == granted[1] == f"schema already up to date\n{told}\n"


def test_a_role_that_would_still_may_more_is_refused_the_pruners_grant_and_left_as_it_was(
    postgres_url: str, bare_role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    writer = f"{bare_role}_writer"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        schema = admin.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        admin.execute(f"CREATE ROLE {writer}")
        admin.execute(f"GRANT INSERT ON {schema}.alerts TO {writer}")
        admin.execute(f"GRANT {writer} TO {bare_role}")  # inherited: not the grant's to take back
        admin.execute(f"GRANT UPDATE ON {schema}.frames TO {bare_role}")
    try:
        before = rights(postgres_url, bare_role)
        assert main(["db", "upgrade", "--database-url", postgres_url, "--grant-pruner", bare_role]) == 2
        error = capsys.readouterr().err
        assert f"role {bare_role} may still INSERT alerts" in error and len(error.strip().splitlines()) == 1
        assert rights(postgres_url, bare_role) == before  # the grant undone whole
        assert main(["db", "upgrade", "--database-url", postgres_url, "--grant-pruner", "postgres"]) == 2
        assert "role postgres may still" in capsys.readouterr().err  # a superuser may everything
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {writer}")
            admin.execute(f"DROP ROLE {writer}")


@pytest.mark.parametrize(("table", "given", "named"), [
    ("plate_searches", "SELECT", "read camera_id, database_user, found, plate, reason, searched_by, since, until,"
     " within of plate_searches"),
    ("plate_exports", "SELECT (exported_by, reason)", "read exported_by, reason of plate_exports"),
    ("alert_deliveries", "SELECT (receiver, last_error)", "read last_error, receiver of alert_deliveries"),
])  # fmt: skip
def test_a_pruner_that_may_read_more_columns_through_public_is_refused_naming_them(
    table: str, given: str, named: str, postgres_url: str, bare_role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The grant reads an audit table or the deliveries as read where one column may be: a pruner that PUBLIC
    let read every column (who searched, for which plate and why; whom a hit was sent to) was told it may read
    what a prune reads, nothing more (a review). It is refused, naming the columns, nothing changed."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"GRANT {given} ON {table} TO PUBLIC")
    capsys.readouterr()
    before = rights(postgres_url, bare_role)
    assert main(["db", "upgrade", "--database-url", postgres_url, "--grant-pruner", bare_role]) == 2
    error = capsys.readouterr().err
    assert f"role {bare_role} may still {named} (a superuser" in error and len(error.strip().splitlines()) == 1
    assert rights(postgres_url, bare_role) == before  # the grant undone whole
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"REVOKE ALL ON {table} FROM PUBLIC")
    assert main(["db", "upgrade", "--database-url", postgres_url, "--grant-pruner", bare_role]) == 0


def test_a_pruner_that_may_not_read_a_deliverys_status_is_refused_at_the_start(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The deliveries' alert and status are all the prune reads of them, and both it must: one column of the
    table readable counted as the table read, and the prune failed at the first alerts batch."""
    with pruner_role(postgres_url) as (role, as_pruner):
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"REVOKE SELECT (status) ON alert_deliveries FROM {role}")
        capsys.readouterr()
        assert main(["db", "prune", "--database-url", as_pruner]) == 2
        assert "(missing: SELECT alert_deliveries): it was granted an earlier release's" in capsys.readouterr().err


def test_the_workers_and_the_pruners_role_must_be_two(
    postgres_url: str, bare_role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pruner's grant takes back what it does not give: given the workers' role, the workers' rights."""
    command = ["db", "upgrade", "--database-url", postgres_url, "--grant", bare_role, "--grant-pruner", bare_role]
    assert main(command) == 2
    assert "--grant and --grant-pruner name one role" in capsys.readouterr().err
    assert main(["db", "upgrade", "--database-url", postgres_url, "--grant-pruner", "Robert'); DROP"]) == 2
    assert "--grant-pruner takes a role name" in capsys.readouterr().err


def test_a_prune_by_a_role_not_granted_fails_at_its_start_in_one_line(
    postgres_url: str, bare_role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    capsys.readouterr()
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        schema = admin.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
    steps = (  # what the role is given before each try: nothing, the schema, the migrations' record, reading
        None,
        f"GRANT USAGE ON SCHEMA {schema} TO {bare_role}",
        f"GRANT SELECT ON {schema}.schema_migrations TO {bare_role}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {bare_role}",
    )
    for step in steps:
        if step:
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute(step)
        assert main(["db", "prune", "--database-url", as_role(postgres_url, bare_role)]) == 2, step
        error = capsys.readouterr().err
        assert "`alpr db upgrade --grant-pruner ROLE`" in error and len(error.strip().splitlines()) == 1, step
    assert (
        "missing: DELETE alerts, DELETE frames, DELETE plate_exports, DELETE plate_reads, DELETE plate_searches,"
        " DELETE sightings)"
    ) in error
    # a dry run is how a prune's login is tried: one that may only read said "would delete" and exit 0
    assert main(["db", "prune", "--dry-run", "--database-url", as_role(postgres_url, bare_role)]) == 2
    captured = capsys.readouterr()
    assert captured.err == error and "would delete" not in captured.out  # refused as the prune is


def test_a_role_that_may_set_role_to_the_workers_is_refused(postgres_url):
    """A NOINHERIT member of the workers' role has none of their rights until it runs SET ROLE: the
    grant took it for a pruner of its own, and it could then write every table."""
    role = f"alpr_pruner_{uuid.uuid4().hex[:8]}"
    with workers_role(postgres_url) as (workers, _), psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN NOINHERIT")
        admin.execute(f"GRANT {workers} TO {role}")
        try:
            assert main(["db", "upgrade", "--database-url", postgres_url, "--grant-pruner", role]) == 2
        finally:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def test_a_prune_whose_role_may_not_merge_the_frame_counts_fails_at_its_start(postgres_url, capsys):
    """Each round ends merging the frames' per-minute counts (frame_counts_merged): where the database took
    EXECUTE back from PUBLIC and the role was not given it by name, the prune deleted its batches, then failed
    at the merge, saying the role may not read or delete the plate data (a review). It is refused at its
    start, nothing deleted."""
    from tests.common.test_retention import add_frame, remaining

    with pruner_role(postgres_url) as (role, as_pruner):
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("REVOKE EXECUTE ON FUNCTION frame_counts_merged() FROM PUBLIC")
            admin.execute(f"REVOKE EXECUTE ON FUNCTION frame_counts_merged() FROM {role}")
            add_frame(admin, "gate", "gate:old:0", datetime.now(UTC) - timedelta(days=40))
        capsys.readouterr()
        assert main(["db", "prune", "--database-url", as_pruner]) == 2
        error = capsys.readouterr().err
        assert error.strip().endswith("(missing: EXECUTE frame_counts_merged)"), error
        assert "`alpr db upgrade --grant-pruner ROLE`" in error
        assert remaining(postgres_url)["frames"] == ["gate:old:0"]  # nothing deleted
        with psycopg.connect(postgres_url, autocommit=True) as admin:  # given it by name, as the grant does
            admin.execute(f"GRANT EXECUTE ON FUNCTION frame_counts_merged() TO {role}")
        assert main(["db", "prune", "--database-url", as_pruner]) == 0


def test_a_pruner_granted_an_earlier_releases_rights_is_told_to_grant_it_again(
    postgres_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgrade in place applies the migrations; the pruner keeps the rights it was granted before the
    alerts and the audit records were pruned. Its prune is refused at the start, naming the role, what it
    lacks and the grant to run again by that name (not a bare permission error at the first alert's batch);
    one that keeps those records without limit needs no more than it has."""
    from tests.common.test_retention import add_frame, remaining

    with pruner_role(postgres_url) as (role, as_pruner):
        with psycopg.connect(postgres_url, autocommit=True) as admin:  # the rights of the release before
            schema = admin.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
            for statement in (
                "REVOKE DELETE ON {schema}.alerts FROM {role}",
                "REVOKE ALL ON {schema}.alert_deliveries FROM {role}",
                "REVOKE ALL ON {schema}.plate_searches FROM {role}",
                "REVOKE ALL ON {schema}.plate_exports FROM {role}",
            ):
                admin.execute(statement.format(schema=schema, role=role))
            add_frame(admin, "gate", "gate:old:0", datetime.now(UTC) - timedelta(days=40))
        capsys.readouterr()
        for dry_run in ([], ["--dry-run"]):
            assert main(["db", "prune", *dry_run, "--database-url", as_pruner]) == 2
            error = capsys.readouterr().err
            assert error == (
                f"alpr: error: alpr db prune: role {role} lacks rights this release's prune needs (missing: SELECT"
                " alert_deliveries, DELETE alerts, DELETE plate_exports, SELECT plate_exports, DELETE plate_searches,"
                " SELECT plate_searches): it was granted an earlier release's, or they were taken back; re-run"
                f" `alpr db upgrade --grant-pruner {role}` as the schema's owner (Compose's `migrate` does at each"
                " start), or run the prune as the owner\n"
            )
        assert remaining(postgres_url)["frames"] == ["gate:old:0"]  # nothing deleted
        monkeypatch.setenv("ALPR_ALERT_RETENTION_DAYS", "0")
        monkeypatch.setenv("ALPR_AUDIT_RETENTION_DAYS", "0")
        assert main(["db", "prune", "--database-url", as_pruner]) == 0  # the plate data alone: its old rights do
        assert remaining(postgres_url)["frames"] == []
        monkeypatch.delenv("ALPR_ALERT_RETENTION_DAYS")
        monkeypatch.delenv("ALPR_AUDIT_RETENTION_DAYS")
        assert main(["db", "upgrade", "--database-url", postgres_url, "--grant-pruner", role]) == 0
        assert main(["db", "prune", "--database-url", as_pruner]) == 0  # granted again: all of it

"""The database's own floor under the audit records' deletion (migration 26): `alpr db upgrade` writes the audit
retention the settings give (ALPR_AUDIT_RETENTION_DAYS, or its default rule) into a table the owner alone may
change, and Postgres refuses to delete a record of a plate search or export younger than it, whoever asks
(and every record where it is 0). The pruner's login deleted any record a day old (a review): the record of a
misuse erased the day after, the configured 730 days notwithstanding. A prune whose own retention is shorter
than the database's says so in one line and prunes past the database's. On a private Postgres: the tests
create roles."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alpr.cli import main
from tests.common.test_record_retention import add_audit_records, audit_left, counts
from tests.helpers import pruner_role, workers_role
from tests.servers import PrivatePostgres

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def private_server() -> Iterator[PrivatePostgres]:
    try:
        server = PrivatePostgres()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    server.start()
    yield server
    server.remove()


@pytest.fixture()
def database(private_server: PrivatePostgres, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh schema of the private server, the settings of the retentions their defaults."""
    for name in ("ALPR_RETENTION_DAYS", "ALPR_AUDIT_RETENTION_DAYS", "ALPR_ALERT_RETENTION_DAYS", "ALPR_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(private_server.url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    return f"{private_server.url}?options=-csearch_path%3D{schema}"


def search_ids(url: str) -> dict[int, int]:
    """The searches' records left: id -> age in whole days."""
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT id, extract(day FROM now() - searched_at)::int FROM plate_searches").fetchall()
    return {int(record): int(days) for record, days in rows}


def test_the_pruner_may_not_delete_an_audit_record_younger_than_the_configured_retention(database, capsys):
    assert main(["db", "upgrade", "--database-url", database]) == 0
    add_audit_records(database, [NOW - timedelta(days=2), NOW - timedelta(days=800)], [NOW - timedelta(days=2)])
    ids = {days: record for record, days in search_ids(database).items()}
    with pruner_role(database) as (_, as_pruner):
        pruner = psycopg.connect(as_pruner)  # by id: the record of yesterday's search
        with pruner, pytest.raises(psycopg.errors.RaiseException, match="730 days"):
            pruner.execute("DELETE FROM plate_searches WHERE id = %s", (ids[2],))
        pruner = psycopg.connect(as_pruner)  # by time
        with pruner, pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            pruner.execute("DELETE FROM plate_exports WHERE exported_at < now() - interval '1 day'")
        pruner = psycopg.connect(as_pruner)  # nor by a policy of its own, first on its search path
        with pruner, pytest.raises(psycopg.errors.RaiseException, match="730 days"):
            pruner.execute("CREATE TEMPORARY TABLE audit_retention (days DOUBLE PRECISION)")
            pruner.execute("INSERT INTO audit_retention VALUES (1)")
            pruner.execute("DELETE FROM plate_searches WHERE id = %s", (ids[2],))
        pruner = psycopg.connect(as_pruner)  # nor the policy changed
        with pruner, pytest.raises(psycopg.errors.InsufficientPrivilege):
            pruner.execute("UPDATE audit_retention SET days = 1")
        capsys.readouterr()
        assert main(["db", "prune", "--database-url", as_pruner]) == 0  # past the retention: deleted
        out = capsys.readouterr()
    assert counts(out.out).endswith("1 plate_searches, 0 plate_exports") and out.err == ""
    assert sorted(search_ids(database).values()) == [2] and audit_left(database) == (1, 1)


def test_the_upgrade_writes_the_settings_audit_retention_and_zero_keeps_every_record(database, capsys, monkeypatch):
    monkeypatch.setenv("ALPR_RETENTION_DAYS", "0")  # plate data kept without limit: the audit too
    assert main(["db", "upgrade", "--database-url", database]) == 0
    add_audit_records(database, [NOW - timedelta(days=3000)], [])
    with pruner_role(database) as (_, as_pruner):
        pruner = psycopg.connect(as_pruner)
        with pruner, pytest.raises(psycopg.errors.RaiseException, match="kept without limit"):
            pruner.execute("DELETE FROM plate_searches")
        monkeypatch.setenv("ALPR_RETENTION_DAYS", "30")  # the owner's deliberate change, by the upgrade
        monkeypatch.setenv("ALPR_AUDIT_RETENTION_DAYS", "100")
        capsys.readouterr()
        assert main(["db", "upgrade", "--database-url", database]) == 0
        assert "audit records: deleted past 100 days, by no one sooner (was: kept without limit)" in (
            capsys.readouterr().out
        )
        add_audit_records(database, [NOW - timedelta(days=150), NOW - timedelta(days=50)], [])
        assert main(["db", "prune", "--database-url", as_pruner]) == 0
    assert sorted(search_ids(database).values()) == [50]


def test_a_prune_with_a_shorter_retention_than_the_databases_says_so_and_keeps_to_the_databases(
    database, capsys, monkeypatch
):
    assert main(["db", "upgrade", "--database-url", database]) == 0  # 730 days, the default
    add_audit_records(database, [NOW - timedelta(days=800), NOW - timedelta(days=200)], [])
    with pruner_role(database) as (_, as_pruner):  # granted by an upgrade: the owner's settings
        monkeypatch.setenv("ALPR_AUDIT_RETENTION_DAYS", "100")  # the prune's own, shorter
        capsys.readouterr()
        for dry_run in (["--dry-run"], []):
            assert main(["db", "prune", *dry_run, "--database-url", as_pruner]) == 0
            out = capsys.readouterr()
            assert out.err.splitlines() == [
                "alpr: ALPR_AUDIT_RETENTION_DAYS is 100 days, but the database keeps the audit records 730 days"
                " (set by `alpr db upgrade` from the owner's settings): pruned past 730 days; run `alpr db upgrade`"
                " as the schema's owner with this setting to change the database's"
            ]
            assert "audit records made before" in out.out and "(730 days)" in out.out
            assert counts(out.out).endswith("1 plate_searches, 0 plate_exports")
        with psycopg.connect(database) as owner:  # kept without limit by the database: none pruned
            owner.execute("UPDATE audit_retention SET days = 0")
        assert main(["db", "prune", "--database-url", as_pruner]) == 0
        out = capsys.readouterr()
    assert "the database keeps the audit records without limit" in out.err and len(out.err.splitlines()) == 1
    assert "kept without limit: audit records" in out.out and sorted(search_ids(database).values()) == [200]


def test_an_upgrade_from_migration_25_fills_the_policy_from_the_settings(database, capsys, monkeypatch):
    """A deployment of the release before (migration 25): Compose's `migrate` upgrades it in place; the policy is
    written from its settings at once, and the pruner it granted before is held to it."""
    from psycopg_pool import ConnectionPool

    import common.schema_upgrade
    from common.migrations import MIGRATIONS

    with monkeypatch.context() as before, ConnectionPool(database, min_size=1, max_size=2, open=True) as pool:
        before.setattr(common.schema_upgrade, "MIGRATIONS", MIGRATIONS[:25])
        assert common.schema_upgrade.upgrade(pool) == list(range(1, 26))
    add_audit_records(database, [NOW - timedelta(days=900), NOW - timedelta(days=800)], [])
    monkeypatch.setenv("ALPR_RETENTION_DAYS", "1000")  # the default rule: the plate data's where longer
    with pruner_role(database) as (role, as_pruner):
        assert main(["db", "upgrade", "--database-url", database, "--grant-pruner", role]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0] == "applied migrations [26]"
        with psycopg.connect(database) as owner:
            assert owner.execute("SELECT days FROM audit_retention").fetchall() == [(1000.0,)]
        pruner = psycopg.connect(as_pruner)
        with pruner, pytest.raises(psycopg.errors.RaiseException, match="1000 days"):
            pruner.execute("DELETE FROM plate_searches")
        assert main(["db", "prune", "--database-url", as_pruner]) == 0
    assert audit_left(database) == (2, 0)


def test_an_audit_setting_the_prune_refuses_leaves_the_databases_retention_as_it_was(database, capsys, monkeypatch):
    """Shorter than the plate data's: the prune refuses to start; the upgrade, which every role of Compose waits
    on, goes on, the database's retention unchanged, and says so in one line."""
    assert main(["db", "upgrade", "--database-url", database]) == 0
    monkeypatch.setenv("ALPR_AUDIT_RETENTION_DAYS", "20")
    capsys.readouterr()
    assert main(["db", "upgrade", "--database-url", database]) == 0
    error = capsys.readouterr().err
    assert "at least ALPR_RETENTION_DAYS (30 days)" in error and "left as it was" in error
    assert len(error.splitlines()) == 1
    with psycopg.connect(database) as owner:
        assert owner.execute("SELECT days FROM audit_retention").fetchall() == [(730.0,)]


@pytest.mark.parametrize("grant", ["workers", "pruner"])
def test_a_non_owner_upgrading_a_current_schema_is_not_refused(database, capsys, grant):
    """A role that may read the retention but not write it (the workers', the pruner's), running the upgrade of
    a current schema whose retention is already the settings', is told it is up to date, as the release before
    told it: its read of the retention took a row lock (FOR SHARE), which needs UPDATE, and the upgrade failed
    with "lacks a right this needs" (a review)."""
    assert main(["db", "upgrade", "--database-url", database]) == 0
    with (workers_role if grant == "workers" else pruner_role)(database) as (_, as_role):
        capsys.readouterr()
        code = main(["db", "upgrade", "--database-url", as_role])
        out = capsys.readouterr()
    assert (code, out.err, out.out) == (0, "", "schema already up to date\n")


def test_a_non_owner_whose_setting_differs_is_warned_and_the_databases_retention_stands(database, capsys, monkeypatch):
    """The owner alone sets the retention: a role that may not, its settings another retention, is warned in
    one line to run the upgrade as the owner, and the upgrade (every role of Compose waits on it) succeeds; a
    role that may not even read the retention (a grant of the release before: a rollback's) alike."""
    assert main(["db", "upgrade", "--database-url", database]) == 0  # 730 days
    with workers_role(database) as (role, as_workers):  # granted by the owner's upgrade: 730 days still
        monkeypatch.setenv("ALPR_AUDIT_RETENTION_DAYS", "100")
        capsys.readouterr()
        assert main(["db", "upgrade", "--database-url", as_workers]) == 0
        out = capsys.readouterr()
        assert out.out == "schema already up to date\n"
        assert out.err.splitlines() == [
            "alpr: warning: the database's audit retention (deleted past 730 days, by no one sooner) is not the"
            " settings' (deleted past 100 days, by no one sooner), and only the schema's owner may set it: left"
            " as it was; run `alpr db upgrade` as the owner to change it"
        ]
        with psycopg.connect(database) as owner:
            owner.execute(f"REVOKE SELECT ON audit_retention FROM {role}")
        assert main(["db", "upgrade", "--database-url", as_workers]) == 0
        out = capsys.readouterr()
    assert out.out == "schema already up to date\n" and len(out.err.splitlines()) == 1
    assert out.err.startswith("alpr: warning: the database's audit retention (not readable by this role) may not be")
    with psycopg.connect(database) as owner:
        assert owner.execute("SELECT days FROM audit_retention").fetchall() == [(730.0,)]


def test_the_floor_holds_a_pruner_the_release_before_granted(database):
    """A rollback's `migrate` grants the pruner as the release before did: every right it does not know taken
    back, SELECT of the retention among them. The triggers read it as the owner (SECURITY DEFINER): a record
    past it is deleted, one within it refused naming the retention and who sets it; read as the deleting role,
    every delete failed "permission denied" (a review)."""
    assert main(["db", "upgrade", "--database-url", database]) == 0
    add_audit_records(database, [NOW - timedelta(days=800), NOW - timedelta(days=2)], [NOW - timedelta(days=2)])
    with pruner_role(database) as (role, as_pruner):
        with psycopg.connect(database) as owner:
            owner.execute(f"REVOKE SELECT ON audit_retention FROM {role}")
        with psycopg.connect(as_pruner) as pruner:
            deleted = pruner.execute("DELETE FROM plate_searches WHERE searched_at < now() - interval '799 days'")
            assert deleted.rowcount == 1
        for table in ("plate_searches", "plate_exports"):
            pruner = psycopg.connect(as_pruner)
            with pruner, pytest.raises(psycopg.errors.RaiseException) as refused:
                pruner.execute(f"DELETE FROM {table}")
            assert "the database's audit retention alone (730 days, set by `alpr db upgrade` as the schema's" in (
                str(refused.value)
            )
    assert audit_left(database) == (1, 1)


def test_a_view_of_the_pruners_own_cannot_run_as_the_owner_through_the_triggers(database):
    """The triggers run as the owner: one the pruner attaches to a temporary table of its own must read the
    schema's retention, not a temporary view of the pruner's (of the deleting table's schema, pg_temp), whose
    function would run as the owner and lower the retention."""
    assert main(["db", "upgrade", "--database-url", database]) == 0
    with psycopg.connect(database) as owner:
        schema = owner.execute("SELECT current_schema()").fetchone()
    assert schema is not None
    with pruner_role(database) as (_, as_pruner), psycopg.connect(as_pruner) as pruner:
        pruner.execute("CREATE TEMPORARY TABLE plate_searches (searched_at TIMESTAMPTZ)")
        pruner.execute(
            "CREATE FUNCTION pg_temp.lowered() RETURNS DOUBLE PRECISION LANGUAGE sql AS"
            f" $$ UPDATE {schema[0]}.audit_retention SET days = 1 RETURNING 1::float8 $$"
        )
        pruner.execute("CREATE TEMPORARY VIEW audit_retention AS SELECT pg_temp.lowered() AS days")
        pruner.execute(
            "CREATE TRIGGER kept BEFORE DELETE ON pg_temp.plate_searches FOR EACH ROW"
            f" EXECUTE FUNCTION {schema[0]}.plate_searches_kept()"
        )
        pruner.execute("INSERT INTO pg_temp.plate_searches VALUES (now() - interval '1000 days')")
        pruner.execute("DELETE FROM pg_temp.plate_searches")
    with psycopg.connect(database) as owner:
        assert owner.execute("SELECT days FROM audit_retention").fetchall() == [(730.0,)]


@pytest.mark.parametrize("days", ["NaN", "Infinity", "-Infinity", "1000000", "36500.5", "0.5", "-1"])
def test_the_table_refuses_a_retention_no_setting_may_give(database, days):
    """0 or 1 to MAX_RETENTION_DAYS, as the settings: NaN, infinity and a million days passed the table's check
    (`days >= 1`), and the prune's start then failed with a traceback, the plate data never pruned (a review)."""
    from common import defaults

    assert defaults.MAX_RETENTION_DAYS == 36500  # the check's bound, written in migration 26
    assert main(["db", "upgrade", "--database-url", database]) == 0
    owner = psycopg.connect(database)
    with owner, pytest.raises(psycopg.errors.CheckViolation):
        owner.execute("UPDATE audit_retention SET days = %s::float8", (days,))
    with psycopg.connect(database) as owner:
        owner.execute("UPDATE audit_retention SET days = 36500")


@pytest.mark.parametrize("days", ["NaN", "Infinity", "1000000"])
def test_a_retention_out_of_bounds_fails_the_prune_in_one_line(database, capsys, days):
    """A table whose check was dropped (by hand, or migration 26's first form on a test deployment): the prune
    says in one line what it read and where, with no traceback; it was a ValueError or OverflowError."""
    assert main(["db", "upgrade", "--database-url", database]) == 0
    with pruner_role(database) as (_, as_pruner):
        with psycopg.connect(database) as owner:
            owner.execute("ALTER TABLE audit_retention DROP CONSTRAINT audit_retention_days_known")
            owner.execute("UPDATE audit_retention SET days = %s::float8", (days,))
        capsys.readouterr()
        code = main(["db", "prune", "--dry-run", "--database-url", as_pruner])
        out = capsys.readouterr()
    assert code == 2 and out.err.splitlines() == [
        f"alpr: error: the database's audit retention (audit_retention.days) is {float(days):g}: it must be 0 (kept"
        " without limit) or 1 to 36500 days; run `alpr db upgrade` as the schema's owner to set it from the settings"
    ]

"""The turn `alpr db upgrade` takes (common/schema_upgrade.wait_for_turn: the advisory lock ADVISORY_LOCK_ID)
held by another session, on the real Postgres: any login may hold an advisory lock, and the owner's upgrade
waited behind it for ever, silently (a review). It waits a bounded time (UPGRADE_TURN_WAIT_S, --lock-wait),
saying who holds the lock (pid, user, application, how long; never its query), then exits non-zero, nothing of
that step done; it goes on where the holder lets go in time."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from alpr.cli import main
from common import defaults
from common.schema_upgrade import ADVISORY_LOCK_ID
from tests.helpers import LetGoOnceTold, lock_held
from tests.servers import PrivatePostgres

PLATE = "AB12CDE"
"""Text in the holder's query (pg_stat_activity.query), which nothing said of it may show."""


@contextmanager
def turn_held(
    url: str, seconds: float, application: str = "mallory-psql", let_go: threading.Event | None = None
) -> Iterator[int]:
    """Another session, `application`, holding the upgrade's advisory lock in its transaction for `seconds` at
    most (less where `let_go` is set first, or the test ends first); yields its pid."""
    lock = ("SELECT pg_advisory_xact_lock(%s), %s AS plate", (ADVISORY_LOCK_ID, PLATE))
    with lock_held(url, [lock], seconds, application, let_go) as pid:
        yield pid


def schema_tables(url: str) -> set[str]:
    with psycopg.connect(url) as db:
        return {row[0] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}


def test_an_upgrade_behind_a_held_lock_gives_up_within_its_bound_naming_the_holder(postgres_url, monkeypatch, capsys):
    """Its default bound (UPGRADE_TURN_WAIT_S, here 1 s: the holder lets go after 8 s, which the upgrade waited for)."""
    monkeypatch.setattr(defaults, "UPGRADE_TURN_WAIT_S", 1.0, raising=False)
    with turn_held(postgres_url, 8.0) as pid:
        started = time.monotonic()
        code = main(["db", "upgrade", "--database-url", postgres_url])
        took = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2 and took < 4, (code, took, err)
    assert err.startswith("alpr: error: alpr db upgrade: gave up after 1 s waiting for its turn (Postgres advisory"
                          f" lock {ADVISORY_LOCK_ID}"), err  # fmt: skip
    assert f"held by pid {pid} (user postgres, application mallory-psql, its transaction open " in err
    assert "nothing was applied" in err and "--lock-wait" in err and f"pg_terminate_backend({pid})" in err
    assert PLATE not in err and "pg_advisory_xact_lock" not in err  # no query text
    assert schema_tables(postgres_url) == set()  # not even the migrations' record made


@pytest.mark.parametrize(("lock_wait", "giving_up"), [("5", r"giving up in [0-4] s"), ("0", "without limit")])
def test_an_upgrade_goes_on_when_the_holder_lets_go_within_its_wait(
    lock_wait, giving_up, postgres_url, monkeypatch, caplog
):
    """--lock-wait 5 (0: without limit); the holder lets go a second after a WARNING has said who holds it
    (after 1 s of waiting), and the upgrade takes its turn as it does: it waits on the lock itself, not in
    slices polled (the next slice ends at the wait's 5 s, or the next word's 11 s). The holder let go 1.5 s
    after it took the lock, and the upgrade's start (an argument parse, a connection: up to 1.4 s on a loaded
    machine) counted against both: no WARNING yet when it let go, or the upgrade done past 4.5 s (flaky)."""
    import common.schema_upgrade

    real_wait, turn_taken = common.schema_upgrade.wait_for_turn, []

    def observed(*args, **kwargs):  # type: ignore[no-untyped-def]
        real_wait(*args, **kwargs)
        turn_taken.append(time.monotonic())

    monkeypatch.setattr(common.schema_upgrade, "wait_for_turn", observed)
    let_go = threading.Event()
    told = LetGoOnceTold(let_go, "waiting for its turn")
    logging.getLogger("common.schema_upgrade").addHandler(told)
    try:
        with turn_held(postgres_url, 30.0, let_go=let_go) as pid, caplog.at_level(logging.WARNING):
            assert main(["db", "upgrade", "--lock-wait", lock_wait, "--database-url", postgres_url]) == 0
    finally:
        logging.getLogger("common.schema_upgrade").removeHandler(told)
        told.timer.cancel()
    assert told.let_go_at and turn_taken, caplog.text  # told while held, and let go; then its turn taken
    taken_s = turn_taken[0] - told.let_go_at
    assert 0 < taken_s < 2.0, taken_s  # as the holder let go: not at its slice's end, 3 s and more on
    waiting = [r.getMessage() for r in caplog.records if "waiting for its turn" in r.getMessage()]
    assert len(waiting) == 1, caplog.text  # after 1 s, then every 10 s
    assert f"held by pid {pid} (user postgres, application mallory-psql" in waiting[0], waiting
    assert re.search(giving_up, waiting[0]), waiting
    assert PLATE not in caplog.text
    assert "schema_migrations" in schema_tables(postgres_url)


def test_another_login_holding_the_lock_is_named_to_the_owner_who_may_not_see_its_session(
    private_postgres: PrivatePostgres, monkeypatch, capsys
):
    """The owner, no superuser, upgrading a current schema (its audit retention step takes the turn too) while
    another login holds the lock: the owner may not see that session's start (pg_read_all_stats), only its pid,
    user and application, and is told so. (And the workers' login's dry run is told it may not write the audit
    retention its settings give: its upgrade would leave the database's, with a warning.)"""
    for name in ("ALPR_RETENTION_DAYS", "ALPR_AUDIT_RETENTION_DAYS", "ALPR_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with psycopg.connect(private_postgres.url, autocommit=True) as admin:
        admin.execute("CREATE ROLE alpr_owner LOGIN; CREATE ROLE mallory LOGIN; CREATE ROLE alpr_app LOGIN")
        admin.execute("CREATE SCHEMA alpr AUTHORIZATION alpr_owner")
    owner = private_postgres.url.replace("postgres@", "alpr_owner@", 1) + "?options=-csearch_path%3Dalpr"
    assert main(["db", "upgrade", "--grant", "alpr_app", "--database-url", owner]) == 0
    workers = owner.replace("alpr_owner@", "alpr_app@", 1)
    capsys.readouterr()
    monkeypatch.setenv("ALPR_AUDIT_RETENTION_DAYS", "400")
    assert main(["db", "upgrade", "--dry-run", "--database-url", workers]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "audit retention: the settings give 400 days (deleted past 400 days, by no one sooner); the database holds"
        " 730 days (deleted past 730 days, by no one sooner); only the schema's owner may write it: the upgrade, as"
        " this role, would leave it as it is, with a warning"
    )
    monkeypatch.delenv("ALPR_AUDIT_RETENTION_DAYS")
    with turn_held(private_postgres.url.replace("postgres@", "mallory@", 1), 8.0, "nightly-report") as pid:
        started = time.monotonic()
        code = main(["db", "upgrade", "--lock-wait", "1.5", "--database-url", owner])
        took = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2 and took < 4.5, (code, took, err)
    assert f"held by pid {pid} (user mallory, application nightly-report, how long hidden from this role" in err, err
    assert PLATE not in err


def test_a_step_after_the_migrations_that_gives_up_its_turn_says_the_migrations_applied_stay(
    postgres_url, monkeypatch, capsys
):
    """The audit retention's step (as --grant's, --grant-pruner's) waits its turn too: given up after the
    migrations were applied, it said "nothing was changed by this step", and no line said the schema had moved
    (a review): the operator read that nothing changed. Another session takes the lock at that very step."""
    import alpr.admin_commands as admin
    from common.migrations import MIGRATIONS

    real = admin.set_database_audit_retention

    def behind_a_holder(*args: object) -> str:
        with turn_held(postgres_url, 8.0):
            return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(admin, "set_database_audit_retention", behind_a_holder)
    code = main(["db", "upgrade", "--lock-wait", "1", "--database-url", postgres_url])
    err = capsys.readouterr().err
    applied = sorted(version for version, _ in MIGRATIONS)
    assert code == 2, err
    assert f"migrations {applied} were applied and stay; the audit retention not done, nor what follows it" in err, err
    assert "nothing was changed by this step" not in err


def test_a_dry_run_behind_a_locked_audit_retention_says_so_within_its_bound(postgres_url, monkeypatch, capsys):
    """The owner's LOCK TABLE (or VACUUM FULL) of the audit retention hung the dry run without a word: the
    upgrade's sessions wait without limit (a review). It waits PREVIEW_LOCK_TIMEOUT (here 300 ms), then says so."""
    from common import audit_policy

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    capsys.readouterr()
    monkeypatch.setattr(audit_policy, "PREVIEW_LOCK_TIMEOUT", "300ms")
    with psycopg.connect(postgres_url) as other, other.transaction():
        other.execute("LOCK TABLE audit_retention IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        code = main(["db", "upgrade", "--dry-run", "--database-url", postgres_url])
        took = time.monotonic() - started
    out = capsys.readouterr().out
    assert code == 0 and took < 3, (code, took, out)
    assert "audit retention: not read: another session has held audit_retention locked for 300ms" in out, out

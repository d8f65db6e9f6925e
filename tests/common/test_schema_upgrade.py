"""common/schema_upgrade.py on the real Postgres, each test in a schema of its own: the migrations apply
once and again do nothing (also when several processes upgrade at once), a role refuses a database that
`alpr db upgrade` has not brought up to date, an upgrade waits its turn behind another whatever lock_timeout
the database sets, and waits briefly for a table in use, each migration committed on its own, then gives
up keeping what it applied."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from alpr.cli import main
from common.db import open_pool
from common.errors import ConfigError
from common.migrations import MIGRATIONS
from common.schema_upgrade import ADVISORY_LOCK_ID, check_server_version, require_schema, server_version_shown, upgrade

VERSIONS = [version for version, _ in MIGRATIONS]
TABLES = {"cameras", "frames", "plate_reads", "schema_migrations"}


@pytest.fixture()
def pool(postgres_url: str) -> Iterator[ConnectionPool]:
    opened = open_pool(postgres_url)
    yield opened
    opened.close()


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as db:
        return {row[0] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}


def test_db_upgrade_is_idempotent_and_workers_need_a_database(postgres_url, redis_url, capsys):
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    assert capsys.readouterr().out.splitlines() == [f"applied migrations {VERSIONS}", "schema already up to date"]
    assert main(["worker", "redact", "--burst", "--redis-url", redis_url]) == 2
    assert "needs ALPR_DATABASE_URL" in capsys.readouterr().err
    assert main(["worker", "detect", "--burst", "--redis-url", "redis://127.0.0.1:1/0"]) == 2
    assert "cannot reach Redis" in capsys.readouterr().err


def test_migrations_apply_once(pool, postgres_url):
    assert tables(postgres_url) == set()  # the schema starts empty
    assert upgrade(pool) == VERSIONS
    assert tables(postgres_url) >= TABLES
    with psycopg.connect(postgres_url) as db:
        before = db.execute("SELECT version, applied_at FROM schema_migrations ORDER BY version").fetchall()
    assert [version for version, _ in before] == VERSIONS
    assert upgrade(pool) == []  # nothing applied twice
    with psycopg.connect(postgres_url) as db:
        after = db.execute("SELECT version, applied_at FROM schema_migrations ORDER BY version").fetchall()
        constraint = db.execute(
            "SELECT count(*) FROM pg_constraint JOIN pg_namespace ON pg_namespace.oid = connamespace"
            " WHERE conname = 'frames_outcome_known' AND nspname = current_schema()"
        ).fetchone()
    assert after == before and constraint == (1,)


def test_processes_upgrading_at_once_apply_each_migration_once(postgres_url):
    pools = [open_pool(postgres_url) for _ in range(3)]
    results: list[list[int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(pools))

    def run(pool: ConnectionPool) -> None:
        start.wait()
        try:
            results.append(upgrade(pool))
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(p,)) for p in pools]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for p in pools:
            p.close()
    assert errors == []
    # the advisory lock, taken by each migration's transaction: the processes take turns, and each migration
    # is applied once, in order (a process may apply some and another the rest)
    assert sorted(version for applied in results for version in applied) == VERSIONS
    assert all(applied == sorted(applied) for applied in results)


def test_a_server_older_than_the_schema_needs_is_refused_by_name_before_anything_is_applied(
    pool, postgres_url, redis_url, monkeypatch, capsys
):
    """Migration 21 needs PostgreSQL 15 (UNIQUE NULLS NOT DISTINCT; date_bin, 14): on 14 the upgrade failed
    midway with a syntax error naming neither version. PostgreSQL 13 and 14 cannot run here, so the check
    runs against this server with the version it needs raised past the server's own: `alpr db upgrade`, its
    dry run and a role's start refuse it naming both versions, the schema left untouched."""
    import common.schema_upgrade as schema_upgrade

    assert server_version_shown(140011) == "14.11" and server_version_shown(90624) == "9.6.24"
    with pool.connection() as connection:
        found = connection.info.server_version
    assert found >= schema_upgrade.MINIMUM_SERVER_VERSION == 150000  # this server runs the schema (15 or later)
    check_server_version(pool, needed=found)  # a server at the version needed passes
    newer = (found // 10000 + 1) * 10000
    refusal = (rf"PostgreSQL {found // 10000 + 1}\.0 or later is needed .*; this server is PostgreSQL"
               rf" {server_version_shown(found)}: upgrade it")  # fmt: skip
    with pytest.raises(ConfigError, match=refusal):
        check_server_version(pool, needed=newer)

    monkeypatch.setattr(schema_upgrade, "MINIMUM_SERVER_VERSION", newer)  # as a PostgreSQL 14 server meets 15
    for command in (["db", "upgrade"], ["db", "upgrade", "--dry-run"]):
        assert main([*command, "--database-url", postgres_url]) == 2
        assert re.search(refusal, capsys.readouterr().err)
    assert tables(postgres_url) == set()  # nothing applied, not even the migrations' record
    monkeypatch.setattr(schema_upgrade, "MINIMUM_SERVER_VERSION", 150000)
    assert upgrade(pool) == VERSIONS
    monkeypatch.setattr(schema_upgrade, "MINIMUM_SERVER_VERSION", newer)  # a role's start on such a server
    assert main(["worker", "redact", "--burst", "--redis-url", redis_url, "--database-url", postgres_url]) == 2
    assert re.search(refusal, capsys.readouterr().err)


def test_require_schema_fails_clearly_until_upgraded(pool, postgres_url, redis_url, capsys):
    with pytest.raises(ConfigError, match=rf"not at version {VERSIONS[-1]}; run `alpr db upgrade`"):
        require_schema(pool)  # an empty schema
    worker = ["worker", "redact", "--burst", "--redis-url", redis_url, "--database-url", postgres_url]
    assert main(worker) == 2  # a role refuses to start on it
    assert "run `alpr db upgrade`" in capsys.readouterr().err

    with psycopg.connect(postgres_url) as db:  # an older schema: the first migration only
        db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)")
        db.execute(MIGRATIONS[0][1].encode())
        db.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (VERSIONS[0],))
    with pytest.raises(ConfigError, match="run `alpr db upgrade`"):
        require_schema(pool)

    assert upgrade(pool) == VERSIONS[1:]  # the rest, from where it stood
    require_schema(pool)
    assert main(worker) == 0  # the same worker starts (and, in burst mode, ends on an empty queue)


def test_an_upgrade_waits_briefly_for_a_table_in_use_and_gives_up_clearly(pool, postgres_url, monkeypatch):
    """A migration queued for a table's lock behind a long reader (an export, a count) held every
    worker's write to that table behind it, for as long as the reader ran. It now waits a moment,
    tries again a few times, then says so."""
    import common.schema_upgrade

    assert upgrade(pool) == VERSIONS
    monkeypatch.setattr(
        common.schema_upgrade, "MIGRATIONS", [*MIGRATIONS, (999, "ALTER TABLE frames ADD COLUMN later INTEGER")]
    )
    monkeypatch.setattr(common.schema_upgrade, "UPGRADE_LOCK_TIMEOUT", "200ms")
    monkeypatch.setattr(common.schema_upgrade, "UPGRADE_ATTEMPTS", 2)
    monkeypatch.setattr(common.schema_upgrade.time, "sleep", lambda _s: None)
    with psycopg.connect(postgres_url) as reader:
        reader.execute("SELECT count(*) FROM frames")  # a transaction left open: its lock is held
        started = time.monotonic()
        with pytest.raises(ConfigError, match="could not lock the tables in 2 attempts"):
            upgrade(pool)
        assert time.monotonic() - started < 3
    assert upgrade(pool) == [999]  # the reader gone, it goes through


def schema_at(pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch, version: int) -> None:
    """The test's schema brought to `version` (a database of an earlier release), the migrations then
    all there again for the upgrade under test."""
    import common.schema_upgrade

    monkeypatch.setattr(
        common.schema_upgrade, "MIGRATIONS", [migration for migration in MIGRATIONS if migration[0] <= version]
    )
    upgrade(pool)
    monkeypatch.setattr(common.schema_upgrade, "MIGRATIONS", MIGRATIONS)


def schema_versions(url: str) -> list[int]:
    with psycopg.connect(url) as db:
        return [version for (version,) in db.execute("SELECT version FROM schema_migrations ORDER BY version")]


def someone_waits_for(url: str, table: str) -> bool:
    """Whether a session waits for a lock on `table` (of the test's schema)."""
    with psycopg.connect(url) as db:
        waiting = db.execute("SELECT count(*) FROM pg_locks WHERE relation = to_regclass(%s) AND NOT granted", (table,))
        return waiting.fetchone() != (0,)


def wait_until(condition: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"not seen within {within_s} s: {what}"
        time.sleep(0.05)


def insert_alert(connection: psycopg.Connection, alert_id: str) -> None:
    connection.execute("INSERT INTO alerts (alert_id, kind, camera_id, captured_at, body)"
                       " VALUES (%s, 'read', 'gate', now(), '{}')", (alert_id,))  # fmt: skip


def test_a_migration_waiting_for_a_table_holds_no_lock_of_the_migrations_before_it(pool, postgres_url, monkeypatch):
    """A review: the migrations ran in one transaction, so from version 13 migration 14's SHARE lock on
    `alerts` was held while migration 15 waited for the frames log a long reader held (an export, `alpr
    status`'s counts): the chain's alert inserts waited 5 s at a time, 60 s of a 72 s upgrade, which then
    gave up having applied nothing. Each migration now commits on its own: while 15 waits, 14 is applied
    and an alert insert waits for no lock at all, a frame's insert at most the upgrade's lock timeout;
    once the reader ends, the upgrade goes on from where it stood."""
    import common.schema_upgrade

    schema_at(pool, monkeypatch, 13)
    monkeypatch.setattr(common.schema_upgrade, "UPGRADE_LOCK_TIMEOUT", "4s")
    monkeypatch.setattr(common.schema_upgrade, "UPGRADE_BACKOFF_S", (0.2, 0.5), raising=False)
    monkeypatch.setattr(
        common.schema_upgrade, "UPGRADE_ATTEMPTS", 1000
    )  # it waits the reader out, however slow the machine
    outcome: list[object] = []

    def upgrading() -> None:
        try:
            outcome.append(upgrade(pool))
        except BaseException as error:  # reported by the assertion below
            outcome.append(error)

    upgrader = threading.Thread(target=upgrading)
    with psycopg.connect(postgres_url) as reader:
        reader.execute("SELECT count(*) FROM frames")  # a long reader's transaction, left open: frames held
        upgrader.start()
        try:
            wait_until(lambda: someone_waits_for(postgres_url, "frames"), 60, "the upgrade asking for frames")
            with psycopg.connect(postgres_url, autocommit=True) as writer:
                writer.execute("SET lock_timeout = '1s'")  # a wait for a lock this long: behind the upgrade
                for n in range(5):  # the sighting pool's alerts, as the reader goes on
                    insert_alert(writer, f"a{n}")  # waited 4 s (the upgrade's lock timeout) and failed here
                    time.sleep(0.1)
                writer.execute("SET lock_timeout = '8s'")  # twice the upgrade's: queued behind its request at most
                writer.execute(
                    "INSERT INTO frames (frame_id, camera_id, seq, frame_index, captured_at, plates,"
                    " stage_ms, outcome) VALUES ('gate:1:0', 'gate', 0, 0, now(), 0, '{}', 'done')"
                )
            assert schema_versions(postgres_url) == VERSIONS[:14]  # 14 applied, for good, while 15 waits
        finally:
            reader.rollback()  # the reader ends
            upgrader.join(timeout=120)
    assert outcome == [VERSIONS[13:]]  # 14 and the rest, once the frames log was free
    assert schema_versions(postgres_url) == VERSIONS


def test_an_upgrade_that_gives_up_keeps_what_it_applied_and_backs_off_between_attempts(pool, postgres_url, monkeypatch):
    """Given up on migration 15 (a reader holds the frames log), the upgrade keeps migration 14, says so,
    and the next upgrade goes on from it; between attempts it waited 1 s each time, so a long reader's
    table was asked for (every writer of it queued behind) five seconds in six: the waits now double."""
    import common.schema_upgrade

    schema_at(pool, monkeypatch, 13)
    monkeypatch.setattr(common.schema_upgrade, "UPGRADE_LOCK_TIMEOUT", "200ms")
    waits: list[float] = []
    monkeypatch.setattr(common.schema_upgrade.time, "sleep", waits.append)
    with psycopg.connect(postgres_url) as reader:
        reader.execute("SELECT count(*) FROM frames")  # a transaction left open: its lock is held
        with pytest.raises(ConfigError, match=r"could not lock the tables in 8 attempts") as given_up:
            upgrade(pool)
    assert "migration 15 waits for frames" in str(given_up.value), given_up.value
    assert "migrations [14] were applied and stay: the schema is at version 14" in str(given_up.value)
    assert waits == [1, 2, 4, 8, 16, 30, 30]  # about two minutes' patience, at 5 s a try
    assert schema_versions(postgres_url) == VERSIONS[:14]
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT to_regclass('alerts_by_sighting') IS NOT NULL").fetchone() == (True,)
    assert upgrade(pool) == VERSIONS[14:]  # the reader gone, from where it stood


def test_an_upgrade_killed_midway_leaves_an_earlier_version_the_next_one_goes_on_from(pool, postgres_url, monkeypatch):
    """`alpr db upgrade` killed while migration 15 waits for a table: migration 14 stays applied, nothing
    of 15 is left, the advisory lock dies with the killed process's transaction, and the next upgrade
    applies the rest."""
    import signal
    import subprocess
    import sys

    schema_at(pool, monkeypatch, 13)
    with psycopg.connect(postgres_url) as reader:
        reader.execute("SELECT count(*) FROM frames")  # frames held: migration 15 waits
        run = subprocess.Popen([sys.executable, "-m", "alpr.cli", "db", "upgrade", "--database-url", postgres_url],
                               stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_until(lambda: someone_waits_for(postgres_url, "frames"), 60, "the upgrade asking for frames")
        finally:
            run.send_signal(signal.SIGKILL)
            run.wait(timeout=30)
        assert schema_versions(postgres_url) == VERSIONS[:14]
        with psycopg.connect(postgres_url) as db:  # nothing of 15: its first statement deleted rows like these
            constraint = db.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'frames_captured_at_in_reach'"
                                    " AND connamespace = current_schema()::regnamespace").fetchone()  # fmt: skip
        assert constraint == (0,)
    assert upgrade(pool) == VERSIONS[14:]


def test_an_attempt_that_cannot_have_a_table_does_none_of_its_migrations_work(pool, postgres_url, monkeypatch):
    """Each attempt ran migration 15's full scans of the frames log and the plate reads again (0.4 s per 3
    million rows), to fail at its ALTER on a table a reader held (a review): a migration's tables are asked
    for before any of its SQL runs. A sequence counts the runs of a migration's SQL (it keeps its count
    when the transaction rolls back)."""
    import common.schema_upgrade

    upgrade(pool)
    with pool.connection() as connection:
        connection.execute("CREATE SEQUENCE body_runs")
    later = (999, "SELECT nextval('body_runs'); ALTER TABLE frames ADD COLUMN later INTEGER")
    monkeypatch.setattr(common.schema_upgrade, "MIGRATIONS", [*MIGRATIONS, later])
    monkeypatch.setattr(common.schema_upgrade, "MIGRATION_LOCKS", {999: {"frames": "ACCESS EXCLUSIVE"}})
    monkeypatch.setattr(common.schema_upgrade, "UPGRADE_LOCK_TIMEOUT", "200ms")
    monkeypatch.setattr(common.schema_upgrade, "UPGRADE_ATTEMPTS", 3)
    monkeypatch.setattr(common.schema_upgrade.time, "sleep", lambda _s: None)
    with psycopg.connect(postgres_url) as reader:
        reader.execute("SELECT count(*) FROM frames")
        with pytest.raises(ConfigError, match="could not lock the tables in 3 attempts"):
            upgrade(pool)
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT is_called FROM body_runs").fetchone() == (False,)  # never run
    assert upgrade(pool) == [999]
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT last_value FROM body_runs").fetchone() == (1,)  # run once, when it could go on


def test_a_statement_timeout_set_for_the_role_does_not_cancel_a_migration(pool, postgres_url, monkeypatch, capsys):
    """`ALTER ROLE alpr IN DATABASE x SET statement_timeout = '150ms'` (a guard against runaway queries) and a
    3-million-row frames log: migration 15's scans were canceled, and `alpr db upgrade` exited 2 with
    `QueryCanceled: canceling statement due to statement timeout`, nothing applied, no migration named (a
    review). A migration's transaction now runs without it (its waits bounded by the lock timeout). The
    session's default here stands for the role's: the options of the URL set it as ALTER ROLE would."""
    import common.schema_upgrade

    assert upgrade(pool) == VERSIONS
    monkeypatch.setattr(common.schema_upgrade, "MIGRATIONS", [*MIGRATIONS, (999, "SELECT pg_sleep(0.6)")])
    timed = f"{postgres_url}%20-cstatement_timeout%3D150"
    with psycopg.connect(timed) as session:  # the setting is in force for the upgrade's sessions
        assert session.execute("SHOW statement_timeout").fetchone() == ("150ms",)
    capsys.readouterr()
    assert main(["db", "upgrade", "--database-url", timed]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.splitlines() == ["applied migrations [999]"]
    assert schema_versions(postgres_url)[-1] == 999


def test_a_migration_canceled_by_another_session_is_named(pool, postgres_url, monkeypatch):
    """Canceled all the same (pg_cancel_backend): the error names the migration and what stays applied; the
    migration is rolled back and the next upgrade applies it."""
    import common.schema_upgrade

    assert upgrade(pool) == VERSIONS
    later = [(998, "SELECT 1"), (999, "SELECT pg_sleep(30) AS migration_999")]
    monkeypatch.setattr(common.schema_upgrade, "MIGRATIONS", [*MIGRATIONS, *later])

    def cancel() -> None:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            running = "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30) AS migration_999%'"
            wait_until(lambda: admin.execute(running).fetchone() is not None, 10, "migration 999 running")
            admin.execute(f"SELECT pg_cancel_backend(({running}))")

    canceller = threading.Thread(target=cancel, daemon=True)
    canceller.start()
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"migration 999 was canceled \(canceling statement due to user request\)"
                       r".* migrations \[998\] were applied and stay; run it again"):  # fmt: skip
        upgrade(pool)
    canceller.join(10)
    assert time.monotonic() - started < 15 and schema_versions(postgres_url)[-2:] == [VERSIONS[-1], 998]


def test_a_schema_newer_than_this_release_is_told_at_each_start_and_by_db_upgrade(
    pool, postgres_url, redis_url, capsys, caplog
):
    """A release rolled back (or not yet upgraded) on a schema a newer one migrated: `alpr db upgrade` said
    "schema already up to date" and the roles started without a word (a review). It is not refused — the
    roles of a release run on the next one's schema during a rolling upgrade (`alpr db upgrade` first), and
    Compose starts no service unless `migrate` succeeds — but said: by `db upgrade` (exit 0, nothing
    applied) and its dry run, and in a WARNING at each role's start, naming both versions."""
    latest = VERSIONS[-1]
    assert upgrade(pool) == VERSIONS
    with psycopg.connect(postgres_url) as db:
        db.execute("INSERT INTO schema_migrations (version) VALUES (%s), (%s)", (latest + 1, latest + 2))
    capsys.readouterr()
    newer = f"the database schema is at version {latest + 2}, newer than this release's {latest}"
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    out = capsys.readouterr().out
    assert newer in out and "nothing applied" in out and "up to date" not in out
    assert main(["db", "upgrade", "--dry-run", "--database-url", postgres_url]) == 0
    assert newer in capsys.readouterr().out
    with caplog.at_level(logging.WARNING):
        require_schema(pool)  # not refused
        worker = ["worker", "redact", "--burst", "--redis-url", redis_url, "--database-url", postgres_url]
        assert main(worker) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and newer in r.getMessage()]
    assert len(warned) == 2, caplog.text  # the check, then the worker's start


def test_an_upgrade_waiting_its_turn_is_not_told_a_table_is_in_use(postgres_url, caplog):
    """The database's lock_timeout (here the URL's options, a session default as `ALTER DATABASE ... SET
    lock_timeout = '200ms'` gives) cut the wait for another upgrader's advisory lock: "the upgrade waits for a
    table (in use by a long query?)", and after 8 attempts it gave up (a review). It waits its turn."""
    held, done = threading.Event(), threading.Event()

    def another_upgrade() -> None:
        with psycopg.connect(postgres_url) as other, other.transaction():
            other.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_ID,))
            held.set()
            done.wait(2.0)

    holder = threading.Thread(target=another_upgrade)
    holder.start()
    try:
        assert held.wait(10)
        with caplog.at_level(logging.WARNING):
            assert main(["db", "upgrade", "--database-url", postgres_url + "%20-clock_timeout%3D200ms"]) == 0
    finally:
        done.set()
        holder.join()
    assert "waits for" not in caplog.text and "in use" not in caplog.text, caplog.text

"""common/db.py on the real Postgres, each test in a schema of its own: the migrations apply once and
again do nothing (also when several processes upgrade at once), a role refuses a database that
`alpr db upgrade` has not brought up to date, a pool that cannot open says why in one line, and the
workers' role granted by `alpr db upgrade --grant` may do what the chain does and no more."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from alpr.cli import main
from common.db import open_pool, require_schema, upgrade
from common.errors import ConfigError
from common.migrations import MIGRATIONS

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


def with_password(url: str, password: str) -> str:
    """`url` with `password` (as written, encoded or not) in place of its own, whatever its user."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}:{password}@{host}"))


def test_a_malformed_password_never_reaches_a_log_line_or_the_error(postgres_url, caplog, capsys):
    # libpq quotes the token it cannot parse ("invalid percent-encoded token: ..."): the pool used to log
    # the password four times, and the last error line printed a password with a space as it stands
    for password in ("s3cr%zzet", "s3cr et"):
        url = with_password(postgres_url, password)
        with pytest.raises(ConfigError, match="the Postgres URL is malformed: the password has") as caught:
            open_pool(url, wait_s=1)
        assert "s3cr" not in str(caught.value)
        assert main(["db", "upgrade", "--database-url", url]) == 2
        assert "--database-url: the password has" in capsys.readouterr().err
    assert "s3cr" not in caplog.text and "s3cr" not in capsys.readouterr().err


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_pool_that_cannot_open_says_why_in_one_line(postgres_url, caplog):
    """The last attempt's error is the message, and the pool's own warnings while it opens are kept quiet:
    four or five lines came first, then "pool initialization incomplete after 10.0 sec" (an ops review)."""
    caplog.set_level(logging.WARNING)
    for url, cause in (
        (postgres_url.replace(f"/{urlsplit(postgres_url).path.lstrip('/')}", "/alpr_no_such_db"),
         'database "alpr_no_such_db" does not exist'),
        (f"postgresql://postgres@127.0.0.1:{closed_port()}/test", "Connection refused"),
    ):  # fmt: skip
        with pytest.raises(ConfigError) as caught:
            open_pool(url, wait_s=2)
        message = str(caught.value)
        assert "incomplete after" not in message and "\n" not in message, message
        assert message.endswith(cause), message
    assert not [r for r in caplog.records if r.name.startswith("psycopg")], caplog.text


def test_the_password_goes_to_psycopg_apart_from_the_url(postgres_url):
    opened = open_pool(with_password(postgres_url, "s3cr%20et"), password="not-this-one")
    try:
        assert "s3cr" not in opened.conninfo and opened.kwargs["password"] == "s3cr et"  # the URL's, decoded
        with opened.connection() as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
    finally:
        opened.close()
    fallback = open_pool(postgres_url, password="s3cret-file")  # none in the URL: ALPR_DATABASE_PASSWORD's
    try:
        assert fallback.kwargs["password"] == "s3cret-file"
    finally:
        fallback.close()


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


def test_an_upgrade_waits_briefly_for_a_table_in_use_and_gives_up_clearly(pool, postgres_url, monkeypatch):
    """A migration queued for a table's lock behind a long reader (an export, a count) held every
    worker's write to that table behind it, for as long as the reader ran. It now waits a moment,
    tries again a few times, then says so."""
    import common.db

    assert upgrade(pool) == VERSIONS
    monkeypatch.setattr(common.db, "MIGRATIONS", [*MIGRATIONS, (999, "ALTER TABLE frames ADD COLUMN later INTEGER")])
    monkeypatch.setattr(common.db, "UPGRADE_LOCK_TIMEOUT", "200ms")
    monkeypatch.setattr(common.db, "UPGRADE_ATTEMPTS", 2)
    monkeypatch.setattr(common.db.time, "sleep", lambda _s: None)
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
    import common.db

    monkeypatch.setattr(common.db, "MIGRATIONS", [migration for migration in MIGRATIONS if migration[0] <= version])
    upgrade(pool)
    monkeypatch.setattr(common.db, "MIGRATIONS", MIGRATIONS)


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
    import common.db

    schema_at(pool, monkeypatch, 13)
    monkeypatch.setattr(common.db, "UPGRADE_LOCK_TIMEOUT", "4s")
    monkeypatch.setattr(common.db, "UPGRADE_BACKOFF_S", (0.2, 0.5), raising=False)
    monkeypatch.setattr(common.db, "UPGRADE_ATTEMPTS", 1000)  # it waits the reader out, however slow the machine
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
    import common.db

    schema_at(pool, monkeypatch, 13)
    monkeypatch.setattr(common.db, "UPGRADE_LOCK_TIMEOUT", "200ms")
    waits: list[float] = []
    monkeypatch.setattr(common.db.time, "sleep", waits.append)
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
    import common.db

    upgrade(pool)
    with pool.connection() as connection:
        connection.execute("CREATE SEQUENCE body_runs")
    later = (999, "SELECT nextval('body_runs'); ALTER TABLE frames ADD COLUMN later INTEGER")
    monkeypatch.setattr(common.db, "MIGRATIONS", [*MIGRATIONS, later])
    monkeypatch.setattr(common.db, "MIGRATION_LOCKS", {999: {"frames": "ACCESS EXCLUSIVE"}})
    monkeypatch.setattr(common.db, "UPGRADE_LOCK_TIMEOUT", "200ms")
    monkeypatch.setattr(common.db, "UPGRADE_ATTEMPTS", 3)
    monkeypatch.setattr(common.db.time, "sleep", lambda _s: None)
    with psycopg.connect(postgres_url) as reader:
        reader.execute("SELECT count(*) FROM frames")
        with pytest.raises(ConfigError, match="could not lock the tables in 3 attempts"):
            upgrade(pool)
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT is_called FROM body_runs").fetchone() == (False,)  # never run
    assert upgrade(pool) == [999]
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT last_value FROM body_runs").fetchone() == (1,)  # run once, when it could go on


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


def test_a_session_frozen_mid_transaction_is_ended_by_the_server(pool):
    """A process frozen or cut off holding row locks (a sighting worker's cameras) kept them for about
    two hours, until TCP keepalive noticed; every pooled session now has the server end it sooner."""
    with pool.connection() as connection:
        shown = {name: connection.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                 for name in ("idle_in_transaction_session_timeout", "tcp_keepalives_idle")}  # fmt: skip
    assert shown == {"idle_in_transaction_session_timeout": "2min", "tcp_keepalives_idle": "60"}


def test_a_pool_serves_again_as_soon_as_postgres_is_back_after_a_long_outage(private_postgres):
    """The pool's own attempts to replace its lost connection wait twice as long each time (1, 2, 4 ...
    s): after a 70 s outage it served again 58 s after Postgres was back, and the frames' reads and
    redactions expired meanwhile. It gives up after a few seconds now, and the next caller starts afresh."""
    server = private_postgres
    pool = open_pool(server.url)
    try:
        server.stop()
        down = time.monotonic()
        while time.monotonic() - down < 20:  # callers keep asking, as the workers' writes do
            with pytest.raises(Exception), pool.connection(timeout=1) as connection:  # noqa: B017 (refused, or none)
                connection.execute("SELECT 1")
            time.sleep(0.5)
        server.start()
        back = time.monotonic()
        while True:
            try:
                with pool.connection(timeout=1) as connection:
                    connection.execute("SELECT 1")
                break
            except Exception:  # noqa: BLE001 (not yet)
                assert time.monotonic() - back < 30
        assert time.monotonic() - back < 4  # 10 s and more at psycopg_pool's own give-up (300 s)
    finally:
        pool.close()


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
    import common.db
    from common.frame_log import FrameLog

    monkeypatch.setattr(common.db, "MIGRATIONS", MIGRATIONS[:14])  # a database of the version before
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
        monkeypatch.setattr(common.db, "MIGRATIONS", MIGRATIONS)
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

"""The schema's record (schema_migrations) locked by another session (`LOCK TABLE`, `VACUUM FULL`), on the real
Postgres: `alpr db upgrade --dry-run` read it without limit and hung there, without a word, and so did the upgrade
itself before its first turn (a review). Each waits --lock-wait at most (UPGRADE_TURN_WAIT_S unless given), as for
its turn, saying who holds the lock (pid, user, application, how long; never its query), then exits 2, nothing
done; each goes on where the holder lets go in time, whatever lock timeout the session has."""

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
from tests.helpers import LetGoOnceTold, lock_held

PLATE = "AB12CDE"
"""Text in the holder's query (pg_stat_activity.query), which nothing said of it may show."""

HELD_S = 8.0
"""How long the holder keeps the record locked at most: the code before the fix waited that long, then went on."""


@contextmanager
def record_locked(
    url: str, seconds: float, application: str = "mallory-psql", let_go: threading.Event | None = None
) -> Iterator[int]:
    """Another session, `application`, holding schema_migrations in ACCESS EXCLUSIVE mode in its transaction for
    `seconds` at most (less where `let_go` is set first, or the test ends first); yields its pid."""
    statements = [("LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE", ()), ("SELECT %s AS plate", (PLATE,))]
    with lock_held(url, statements, seconds, application, let_go) as pid:
        yield pid


@pytest.fixture
def upgraded(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> str:
    """A schema at this release's version (its record made)."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    capsys.readouterr()
    return postgres_url


@pytest.mark.parametrize(
    ("command", "kept"),
    [(["--dry-run"], "nothing was read or changed"), ([], "nothing was applied")],
    ids=["dry-run", "upgrade"],
)
@pytest.mark.parametrize("lock_wait", [["--lock-wait", "1"], []], ids=["lock-wait", "default"])
def test_a_locked_record_is_given_up_within_the_bound_naming_its_holder(
    command: list[str],
    kept: str,
    lock_wait: list[str],
    upgraded: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--lock-wait 1, or its default (UPGRADE_TURN_WAIT_S, here 1 s); the holder lets go after HELD_S."""
    monkeypatch.setattr(defaults, "UPGRADE_TURN_WAIT_S", 1.0)
    with record_locked(upgraded, HELD_S) as pid:
        started = time.monotonic()
        code = main(["db", "upgrade", *command, *lock_wait, "--database-url", upgraded])
        took = time.monotonic() - started
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2 and took < 4, (code, took, captured)
    said = "alpr db upgrade --dry-run" if command else "alpr db upgrade"
    assert err.startswith(f"alpr: error: {said}: gave up after 1 s waiting to read the schema's record"
                          " (schema_migrations"), err  # fmt: skip
    assert f"held by pid {pid} (user postgres, application mallory-psql, its transaction open " in err, err
    assert kept in err and "--lock-wait" in err and f"pg_terminate_backend({pid})" in err, err
    assert PLATE not in err and "LOCK TABLE schema_migrations IN" not in err  # no query text
    assert "would apply" not in captured.out and "audit retention" not in captured.out, captured.out


def test_a_dry_run_goes_on_when_the_holder_lets_go_within_its_wait_whatever_the_session_lock_timeout(
    upgraded: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """--lock-wait 5; the holder lets go a second after a WARNING has said who holds it (after 1 s of waiting);
    the dry run goes on as it does. The session's own lock_timeout (200 ms, as a database's or a role's may be)
    cuts nothing short. (The holder let go 1.5 s after it took the lock: the command's own start counted against
    it, and under load no WARNING had come yet: CI failed on it.)"""
    short = upgraded + "%20-clock_timeout%3D200"
    with psycopg.connect(short) as probe:
        assert probe.execute("SHOW lock_timeout").fetchone() == ("200ms",)
    let_go = threading.Event()
    told = LetGoOnceTold(let_go, "to read the schema's record")
    logging.getLogger("common.schema_record").addHandler(told)
    try:
        with record_locked(upgraded, 30.0, let_go=let_go) as pid, caplog.at_level(logging.WARNING):
            code = main(["db", "upgrade", "--dry-run", "--lock-wait", "5", "--database-url", short])
            ended = time.monotonic()
    finally:
        logging.getLogger("common.schema_record").removeHandler(told)
        told.timer.cancel()
    out = capsys.readouterr().out
    assert code == 0 and told.let_go_at and 0 < ended - told.let_go_at < 2.0, (code, told.let_go_at, out)
    assert out.startswith("schema already up to date; nothing to apply"), out
    waiting = [r.getMessage() for r in caplog.records if "to read the schema's record" in r.getMessage()]
    assert len(waiting) == 1, caplog.text  # after 1 s, then every 10 s
    assert f"locked by pid {pid} (user postgres, application mallory-psql" in waiting[0], waiting
    assert re.search(r"giving up in [0-4] s", waiting[0]) and PLATE not in caplog.text

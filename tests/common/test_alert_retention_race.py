"""`alpr db prune`'s alerts batch against a delivery written meanwhile, on the real Postgres: `alpr replay
--stage alert` setting a given-up delivery back to pending, or the alert pool adding one for a receiver its
file gained, while the batch deletes the alert. The batch read the delivery as it was (READ COMMITTED) and the
cascade then deleted it, pending, with its alert; it now fails where such a write touches its rows and is tried
again, seeing it (the alert kept, its delivery with it), and one that keeps failing ends the prune in one line.
Each race is made certain: a second connection holds its write uncommitted until the prune waits on it."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from alpr.cli import main
from tests.common.test_record_retention import alerted, alerts_left, counts  # noqa: F401 (a fixture)

RACES = {  # what writes a delivery of an alert past its retention, and the alert it keeps
    "replay": ("UPDATE alert_deliveries SET status = 'pending', last_error = NULL"
               " WHERE alert_id = 'old-delivered' AND status = 'failed'", "old-delivered"),  # AlertLog.replay's
    "receiver-added": ("INSERT INTO alert_deliveries (alert_id, receiver) VALUES ('old-bare', 'new-hook')",
                       "old-bare"),  # the alert pool's ADD_MISSING
}  # fmt: skip


def committed_once_waited_on(url: str, statement: str) -> threading.Thread:
    """A thread that runs `statement` in a transaction of its own, waits until another backend waits on its
    locks (the prune's batch), then commits; started."""
    writer = psycopg.connect(url)
    writer.execute(statement)
    pid = writer.info.backend_pid

    def commit_once_waited_on() -> None:
        with psycopg.connect(url, autocommit=True) as watcher:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                row = watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                                      (pid,)).fetchone()  # fmt: skip
                if row and row[0]:
                    break
                time.sleep(0.05)
        writer.commit()
        writer.close()

    thread = threading.Thread(target=commit_once_waited_on, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("race", sorted(RACES))
def test_a_delivery_made_pending_while_its_alert_is_pruned_keeps_it(race, alerted, capsys):  # noqa: F811
    statement, kept = RACES[race]
    capsys.readouterr()
    writer = committed_once_waited_on(alerted, statement)
    assert main(["db", "prune", "--database-url", alerted]) == 0
    writer.join(30)
    out = capsys.readouterr().out
    left, delivered = alerts_left(alerted)
    assert kept in left and kept in delivered  # the cascade deleted both, the delivery just made pending
    with psycopg.connect(alerted) as db:
        statuses = [row[0] for row in db.execute("SELECT status FROM alert_deliveries WHERE alert_id = %s", (kept,))]
    assert "pending" in statuses
    assert counts(out).split(", ")[3] == "1 alerts"  # the other old alert free to go, the batch tried again


def test_an_alerts_batch_that_keeps_failing_ends_the_prune_in_one_line(alerted, capsys, monkeypatch):  # noqa: F811
    import common.retention

    monkeypatch.setattr(common.retention, "ALERT_BATCH_TRIES", 1)
    monkeypatch.setattr(common.retention, "ALERT_RETRY_S", 0.0)
    before = alerts_left(alerted)
    capsys.readouterr()
    writer = committed_once_waited_on(alerted, RACES["replay"][0])
    assert main(["db", "prune", "--database-url", alerted]) == 2
    writer.join(30)
    captured = capsys.readouterr()
    assert captured.err.startswith("alpr: error: alpr db prune: the alerts of camera gate could not be pruned")
    assert "during each of 1 tries" in captured.err and len(captured.err.splitlines()) == 1
    assert "Traceback" not in captured.err and captured.out == ""
    assert alerts_left(alerted) == before  # the batch rolled back whole

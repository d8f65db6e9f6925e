"""When a receiver's refusals for now (404...) reject its whole backlog at once, on the real Postgres and a
real HTTP receiver: only where every attempt made to it in the grace was such a refusal, whichever worker
made it (a 503 met by another worker keeps the backlog), and only after an unbroken run of them seen by
this worker (a 404 long ago and one now are no run)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from alert_worker.worker import AlertStage
from alpr.cli import main
from common import defaults
from common.alert_log import AlertLog
from common.alerts import load_receivers
from common.db import open_pool
from common.jobs import alert_job
from common.metrics import Metrics
from common.queues import connect_redis, stage_queue
from tests.alert_servers import Reply, WebhookServer
from tests.alert_worker.test_held_alerts import raised
from tests.alert_worker.test_worker import SECRET, receivers_file, rows

GRACE_S = 3.0
"""The grace for a receiver's state, shortened (15 minutes)."""


@pytest.fixture()
def hook(postgres_url, redis_url, tmp_path, monkeypatch) -> Iterator[tuple[WebhookServer, AlertStage]]:  # type: ignore[no-untyped-def]
    """A webhook receiver, ops, and an alert worker's stage (as `alpr worker alert` builds it) sending to it,
    the grace 3 s, the longest rest 0.5 s and the gap that ends a run of refusals 1 s."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setattr(defaults, "ALERT_UNKNOWN_RECEIVER_GRACE_S", GRACE_S)
    monkeypatch.setattr(defaults, "ALERT_BACKOFF_S", (0.2, 0.5))
    monkeypatch.setattr(defaults, "ALERT_REFUSAL_GAP_MARGIN_S", 0.5)
    with WebhookServer(SECRET, Reply(status=503)) as server:
        receivers_file(tmp_path, monkeypatch, {"ops": (server.url, 2)})
        pool = open_pool(postgres_url)
        receivers = load_receivers(Path(os.environ["ALPR_ALERT_RECEIVERS"]))
        queue = stage_queue(connect_redis(redis_url), "alert")
        yield server, AlertStage(receivers, AlertLog(pool, 0), queue, Metrics(), 3600.0, 60)
        pool.close()


def backlog(postgres_url: str, count: int) -> list[str]:
    """`count` alerts to ops raised 10 minutes ago (past the grace), never queued; their ids."""
    ids = raised(postgres_url, range(count))
    with psycopg.connect(postgres_url) as connection:
        connection.execute("UPDATE alert_deliveries SET retry_from = retry_from - interval '10 minutes'")
    return ids


def statuses(postgres_url: str) -> dict[str, int]:
    return dict(rows(postgres_url, "SELECT status, count(*) FROM alert_deliveries GROUP BY status"))


def test_a_backlog_whose_last_attempt_met_a_503_is_not_rejected_for_refusals(hook, postgres_url):
    """A review: a worker that had seen the receiver refuse for the grace rejected every pending delivery older
    than it, the alerts log checking only that none had been delivered in the grace; another worker's attempts
    meeting 503s (retried for a day) did not stop it. Now an attempt in the grace that was not a refusal for
    now, whichever worker made it, keeps the backlog."""
    server, stage = hook
    ids = backlog(postgres_url, 5)
    stage.attempt(alert_job(ids[0], "ops", 1))  # a 503: retried, the receiver rests, the other four held
    assert len(server.received) == 1 and statuses(postgres_url) == {"pending": 5}
    reason = "not tried: refused for the grace"
    assert stage.alert_log.reject_refused("ops", GRACE_S, reason) == []  # it was all 5
    assert statuses(postgres_url) == {"pending": 5}
    time.sleep(GRACE_S + 0.5)  # the 503 is past the grace: only refusals for now (none) since
    assert sorted(stage.alert_log.reject_refused("ops", GRACE_S, reason)) == sorted(ids)


def test_a_refusal_long_ago_and_one_now_are_no_run_of_refusals(hook, postgres_url):
    """A worker's run of refusals was never ended by time: one 404 hours ago, nothing of the receiver since,
    and one brief 404 (a restart) rejected the whole backlog. Now a gap longer than the longest rest (and a
    margin) starts a new run: the backlog is kept, and the alert refused past its own grace alone rejected."""
    server, stage = hook
    server.reply = Reply(status=404)
    ids = backlog(postgres_url, 5)
    with psycopg.connect(postgres_url) as connection:  # the refused one is fresh: within its own grace
        connection.execute("UPDATE alert_deliveries SET retry_from = now() WHERE alert_id = %s", (ids[0],))
    stage.attempt(alert_job(ids[0], "ops", 1))  # refused for now: tried again, the others held
    assert len(server.received) == 1 and statuses(postgres_url) == {"pending": 5}
    time.sleep(GRACE_S + 0.5)  # nothing of the receiver meanwhile, past the grace
    stage.attempt(alert_job(ids[0], "ops", 2))  # a brief 404: this alert is past its grace, rejected
    assert len(server.received) == 2
    assert statuses(postgres_url) == {"pending": 4, "rejected": 1}  # it was rejected 5: the whole backlog

"""The alerts a failing receiver's worker holds, on the real Postgres and a real closed port: counted
`rested` once each as they are put back, not again at every failed probe that holds them again, and shown
per receiver in alpr_alert_deliveries_pending (they wait in the alerts log, in no lane and no queue)."""

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
from tests.alert_worker.test_worker import ALERT, insert_listed, receivers_file
from tests.helpers import free_port


def raised(postgres_url: str, numbers: range) -> list[str]:
    """Alerts with a delivery to ops each, never queued (due to the pool's round, and to a hold); their ids."""
    alerts = [ALERT.model_copy(update={"alert_id": f"read-{number:016x}"}) for number in numbers]
    with psycopg.connect(postgres_url) as connection:
        insert_listed(connection, alerts, ["ops"])
        connection.execute("UPDATE alert_deliveries SET queued_at = NULL")
    return [alert.alert_id for alert in alerts]


@pytest.fixture()
def failing(postgres_url, redis_url, tmp_path, monkeypatch) -> Iterator[tuple[AlertStage, Metrics]]:  # type: ignore[no-untyped-def]
    """An alert worker's stage (as `alpr worker alert` builds it) whose one receiver, ops, refuses every
    connection (nothing listens on its port), and its metrics."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setattr(defaults, "ALERT_HOLD_S", 2.0)  # a probe failing past 1 s holds the held ones again
    receivers_file(tmp_path, monkeypatch, {"ops": (f"http://127.0.0.1:{free_port()}/hook", 1)})
    pool = open_pool(postgres_url)
    metrics = Metrics()
    receivers = load_receivers(Path(os.environ["ALPR_ALERT_RECEIVERS"]))
    yield AlertStage(receivers, AlertLog(pool, 0), stage_queue(connect_redis(redis_url), "alert"), metrics, 3600.0,
                     60), metrics  # fmt: skip
    pool.close()


def test_a_delivery_held_again_by_each_failed_probe_is_counted_rested_once(failing, postgres_url):
    """A review: `rested` rose by every delivery held at every failed probe (171 for the few dozen alerts
    a receiver down for 20 minutes had), as a probe failing holds again those due within ALERT_HOLD_S / 2
    (here 2 s, so the second probe does). Now only a delivery not held already counts: the one raised
    between the probes."""
    stage, metrics = failing
    first = raised(postgres_url, range(5))

    def counted(outcome: str) -> float | None:
        return metrics.registry.get_sample_value("alpr_alert_deliveries_total", {"receiver": "ops", "outcome": outcome})

    stage.attempt(alert_job(first[0], "ops", 1))  # refused connection: ops rests 1 s, the 4 others held
    assert counted("retried") == 1 and counted("rested") == 4
    raised(postgres_url, range(5, 6))  # one more alert meanwhile, not held yet
    time.sleep(1.2)  # the rest is over: the probe is due, the held ones due within half of ALERT_HOLD_S
    stage.attempt(alert_job(first[0], "ops", 2))  # the probe fails: the others are held again, the new one too
    assert counted("retried") == 2 and counted("rested") == 5  # the new one alone (it was 8: each again)


def test_the_alerts_a_failing_receiver_holds_are_exported_as_pending(failing, postgres_url):
    """ "19 alerts to ops held", the log said, while the lane's gauge and the alert queue's depth read 0 (a
    review): held alerts wait in the alerts log. Each receiver's pending deliveries are exported, at 0 from
    the start, counted by the pool's round."""
    stage, metrics = failing

    def pending(receiver: str) -> float | None:
        return metrics.registry.get_sample_value("alpr_alert_deliveries_pending", {"receiver": receiver})

    assert pending("ops") == 0 and pending("unknown") == 0  # exported from the start
    first = raised(postgres_url, range(5))
    stage.attempt(alert_job(first[0], "ops", 1))  # ops rests; the 4 others held
    stage.maintain()
    assert pending("ops") == 5 and pending("unknown") == 0


def test_a_failing_receivers_deliveries_whose_jobs_are_queued_are_held_too(failing, postgres_url):
    """The deliveries whose jobs the pool's round had queued were left to them when the receiver failed: a
    job claimed after the rest sent its alert before any probe was answered, ahead of the older alerts held
    meanwhile (the 404 probe test of tests/alert_worker/test_backlog.py failed 1 run in 2 on busy CPUs: the
    live alert came before 7 of the backlog). Now they are held with the others, and their jobs send nothing."""
    from common.alert_holds import HELD, PROBE

    stage, metrics = failing
    ids = raised(postgres_url, range(5))
    with psycopg.connect(postgres_url) as connection:  # the round queued the last three: their jobs wait
        connection.execute("UPDATE alert_deliveries SET queued_at = now() WHERE alert_id = ANY(%s)", (ids[2:],))
    stage.attempt(alert_job(ids[0], "ops", 1))  # refused connection: ops rests 1 s, its backlog held
    with psycopg.connect(postgres_url) as connection:
        marks = dict(connection.execute("SELECT alert_id, last_error FROM alert_deliveries ORDER BY alert_id"))
    assert marks[ids[0]].startswith(PROBE)  # the oldest, due when the rest ends
    assert [marks[i] for i in ids[1:]] == [HELD] * 4  # queued or not
    time.sleep(1.2)  # the rest is over, the probe not answered yet
    stage.attempt(alert_job(ids[4], "ops", 1))  # a job the round had queued: its delivery is not due
    labels = {"receiver": "ops", "outcome": "retried"}
    retried = metrics.registry.get_sample_value("alpr_alert_deliveries_total", labels)
    assert retried == 1  # its alert not sent (it was: refused, a second attempt on a receiver still failing)

"""An alert whose watch-list entry was removed after it was raised is not delivered: its deliveries still
pending (a receiver down meanwhile) are rejected at their claim, once the receiver is back, and so again after
`alpr replay --stage alert`; on the real Postgres, a private Redis and a real HTTP receiver (a review: they
were delivered up to ALPR_ALERT_GIVE_UP_S, a day, after the entry was removed, and replay resent them)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from alert_worker.signing import IDEMPOTENCY_HEADER
from alert_worker.worker import AlertStage
from alpr.cli import main
from common.alert_holds import HELD, PROBE
from common.alert_log import WITHDRAWN, AlertLog, Delivery, UnreadableDelivery
from common.alerts import load_receivers
from common.db import open_pool
from common.jobs import alert_job
from common.metrics import Metrics
from common.queues import connect_redis, enqueue, stage_queue
from tests.alert_servers import Reply, WebhookServer, own_secret
from tests.alert_worker.test_worker import (
    ALERT,
    SECRET,
    alert_worker,
    insert_listed,
    receivers_file,
    rows,
    stopped,
    wait_for,
)

STOLEN = ALERT.model_copy(update={"alert_id": "read-000000000000000a", "list_name": "stolen", "version": 2})
"""An early alert (kind `read`) on the stolen list's entry for KPX4721."""

SIGHTED = STOLEN.model_copy(update={"alert_id": "sighting-00000000000b", "kind": "sighting",
                                    "sighting_id": "gate:run1:3:0"})  # fmt: skip
"""The alert on the closed sighting of the same car, on the same entry."""

PARKED = STOLEN.model_copy(update={"alert_id": "read-000000000000000c", "list_name": "parking", "reason": "unpaid"})
"""The same car on the parking list: an entry of its own, not removed."""


@pytest.fixture()
def hook(postgres_url, redis_url, tmp_path, monkeypatch) -> Iterator[tuple[WebhookServer, AlertStage, Metrics]]:  # type: ignore[no-untyped-def]
    """A receiver, ops, answering 503 until told otherwise, and an alert worker's stage (as `alpr worker
    alert` builds it) sending to it, with its metrics."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    with WebhookServer(own_secret(SECRET, "ops"), Reply(status=503)) as server:
        receivers_file(tmp_path, monkeypatch, {"ops": (server.url, 2)})
        pool = open_pool(postgres_url)
        metrics = Metrics()
        receivers = load_receivers(Path(os.environ["ALPR_ALERT_RECEIVERS"]))
        stage = AlertStage(receivers, AlertLog(pool, 0), stage_queue(connect_redis(redis_url), "alert"), metrics,
                           3600.0, 60)  # fmt: skip
        try:
            yield server, stage, metrics
        finally:
            pool.close()


def states(postgres_url: str) -> dict[str, tuple[str, str | None]]:
    return {a: (s, e) for a, s, e in rows(postgres_url, "SELECT alert_id, status, last_error FROM alert_deliveries")}


def due_now(postgres_url: str, alert_id: str) -> bool:
    query = f"SELECT next_attempt_at <= now() FROM alert_deliveries WHERE alert_id = '{alert_id}'"
    return rows(postgres_url, query) == [(True,)]


def test_a_removed_entrys_pending_alerts_are_rejected_once_the_receiver_is_back_and_after_a_replay(hook, postgres_url):
    """KPX4721 is on the stolen list and on the parking list; three alerts raised while ops is down (a read's
    and a sighting's on the stolen entry, a read's on the parking one). The stolen entry is removed. Back, ops
    gets the parking alert alone: the two others are rejected at their claim, counted rejected, saying why
    (the first was ops's probe: its mark handed on to the oldest held, not left to wait ALERT_HOLD_S). A
    replay resends them to no one; once the entry is added again, a replay delivers."""
    server, stage, metrics = hook
    with psycopg.connect(postgres_url) as connection:
        insert_listed(connection, [STOLEN, SIGHTED, PARKED], ["ops"])
    stage.attempt(alert_job(STOLEN.alert_id, "ops", 1))  # 503: ops rests a second, the other two held
    assert len(server.received) == 1 and states(postgres_url)[SIGHTED.alert_id][0] == "pending"
    assert main(["watchlist", "remove", "KPX4721", "--list", "stolen"]) == 0
    server.reply = Reply(status=200)  # ops is back
    assert wait_for(lambda: due_now(postgres_url, STOLEN.alert_id), 10)  # its probe, when the rest ends
    time.sleep(0.1)  # the worker's own memory of the rest (its monotonic clock) ends too
    stage.attempt(alert_job(STOLEN.alert_id, "ops", 2))
    assert due_now(postgres_url, PARKED.alert_id)  # the probe's mark handed on to the oldest held, due at once
    assert not due_now(postgres_url, SIGHTED.alert_id)  # held still
    (said,) = rows(postgres_url, f"SELECT last_error FROM alert_deliveries WHERE alert_id = '{PARKED.alert_id}'")
    assert "rejected at its claim" in said[0] and "by the receiver" not in said[0]  # never sent: ops refused nothing
    stage.attempt(alert_job(PARKED.alert_id, "ops", 1))  # the probe delivered: what ops held is released
    assert due_now(postgres_url, SIGHTED.alert_id)
    stage.attempt(alert_job(SIGHTED.alert_id, "ops", 1))
    assert [json.loads(r.body)["list_name"] for r in server.received[1:]] == ["parking"]
    assert states(postgres_url) == {
        STOLEN.alert_id: ("rejected", WITHDRAWN), SIGHTED.alert_id: ("rejected", WITHDRAWN),
        PARKED.alert_id: ("delivered", None),
    }  # fmt: skip
    labels = {"receiver": "ops", "outcome": "rejected"}
    assert metrics.registry.get_sample_value("alpr_alert_deliveries_total", labels) == 2

    assert main(["replay", "--stage", "alert"]) == 0  # the operator resends what was rejected
    for alert in (STOLEN, SIGHTED):
        stage.attempt(alert_job(alert.alert_id, "ops", 9))
    assert len(server.received) == 2 and states(postgres_url)[STOLEN.alert_id] == ("rejected", WITHDRAWN)

    assert main(["watchlist", "add", "KPX4721", "--reason", "stolen", "--list", "stolen"]) == 0
    assert main(["replay", "--stage", "alert"]) == 0  # listed again: the alerts raised on it go out
    for alert in (STOLEN, SIGHTED):
        stage.attempt(alert_job(alert.alert_id, "ops", 10))
    assert sorted(json.loads(r.body)["alert_id"] for r in server.received[2:]) == [STOLEN.alert_id, SIGHTED.alert_id]
    assert all(r.signature_ok for r in server.received)


def test_a_version_1_alert_naming_no_list_is_withdrawn_once_its_plate_is_on_no_list(postgres_url):
    """A version 1 body (raised by an earlier sighting worker) names no list: delivered while its listed plate
    is on any list, rejected once on none."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url)
    log = AlertLog(pool, 0)
    first, second = (ALERT.model_copy(update={"alert_id": f"read-00000000000001{n}"}) for n in "ab")
    try:
        with pool.connection() as connection:
            insert_listed(connection, [first.model_copy(update={"list_name": "parking"})], [])
            connection.execute("DELETE FROM alerts")  # the entry listed on `parking` alone
            insert_listed(connection, [first, second], ["ops"])
            connection.execute("DELETE FROM watchlist WHERE list_name = 'default'")
        assert first.list_name is None and isinstance(log.claim(first.alert_id, "ops", 5), Delivery)
        with pool.connection() as connection:
            connection.execute("DELETE FROM watchlist")
        assert log.claim(second.alert_id, "ops", 5) == UnreadableDelivery("ops", WITHDRAWN)
    finally:
        pool.close()
    assert rows(postgres_url, f"SELECT status FROM alert_deliveries WHERE alert_id = '{second.alert_id}'") == [
        ("rejected",)
    ]


def test_a_probe_whose_entry_is_removed_while_held_leaves_the_next_probe_to_be_sent_at_once(
    postgres_url, redis_url, tmp_path, monkeypatch
):
    """Through `alpr worker alert`: ops answers 503 (Retry-After 3 s) and its worker holds its backlog, the
    oldest alert (on the stolen list) its probe, the others (on the parking list) held. The stolen entry is
    removed meanwhile and ops comes back. The probe is rejected at its claim, its mark handed to the oldest
    held alert, due at once (AlertLog.claim); but the worker still took its probe for in flight for its
    lease (ops's timeout, 10 s, plus ALERT_LEASE_MARGIN_S), and queued no other delivery to ops until then:
    the backlog waited 15 s with ops back, where a probe refused by ops (409) lets the next round queue the
    next probe. Now the rejected probe frees the round as `probe_refused` does: the backlog is delivered within
    seconds of the rejection, the handed-on probe first, each once, the withdrawn alert never."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    parked = [PARKED.model_copy(update={"alert_id": f"read-00000000000000b{n}"}) for n in range(4)]
    live = PARKED.model_copy(update={"alert_id": "read-f000000000000000", "captured_at_s": time.time()})
    with WebhookServer(own_secret(SECRET, "ops"), Reply(status=503, headers={"Retry-After": "3"})) as server:
        receivers_file(tmp_path, monkeypatch, {"ops": (server.url, 10)})
        with psycopg.connect(postgres_url) as connection:
            insert_listed(connection, [STOLEN, *parked], ["ops"])  # the stolen one oldest (by id): the probe
            connection.execute("UPDATE alert_deliveries SET queued_at = NULL, next_attempt_at = now() + '1 hour'")
        queue = stage_queue(connect_redis(redis_url), "alert")
        process = alert_worker()
        try:
            assert wait_for(lambda: bool(queue.connection.scard(WORKERS_BY_QUEUE_KEY % queue.name)), 60), "no worker"
            rows(postgres_url, "UPDATE alert_deliveries SET next_attempt_at = now() + '5 s' RETURNING 1")
            with psycopg.connect(postgres_url) as connection:
                insert_listed(connection, [live], ["ops"])
            enqueue(queue, alert_job(live.alert_id, "ops", 1), 60)  # refused 503: ops rests 3 s, its backlog held
            held = f"SELECT count(*) FROM alert_deliveries WHERE last_error = '{HELD}'"
            assert wait_for(lambda: rows(postgres_url, held) == [(5,)], 30), "not held"
            probe = f"SELECT alert_id FROM alert_deliveries WHERE starts_with(last_error, '{PROBE}')"
            assert rows(postgres_url, probe) == [(STOLEN.alert_id,)]
            assert main(["watchlist", "remove", "KPX4721", "--list", "stolen"]) == 0  # while held
            server.reply = Reply(status=200)  # ops is back
            assert wait_for(lambda: states(postgres_url)[STOLEN.alert_id][0] == "rejected", 30), "probe not claimed"
            rejected_at = time.monotonic()
            delivered = "SELECT count(*) FROM alert_deliveries WHERE status = 'delivered'"
            wait_for(lambda: rows(postgres_url, delivered) == [(5,)], 30)
            took_s = time.monotonic() - rejected_at
        finally:
            assert stopped(process) == 0
    print(f"\nthe probe rejected at its claim: its receiver's backlog delivered {took_s:.1f} s after")
    assert states(postgres_url)[STOLEN.alert_id] == ("rejected", WITHDRAWN)
    sent = [r.headers[IDEMPOTENCY_HEADER] for r in server.received[1:]]
    assert sent == [alert.alert_id for alert in parked] + [live.alert_id]  # the handed-on probe first, each once
    assert took_s < 8.0  # it was 16.3 s: the rejected probe's lease (15 s) held the round

"""Routing by watch-list: a receiver whose `lists:` names some lists gets their alerts alone, through the real
sighting pool (the deliveries it logs), the alert pool (what it sends, and what it refuses to send from a
raiser on another file) and the deliveries the alert pool adds; one naming none gets every list's."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from alpr.cli import main
from alpr.wiring import build_sighting_stage
from common.alert_log import AlertLog
from common.alerts import Alert
from common.metrics import Metrics
from common.queues import connect_redis, stage_queue
from tests.alert_servers import WebhookServer, own_secret
from tests.alert_worker.test_worker import insert_listed, rows
from tests.sighting_worker.chain_scenes import SECRET, chain, frame, log_frames, plate, table

__all__ = ["chain"]


def receivers_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hooks: dict[str, tuple[str, str]]) -> None:
    """A receivers file of webhooks, name -> (URL, its `lists:` line's value or "" for none), each with its own
    secret (`own_secret`) in a file."""
    text = "receivers:\n"
    for name, (url, lists) in hooks.items():
        (tmp_path / f"{name}.secret").write_text(own_secret(SECRET, name))
        text += f"  {name}:\n    type: webhook\n    url: {url}\n    secret_file: {tmp_path / f'{name}.secret'}\n"
        text += f"    timeout_s: 2\n    lists: {lists}\n" if lists else "    timeout_s: 2\n"
    (tmp_path / "receivers.yaml").write_text(text)
    monkeypatch.setenv("ALPR_ALERT_RECEIVERS", str(tmp_path / "receivers.yaml"))


def lists_received(hook: WebhookServer) -> list[str]:
    assert all(r.signature_ok for r in hook.received)
    return sorted(json.loads(r.body)["list_name"] for r in hook.received)


def test_each_lists_alerts_reach_the_receivers_that_take_that_list_alone(
    chain, redis_url, postgres_url, tmp_path, monkeypatch
):
    """KPX4721 is on the default list (stolen) and on `parking`: the police hook takes the default list, the
    parking hook `parking`, the archive every list. Each gets its own, logged and delivered; none another's."""
    pool, settings = chain
    assert main(["watchlist", "add", "KPX4721", "--reason", "unpaid", "--list", "parking",
                 "--database-url", postgres_url]) == 0  # fmt: skip
    with (
        WebhookServer(own_secret(SECRET, "police")) as police,
        WebhookServer(own_secret(SECRET, "parking")) as parking,
        WebhookServer(own_secret(SECRET, "archive")) as archive,
    ):
        hooks = {"police": (police.url, "[default]"), "parking": (parking.url, "[parking, permits]")}
        receivers_file(tmp_path, monkeypatch, {**hooks, "archive": (archive.url, "")})
        start_s = time.time() - 30
        log_frames(pool, [(frame(i, start_s + i * 0.2), [plate("KPX4721", 100 + 10 * i)]) for i in range(5)])
        build_sighting_stage(settings, connect_redis(redis_url), Metrics()).poll()
        logged = table(pool, "SELECT d.receiver, a.body->>'list_name' FROM alert_deliveries d"
                             " JOIN alerts a USING (alert_id) ORDER BY 1, 2")  # fmt: skip
        assert logged == [("archive", "default"), ("archive", "parking"), ("parking", "parking"), ("police", "default")]
        assert stage_queue(connect_redis(redis_url), "alert").count == 4  # a job per delivery, none to spare
        assert main(["worker", "alert", "--burst"]) == 0
    assert lists_received(police) == ["default"]
    assert lists_received(parking) == ["parking"]
    assert lists_received(archive) == ["default", "parking"]
    assert {status for (status,) in rows(postgres_url, "SELECT status FROM alert_deliveries")} == {"delivered"}


STOLEN = Alert(alert_id="read-00000000000000aa", camera_id="gate", plate="KPX4721", watch_plate="KPX4721",
               reason="stolen", distance=0.0, confidence=0.97, captured_at_s=time.time(), frame_id="gate:run1:3",
               kind="read", list_name="default", version=2)  # fmt: skip


def test_a_delivery_logged_by_a_raiser_on_another_file_is_not_sent_to_a_receiver_not_taking_its_list(
    chain, redis_url, postgres_url, tmp_path, monkeypatch
):
    """A sighting worker still on a file where the parking hook took every list logged it a stolen car's
    alert: this worker's file gives it `parking` alone, so the alert is not sent there (another worker on
    the older file would, until restarted; after the grace it is rejected); the police hook gets it. A
    version 1 body names no list: it goes to no receiver that names lists."""
    pool, _ = chain
    with pool.connection() as connection, connection.transaction():
        insert_listed(connection, [STOLEN], ["police", "parking"])  # as an older file routed it: everyone
    with WebhookServer(own_secret(SECRET, "police")) as police, WebhookServer(own_secret(SECRET, "parking")) as parking:
        receivers_file(tmp_path, monkeypatch, {"police": (police.url, ""), "parking": (parking.url, "[parking]")})
        from common.jobs import alert_job
        from common.queues import enqueue

        for receiver in ("police", "parking"):
            enqueue(stage_queue(connect_redis(redis_url), "alert"), alert_job(STOLEN.alert_id, receiver, 1), 60)
        assert main(["worker", "alert", "--burst"]) == 0
    assert lists_received(police) == ["default"] and parking.received == []
    ((status, last_error),) = rows(
        postgres_url, "SELECT status, last_error FROM alert_deliveries WHERE receiver = 'parking'"
    )
    assert status == "pending" and "takes the lists parking only; this alert's list: default" in last_error
    unnamed = STOLEN.model_copy(update={"alert_id": "read-00000000000000bb", "list_name": None, "version": 1})
    routes = {"police": None, "parking": frozenset({"parking"})}
    with pool.connection() as connection, connection.transaction():
        insert_listed(connection, [unnamed], routes)
    assert rows(postgres_url, f"SELECT receiver FROM alert_deliveries WHERE alert_id = '{unnamed.alert_id}'") == [
        ("police",)
    ]


def test_the_deliveries_the_alert_pool_adds_follow_each_receivers_lists(chain, postgres_url):
    """Alerts raised by a sighting worker whose file named no receiver: the alert pool's file adds the
    police hook (default list) to the stolen car's alert only, the archive (every list) to both."""
    pool, _ = chain
    parked = STOLEN.model_copy(update={"alert_id": "read-00000000000000cc", "list_name": "parking"})
    with pool.connection() as connection, connection.transaction():
        insert_listed(connection, [STOLEN, parked], [])
    added = AlertLog(pool, 0.0).add_missing({"police": frozenset({"default"}), "archive": None}, 900.0)
    assert sorted(added) == [
        (STOLEN.alert_id, "archive"), (STOLEN.alert_id, "police"), (parked.alert_id, "archive"),
    ]  # fmt: skip


def test_an_alert_of_a_list_no_receiver_takes_is_logged_counted_and_told(
    chain, redis_url, postgres_url, tmp_path, monkeypatch, caplog
):
    """The only receiver takes `Stolen`; the plate is on `default` (a case slip, or a list added to the
    watch-lists and to no receiver): the alert is logged with no delivery, and said, not dropped unseen."""
    pool, settings = chain
    receivers_file(tmp_path, monkeypatch, {"police": ("http://127.0.0.1:9/x", "[Stolen]")})
    start_s = time.time() - 30
    log_frames(pool, [(frame(i, start_s + i * 0.2), [plate("KPX4721", 100 + 10 * i)]) for i in range(5)])
    metrics = Metrics()
    build_sighting_stage(settings, connect_redis(redis_url), metrics).poll()
    assert table(pool, "SELECT body->>'list_name' FROM alerts") == [("default",)]
    assert table(pool, "SELECT count(*) FROM alert_deliveries") == [(0,)]
    assert metrics.registry.get_sample_value("alpr_alerts_unrouted_total") == 1
    assert "alerts of the watch-list 'default' go to no receiver" in caplog.text
    assert "KPX4721" not in caplog.text

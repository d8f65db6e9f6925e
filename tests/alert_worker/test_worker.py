"""The alert pool's edge on the real Postgres, a private Redis, a real HTTP receiver and a private
mosquitto, through `alpr worker alert`: an alert reaches every receiver once, signed; a receiver that
answers 500 gets it once it is back (retried with back-off, acknowledged once); a receiver that refuses
it for good marks it rejected, and `alpr replay --stage alert` sends it again once mended; a worker
killed mid-delivery leaves the delivery to the next one, sent with the same idempotency key."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from rq.registry import FinishedJobRegistry

from alert_worker.signing import IDEMPOTENCY_HEADER
from alpr.cli import main
from common import defaults
from common.alert_raising import insert_alerts
from common.alerts import Alert, ListFilter
from common.db import open_pool
from common.jobs import alert_job
from common.queues import connect_redis, enqueue, stage_queue
from tests.alert_servers import FloodingBroker, PrivateMosquitto, Reply, WebhookServer, own_secret
from tests.conftest import unavailable

SECRET = "hook-secret-0123456789abcdef"

ALERT = Alert(alert_id="read-0123456789abcdef", camera_id="gate", plate="KPX4721", watch_plate="KPX4721",
              reason="stolen", distance=0.0, confidence=0.97, captured_at_s=time.time(), frame_id="gate:run1:3",
              kind="read")  # fmt: skip


LIST = "INSERT INTO watchlist (list_name, plate, reason) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
"""An alert's entry put on the watch-list (`insert_listed`)."""


def insert_listed(
    connection: psycopg.Connection, alerts: Sequence[Alert], receivers: Mapping[str, ListFilter] | Sequence[str]
) -> list[Alert]:
    """As the sighting pool raises alerts, on entries listed: each alert's plate put on its list (`default` for
    a version 1 body: a delivery whose entry is gone is rejected at its claim), then `insert_alerts`."""
    for alert in alerts:
        connection.execute(LIST, (alert.list_name or "default", alert.watch_plate, alert.reason))
    return insert_alerts(connection, alerts, receivers)


def raise_alert(postgres_url: str, redis_url: str, receivers: list[str]) -> None:
    """As the sighting pool does: the alert and its deliveries in one transaction, then their jobs."""
    pool = open_pool(postgres_url)
    try:
        with pool.connection() as connection, connection.transaction():
            assert insert_listed(connection, [ALERT], receivers) == [ALERT]
    finally:
        pool.close()
    for receiver in receivers:
        enqueue(stage_queue(connect_redis(redis_url), "alert"), alert_job(ALERT.alert_id, receiver, 1), 60)


def rows(postgres_url: str, query: str) -> list[tuple]:  # type: ignore[type-arg]
    pool = open_pool(postgres_url)
    try:
        with pool.connection() as connection:
            return connection.execute(query).fetchall()  # type: ignore[arg-type]
    finally:
        pool.close()


def deliveries(postgres_url: str) -> dict[str, str]:
    return dict(rows(postgres_url, "SELECT receiver, status FROM alert_deliveries"))


@pytest.fixture()
def setup(postgres_url, redis_url, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    (tmp_path / "hook.secret").write_text(SECRET)

    def receivers(url: str, mqtt_port: int | None = None, timeout_s: float = 1) -> None:
        text = f"receivers:\n  ops:\n    type: webhook\n    url: {url}\n    secret_file: {tmp_path / 'hook.secret'}\n"
        text += f"    timeout_s: {timeout_s}\n"
        if mqtt_port:
            text += f"  broker:\n    type: mqtt\n    host: 127.0.0.1\n    port: {mqtt_port}\n    topic: alpr/alerts\n"
        (tmp_path / "receivers.yaml").write_text(text)
        monkeypatch.setenv("ALPR_ALERT_RECEIVERS", str(tmp_path / "receivers.yaml"))

    return receivers


def burst() -> None:
    assert main(["worker", "alert", "--burst"]) == 0


def test_an_alert_reaches_every_receiver_once_signed(setup, postgres_url, redis_url, tmp_path):
    try:
        broker = PrivateMosquitto(tmp_path)
    except FileNotFoundError as error:
        unavailable(str(error))
    broker.start()
    got: list[bytes] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, message: got.append(message.payload)
    client.connect("127.0.0.1", broker.port)
    client.subscribe("alpr/alerts", qos=1)
    client.loop_start()
    try:
        assert subscribed.wait(5)
        with WebhookServer(SECRET) as hook:
            setup(hook.url, broker.port)
            raise_alert(postgres_url, redis_url, ["ops", "broker"])
            burst()
            burst()  # a second worker finds nothing to send again
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        client.loop_stop()
        client.disconnect()
        broker.stop()
    assert [r.signature_ok for r in hook.received] == [True]
    assert json.loads(hook.received[0].body)["plate"] == "KPX4721"
    assert hook.received[0].headers[IDEMPOTENCY_HEADER] == ALERT.alert_id
    assert [json.loads(payload)["alert_id"] for payload in got] == [ALERT.alert_id]
    assert deliveries(postgres_url) == {"ops": "delivered", "broker": "delivered"}


def test_a_receiver_answering_with_control_characters_gets_its_outcome_recorded(setup, postgres_url, redis_url, caplog):
    """A security audit: `503 Busy<NUL><ESC>[31m`: Postgres refused the NUL in the last error, so no
    outcome was recorded, and the alert was sent again every few seconds, never given up."""
    with WebhookServer(SECRET, Reply(status=503, echo_text="Busy\x00\x1b[31mRED\x1b[0m")) as hook:
        setup(hook.url)
        raise_alert(postgres_url, redis_url, ["ops"])
        burst()
    ((status, last_error),) = rows(postgres_url, "SELECT status, last_error FROM alert_deliveries")
    assert status == "pending" and len(hook.received) == 1  # retried later, as a 503 is
    assert "HTTP 503 No hook at Busy\\x00\\x1b[31mRED" in last_error and "\x1b" not in caplog.text


@pytest.mark.parametrize(("status", "outcome"), [(503, "pending"), (409, "rejected")])
def test_a_receivers_words_quoting_the_plate_are_recorded_but_never_logged(
    status, outcome, setup, postgres_url, redis_url, caplog
):
    """A receiver answering `409 duplicate plate KPX4721` put the plate in a WARNING line (an INFO one
    for a 503, retried): its words now go to the deliveries table's last error alone (a privacy review)."""
    caplog.set_level(logging.INFO)
    with WebhookServer(SECRET, Reply(status=status, echo_text="duplicate plate KPX4721")) as hook:
        setup(hook.url)
        raise_alert(postgres_url, redis_url, ["ops"])
        burst()
    ((state, last_error),) = rows(postgres_url, "SELECT status, last_error FROM alert_deliveries")
    assert state == outcome and f"HTTP {status} No hook at duplicate plate KPX4721" in last_error
    assert f"HTTP {status}" in caplog.text and "KPX4721" not in caplog.text


def test_an_alert_no_worker_can_read_is_rejected_once_not_queued_again_for_ever(setup, postgres_url, redis_url, caplog):
    """An alert's body with a field this version does not know (written by another version, or by hand)
    failed every claim, which rolled back: pending for ever, queued again every 30 s, three ERROR lines
    each time quoting the value, and no delivery metric moved."""
    with WebhookServer(SECRET) as hook:
        setup(hook.url)
        raise_alert(postgres_url, redis_url, ["ops"])
        pool = open_pool(postgres_url)
        try:
            with pool.connection() as connection:
                connection.execute('UPDATE alerts SET body = body || \'{"lane": "SECRETVALUE"}\'')
        finally:
            pool.close()
        burst()
        burst()
    ((status, attempts, last_error),) = rows(postgres_url, "SELECT status, attempts, last_error FROM alert_deliveries")
    assert status == "rejected" and attempts == 1 and hook.received == []
    assert "'lane'" in last_error and "SECRETVALUE" not in last_error + caplog.text
    assert "rejected: the alert cannot be read" in caplog.text and "ERROR" not in caplog.text


def test_a_receiver_down_gets_the_alert_once_it_is_back(setup, postgres_url, redis_url):
    with WebhookServer(SECRET, Reply(status=503)) as hook:
        setup(hook.url)
        raise_alert(postgres_url, redis_url, ["ops"])
        burst()
        assert deliveries(postgres_url) == {"ops": "pending"} and len(hook.received) == 1  # retried later
        hook.reply = Reply(status=200)
        time.sleep(1.2)  # the first back-off
        burst()
        burst()
    assert deliveries(postgres_url) == {"ops": "delivered"}
    assert len(hook.received) == 2 and {r.headers[IDEMPOTENCY_HEADER] for r in hook.received} == {ALERT.alert_id}


def test_a_rejected_alert_is_kept_and_replayed(setup, postgres_url, redis_url, capsys, monkeypatch):
    # a 404 is tried again within ALERT_UNKNOWN_RECEIVER_GRACE_S (a receiver's maintenance window), here none
    monkeypatch.setattr(defaults, "ALERT_UNKNOWN_RECEIVER_GRACE_S", 0.5)
    with WebhookServer(SECRET, Reply(status=404)) as hook:
        setup(hook.url)
        raise_alert(postgres_url, redis_url, ["ops"])
        burst()
        assert deliveries(postgres_url) == {"ops": "rejected"}
        # when it was given up, for `alpr replay --max-age-h` (the claim had set it a lease ahead)
        assert rows(postgres_url, "SELECT next_attempt_at <= now() FROM alert_deliveries") == [(True,)]
        enqueue(stage_queue(connect_redis(redis_url), "alert"), alert_job(ALERT.alert_id, "ops", 9), 60)  # a stray job
        time.sleep(1.2)  # past the first back-off
        burst()
        assert len(hook.received) == 1  # not retried, not even by a job for it
        hook.reply = Reply(status=200)  # the receiver's path mended
        capsys.readouterr()
        assert main(["replay", "--stage", "alert", "--max-age-h", "0.0001"]) == 0  # alerts of the last 0.36 s
        assert "requeued: 0" in capsys.readouterr().out  # an old alert is not sent to dispatch now
        assert main(["replay", "--stage", "alert"]) == 0  # the default: within ALPR_ALERT_GIVE_UP_S (a day)
        assert "requeued: 1" in capsys.readouterr().out
        burst()
    assert deliveries(postgres_url) == {"ops": "delivered"} and len(hook.received) == 2


def test_a_delivery_given_up_after_its_day_of_retries_is_replayed_by_default(setup, postgres_url, redis_url, capsys):
    """Given up a day after the alert (ALPR_ALERT_GIVE_UP_S): `alpr replay --stage alert` counted its
    window from the capture, so it never resent one that had failed; now from when it was given up."""
    with WebhookServer(SECRET) as hook:
        setup(hook.url)
        raise_alert(postgres_url, redis_url, ["ops"])
        rows(postgres_url, "UPDATE alert_deliveries SET status = 'failed', retry_from = now() - interval '25 hours',"
                           " next_attempt_at = now() - interval '1 hour' RETURNING 1")  # fmt: skip
        rows(postgres_url, "UPDATE alerts SET captured_at = now() - interval '25 hours' RETURNING 1")
        capsys.readouterr()
        assert main(["replay", "--stage", "alert", "--max-age-h", "0.5"]) == 0
        assert "requeued: 0" in capsys.readouterr().out  # given up an hour ago: not within half an hour
        assert main(["replay", "--stage", "alert"]) == 0
        assert "requeued: 1" in capsys.readouterr().out
        burst()
    assert deliveries(postgres_url) == {"ops": "delivered"} and len(hook.received) == 1


def delivery_row(postgres_url: str, receiver: str = "ops") -> tuple[str, int, str]:
    query = "SELECT status, attempts, last_error FROM alert_deliveries WHERE receiver = "
    [row] = rows(postgres_url, query + f"'{receiver}'")
    return row


def test_an_unreachable_receiver_is_retried_not_lost(setup, postgres_url, redis_url):
    setup("http://127.0.0.1:9/nothing-listens")
    raise_alert(postgres_url, redis_url, ["ops"])
    burst()
    status, attempts, error = delivery_row(postgres_url)
    assert (status, attempts) == ("pending", 1) and "refused" in error and SECRET not in error


def test_a_broker_flooding_an_attempt_is_cut_off_and_retried_with_back_off(setup, postgres_url, redis_url):
    """A security review's hostile broker answers the publish with a PUBLISH announcing 256 MB: each
    attempt is cut off as a failure worth retrying (the delivery pending, its attempt counted), then made
    again after the back-off, by a worker whose memory it never held."""
    with FloodingBroker(huge=True) as hostile:
        setup("http://127.0.0.1:9/unused", hostile.port)
        raise_alert(postgres_url, redis_url, ["broker"])
        burst()
        status, attempts, error = delivery_row(postgres_url, "broker")
        assert (status, attempts, hostile.connections) == ("pending", 1, 1)
        assert "cut off" in error and "268435455 bytes asked for" in error
        time.sleep(1.2)  # the first back-off
        burst()
        status, attempts, error = delivery_row(postgres_url, "broker")
    assert (status, attempts, hostile.connections) == ("pending", 2, 2) and "cut off" in error


@pytest.mark.parametrize(("reply", "status"), [(None, "pending"), (Reply(404, echo_path=True), "pending"),
                                               (Reply(422, echo_path=True), "rejected")])  # fmt: skip
def test_a_token_in_the_webhook_path_reaches_no_log_and_no_row(setup, postgres_url, redis_url, caplog, reply, status):
    """Slack- and Discord-style hooks carry their token in the path: a receiver is named by its origin and
    its name in the receivers file, in the log lines (retried: INFO, given up: WARNING) and in the table."""
    token_path = "/services/T0001/B0002/XoXoSeCrEtToKeN"
    with WebhookServer(SECRET, reply) as hook:
        origin = hook.url.removesuffix("/hooks/alpr") if reply else "http://127.0.0.1:9"
        setup(origin + token_path)
        raise_alert(postgres_url, redis_url, ["ops"])
        with caplog.at_level("INFO"):
            burst()
    got, attempts, error = delivery_row(postgres_url)
    shown = "\n".join(r.getMessage() for r in caplog.records)
    assert (got, attempts) == (status, 1) and f"webhook {origin}: " in error and "to ops" in shown
    assert "XoXoSeCrEtToKeN" not in error and "XoXoSeCrEtToKeN" not in shown and "T0001" not in shown + error


def test_a_worker_killed_mid_delivery_leaves_it_to_the_next(setup, postgres_url, redis_url):
    with WebhookServer(SECRET, Reply(hang=True)) as hook:
        setup(hook.url, timeout_s=4)  # the kill lands inside it even when this process stalls a second
        raise_alert(postgres_url, redis_url, ["ops"])
        env = dict(os.environ)  # the tests' own ALPR_TEST* variables are gone already (tests/conftest.py)
        process = subprocess.Popen([sys.executable, "-m", "alpr.cli", "worker", "alert"], env=env)
        deadline = time.monotonic() + 60
        while not hook.received and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)  # mid-delivery: sent, never acknowledged
        process.wait(timeout=10)
        assert deliveries(postgres_url) == {"ops": "sending"}
        hook.reply = Reply(status=200)
        time.sleep(4 + 5 + 0.5)  # the claim's lease: the receiver's timeout plus a margin
        burst()
    assert deliveries(postgres_url) == {"ops": "delivered"}
    assert len(hook.received) == 2 and {r.headers[IDEMPOTENCY_HEADER] for r in hook.received} == {ALERT.alert_id}


def test_a_worker_whose_clock_runs_ahead_signs_by_postgres_clock_and_is_warned_of(
    setup, postgres_url, redis_url, monkeypatch, caplog
):
    """A review: an alert worker whose host clock ran 10 minutes ahead signed each webhook by it; a
    receiver checking the signature with verify_signature (5 minutes' tolerance) answered 401, and the
    alert was rejected for good. The timestamp is now Postgres's at the claim, and the worker says at its
    start that its clock is off."""
    from alert_worker import webhook, worker

    ahead = SimpleNamespace(time=lambda: time.time() + 600, monotonic=time.monotonic)  # this host's clock
    monkeypatch.setattr(webhook, "time", ahead)
    monkeypatch.setattr(worker, "time", ahead)
    with WebhookServer(SECRET, clock=time.time) as hook:  # the receiver's clock is right
        setup(hook.url)
        raise_alert(postgres_url, redis_url, ["ops"])
        burst()
    assert deliveries(postgres_url) == {"ops": "delivered"} and [r.signature_ok for r in hook.received] == [True]
    assert abs(int(hook.received[0].headers["X-ALPR-Timestamp"]) - time.time()) < 5
    assert "this host's clock is +600 s off Postgres's" in caplog.text


def test_a_receiver_no_longer_in_the_file_is_rejected_not_retried_forever(setup, postgres_url, redis_url, monkeypatch):
    monkeypatch.setattr(defaults, "ALERT_UNKNOWN_RECEIVER_GRACE_S", 0.5)  # its first retry would come later
    with WebhookServer(SECRET) as hook:
        setup(hook.url)  # the file names `ops` only
        raise_alert(postgres_url, redis_url, ["ops", "gone"])
        burst()
    assert deliveries(postgres_url) == {"ops": "delivered", "gone": "rejected"}
    [(error,)] = rows(postgres_url, "SELECT last_error FROM alert_deliveries WHERE receiver = 'gone'")
    assert "no receiver named 'gone'" in error


def test_a_receiver_new_to_a_worker_not_restarted_yet_is_retried_until_one_knows_it(setup, postgres_url, redis_url):
    """Mid-upgrade: the sighting pool raises alerts to a receiver added to the file, and an alert worker
    still running with the old file takes the job; the delivery waits for a worker that knows it."""
    with WebhookServer(SECRET) as hook, WebhookServer(own_secret(SECRET, "added")) as later:
        setup(hook.url)  # the old file names `ops` only
        raise_alert(postgres_url, redis_url, ["ops", "added"])
        burst()
        assert deliveries(postgres_url) == {"ops": "delivered", "added": "pending"}
        added = Path(os.environ["ALPR_ALERT_RECEIVERS"])
        added.write_text(added.read_text() + f"  added:\n    type: webhook\n    url: {later.url}\n"
                         f"    secret: {own_secret(SECRET, 'added')}\n")  # fmt: skip
        time.sleep(1.2)  # the first back-off
        burst()
        burst()
    assert deliveries(postgres_url) == {"ops": "delivered", "added": "delivered"}
    assert len(hook.received) == len(later.received) == 1 and later.received[0].signature_ok


def test_a_receiver_the_raisers_file_lacked_gets_the_recent_alerts_from_the_alert_pool(
    setup, postgres_url, redis_url, tmp_path, monkeypatch, caplog
):
    """A review (a rolling restart): a sighting worker still on the old receivers file (ops) raised alerts
    with no delivery to dash, just added to the file, so dash never got them and `alpr replay` had nothing
    to resend. An alert worker whose file names ops and dash adds the missing delivery to a recent alert
    and sends it once; not to one raised past ALERT_MISSING_RECEIVER_S (Postgres's clock), nor again, and
    a delivery to a receiver its file does not name (removed) is left as it was."""
    setup("http://127.0.0.1:9/unused")
    with WebhookServer(own_secret(SECRET, "ops")) as ops, WebhookServer(own_secret(SECRET, "dash")) as dash:
        receivers_file(tmp_path, monkeypatch, {"ops": (ops.url, 1), "dash": (dash.url, 1)})
        recent, old = raise_alerts(postgres_url, redis_url, 2, ["ops", "gone"])  # the raiser's file: ops, gone
        age = f"{defaults.ALERT_MISSING_RECEIVER_S + 60} seconds"
        rows(postgres_url, f"UPDATE alerts SET created_at = now() - interval '{age}' WHERE alert_id = '{old}'"
                           " RETURNING 1")  # fmt: skip
        rows(postgres_url, "UPDATE alert_deliveries SET status = 'rejected' WHERE receiver = 'gone' RETURNING 1")
        burst()
        burst()  # a second worker adds nothing, sends nothing again
    found = rows(postgres_url, "SELECT alert_id, receiver, status FROM alert_deliveries")
    assert sorted(found) == sorted([(recent, "ops", "delivered"), (recent, "dash", "delivered"),
                                    (recent, "gone", "rejected"), (old, "ops", "delivered"),
                                    (old, "gone", "rejected")])  # fmt: skip
    assert [r.headers[IDEMPOTENCY_HEADER] for r in dash.received] == [recent] and len(ops.received) == 2
    assert "1 deliveries added that their alerts lacked, to dash" in caplog.text


def test_the_outcome_of_a_claim_that_ran_out_changes_nothing(setup, postgres_url, redis_url):
    """A worker whose lease ran out mid-send (another claimed the delivery and sent it) records nothing."""
    from common.alert_log import AlertLog

    setup("http://127.0.0.1:9/unused")
    raise_alert(postgres_url, redis_url, ["ops"])
    pool = open_pool(postgres_url)
    try:
        log = AlertLog(pool, 0)
        slow = log.claim(ALERT.alert_id, "ops", lease_s=0)  # its lease runs out at once
        fast = log.claim(ALERT.alert_id, "ops", lease_s=30)
        assert slow is not None and fast is not None and (slow.attempt, fast.attempt) == (1, 2)
        assert log.claim(ALERT.alert_id, "ops", lease_s=30) is None  # held by `fast`
        log.delivered(fast)
        log.retry_after(slow, 1.0, "HTTP 503")  # the slow worker's late answer
        log.give_up(slow, "failed", "gave up")
    finally:
        pool.close()
    assert deliveries(postgres_url) == {"ops": "delivered"}


def test_a_worker_stalled_past_a_give_up_and_a_replay_still_changes_nothing(setup, postgres_url, redis_url):
    """A replay reset the attempts, each a claim's token: the next claim took the number a stalled worker
    still held, and that worker's late outcome overwrote the delivery being sent."""
    from common.alert_log import AlertLog

    setup("http://127.0.0.1:9/unused")
    raise_alert(postgres_url, redis_url, ["ops"])
    pool = open_pool(postgres_url)
    try:
        log = AlertLog(pool, 0)
        stalled = log.claim(ALERT.alert_id, "ops", lease_s=0)  # its lease runs out at once; it hangs
        other = log.claim(ALERT.alert_id, "ops", lease_s=0)
        assert stalled is not None and other is not None
        log.give_up(other, "failed", "gave up")  # a day of retries later
        assert log.replay(3600.0) == [(ALERT.alert_id, "ops")]
        fresh = log.claim(ALERT.alert_id, "ops", lease_s=30)
        assert fresh is not None and fresh.attempt not in (stalled.attempt, other.attempt)
        log.give_up(stalled, "rejected", "the stalled worker's late answer")
        assert deliveries(postgres_url) == {"ops": "sending"}  # still the fresh claim's
        log.delivered(fresh)
    finally:
        pool.close()
    assert deliveries(postgres_url) == {"ops": "delivered"}


def test_an_unexpected_error_is_retried_and_recorded_by_its_type_only(setup, postgres_url, redis_url, caplog):
    """A library's error text may quote the URL's token or the plate: neither reaches the log or the table."""
    from alert_worker.worker import AlertStage
    from common.alert_log import AlertLog
    from common.alerts import load_receivers
    from common.metrics import Metrics

    setup("https://alerts.example.org/hook?token=hunter2")
    raise_alert(postgres_url, redis_url, ["ops"])

    def broken(alert: Alert, receiver: object, now_s: float) -> None:
        raise ValueError(f"cannot send {alert.plate} to https://alerts.example.org/hook?token=hunter2")

    pool = open_pool(postgres_url)
    try:
        receivers = load_receivers(Path(os.environ["ALPR_ALERT_RECEIVERS"]))
        queue = stage_queue(connect_redis(redis_url), "alert")
        metrics = Metrics()
        stage = AlertStage(receivers, AlertLog(pool, 0), queue, metrics, 3600.0, 60, send=broken)
        counted = metrics.registry.get_sample_value  # exported at 0 from the start: a first failure is an increase
        assert counted("alpr_alert_deliveries_total", {"receiver": "ops", "outcome": "failed"}) == 0
        with caplog.at_level("DEBUG"):
            stage.handle(alert_job(ALERT.alert_id, "ops", 1).model_dump(mode="json"))
            stage.finish(threading.Event())  # the attempt is made on the receiver's lane: its outcome recorded
        with pool.connection() as connection:
            row = connection.execute("SELECT status, last_error FROM alert_deliveries").fetchone()
    finally:
        pool.close()
    assert row[0] == "pending" and row[1].endswith("unexpected ValueError")  # tried again later (its receiver's probe)
    shown = " ".join(r.getMessage() for r in caplog.records if r.levelno >= 20)
    assert "unexpected ValueError" in shown and "hunter2" not in shown and ALERT.plate not in shown
    assert "hunter2" not in caplog.text and ALERT.plate not in caplog.text  # at DEBUG too: its traceback quoted it
    assert "ValueError at " in caplog.text  # where it was raised, for whoever debugs it


@pytest.mark.parametrize(("url", "warned"), [("http://alerts.example.org/x", True), ("http://127.0.0.1:9/x", False),
                                             ("https://alerts.example.org/x", False),
                                             ("HTTP://alerts.example.org/x", True),  # sent as plain http too
                                             ("http://[::1]:9/x", False)])  # fmt: skip
def test_a_receiver_reached_in_the_clear_is_warned_of(setup, redis_url, url, warned, caplog):
    from alpr.wiring import build_alert_stage
    from common.config import Settings
    from common.metrics import Metrics

    setup(url)
    stage = build_alert_stage(Settings.load(), connect_redis(redis_url), Metrics())
    stage.alert_log.pool.close()
    assert ("unencrypted" in caplog.text) is warned


def test_a_hung_receiver_rests_and_holds_no_other_receivers_alerts(postgres_url, redis_url, tmp_path, monkeypatch):
    """One worker, four alerts, a dashboard that accepts and never answers and a dispatch receiver that
    works. Each alert used to cost the worker the dashboard's whole timeout, and dispatch got its fourth
    alert four timeouts late; now the dashboard is tried once, rests, and its alerts wait their turn."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    alerts = [ALERT.model_copy(update={"alert_id": f"read-{i:016x}"}) for i in range(4)]
    with (
        WebhookServer(own_secret(SECRET, "dashboard"), Reply(hang=True)) as dashboard,
        WebhookServer(own_secret(SECRET, "dispatch")) as dispatch,
    ):
        receivers_file(tmp_path, monkeypatch, {"dashboard": (dashboard.url, 1), "dispatch": (dispatch.url, 1)})
        pool = open_pool(postgres_url)
        try:
            with pool.connection() as connection, connection.transaction():
                insert_listed(connection, alerts, ["dashboard", "dispatch"])
        finally:
            pool.close()
        queue = stage_queue(connect_redis(redis_url), "alert")
        for alert in alerts:
            for receiver in ("dashboard", "dispatch"):
                enqueue(queue, alert_job(alert.alert_id, receiver, 1), 60)
        burst()
    assert len(dashboard.received) <= 1 and len(dispatch.received) == 4  # hung: the request never completes
    found = rows(postgres_url, "SELECT receiver, status, last_error FROM alert_deliveries")
    assert sorted((r, s) for r, s, _ in found) == [("dashboard", "pending")] * 4 + [("dispatch", "delivered")] * 4
    waiting = sorted(e for r, _, e in found if r == "dashboard")
    assert "timed out" in waiting[-1] and waiting[:3] == ["not tried: the receiver failed its last attempt"] * 3


def test_an_alert_not_tried_while_its_receiver_rests_is_due_when_the_rest_ends(setup, postgres_url, redis_url):
    """A receiver down: the first alert's attempt fails and the receiver rests; the next alert is not
    tried. It waited its own back-off, doubled by each rest, so one rested six times before waited a
    minute more once the receiver was back. It is now due when the receiver's rest ends. The next alert's
    delivery is one the failure's hold leaves to its job: its last attempt's worker died mid-send, its lease
    run out (a pending one, its job queued or not, is held: tests/alert_worker/test_held_alerts.py)."""
    alerts = [ALERT.model_copy(update={"alert_id": f"read-{i:016x}"}) for i in range(2)]
    with WebhookServer(SECRET, Reply(status=503)) as hook:
        setup(hook.url)
        pool = open_pool(postgres_url)
        try:
            with pool.connection() as connection, connection.transaction():
                insert_listed(connection, alerts, ["ops"])
                connection.execute("UPDATE alert_deliveries SET attempts = 6, status = 'sending', next_attempt_at ="
                                   " now() - interval '1 second' WHERE alert_id = %s",
                                   (alerts[1].alert_id,))  # fmt: skip
        finally:
            pool.close()
        queue = stage_queue(connect_redis(redis_url), "alert")
        for alert in alerts:
            enqueue(queue, alert_job(alert.alert_id, "ops", 1), 60)
        burst()
    assert len(hook.received) == 1  # the first alert's attempt; the second waited the receiver's rest
    found = rows(postgres_url, "SELECT alert_id, attempts, last_error, extract(epoch FROM next_attempt_at - now())"
                               " FROM alert_deliveries ORDER BY alert_id")  # fmt: skip
    (_, tried, _, _), (_, rested, error, due_in_s) = found
    assert tried == 1 and rested == 7 and error == "not tried: the receiver failed its last attempt"
    assert due_in_s <= defaults.ALERT_BACKOFF_S[0] * 1.5  # the receiver's first rest, not the seventh back-off


@pytest.mark.parametrize(("stage", "wait_s"), [("alert", defaults.ALERT_MAINTENANCE_S), ("detect", 15)])
def test_an_idle_worker_does_its_duties_as_often_as_its_pool_asks(redis_url, stage, wait_s):
    """RQ's idle worker waits worker_ttl - 15 s for a job before its duties; the alert pool's worker_ttl
    was the others' (30 s), so the deliveries due every second (a retry after a 503) were queued every
    15 s (a review: retried 15.0 s after its first attempt, its back-off 1 s)."""
    import redis

    from alpr.worker_command import worker_options
    from common.metrics import Metrics
    from common.worker import StageWorker
    from common.worker_context import WorkerContext

    class Idle:
        name = stage

    queue = stage_queue(redis.Redis.from_url(redis_url), stage)
    worker = StageWorker(queue, WorkerContext(Idle(), Metrics()), **worker_options(stage))  # type: ignore[arg-type]
    assert worker.dequeue_timeout == wait_s
    assert worker.maintenance_interval == (wait_s if stage == "alert" else 15)


def receivers_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timeouts: dict[str, tuple[str, float]]) -> None:
    """A receivers file naming each receiver with its (webhook URL, timeout_s), in this order, and its own
    secret (`own_secret`), in a file."""
    text = "receivers:\n"
    for name, (url, timeout_s) in timeouts.items():
        (tmp_path / f"{name}.secret").write_text(own_secret(SECRET, name))
        text += f"  {name}:\n    type: webhook\n    url: {url}\n    secret_file: {tmp_path / f'{name}.secret'}\n"
        text += f"    timeout_s: {timeout_s}\n"
    (tmp_path / "receivers.yaml").write_text(text)
    monkeypatch.setenv("ALPR_ALERT_RECEIVERS", str(tmp_path / "receivers.yaml"))


def raise_alerts(postgres_url: str, redis_url: str, count: int, receivers: list[str]) -> list[str]:
    """`count` alerts, each with a delivery to every receiver, their jobs queued in the receivers' order
    (as the sighting pool queues them); their ids."""
    alerts = [ALERT.model_copy(update={"alert_id": f"read-{i:016x}"}) for i in range(count)]
    pool = open_pool(postgres_url)
    try:
        with pool.connection() as connection, connection.transaction():
            insert_listed(connection, alerts, receivers)
    finally:
        pool.close()
    queue = stage_queue(connect_redis(redis_url), "alert")
    for alert in alerts:
        for receiver in receivers:
            enqueue(queue, alert_job(alert.alert_id, receiver, 1), 60)
    return [alert.alert_id for alert in alerts]


def alert_worker() -> subprocess.Popen:  # type: ignore[type-arg]
    """`alpr worker alert` in a process of its own (one worker, as Compose runs), until a signal."""
    env = dict(os.environ)  # the tests' own ALPR_TEST* variables are gone already (tests/conftest.py)
    return subprocess.Popen([sys.executable, "-m", "alpr.cli", "worker", "alert"], env=env)


def wait_for(done: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)
    return done()


def stopped(process: subprocess.Popen) -> int:  # type: ignore[type-arg]
    """SIGTERM, and the worker's exit status (it ends once its attempts in flight have)."""
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)


@pytest.mark.parametrize("dashboard_is", ["slow", "hung"])
def test_a_slow_or_hung_receiver_delays_no_other_receivers_alerts(
    dashboard_is, postgres_url, redis_url, tmp_path, monkeypatch
):
    """A review: all receivers shared the worker's one loop, so a dashboard listed first that answered 200
    after 4 s (inside its 5 s timeout) got a burst of 6 alerts to dispatch 4.7 to 24.8 s late, and one that
    hung to a 20 s timeout held dispatch's alerts 8.7 s at the median. Now each receiver has a lane of its
    own: every alert to dispatch is delivered while the dashboard's first attempt is still in flight (its
    answer held back by the test, within a 60 s timeout), and the dashboard's other alerts wait for it
    unclaimed (attempt count and back-off untouched); the slow dashboard then gets each in one attempt."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    answer = threading.Event()
    reply = Reply(held_until=answer) if dashboard_is == "slow" else Reply(hang=True)
    with (
        WebhookServer(own_secret(SECRET, "dashboard"), reply) as dashboard,
        WebhookServer(own_secret(SECRET, "dispatch")) as dispatch,
    ):
        # the dashboard first, with the longest timeout a file allows: its attempt stays in flight while we look
        receivers_file(tmp_path, monkeypatch, {"dashboard": (dashboard.url, 60), "dispatch": (dispatch.url, 5)})
        alert_ids = raise_alerts(postgres_url, redis_url, 4, ["dashboard", "dispatch"])
        process = alert_worker()
        try:
            to_dispatch = "SELECT count(*) FROM alert_deliveries WHERE receiver = 'dispatch' AND status = 'delivered'"
            assert wait_for(lambda: rows(postgres_url, to_dispatch) == [(4,)], 50), "dispatch waited"
            found = rows(postgres_url, "SELECT status, attempts FROM alert_deliveries WHERE receiver = 'dashboard'")
            # the dashboard's first attempt is in flight, never answered; the other three wait unclaimed
            assert len(dashboard.received) == 1 and sorted(found) == [("pending", 0)] * 3 + [("sending", 1)]
            assert sorted(r.headers[IDEMPOTENCY_HEADER] for r in dispatch.received) == alert_ids
            if dashboard_is == "slow":
                answer.set()  # it answers 200, as slow receivers do
                done = "SELECT status, attempts FROM alert_deliveries WHERE receiver = 'dashboard'"
                assert wait_for(lambda: rows(postgres_url, done) == [("delivered", 1)] * 4, 50)
                assert sorted(r.headers[IDEMPOTENCY_HEADER] for r in dashboard.received) == alert_ids
        finally:
            answer.set()
            dashboard.release.set()  # a hung dashboard lets go (the attempt fails: retried later)
            assert stopped(process) == 0


@pytest.mark.parametrize("answered_after_s", [0.3, 1.0])
def test_a_worker_stopped_mid_attempt_finishes_it_and_hands_back_the_alerts_waiting(
    setup, postgres_url, redis_url, tmp_path, monkeypatch, answered_after_s
):
    """SIGTERM while an attempt is in flight on a receiver's lane and two more alerts wait behind it: the
    worker waits for the attempt (recorded delivered: not sent again), and hands the two back never
    claimed, marked to be queued again at once; the next worker sends them, each once, with its key.
    Answered 0.3 s after the signal, within RQ's own teardown (up to a second), the lane began the next
    alert waiting (a review: the lanes were told of the stop only after it): they see the signal at once."""
    answer = threading.Event()
    try:
        with WebhookServer(own_secret(SECRET, "ops"), Reply(held_until=answer)) as hook:
            receivers_file(tmp_path, monkeypatch, {"ops": (hook.url, 60)})  # answered within its timeout
            alert_ids = raise_alerts(postgres_url, redis_url, 3, ["ops"])
            process = alert_worker()
            assert wait_for(lambda: len(hook.received) == 1, 50)
            waiting = "SELECT count(*) FROM alert_deliveries WHERE status = 'pending' AND attempts = 0"
            assert wait_for(lambda: rows(postgres_url, waiting) == [(2,)], 10)
            # the two behind it in its lane: RQ has run every job (each handed to the lane), none left in the
            # queue (under load the third still waited there at the signal: not handed back, its queued_at kept)
            finished = FinishedJobRegistry(queue=stage_queue(connect_redis(redis_url), "alert"))
            assert wait_for(lambda: finished.count == 3, 10)
            process.send_signal(signal.SIGTERM)
            with pytest.raises(subprocess.TimeoutExpired):
                process.wait(timeout=answered_after_s)  # it waits for the attempt in flight
            answer.set()
            assert process.wait(timeout=60) == 0
            found = rows(postgres_url, "SELECT status, attempts, queued_at IS NULL FROM alert_deliveries")
            assert sorted(found) == [("delivered", 1, False), ("pending", 0, True), ("pending", 0, True)]
            burst()  # its first round queues the two handed back
        assert deliveries_by_alert(postgres_url) == dict.fromkeys(alert_ids, "delivered")
        assert sorted(r.headers[IDEMPOTENCY_HEADER] for r in hook.received) == alert_ids
    finally:
        answer.set()


def deliveries_by_alert(postgres_url: str) -> dict[str, str]:
    return dict(rows(postgres_url, "SELECT alert_id, status FROM alert_deliveries"))


def test_a_worker_killed_with_alerts_waiting_in_a_lane_loses_none(postgres_url, redis_url, tmp_path, monkeypatch):
    """A lane holds the jobs it took from the queue in memory: a worker killed mid-attempt with two more
    alerts waiting for that receiver lost no job to RQ's care, so they are the pool's to find again. The
    one in flight is sent again once its lease runs out (the same idempotency key); the two waiting were
    never claimed, so `due` queues them again (ALERT_REQUEUE_AFTER_S, shortened here)."""
    from common.alert_log import AlertLog

    timeout_s = 4.0

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    monkeypatch.setattr(defaults, "ALERT_REQUEUE_AFTER_S", 1.0)  # for this process's burst worker only
    with WebhookServer(own_secret(SECRET, "ops"), Reply(hang=True)) as hook:
        # a timeout the kill lands well inside: with 1 s, a test process stalled a second on busy CPUs saw the
        # attempt time out (and the next alert claimed) before its kill
        receivers_file(tmp_path, monkeypatch, {"ops": (hook.url, timeout_s)})
        alert_ids = raise_alerts(postgres_url, redis_url, 3, ["ops"])
        pool = open_pool(postgres_url)
        try:
            AlertLog(pool, 0).queued([(alert_id, "ops") for alert_id in alert_ids])  # as the raiser says
        finally:
            pool.close()
        process = alert_worker()
        assert wait_for(lambda: len(hook.received) == 1, 50)
        process.kill()  # mid-attempt: sent, never acknowledged
        process.wait(timeout=10)
        found = rows(postgres_url, "SELECT status, attempts FROM alert_deliveries")
        assert sorted(found) == [("pending", 0), ("pending", 0), ("sending", 1)]
        hook.reply = Reply(status=200)
        time.sleep(timeout_s + defaults.ALERT_LEASE_MARGIN_S + 0.5)  # the claim's lease: timeout plus margin
        burst()
    assert deliveries_by_alert(postgres_url) == dict.fromkeys(alert_ids, "delivered")
    keys = sorted(r.headers[IDEMPOTENCY_HEADER] for r in hook.received)
    assert len(keys) == 4 and sorted(set(keys)) == alert_ids  # the one in flight twice, the others once


def test_an_alert_a_killed_worker_took_and_never_started_is_sent_by_the_next(
    postgres_url, redis_url, tmp_path, monkeypatch
):
    """The kill test above left one alert pending in 2 of ~6 busy runs: the worker was killed between RQ's
    taking a job (its id moved to the queue's taken list) and starting it. The next worker's round found the
    delivery due but its job "waiting" in that list, where nothing would take it: queued again only once
    RQ's cleaning failed the job, a minute or more later. The moment is made here by taking the job as
    RQ's dequeue does and never starting it."""
    from common.alert_log import AlertLog

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    monkeypatch.setattr(defaults, "ALERT_REQUEUE_AFTER_S", 1.0)  # for this process's burst worker only
    with WebhookServer(own_secret(SECRET, "ops"), Reply(status=200)) as hook:
        receivers_file(tmp_path, monkeypatch, {"ops": (hook.url, 4.0)})
        alert_ids = raise_alerts(postgres_url, redis_url, 2, ["ops"])
        pool = open_pool(postgres_url)
        try:
            AlertLog(pool, 0).queued([(alert_id, "ops") for alert_id in alert_ids])  # as the raiser says
        finally:
            pool.close()
        queue = stage_queue(connect_redis(redis_url), "alert")
        assert queue.connection.lmove(queue.key, queue.intermediate_queue_key, "LEFT", "RIGHT")  # then killed
        time.sleep(defaults.ALERT_REQUEUE_AFTER_S + 0.5)
        burst()
        assert queue.connection.llen(queue.intermediate_queue_key) == 0
    assert deliveries_by_alert(postgres_url) == dict.fromkeys(alert_ids, "delivered")
    assert sorted(r.headers[IDEMPOTENCY_HEADER] for r in hook.received) == alert_ids  # each once


def test_an_attempt_that_raises_on_a_lane_is_counted_failed_and_the_lane_held_is_exported(
    setup, postgres_url, redis_url, monkeypatch
):
    """A review of the lanes: an alert whose claim failed (Postgres refusing the write, or away past the
    worker's patience) failed its job on the worker's loop, and AlprJobsFailing fired; on a lane it was one
    WARNING line, the job counted done. And the alert queue, emptied into the lanes at once, no longer
    showed a backlog behind a slow receiver: what each lane holds is exported."""
    from alert_worker.worker import AlertStage
    from common.alert_log import AlertLog
    from common.alerts import load_receivers
    from common.db_writes import DatabaseWriteError
    from common.metrics import Metrics

    setup("http://127.0.0.1:9/hook")
    raise_alert(postgres_url, redis_url, ["ops"])
    release = threading.Event()

    def refused(self: AlertLog, alert_id: str, receiver: str, lease_s: float) -> None:
        release.wait(30)  # the first attempt held in flight while two more wait behind it
        raise DatabaseWriteError("Postgres refused the write: InsufficientPrivilege (SQLSTATE 42501)")

    monkeypatch.setattr(AlertLog, "claim", refused)
    pool = open_pool(postgres_url)
    try:
        metrics = Metrics()
        receivers = load_receivers(Path(os.environ["ALPR_ALERT_RECEIVERS"]))
        stage = AlertStage(receivers, AlertLog(pool, 0), stage_queue(connect_redis(redis_url), "alert"), metrics,
                           3600.0, 60)  # fmt: skip
        counted = metrics.registry.get_sample_value
        assert counted("alpr_alert_lane_waiting", {"receiver": "ops"}) == 0  # exported from the start
        for number in range(3):
            stage.handle(alert_job(f"read-{number:016x}", "ops", 1).model_dump(mode="json"))
        assert counted("alpr_alert_lane_waiting", {"receiver": "ops"}) == 3  # one in flight, two waiting
        release.set()
        stage.finish(threading.Event())
    finally:
        pool.close()
    assert counted("alpr_jobs_total", {"stage": "alert", "outcome": "failed"}) == 3
    assert counted("alpr_alert_lane_waiting", {"receiver": "ops"}) == 0


def test_a_lane_whose_thread_cannot_start_takes_no_job_and_a_later_one_starts_it(monkeypatch):
    """A review: the lane kept a thread that never started (a container's process limit), took every later
    job into a backlog nothing read, and its finish raised; it takes none, and the next job tries again."""
    from alert_worker.lanes import Lane

    done: list[str] = []
    lane = Lane("ops", lambda job: done.append(job.alert_id), 10)
    start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda self: (_ for _ in ()).throw(RuntimeError("no thread")))
    assert not lane.offer(alert_job("read-0000000000000001", "ops", 1))
    monkeypatch.setattr(threading.Thread, "start", start)
    assert lane.offer(alert_job("read-0000000000000002", "ops", 1))
    assert wait_for(lambda: bool(done), 10)  # sent (closed at once, the lane hands back what waits)
    assert lane.close() == [] and lane.join(10) and done == ["read-0000000000000002"]


def test_an_alert_worker_whose_role_has_exactly_its_rights_retries_and_delivers(setup, postgres_url, redis_url,
                                                                                caplog):  # fmt: skip
    """ALERT_WORKER_RIGHTS are all the pool needs: its claims, an attempt's retry and its delivery, the
    deliveries due queued again (a failure there is only logged)."""
    from common import db_rights
    from tests.helpers import role_with_rights

    with (
        WebhookServer(SECRET, Reply(status=503)) as hook,
        role_with_rights(postgres_url, db_rights.ALERT_WORKER_RIGHTS) as (_, url),
        caplog.at_level(logging.DEBUG),
    ):
        setup(hook.url)
        raise_alert(postgres_url, redis_url, ["ops"])
        assert main(["worker", "alert", "--burst", "--database-url", url]) == 0
        assert deliveries(postgres_url) == {"ops": "pending"}  # retried later
        hook.reply = Reply(status=200)
        time.sleep(1.2)  # the first back-off: queued again by the pool's duty
        assert main(["worker", "alert", "--burst", "--database-url", url]) == 0
    assert deliveries(postgres_url) == {"ops": "delivered"} and len(hook.received) == 2
    assert "permission denied" not in caplog.text


def test_an_alert_worker_whose_role_lacks_a_right_stops_at_start_naming_it(setup, postgres_url, redis_url, capsys):
    """It started, then failed every claim (each job a traceback): the alerts stayed pending for ever."""
    from common import db_rights
    from tests.helpers import refused_at_start

    setup("http://127.0.0.1:9/x")
    raise_alert(postgres_url, redis_url, ["ops"])
    refused_at_start(
        postgres_url, capsys, "alert worker", db_rights.ALERT_WORKER_RIGHTS, ("alert_deliveries", "UPDATE"),
        ["worker", "alert", "--burst"],
    )  # fmt: skip
    assert stage_queue(connect_redis(redis_url), "alert").count == 1  # its job left for a worker that can


def test_a_late_alerts_hour_is_kept_out_of_the_alert_latency_and_counted_apart(setup, postgres_url, redis_url):
    """A spool replayed an hour after an outage: its late alert (`late`, captured an hour before its read was
    logged) was observed in alpr_alert_latency_seconds as an hour of latency (past the top bucket: the p99 of
    the dashboard's panel at its highest), though the chain raised and sent it within seconds of its read
    being logged (a review). It is observed in alpr_late_alert_delay_seconds instead; a live alert as before."""
    from alert_worker.worker import AlertStage
    from common.alert_log import AlertLog
    from common.alerts import load_receivers
    from common.metrics import Metrics

    now_s = time.time()
    late = ALERT.model_copy(update={"alert_id": "read-late456789abcdef", "captured_at_s": now_s - 3600,
                                    "late": True, "logged_at_s": now_s - 1})  # fmt: skip
    live = ALERT.model_copy(update={"captured_at_s": now_s - 1})
    pool = open_pool(postgres_url)
    try:
        with WebhookServer(SECRET) as hook:
            setup(hook.url)
            with pool.connection() as connection, connection.transaction():
                assert insert_listed(connection, [live, late], ["ops"]) == [live, late]
            metrics = Metrics()
            receivers = load_receivers(Path(os.environ["ALPR_ALERT_RECEIVERS"]))
            stage = AlertStage(receivers, AlertLog(pool, 0), stage_queue(connect_redis(redis_url), "alert"), metrics,
                               3600.0, 60)  # fmt: skip
            for alert in (live, late):
                stage.handle(alert_job(alert.alert_id, "ops", 1).model_dump(mode="json"))
            stage.finish(threading.Event())
    finally:
        pool.close()
    assert deliveries_by_alert(postgres_url) == {live.alert_id: "delivered", late.alert_id: "delivered"}
    counted = metrics.registry.get_sample_value
    assert counted("alpr_alert_latency_seconds_count") == 1 and counted("alpr_alert_latency_seconds_sum") < 60
    assert counted("alpr_late_alert_delay_seconds_count") == 1
    assert 3600 <= counted("alpr_late_alert_delay_seconds_sum") < 3660
    assert counted("alpr_alert_latency_seconds_bucket", {"le": "+Inf"}) == 1

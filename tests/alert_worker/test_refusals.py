"""How the alert pool takes a receiver's refusals, through `alpr worker alert` on the real Postgres, a private
Redis, a real HTTP receiver and a private mosquitto: a publish the broker's ACL refuses is rejected, not
recorded delivered; a refusal that may be the receiver's state for a while (404 in a maintenance window) is
tried again within a grace, the receiver probed as a failing one, and one about the alert itself (409) is
rejected at once; a broker refusing the credentials while its password is rotated is tried again as a 401 is;
a Retry-After no number reads rests the receiver as any 503 (a review of the receivers)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alert_worker.signing import IDEMPOTENCY_HEADER
from alpr.cli import main
from common import defaults
from common.alert_holds import HELD, REFUSED_FOR_NOW
from tests.alert_servers import Mqtt311Broker, PrivateMosquitto, Reply, WebhookServer
from tests.alert_worker.test_worker import (
    SECRET,
    alert_worker,
    burst,
    raise_alert,
    raise_alerts,
    receivers_file,
    rows,
    stopped,
    wait_for,
)
from tests.conftest import unavailable
from tests.helpers import free_port


@pytest.fixture()
def chain(postgres_url, redis_url, monkeypatch):  # type: ignore[no-untyped-def]
    """The alerts log's tables, and the worker pointed at them and at the private Redis."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)


def mqtt_receivers(tmp_path, monkeypatch, port: int, topics: dict[str, str], protocol: str = "auto") -> None:  # type: ignore[no-untyped-def]
    """A receivers file naming an MQTT receiver on the broker at `port` for each name -> topic."""
    text = "receivers:\n"
    for name, topic in topics.items():
        text += f"  {name}:\n    type: mqtt\n    host: 127.0.0.1\n    port: {port}\n    topic: {topic}\n"
        text += f"    timeout_s: 2\n    protocol: '{protocol}'\n"
    (tmp_path / "receivers.yaml").write_text(text)
    monkeypatch.setenv("ALPR_ALERT_RECEIVERS", str(tmp_path / "receivers.yaml"))


def test_a_publish_the_brokers_acl_refuses_is_rejected_and_a_permitted_one_delivered(
    chain, postgres_url, redis_url, tmp_path, monkeypatch
):
    """A review: spoken to in MQTT 3.1.1, mosquitto acknowledged a publish its ACL denies, and the alert was
    recorded delivered, nothing received. In MQTT 5 the PUBACK says Not authorized: rejected, saying why."""
    try:
        broker = PrivateMosquitto(tmp_path, acl="topic write alpr/ok/#\ntopic read alpr/#\n")
    except FileNotFoundError as error:
        unavailable(str(error))
    broker.start()
    got: list[str] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, message: got.append(message.topic)
    client.connect("127.0.0.1", broker.port)
    client.subscribe("alpr/#", qos=1)
    client.loop_start()
    try:
        assert subscribed.wait(5)
        mqtt_receivers(tmp_path, monkeypatch, broker.port, {"denied": "alpr/denied", "permitted": "alpr/ok/alerts"})
        raise_alert(postgres_url, redis_url, ["denied", "permitted"])
        burst()
        assert wait_for(lambda: bool(got), 5)
    finally:
        client.loop_stop()
        client.disconnect()
        broker.stop()
    found = {r: (s, e) for r, s, e in rows(postgres_url, "SELECT receiver, status, last_error FROM alert_deliveries")}
    assert found["permitted"] == ("delivered", None) and got == ["alpr/ok/alerts"]
    status, error = found["denied"]
    assert status == "rejected" and "refused the publish: Not authorized (0x87)" in error and "ACL" in error


def test_a_broker_speaking_mqtt_311_only_gets_its_alerts_and_the_worker_says_once_what_it_cannot_see(
    chain, postgres_url, redis_url, tmp_path, monkeypatch, caplog
):
    with Mqtt311Broker() as old:
        mqtt_receivers(tmp_path, monkeypatch, old.port, {"room": "alpr/alerts"})
        raise_alerts(postgres_url, redis_url, 2, ["room"])
        burst()
    assert rows(postgres_url, "SELECT status, count(*) FROM alert_deliveries GROUP BY status") == [("delivered", 2)]
    assert old.levels == [5, 4, 5, 4] and len(old.published) == 2
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("alert")]
    assert len(warned) == 1 and "receiver room: mqtt 127.0.0.1" in warned[0] and "3.1.1 only" in warned[0]


@pytest.mark.parametrize("retry_after", [None, "\xb2"], ids=["plain", "superscript-two"])
def test_a_503_whose_retry_after_no_number_reads_rests_the_receiver_as_any_503(
    retry_after, chain, postgres_url, redis_url, tmp_path, monkeypatch
):
    """A review's receiver answered 503 with `Retry-After: ²`: the ValueError escaped the attempt as an
    unexpected error, and the receiver never rested (64 requests in 45 s, 5 for a plain 503). Three alerts:
    one attempt, the receiver rests, the other two are held, as for a plain 503."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    with WebhookServer(SECRET, Reply(status=503, headers=headers)) as hook:
        receivers_file(tmp_path, monkeypatch, {"ops": (hook.url, 1)})
        raise_alerts(postgres_url, redis_url, 3, ["ops"])
        burst()
    assert len(hook.received) == 1
    errors = sorted(e for (e,) in rows(postgres_url, "SELECT last_error FROM alert_deliveries"))
    assert errors[:2] == [HELD] * 2 and "HTTP 503" in errors[2]


@pytest.mark.parametrize(("status", "after_grace"), [(404, "rejected"), (409, None)])
def test_a_refusal_for_now_is_tried_again_within_the_grace_and_one_about_the_alert_rejected_at_once(
    status, after_grace, chain, postgres_url, redis_url, tmp_path, monkeypatch
):
    """A 404 may be a receiver's maintenance window: pending, tried again after its back-off, and rejected
    once the alert is older than ALERT_UNKNOWN_RECEIVER_GRACE_S (here 2 s, not 15 minutes); a 409 is about
    the alert itself: rejected at its first attempt, as before."""
    monkeypatch.setattr(defaults, "ALERT_UNKNOWN_RECEIVER_GRACE_S", 2.0)
    query = "SELECT status, last_error FROM alert_deliveries"
    with WebhookServer(SECRET, Reply(status=status)) as hook:
        receivers_file(tmp_path, monkeypatch, {"ops": (hook.url, 1)})
        raise_alert(postgres_url, redis_url, ["ops"])
        burst()
        ((first, error),) = rows(postgres_url, query)
        if after_grace is None:
            assert (first, len(hook.received)) == ("rejected", 1) and f"HTTP {status}" in error
            return
        assert first == "pending" and error.startswith(REFUSED_FOR_NOW) and f"HTTP {status}" in error
        time.sleep(1.2)  # the first back-off: the second attempt's would end past the grace
        burst()
    ((last, error),) = rows(postgres_url, query)
    assert (last, len(hook.received)) == (after_grace, 2) and "still refused" in error and f"HTTP {status}" in error


def test_a_receiver_answering_404_for_a_while_gets_every_alert_once_back_probed_meanwhile(
    chain, postgres_url, redis_url, tmp_path, monkeypatch
):
    """A review: a receiver under a short maintenance window answered 404 (or 401, 403, 410, a redirect),
    and every alert raised in it was rejected for good (10 of 22 lost; with 503 all 22 came through). Six
    alerts to one answering 404 for 2.5 s: it is probed as a failing receiver (an attempt each rest, not one
    per alert), and each alert is delivered once it answers 200."""
    with WebhookServer(SECRET, Reply(status=404)) as hook:
        receivers_file(tmp_path, monkeypatch, {"ops": (hook.url, 1)})
        alert_ids = raise_alerts(postgres_url, redis_url, 6, ["ops"])
        process = alert_worker()
        try:
            assert wait_for(lambda: bool(hook.received), 60), "no attempt"
            time.sleep(2.5)
            refused = len(hook.received)
            hook.reply = Reply(status=200)
            delivered = "SELECT count(*) FROM alert_deliveries WHERE status = 'delivered'"
            assert wait_for(lambda: rows(postgres_url, delivered) == [(6,)], 60), rows(
                postgres_url, "SELECT status, last_error FROM alert_deliveries"
            )
        finally:
            assert stopped(process) == 0
    taken = [r.headers[IDEMPOTENCY_HEADER] for r in hook.received[refused:]]  # (one in flight at the switch: before)
    print(f"\n{refused} attempts refused in 2.5 s of 404; then {len(taken)} for the 6 alerts")
    assert refused <= 3  # a probe each rest (1 s, 2 s), not an attempt per alert
    assert len(taken) == len(set(taken)) >= 5 and set(taken) <= set(alert_ids)  # each once, once it answers


def test_an_alert_raised_while_a_brokers_password_is_rotated_is_delivered_once_it_takes_the_new_one(
    chain, postgres_url, redis_url, tmp_path, monkeypatch
):
    """A review: a broker answering CONNACK "not authorized" or "bad user name or password" was rejected at
    once, and every alert raised while an operator rotated its password (a minute) was lost, where a webhook's
    401 is tried again within ALERT_UNKNOWN_RECEIVER_GRACE_S. A private mosquitto refuses the receiver's
    credentials, then takes them (its password file rotated, restarted on its port): the alert waits, pending,
    and is delivered."""
    import getpass
    import subprocess

    try:
        broker = PrivateMosquitto(tmp_path, allow_anonymous=False)
    except FileNotFoundError as error:
        unavailable(str(error))
    broker.start()
    (tmp_path / "receivers.yaml").write_text(
        f"receivers:\n  room:\n    type: mqtt\n    host: 127.0.0.1\n    port: {broker.port}\n    topic: alpr/alerts\n"
        "    timeout_s: 2\n    username: alpr\n    password: the-new-one\n"
    )
    monkeypatch.setenv("ALPR_ALERT_RECEIVERS", str(tmp_path / "receivers.yaml"))
    query = "SELECT status, last_error FROM alert_deliveries"
    try:
        raise_alert(postgres_url, redis_url, ["room"])
        burst()
        ((status, error),) = rows(postgres_url, query)
        assert status == "pending" and error.startswith(REFUSED_FOR_NOW) and "Not authorized" in error
        broker.stop()  # the password rotated: the broker now takes the receiver's
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwords"), "alpr", "the-new-one"],
                       check=True, capture_output=True)  # fmt: skip
        with broker.config.open("a") as config:
            config.write(f"password_file {tmp_path / 'passwords'}\nuser {getpass.getuser()}\n")
        broker.start()
        time.sleep(1.2)  # the first back-off
        burst()
    finally:
        broker.stop()
    assert rows(postgres_url, query) == [("delivered", None)]


SHORTENED = ("import sys; from common import defaults as d; d.ALERT_UNKNOWN_RECEIVER_GRACE_S = {grace_s};"
             " d.ALERT_BACKOFF_S = (0.1, 1.0); d.ALERT_REQUEUE_AFTER_S = 1.0; from alpr.cli import main;"
             " sys.exit(main(['worker', 'alert']))")  # fmt: skip
"""`alpr worker alert` with the grace shortened to `grace_s` and the longest rest to 1 s (15 minutes and 60 s)."""


def shortened_worker(grace_s: float, metrics_port: int) -> subprocess.Popen:  # type: ignore[type-arg]
    env = {**os.environ, "ALPR_METRICS_PORT": str(metrics_port), "ALPR_METRICS_ADDRESS": "127.0.0.1"}
    return subprocess.Popen([sys.executable, "-c", SHORTENED.format(grace_s=grace_s)], env=env)


def test_a_receiver_answering_404_for_good_has_its_backlog_rejected_within_about_the_grace(
    chain, postgres_url, redis_url, tmp_path, monkeypatch, capsys
):
    """A review: a receiver whose URL went wrong (404 for good) had its alerts probed one a rest, each
    rejected once tried past the grace: 40 alerts took 115 s at a grace of 30 s and a longest rest of 2 s (an
    hour for 60 alerts at 15 minutes and 60 s; a day's backlog, days). Now once it has refused every attempt
    for the grace, its backlog older than the grace is rejected in one write, each saying why, and counted."""
    grace_s, count, port = 3.0, 20, free_port()
    settled = "SELECT count(*) FROM alert_deliveries WHERE status IN ('pending', 'sending')"
    with WebhookServer(SECRET, Reply(status=404)) as hook:
        receivers_file(tmp_path, monkeypatch, {"ops": (hook.url, 1)})
        raise_alerts(postgres_url, redis_url, count, ["ops"])
        process = shortened_worker(grace_s, port)
        try:
            assert wait_for(lambda: bool(hook.received), 60), "no attempt"
            first = time.monotonic()
            assert wait_for(lambda: rows(postgres_url, settled) == [(0,)], 60)
            took_s = time.monotonic() - first
            served = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        finally:
            assert stopped(process) == 0
    print(f"\n{count} alerts to a receiver answering 404: settled {took_s:.1f} s after its first attempt"
          f" (grace {grace_s:g} s), {len(hook.received)} attempts")  # fmt: skip
    assert took_s < grace_s + 4  # it was 23 s: one more alert rejected a rest (1 s) past the grace
    found = rows(postgres_url, "SELECT status, last_error FROM alert_deliveries")
    assert {status for status, _ in found} == {"rejected"} and all("HTTP 404" in error for _, error in found)
    assert sum("refused every attempt for" in error for _, error in found) >= count // 2
    assert f'alpr_alert_deliveries_total{{outcome="rejected",receiver="ops"}} {count:.1f}' in served
    assert main(["status", "--interval", "0.1", "--redis-url", redis_url]) == 0
    assert f"pending 0 sending 0 delivered 0 failed 0 rejected {count}" in capsys.readouterr().out


def test_a_backlog_older_than_the_grace_survives_a_brief_404_and_is_delivered(
    chain, postgres_url, redis_url, tmp_path, monkeypatch
):
    """What the rejection above must not take: alerts held past the grace (a receiver down for a while), and the
    receiver answering 404 for less than the grace (a deploy) before it takes them. Only the alerts it refused
    themselves are rejected (each tried past its grace); the others are delivered."""
    grace_s, count = 3.0, 12
    with WebhookServer(SECRET, Reply(status=404)) as hook:
        receivers_file(tmp_path, monkeypatch, {"ops": (hook.url, 1)})
        raise_alerts(postgres_url, redis_url, count, ["ops"])
        with psycopg.connect(postgres_url) as connection:  # raised a minute ago: past the grace already
            connection.execute("UPDATE alert_deliveries SET retry_from = retry_from - interval '60 s'")
        process = shortened_worker(grace_s, free_port())
        try:
            assert wait_for(lambda: bool(hook.received), 60), "no attempt"
            time.sleep(grace_s * 0.6)
            refused = len(hook.received)
            hook.reply = Reply(status=200)
            settled = "SELECT count(*) FROM alert_deliveries WHERE status IN ('pending', 'sending')"
            assert wait_for(lambda: rows(postgres_url, settled) == [(0,)], 60)
        finally:
            assert stopped(process) == 0
    found = dict(rows(postgres_url, "SELECT status, count(*) FROM alert_deliveries GROUP BY status"))
    errors = [e for (e,) in rows(postgres_url, "SELECT last_error FROM alert_deliveries WHERE last_error IS NOT NULL")]
    assert not any("refused every attempt for" in e for e in errors)
    print(f"\n{refused} attempts refused in {grace_s * 0.6:g} s of 404; then {found}")
    assert found.get("rejected", 0) <= refused + 1  # the alerts it refused (one more in flight at the switch)
    assert found.get("delivered", 0) == count - found.get("rejected", 0) >= count - 4

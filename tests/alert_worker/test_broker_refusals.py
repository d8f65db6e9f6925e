"""What an MQTT broker's CONNACK refusal makes of a delivery, as a webhook's answer does: a refusal that may
be the broker's state for a while (bad user name or password, not authorized: a password being rotated) is
rejected `for_now`, retried by the worker within ALERT_UNKNOWN_RECEIVER_GRACE_S as a 401 is; a busy or
unavailable broker is retried as a 503 is; a refusal of the CONNECT itself (malformed, protocol error) is
rejected for good. Against a private mosquitto and a broker answering a chosen code."""

from __future__ import annotations

import pytest

from alert_worker.attempts import DeliveryRejected, DeliveryRetryable
from alert_worker.mqtt_publish import deliver_mqtt
from common.alerts import MqttReceiver
from tests.alert_servers import PrivateMosquitto, RefusingBroker
from tests.alert_worker.test_delivery import ALERT, PASSWORD, assert_no_secret
from tests.conftest import unavailable


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_broker_refusing_the_credentials_is_refused_for_now_not_for_good(tmp_path, protocol):
    """Rejected for good, every alert raised while an operator rotated the broker's password was lost."""
    try:
        strict = PrivateMosquitto(tmp_path, allow_anonymous=False)
    except FileNotFoundError as error:
        unavailable(str(error))
    strict.start()
    try:
        receiver = MqttReceiver(
            host="127.0.0.1", port=strict.port, topic="t", username="alpr", password=PASSWORD, protocol=protocol
        )
        with pytest.raises(DeliveryRejected, match="Not authorized|Bad user name") as caught:
            deliver_mqtt(ALERT, receiver)
    finally:
        strict.stop()
    assert caught.value.for_now and not caught.value.answered
    assert_no_secret(caught.value)


FOR_NOW, RETRIED, FOR_GOOD = "for now", "retried", "for good"

CODES_5 = [
    (0x86, FOR_NOW), (0x87, FOR_NOW), (0x8A, FOR_NOW), (0x9C, FOR_NOW), (0x9D, FOR_NOW),
    (0x80, RETRIED), (0x83, RETRIED), (0x88, RETRIED), (0x89, RETRIED), (0x97, RETRIED), (0x9F, RETRIED),
    (0x81, FOR_GOOD), (0x82, FOR_GOOD), (0x85, FOR_GOOD), (0x8C, FOR_GOOD), (0x95, FOR_GOOD),
]  # fmt: skip
"""MQTT 5 CONNACK reason codes and what each makes of a delivery (alert_worker/mqtt_publish.CONNACK_REFUSED_*)."""

CODES_311 = [(1, FOR_GOOD), (2, FOR_GOOD), (3, RETRIED), (4, FOR_NOW), (5, FOR_NOW)]
"""MQTT 3.1.1 CONNACK return codes: unacceptable protocol version, identifier rejected, server unavailable,
bad user name or password, not authorized."""


@pytest.mark.parametrize(
    ("protocol", "code", "outcome"), [("5", *pair) for pair in CODES_5] + [("3.1.1", *pair) for pair in CODES_311]
)
def test_each_connack_refusal_is_retried_refused_for_now_or_for_good(protocol, code, outcome):
    with RefusingBroker(code) as broker:
        receiver = MqttReceiver(host="127.0.0.1", port=broker.port, topic="t", timeout_s=2, protocol=protocol)
        with pytest.raises((DeliveryRejected, DeliveryRetryable)) as caught:
            deliver_mqtt(ALERT, receiver)
    assert "refused the connection" in str(caught.value)
    if outcome == RETRIED:
        assert isinstance(caught.value, DeliveryRetryable)
    else:
        assert isinstance(caught.value, DeliveryRejected) and caught.value.for_now == (outcome == FOR_NOW)

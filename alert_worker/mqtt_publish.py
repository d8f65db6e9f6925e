"""One MQTT attempt (`deliver_mqtt`): the alert published with QoS 1, in MQTT 5 (or 3.1.1, as the
receiver's `protocol` says), on this thread within the attempt's bound (alert_worker/attempts.py), reading
at most MQTT_READ_BUDGET_BYTES from the broker; and what the broker's answers come to: its CONNACK
(CONNACK_REFUSED_FOR_NOW, CONNACK_REFUSED_FOR_GOOD, the rest retried) and its PUBACK (PUBACK_REFUSED_FOR_GOOD,
other failures retried). MQTT alerts carry no signature: that they come from the alert pool rests on the
broker's ACL (who may publish to the topic)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from alert_worker.attempts import DeliveryError, DeliveryRejected, DeliveryRetryable, attempt_bound_s, describe
from alert_worker.signing import alert_body
from common.alerts import MQTT_RESERVED_PREFIX, MQTT_WILDCARDS, Alert, MqttReceiver
from common.credentials import escape_controls, mask_url

MQTT_KEEPALIVE_S = 60
"""MQTT keepalive announced on connect (a delivery lasts far less)."""

MQTT_POLL_S = 0.05
"""Longest single wait of the MQTT network loop, so a deadline is checked this often."""

MQTT_READ_BUDGET_BYTES = 64 * 1024
"""Most bytes one MQTT attempt reads from its broker: it needs a CONNACK and a PUBACK (4 bytes each).
paho takes any packet up to 256 MB and asks for its whole announced length at once: a hostile broker
took the worker to 890 MB an attempt (a review)."""

CONNACK_REFUSED_FOR_NOW = frozenset({0x86, 0x87, 0x8A, 0x9C, 0x9D})
"""CONNACK reason codes (MQTT 5's; paho gives a 3.1.1 return code its MQTT 5 equivalent: 4 is 0x86, 5 is
0x87) that may be the broker's state for a while, as a webhook's 401/403/3xx (REFUSED_FOR_NOW): Bad user
name or password and Not authorized (a password or an ACL being rotated), Banned (a ban lifted), Use another
server and Server moved (a broker being moved). Rejected at once, every alert raised while an operator
rotated a broker's password was lost; now retried within ALERT_UNKNOWN_RECEIVER_GRACE_S of the alert
(`DeliveryRejected.for_now`), the receiver resting and probed. Server unavailable (3.1.1's 3), Server busy,
Quota exceeded, Connection rate exceeded, Unspecified and Implementation specific error are retried as a
503 is (any code not named here or in CONNACK_REFUSED_FOR_GOOD is)."""

CONNACK_REFUSED_FOR_GOOD = frozenset({0x81, 0x82, 0x84, 0x85, 0x8C, 0x90, 0x95, 0x9A, 0x9B})
"""CONNACK reason codes that refuse the CONNECT itself, the same on every attempt (only a new paho or new
receiver settings could change it): Malformed packet, Protocol error, Unsupported protocol version (under
3.1.1, or `protocol: 5`: `auto` falls back to 3.1.1 on it), Client identifier not valid (paho's own, 3.1.1's
2), Bad authentication method (only user name and password are sent), and the will's Topic name invalid,
Packet too large, Retain and QoS not supported (no will is sent: a broker that says so never takes this
client)."""


def deliver_mqtt(alert: Alert, receiver: MqttReceiver) -> str | None:
    """Publish `alert` to the receiver's topic with QoS 1; returns once the broker acknowledged it
    (PUBACK) and, under MQTT 5, said it took it (its reason code). The exchange (CONNACK, PUBACK) runs
    within `receiver.timeout_s` of the connection, the whole attempt within attempt_bound_s, on this
    thread (paho's synchronous loop: no network thread to leak), reading at most MQTT_READ_BUDGET_BYTES
    from the broker, and it always disconnects. With `protocol: auto`, a broker that refuses MQTT 5 (its
    CONNACK: unsupported protocol version) is spoken to in 3.1.1 in the same attempt: the caveat returned
    says that its refusals cannot be seen, for the worker to tell once."""
    where = f"mqtt {receiver.host}:{receiver.port}"
    if MQTT_WILDCARDS & set(receiver.topic) or not receiver.topic or receiver.topic.startswith(MQTT_RESERVED_PREFIX):
        raise DeliveryRejected(f"{where}: a topic to publish to may not be empty, hold the wildcards + or #, or"
                               " start with $ (the broker's own)")  # fmt: skip
    bound_at = time.monotonic() + attempt_bound_s(receiver.timeout_s)
    if receiver.protocol == "3.1.1":
        _publish(alert, receiver, MQTTProtocolVersion.MQTTv311, bound_at, where)
        return None
    try:
        _publish(alert, receiver, MQTTProtocolVersion.MQTTv5, bound_at, where)
        return None
    except _SpeaksNoMqtt5:
        if receiver.protocol == "5":
            raise DeliveryRejected(f"{where}: the broker does not speak MQTT 5 (its CONNACK: unsupported protocol"
                                   " version): set protocol: 3.1.1 or auto for it") from None  # fmt: skip
    _publish(alert, receiver, MQTTProtocolVersion.MQTTv311, bound_at, where)
    return f"{where} {MQTT_311_CAVEAT}"


MQTT_311_CAVEAT = (
    "speaks MQTT 3.1.1 only (it refused MQTT 5): a publish its ACL refuses is acknowledged all the same, and"
    " counted delivered; only MQTT 5's PUBACK says so. Each attempt connects twice: set `protocol: 3.1.1` for it"
    " to connect once, or upgrade the broker"
)
"""What the worker tells, once, of a receiver whose broker `auto` found speaking 3.1.1 only."""

PUBACK_REFUSED_FOR_GOOD = frozenset({0x87, 0x90})
"""MQTT 5 PUBACK reason codes that refuse a publish for good: Not authorized (the broker's ACL) and Topic
Name invalid. Other codes from 0x80 up (Quota exceeded, Unspecified error...) are retried; below it
(Success; 0x10, No matching subscribers) the broker took it."""


class _SpeaksNoMqtt5(Exception):  # noqa: N818 (what happened)
    """The broker's CONNACK to an MQTT 5 CONNECT: unsupported protocol version (a 3.1.1 broker's 0x01)."""


def _publish(alert: Alert, receiver: MqttReceiver, protocol: MQTTProtocolVersion, bound_at: float, where: str) -> None:
    """One connection of `deliver_mqtt`, in `protocol`, within the attempt's bound (`bound_at`, monotonic)."""
    client = _client(receiver, protocol, where)
    connack: list[ReasonCode] = []
    puback: list[tuple[ReasonCode, Properties | None]] = []
    client.on_connect = lambda _client, _userdata, _flags, code, _properties: connack.append(code)
    client.on_publish = lambda _client, _userdata, _mid, code, properties: puback.append((code, properties))
    try:
        # paho bounds the TLS handshake by the keepalive: no longer than the attempt may take
        keepalive = min(MQTT_KEEPALIVE_S, max(1, math.ceil(receiver.timeout_s)))
        client.connect(receiver.host, receiver.port, keepalive=keepalive)  # the lookup: unbounded, so checked
        if time.monotonic() >= bound_at:  # connected as the lease ran out: nothing published
            raise DeliveryRetryable(f"{where}: connected only after the attempt's time: nothing sent")
        deadline = min(time.monotonic() + receiver.timeout_s, bound_at)  # the exchange's time starts now
        _loop_until(client, lambda: bool(connack), deadline, f"{where}: no CONNACK")
        _check_connack(connack[0], protocol, where)
        info = client.publish(receiver.topic, alert_body(alert), qos=receiver.qos)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise DeliveryRetryable(f"{where}: publish failed: {mqtt.error_string(info.rc)}")
        _loop_until(client, info.is_published, deadline, f"{where}: no PUBACK")
    except (DeliveryError, _SpeaksNoMqtt5):
        raise
    except _PastReadBudget as error:  # a broker sending what no attempt needs: retried after the back-off
        raise DeliveryRetryable(f"{where}: {error}") from None
    except (OSError, ValueError, RuntimeError) as error:  # refused, reset, unresolvable, timed out
        raise DeliveryRetryable(mask_url(f"{where}: {describe(error)}")) from None
    except Exception as error:  # an answer paho cannot parse (an MQTT 5 CONNACK without its properties)
        raise DeliveryRetryable(f"{where}: the broker's answer cannot be read ({type(error).__name__})") from None
    finally:
        _close(client)
    if puback:  # under 3.1.1, always Success
        _check_puback(*puback[0], where)


def _client(receiver: MqttReceiver, protocol: MQTTProtocolVersion, where: str) -> _BoundedClient:
    """paho's client for one connection to the receiver's broker: TLS and credentials as its settings say."""
    client = _BoundedClient(CallbackAPIVersion.VERSION2, protocol=protocol)
    client.connect_timeout = receiver.timeout_s
    if receiver.uses_tls:  # the broker's certificate and host name verified (paho's defaults)
        try:
            client.tls_set(ca_certs=receiver.ca_file)
        except (OSError, ValueError) as error:  # a ca_file that holds no certificate (the receivers file checks)
            raise DeliveryRejected(f"{where}: TLS cannot be set up: {describe(error)}") from None
    if receiver.username is not None:
        password = receiver.password.get_secret_value() if receiver.password is not None else None
        client.username_pw_set(receiver.username, password)
    return client


def _check_connack(code: ReasonCode, protocol: MQTTProtocolVersion, where: str) -> None:
    """Raises unless the CONNACK accepted the connection: _SpeaksNoMqtt5 where an MQTT 5 CONNECT was refused
    for its version; DeliveryRejected, `for_now`, for CONNACK_REFUSED_FOR_NOW (credentials) and for good for
    CONNACK_REFUSED_FOR_GOOD; DeliveryRetryable for the rest (a busy or unavailable broker)."""
    if not code.is_failure:
        return
    if protocol == MQTTProtocolVersion.MQTTv5 and code.getName() == "Unsupported protocol version":
        raise _SpeaksNoMqtt5
    refusal = f"{where}: the broker refused the connection: {code.getName()} (0x{code.value:02X})"
    if code.value in CONNACK_REFUSED_FOR_NOW:  # the receiver's user name and password, perhaps being rotated
        raise DeliveryRejected(f"{refusal} (tried again for a while: the receiver's credentials or the broker's"
                               " settings may be changing)", for_now=True)  # fmt: skip
    if code.value in CONNACK_REFUSED_FOR_GOOD:
        raise DeliveryRejected(refusal)
    raise DeliveryRetryable(refusal)


def _check_puback(code: ReasonCode, properties: Properties | None, where: str) -> None:
    """Raises where an MQTT 5 PUBACK refused the publish: DeliveryRejected for PUBACK_REFUSED_FOR_GOOD,
    DeliveryRetryable for another code from 0x80 up. The broker's reason string is recorded, never logged."""
    if not code.is_failure:
        return
    refusal = f"{where}: the broker refused the publish: {code.getName()} (0x{code.value:02X})"
    said = getattr(properties, "ReasonString", None)
    words = escape_controls(" ".join(str(said).split()))[:200] if said else ""
    if code.value in PUBACK_REFUSED_FOR_GOOD:
        hint = " (its ACL does not let this client publish to the topic)" if code.value == 0x87 else ""
        raise DeliveryRejected(refusal + hint, words)
    raise DeliveryRetryable(refusal, words=words)


class _PastReadBudget(Exception):  # noqa: N818 (what happened)
    """The broker sent, or announced, more than an attempt reads (MQTT_READ_BUDGET_BYTES)."""


class _BoundedClient(mqtt.Client):
    """paho's client reading at most MQTT_READ_BUDGET_BYTES from its connection. paho reads a packet's
    fixed header a byte at a time, then asks `_sock_recv` for its whole announced remaining length: a
    request past what is left of the budget is refused before anything is allocated for it, and so is
    any read once the budget is spent (a broker streaming small packets). `_PastReadBudget` is no
    OSError, so paho does not take it for a lost connection: it ends the attempt. (`_sock_recv` is
    paho's own; the pinned paho-mqtt 2.1.0 reads through it alone, TLS included.)"""

    read_bytes = 0
    """Bytes read from the broker on this client's connections."""

    def _sock_recv(self, bufsize: int) -> bytes:
        left = MQTT_READ_BUDGET_BYTES - self.read_bytes
        if bufsize > left:
            raise _PastReadBudget(
                f"the broker sent or announced more than the {MQTT_READ_BUDGET_BYTES} bytes an attempt reads"
                f" (a CONNACK and a PUBACK are 4 each; {bufsize} bytes asked for, {left} left): cut off"
            )
        data = super()._sock_recv(bufsize)
        self.read_bytes += len(data)
        return data


def _loop_until(client: mqtt.Client, done: Callable[[], bool], deadline: float, late: str) -> None:
    """Run the client's network loop until `done()`; DeliveryRetryable(`late`) past the deadline or
    when the connection is lost."""
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeliveryRetryable(f"{late} within the timeout")
        rc = client.loop(timeout=min(remaining, MQTT_POLL_S))
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and not done():
            raise DeliveryRetryable(f"{late}: {mqtt.error_string(rc)}")


def _close(client: mqtt.Client) -> None:
    """Disconnect (sent at once: no loop thread) and release every socket the client holds."""
    try:
        if client.is_connected():
            client.disconnect()
    except OSError:  # the connection is already gone
        pass
    finally:
        client._reset_sockets()  # paho has no public close; this closes the connection and its wake-up pair

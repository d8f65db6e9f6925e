"""Delivery of one alert to one receiver, once: an HTTP webhook POST signed with HMAC-SHA256, or an MQTT
publish with QoS 1 in MQTT 5. Each attempt either returns (the receiver acknowledged: a 2xx answer, a PUBACK
whose reason code says the broker took it) or raises `DeliveryRetryable` (worth another attempt later) or
`DeliveryRejected` (the receiver refused it: for good, or, `for_now`, perhaps only for a while). Messages
never hold a secret: a webhook is named by its scheme, host and port only (alert_worker/attempts.receiver_origin),
as Slack- and Discord-style hooks carry their token in the path.

`deliver` picks the transport: alert_worker/webhook.py (HTTP) or alert_worker/mqtt_publish.py (MQTT); what
an attempt may take and raise is alert_worker/attempts.py's; the body and its signature are
alert_worker/signing.py's. `verify_signature`, for receivers to check a webhook's signature, is importable
from here too (the README names it so)."""

from __future__ import annotations

from alert_worker.mqtt_publish import deliver_mqtt
from alert_worker.signing import verify_signature
from alert_worker.webhook import deliver_webhook
from common.alerts import Alert, MqttReceiver, WebhookReceiver

__all__ = ["deliver", "verify_signature"]


def deliver(alert: Alert, receiver: WebhookReceiver | MqttReceiver, now_s: float | None = None) -> str | None:
    """Deliver `alert` to `receiver` once; raises DeliveryRetryable or DeliveryRejected when it fails.
    `now_s`: the time a webhook is signed at, by the chain's shared clock (default: this host's). Returns
    a caveat on the acknowledgement where there is one, for the worker to tell once (an MQTT broker that
    speaks 3.1.1 only: its PUBACK does not say whether it took the publish)."""
    if isinstance(receiver, WebhookReceiver):
        deliver_webhook(alert, receiver, now_s)
        return None
    return deliver_mqtt(alert, receiver)

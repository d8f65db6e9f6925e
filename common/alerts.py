"""The alert: the validated type that crosses from the sighting stage (a read or a closed sighting
that matched the watch list) to the alert stage, and the receivers an alert is delivered to (an HTTP
webhook signed with a shared secret, an MQTT topic). Secrets never show: not in a repr, not in a
validation error. The receivers are read from a YAML file (`load_receivers`); each takes the alerts of every
watch-list, or of the lists it names (`lists:`, `routed`)."""

from __future__ import annotations

import ipaddress
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from common.errors import ConfigError
from common.file_writers import others_may_change
from common.jobs import ID_PATTERN, MAX_TIMESTAMP, Strict
from common.receiver_secrets import (
    SECRET_FILE_FIELDS,
    read_secret_file,
    refuse_if_others_may_change,
    warn_if_others_may_read,
)
from common.strict_yaml import load_strict_yaml
from common.text_files import read_text_file
from common.validation_errors import format_errors

PLATE_PATTERN = r"^[A-Z0-9]{1,16}$"
"""Plate text as read and as listed: capitals and digits, at most 16."""

MIN_SECRET_CHARS = 16
"""Shortest webhook secret accepted: an HMAC key a receiver cannot guess."""

MAX_URL_CHARS = 2048
"""Longest webhook URL accepted."""

MAX_TIMEOUT_S = 60.0
"""Longest time one delivery attempt may wait on its receiver."""

MIN_TIMEOUT_S = 0.1
"""Shortest time one delivery attempt may wait on its receiver: `timeout_s: 1e-9` was taken, every attempt
timed out before its connection was made, and every alert was retried for a day (a review)."""

DELIVERY_TIMEOUT_S = 5.0
"""Default time one delivery attempt waits on its receiver (connect, send, acknowledgement)."""

MQTT_PORT = 1883
"""MQTT's plain-TCP port."""

MQTT_TLS_PORT = 8883
"""The broker port of MQTT over TLS: a receiver on it speaks TLS unless `tls: false` says otherwise (and
the port of one with `tls: true` and no port of its own)."""

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Hosts to which plate text and credentials may go in the clear: this machine's own."""

LIST_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
"""A watch-list's name (common/watchlist.LIST_NAME_RE)."""

MAX_LISTS_PER_RECEIVER = 256
"""Most watch-lists one receiver's `lists` names."""

ListFilter = frozenset[str] | None
"""The watch-lists whose alerts a receiver takes; None: every list's."""


def _names_as_text(names: object) -> object:
    """`lists:` as written, refused where YAML read a name as something else than text (`2024`, `007`, `on`,
    `1.5`, a date): said so, not pydantic's "Input should be a valid string" and a misleading "Tuple should
    have at least 1 item after validation, not 0" (a review). The name itself is not shown."""
    if isinstance(names, list | tuple) and any(not isinstance(name, str) for name in names):
        raise ValueError(
            "a list name YAML reads as a number, a date or true/false (2024, 007, on) is written in quotes:"
            " lists: ['2024']"
        )
    return names


ListNames = Annotated[tuple[Annotated[str, Field(pattern=LIST_NAME_PATTERN)], ...], BeforeValidator(_names_as_text)]
"""A receiver's `lists:`: the names of watch-lists, each as text (LIST_NAME_PATTERN)."""

MQTT_WILDCARDS = frozenset("+#")
"""Characters a topic one publishes to may not hold (they are for subscriptions)."""

MQTT_RESERVED_PREFIX = "$"
"""How topics the broker keeps for itself begin (`$SYS/...`): a publish there reaches no subscriber (a
review: `$SYS/alpr` was acknowledged and recorded delivered, nothing received)."""

MqttProtocol = Literal["auto", "5", "3.1.1"]
"""The MQTT version an MQTT receiver is spoken to in: 5, or 3.1.1, or `auto` (5, and 3.1.1 where the broker
answers that it does not speak 5). Only MQTT 5's PUBACK says whether the broker took a publish: under 3.1.1 a
publish its ACL refuses is acknowledged all the same (alert_worker/mqtt_publish.py)."""


ALERT_BODY_VERSION = 2
"""The alert body's version (`Alert.version`): 1, the fields up to `logged_at_s` (a body without `version`);
2 adds `list_name`, `match_probability` and `candidates`, and writes `version`. Fields are only ever added:
a receiver of version 1 reads a version 2 body by ignoring what it does not know."""

ALERT_FIELDS_SINCE_2 = ("list_name", "match_probability", "candidates", "version")
"""The body's fields of version 2: written only when set, so that a version 1 body (raised by an earlier
sighting worker, delivered again by this alert worker) is sent as the same bytes as before."""


class AlertCandidate(Strict):
    """One of the texts the recogniser read the plate as, and its probability (calibrated confidence)."""

    text: str = Field(pattern=PLATE_PATTERN)
    confidence: float = Field(ge=0, le=1)


class Alert(Strict):
    """A watch-list match to tell receivers about: which plate was seen, where and when, and which
    listed plate it matched. `alert_id` is the idempotency key: a receiver that sees it twice (a retry
    after a lost acknowledgement) keeps one. Its fields are documented in the README (the alert body) and
    versioned (`ALERT_BODY_VERSION`)."""

    alert_id: str = Field(pattern=ID_PATTERN, description="idempotency key, unique per alert")
    camera_id: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
    plate: str = Field(pattern=PLATE_PATTERN, description="the plate text as read")
    watch_plate: str = Field(pattern=PLATE_PATTERN, description="the listed plate it matched")
    reason: str = Field(max_length=200, description="the watch-list entry's reason")
    distance: float = Field(ge=0, description="edit distance between the read and the listed plate")
    confidence: float = Field(ge=0, le=1, description="confidence of the read")
    captured_at_s: float = Field(ge=0, le=MAX_TIMESTAMP, description="capture time, Unix seconds")
    sighting_id: str | None = Field(  # camera, frame id and plate index: longer than one id may be
        None, pattern=r"^[A-Za-z0-9_.:-]{1,260}$", description="the sighting, once there is one"
    )
    frame_id: str = Field(pattern=ID_PATTERN, description="the frame of the read")
    kind: Literal["read", "sighting"] = Field(
        description="`read`: an early alert on a single confident read; `sighting`: on a closed sighting"
    )
    late: bool = Field(
        False,
        description="its reads were logged after the sighting pool had grouped the camera past their capture"
        " (a spool replayed after an outage): the car was there at captured_at_s, not lately",
    )
    logged_at_s: float | None = Field(
        None, ge=0, le=MAX_TIMESTAMP, description="a late alert's: when its (latest) read was logged, Unix seconds"
    )
    list_name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="the watch-list of the entry it matched (version 2)"
    )
    match_probability: float | None = Field(
        None, ge=0, le=1,
        description="how probable the recogniser found the listed plate (version 2): an exact match's confidence;"
        " a fuzzy one's, the listed text's probability among the read's candidates (a sighting's: averaged over"
        " its reads)",
    )  # fmt: skip
    candidates: tuple[AlertCandidate, ...] | None = Field(
        None, max_length=20, description="the read's (a sighting's: its reads') top texts, best first (version 2)"
    )
    version: int = Field(1, ge=1, le=ALERT_BODY_VERSION, description="the body's version (written from 2)")

    @model_serializer(mode="wrap")
    def _late_fields_only_when_late(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """`late` and `logged_at_s` are written only on a late alert: every other alert's body is the same
        bytes as before they were added (its signature, what receivers parse, and an alert worker of the
        earlier version, which refuses a field it does not know, still read it). The fields of version 2
        are written only when set (ALERT_FIELDS_SINCE_2): a version 1 body is delivered as it was raised."""
        data: dict[str, Any] = handler(self)
        if not self.late:
            data.pop("late", None)
            data.pop("logged_at_s", None)
        for name in ALERT_FIELDS_SINCE_2:
            if data.get(name) is None or (name == "version" and data[name] == 1):
                data.pop(name, None)
        return data


class ReceiverConfig(Strict):
    """A receiver's settings; input values never appear in a validation error (they may be secrets)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, hide_input_in_errors=True)

    timeout_s: float = Field(
        DELIVERY_TIMEOUT_S, ge=MIN_TIMEOUT_S, le=MAX_TIMEOUT_S, description="per delivery attempt, in seconds"
    )
    lists: ListNames | None = Field(
        None, min_length=1, max_length=MAX_LISTS_PER_RECEIVER,
        description="the watch-lists whose alerts it takes (left out: every list's)",
    )  # fmt: skip

    @property
    def list_filter(self) -> ListFilter:
        """`lists` as a set; None where it takes every list's alerts."""
        return None if self.lists is None else frozenset(self.lists)


class WebhookReceiver(ReceiverConfig):
    """An HTTP(S) endpoint that alerts are POSTed to, each signed with HMAC-SHA256 of `secret`
    (alert_worker/signing.py: the signed bytes and the headers)."""

    type: Literal["webhook"] = "webhook"
    url: str = Field(max_length=MAX_URL_CHARS, description="http:// or https:// URL, without user:password")
    secret: SecretStr = Field(min_length=MIN_SECRET_CHARS, max_length=1024, description="HMAC key shared with it")

    @field_validator("secret")
    @classmethod
    def _more_than_spaces(cls, secret: SecretStr) -> SecretStr:
        """At least MIN_SECRET_CHARS besides the whitespace around them: `secret: '   ...   '` written in
        place was taken (a secret file of spaces was refused), an HMAC key anyone could guess (a review)."""
        if len(secret.get_secret_value().strip()) < MIN_SECRET_CHARS:
            raise ValueError(f"a secret needs at least {MIN_SECRET_CHARS} characters besides the spaces around them")
        return secret

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.isprintable() or any(c.isspace() for c in url):
            raise ValueError("the URL holds spaces or control characters")
        if not url.isascii():  # http.client cannot send it: every attempt failed, retried for a day
            raise ValueError("the URL holds characters beyond ASCII: write them percent-encoded (é as %C3%A9)")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError("the URL must start with http:// or https://")
        if "@" in parts.netloc:
            raise ValueError("the URL may not carry user:password (the secret signs each alert)")
        try:
            port = parts.port  # raises on a port out of range or not a number
        except ValueError:
            port = 0
        if port == 0:  # :0 was taken, and every attempt failed, retried for a day
            raise ValueError("the URL's port is not a number from 1 to 65535")
        if not parts.hostname:
            raise ValueError("the URL names no host")
        return url


class MqttReceiver(ReceiverConfig):
    """An MQTT broker topic that alerts are published to, with QoS 1 (at least once)."""

    type: Literal["mqtt"] = "mqtt"
    host: str = Field(pattern=r"^[A-Za-z0-9_.:\[\]-]{1,253}$", description="broker host name or address")
    port: int = Field(MQTT_PORT, ge=1, le=65535)
    topic: str = Field(min_length=1, max_length=1024, description="topic to publish to (no + or # wildcards)")
    username: str | None = Field(None, min_length=1, max_length=256)
    password: SecretStr | None = Field(None, max_length=1024)
    qos: Literal[1] = Field(1, description="at least once: delivered when the broker acknowledged (PUBACK)")
    tls: bool | None = Field(None, description="TLS to the broker, its certificate verified (default: on port 8883)")
    ca_file: str | None = Field(None, min_length=1, description="CA certificates (PEM) to verify the broker by")
    protocol: MqttProtocol = Field(
        "auto", description="MQTT 5, 3.1.1, or auto: 5, else 3.1.1 where the broker refuses 5 (`MqttProtocol`)"
    )

    @field_validator("password")
    @classmethod
    def _more_than_spaces(cls, password: SecretStr | None) -> SecretStr | None:
        """A password written in place that is empty or only spaces: the broker refused every delivery (a
        password file of spaces was refused already; a review)."""
        if password is not None and not password.get_secret_value().strip():
            raise ValueError("the password is empty or only spaces: leave it out for a broker that takes none")
        return password

    @field_validator("protocol", mode="before")
    @classmethod
    def _version_as_text(cls, version: object) -> object:
        """`protocol: 5` is a number in YAML: read as the text "5"."""
        return str(version) if isinstance(version, int) and not isinstance(version, bool) else version

    @property
    def uses_tls(self) -> bool:
        """Whether deliveries speak TLS: as `tls` says, else on port 8883 only."""
        return self.tls if self.tls is not None else self.port == MQTT_TLS_PORT

    @field_validator("host")
    @classmethod
    def _name_or_address(cls, host: str) -> str:
        """A host name or an IP address, an IPv6 one with or without its brackets (kept without: the
        MQTT client could not resolve "[::1]" and every alert was retried for a day), never with a port
        (mqtt.example:1883 failed the same way: the port goes in `port`)."""
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if bare != host or any(c in bare for c in ":[]"):  # brackets or colons: an IPv6 address
            try:
                return str(ipaddress.IPv6Address(bare))
            except ValueError:
                raise ValueError(
                    "the host is a name or an IP address, without a port (the port goes in port:)"
                ) from None
        return bare

    @model_validator(mode="after")
    def _credentials_only_over_tls(self) -> MqttReceiver:
        """TLS without a port of its own goes to 8883; credentials leave this host only over TLS; a
        ca_file must exist and is for TLS."""
        if self.tls and "port" not in self.model_fields_set:
            object.__setattr__(self, "port", MQTT_TLS_PORT)
        if (self.username or self.password) and not self.uses_tls and self.host not in LOOPBACK_HOSTS:
            raise ValueError(
                "a username or password goes to a broker on another host only over TLS (tls: true or port 8883)"
            )
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ValueError(f"ca_file {self.ca_file} is not a file")
        if self.ca_file is not None and not self.uses_tls:
            raise ValueError("ca_file is for TLS: set tls: true (or port 8883)")
        harm = "they pick the brokers trusted with the password and the alerts"
        if self.ca_file is not None and (
            changeable := others_may_change(Path(self.ca_file), f"the MQTT ca_file {self.ca_file}", harm)
        ):
            raise ValueError(
                f"ca_file {self.ca_file} may be written by other users of this host ({changeable.why}): whoever"
                f" writes it picks the brokers trusted with the password and the alerts; {changeable.fix}"
            )
        if self.ca_file is not None:  # one that holds no certificate failed every attempt, retried for a day
            try:
                ssl.create_default_context(cafile=self.ca_file)
            except (ssl.SSLError, OSError, ValueError):
                raise ValueError(f"ca_file {self.ca_file} holds no PEM certificate that can be read") from None
        return self

    @field_validator("topic")
    @classmethod
    def _publishable(cls, topic: str) -> str:
        if MQTT_WILDCARDS & set(topic):
            raise ValueError("a topic to publish to may not hold the wildcards + or #")
        if "\x00" in topic:
            raise ValueError("a topic may not hold a NUL character")
        if topic.startswith(MQTT_RESERVED_PREFIX):
            raise ValueError("a topic starting with $ is the broker's own ($SYS/...): nothing subscribed gets it")
        return topic


Receiver = Annotated[WebhookReceiver | MqttReceiver, Field(discriminator="type")]
"""Any receiver, told apart by its `type` (webhook or mqtt)."""


RECEIVER_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
"""A receiver's name in the receivers file (it names its deliveries in the alerts log)."""

MAX_RECEIVERS_FILE_BYTES = 65536
"""Largest receivers file read."""


class _Routing(Strict):
    """A receiver's settings as the sighting pool reads them: which lists it takes; the rest not checked."""

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    lists: ListNames | None = Field(None, min_length=1, max_length=MAX_LISTS_PER_RECEIVER)


def receiver_routes(path: Path) -> dict[str, ListFilter]:
    """Each receiver's name in the receivers file and the lists it takes (None: every list), its secrets
    left unread (the sighting pool, which only records a delivery per receiver, needs no secret)."""
    routes: dict[str, ListFilter] = {}
    for name, settings in _entries(path).items():
        try:
            lists = _Routing.model_validate(settings).lists
        except ValidationError as error:
            raise ConfigError(format_errors(error, label=f"{path}: receiver {name}: ")) from None
        routes[name] = None if lists is None else frozenset(lists)
    return routes


def takes(lists: ListFilter, alert: Alert) -> bool:
    """Whether a receiver taking `lists` gets `alert`: every alert where it takes every list; else an alert
    whose list it names. A version 1 body (an earlier sighting worker's) names none: it goes only to the
    receivers that take every list, since it may be any list's."""
    return lists is None or (alert.list_name is not None and alert.list_name in lists)


def routed(alert: Alert, receivers: Mapping[str, ListFilter]) -> list[str]:
    """The receivers, of name -> lists taken, that get `alert`."""
    return [name for name, lists in receivers.items() if takes(lists, alert)]


def _entries(path: Path) -> dict[str, dict[str, object]]:
    """The file's receivers, name -> settings as written; names and shape checked."""
    text = read_text_file(path, MAX_RECEIVERS_FILE_BYTES, ConfigError)
    raw = load_strict_yaml(text, str(path))  # a receiver named twice: refused, as the cameras file's keys
    entries = raw.get("receivers") if isinstance(raw, dict) else None
    if not isinstance(entries, dict):  # `receivers: {}` is a file that lists none: alerts are only logged
        raise ConfigError(f"{path}: expected `receivers:` mapping each receiver's name to its settings")
    for name, settings in entries.items():
        if not isinstance(name, str) or not re.fullmatch(RECEIVER_NAME_PATTERN, name):
            raise ConfigError(f"{path}: receiver names are 1-64 letters, digits and _ . - ({str(name)[:40]!r})")
        if not isinstance(settings, dict):
            raise ConfigError(f"{path}: receiver {name}: expected a mapping of its settings")
    as_job_ids: dict[str, str] = {}
    for name in entries:  # RQ job ids hold no '.': a.b and a_b would name one job, and one would go undelivered
        if (other := as_job_ids.setdefault(name.replace(".", "_"), name)) != name:
            raise ConfigError(f"{path}: receivers {other} and {name} differ only in '.' against '_': rename one")
    return entries


def load_receivers(path: Path) -> dict[str, WebhookReceiver | MqttReceiver]:
    """The receivers file (YAML): `receivers: {NAME: {type: webhook, url: ..., secret_file: ...}, NAME:
    {type: mqtt, host: ..., topic: ..., username: ..., password_file: ...}}`. Secrets may be written in
    place (`secret`, `password`) or, better, read from files, whose content is taken stripped of the
    whitespace around it (the newline `echo` leaves): a receiver signs with the stripped secret. Two webhooks
    may not share a secret (`_one_secret_each`). Any fault is one ConfigError that shows no secret. A file
    other users of this host may write is refused, and one holding secrets in place that they may read is
    said in a WARNING (common/receiver_secrets.py)."""
    receivers: dict[str, WebhookReceiver | MqttReceiver] = {}
    adapter: TypeAdapter[WebhookReceiver | MqttReceiver] = TypeAdapter(Receiver)
    in_place: list[str] = []
    for name, written in _entries(path).items():
        settings = dict(written)
        if any(settings.get(field) not in (None, "") for field in SECRET_FILE_FIELDS.values()):
            in_place.append(name)  # before any file is read into the settings
        for file_field, field_name in SECRET_FILE_FIELDS.items():
            if file_field in settings:
                settings[field_name] = read_secret_file(path, name, settings, file_field, field_name)
        try:
            receivers[name] = adapter.validate_python(settings)
        except ValidationError as error:
            raise ConfigError(format_errors(error, label=f"{path}: receiver {name}: ")) from None
    _one_secret_each(path, receivers)
    refuse_if_others_may_change(path)
    warn_if_others_may_read(path, in_place)
    return receivers


def _one_secret_each(path: Path, receivers: Mapping[str, WebhookReceiver | MqttReceiver]) -> None:
    """ConfigError naming two webhooks that share a secret (never the secret): the signature covers the
    timestamp and the body alone, not the receiver, so either could sign alerts the other would take for
    the alert pool's. With the README's routing (the parking list to the parking office, the stolen list to
    the police) on one secret, the parking office could send the police "stolen" alerts of its own making
    (a review)."""
    holders: dict[str, str] = {}
    for name, receiver in receivers.items():
        if isinstance(receiver, WebhookReceiver):
            other = holders.setdefault(receiver.secret.get_secret_value(), name)
            if other != name:
                raise ConfigError(
                    f"{path}: receivers {other} and {name} share one secret: either could sign alerts the other"
                    " takes for the alert pool's; give each webhook a secret of its own"
                )

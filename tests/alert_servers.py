"""Private receivers for the alert tests: a mosquitto broker on a free port in its own folder, and an HTTP
webhook receiver that records each request, checks its signature and answers as told."""

from __future__ import annotations

import contextlib
import email.message
import getpass
import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from alert_worker.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from tests.helpers import free_port

MOSQUITTO = "/usr/sbin/mosquitto"
"""Debian's broker binary (not on a user's PATH)."""


class PrivateMosquitto:
    """A mosquitto that listens on 127.0.0.1 only and keeps nothing on disk; anonymous clients are let in
    unless `allow_anonymous` is False (then every client is refused: no password file). With
    `tls_files` (certificate, key), a TLS listener too, on `tls_port`; with `acl`, the topics clients may
    use (mosquitto's ACL file)."""

    def __init__(
        self,
        directory: Path,
        allow_anonymous: bool = True,
        tls_files: tuple[Path, Path] | None = None,
        acl: str | None = None,
    ) -> None:
        binary = shutil.which("mosquitto") or (MOSQUITTO if Path(MOSQUITTO).exists() else None)
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed")
        self.binary, self.directory, self.port = binary, directory, free_port()
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous {str(allow_anonymous).lower()}\npersistence false\n"
        )
        if tls_files is not None or acl is not None:  # as root, mosquitto would drop to a user who cannot read them
            with self.config.open("a") as config:
                config.write(f"user {getpass.getuser()}\n")
        if acl is not None:  # an ACL file's lines (before any `user` line, they are anonymous clients')
            (directory / "mosquitto.acl").write_text(acl)
            with self.config.open("a") as config:
                config.write(f"acl_file {directory / 'mosquitto.acl'}\n")
        self.tls_port: int | None = None
        if tls_files is not None:  # a second listener, TLS with this certificate and key: `tls_port`
            self.tls_port = free_port()
            certificate, key = tls_files
            with self.config.open("a") as config:
                config.write(f"listener {self.tls_port} 127.0.0.1\n")
                config.write(f"certfile {certificate}\nkeyfile {key}\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = (self.directory / "mosquitto.log").open("wb")
        with log:
            self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log, stderr=log)
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.025)
        self.stop()
        raise RuntimeError(
            f"mosquitto did not start on port {self.port}: {(self.directory / 'mosquitto.log').read_text()}"
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def own_secret(secret: str, name: str) -> str:
    """Receiver `name`'s secret in a test's receivers file: `secret` and the name (common/alerts.load_receivers
    refuses two webhooks that share a secret: either could sign the other's alerts)."""
    return f"{secret}-{name}"


@dataclass
class Received:
    """One request the webhook receiver got."""

    method: str
    path: str
    headers: email.message.Message
    """Looked up without regard to case, as HTTP's are."""
    body: bytes
    signature_ok: bool


@dataclass
class Reply:
    """How the webhook receiver answers: a status, extra headers, and whether it hangs first (until
    the receiver closes) or trickles its answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    trickle_s: float = 0.0
    """When above 0: the answer is sent a byte at a time, one every trickle_s seconds."""
    trickle_body_s: float = 0.0
    """When above 0: the status line and headers at once (200, Content-Length 4096), then the body a byte
    every trickle_body_s seconds."""
    echo_path: bool = False
    """Whether the status line's reason phrase quotes the request's path (as some servers' 404 do)."""
    echo_without_query: bool = False
    """With echo_path: the path is quoted without its query."""
    echo_text: str | None = None
    """Words the reason phrase quotes instead (a receiver echoing one piece of its URL, its token)."""
    held_until: threading.Event | None = None
    """When given: the answer waits until it is set (at most a minute): a receiver slow to answer, but
    answering, within its timeout."""


class WebhookServer:
    """A ThreadingHTTPServer on 127.0.0.1 and a free port, in a thread: records every POST (checking its
    signature with `secret`, by `clock` when given, else verify_signature's own) and answers with `reply`
    (or, for an alert id in `by_alert`, with its own).
    Use as a context manager; leaving it releases a hanging handler and joins every thread."""

    def __init__(self, secret: str, reply: Reply | None = None, clock: Callable[[], float] | None = None) -> None:
        self.secret, self.reply, self.clock = secret, reply or Reply(), clock
        self.by_alert: dict[str, Reply] = {}
        """Alert id -> the answer to that alert alone (the others get `reply`)."""
        self.received: list[Received] = []
        self.release = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                timestamp, signature = self.headers.get(TIMESTAMP_HEADER, ""), self.headers.get(SIGNATURE_HEADER, "")
                now_s = owner.clock() if owner.clock is not None else None
                signed = verify_signature(body, timestamp, signature, owner.secret, now_s=now_s)
                owner.received.append(Received(self.command, self.path, self.headers, body, signed))
                reply = owner.by_alert.get(self.headers.get(IDEMPOTENCY_HEADER, ""), owner.reply)
                if reply.hang:
                    owner.release.wait(30)
                    return
                if reply.held_until is not None:
                    reply.held_until.wait(60)
                if reply.trickle_s > 0 or reply.trickle_body_s > 0:
                    if reply.trickle_s > 0:
                        answer = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 400 + b"\r\nContent-Length: 2\r\n\r\nok"
                    else:
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n")
                        self.wfile.flush()
                        answer = b"x" * 4096
                    for byte in answer:  # each read gets a byte well within its timeout
                        if owner.release.wait(reply.trickle_s or reply.trickle_body_s):
                            return
                        try:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                        except OSError:  # the client gave up
                            return
                    return
                quoted = self.path.split("?")[0] if reply.echo_without_query else self.path
                if reply.echo_text is not None:
                    quoted = reply.echo_text
                echoes = reply.echo_path or reply.echo_text is not None
                self.send_response(reply.status, f"No hook at {quoted}" if echoes else None)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST  # noqa: N815 (a POST turned GET by a followed redirect is recorded too)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False  # server_close joins the handlers
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alpr"

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


CONNACK_ACCEPTED = b"\x20\x02\x00\x00"
"""MQTT 3.1.1 CONNACK: no session present, connection accepted."""

CONNACK_ACCEPTED_5 = b"\x20\x03\x00\x00\x00"
"""MQTT 5 CONNACK: no session present, success, no properties."""

CONNACK_REFUSED_VERSION = b"\x20\x02\x00\x01"
"""MQTT 3.1.1 CONNACK: unacceptable protocol version (what a 3.1.1 broker answers an MQTT 5 CONNECT)."""


def protocol_level(connect: bytes) -> int:
    """The protocol level of a CONNECT packet (4: MQTT 3.1.1, 5: MQTT 5): after its fixed header (a type byte
    and the remaining length, 1 to 4 bytes) and the protocol name ("MQTT", its length first)."""
    at = 1
    while connect[at] & 0x80:
        at += 1
    name_length = int.from_bytes(connect[at + 1 : at + 3], "big")
    return connect[at + 3 + name_length]


def connack_for(connect: bytes) -> bytes:
    """The CONNACK accepting a client, in its CONNECT's version."""
    return CONNACK_ACCEPTED_5 if protocol_level(connect) == 5 else CONNACK_ACCEPTED


class MuteBroker:
    """A TCP server that takes one MQTT client and never acknowledges its publishes: it answers the
    CONNECT with a CONNACK when `accept_connect`, or says nothing at all. Use as a context manager."""

    def __init__(self, accept_connect: bool) -> None:
        self.accept_connect = accept_connect
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = int(self.listener.getsockname()[1])
        self.received = bytearray()
        self.thread = threading.Thread(target=self._serve)

    def _serve(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except OSError:  # closed before any client came
            return
        with connection:
            connection.settimeout(10)
            while chunk := connection.recv(65536):
                if not self.received and self.accept_connect:
                    connection.sendall(connack_for(chunk))
                self.received += chunk

    def __enter__(self) -> MuteBroker:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.listener.close()
        self.thread.join(15)


class FloodingBroker:
    """A hostile MQTT broker (a security review's): each client it takes gets a CONNACK, then, in place of
    the PUBACK of its publish, a flood until the client closes: with `huge`, a PUBLISH announcing MQTT's
    largest length (268,435,455 bytes) and zeros in 1 MiB chunks; else small PUBLISH packets (5 bytes
    each) without end. Serves one client after another; `connections` counts them. Use as a context
    manager."""

    HUGE_PUBLISH = b"\x30\xff\xff\xff\x7f" + b"\x00\x01a"
    """Fixed header (PUBLISH, QoS 0; remaining length 268,435,455), then a topic `a`: the rest follows."""

    SMALL_PUBLISH = b"\x30\x03\x00\x01a"
    """A whole MQTT 3.1.1 PUBLISH, QoS 0, to topic `a`, with no payload."""

    SMALL_PUBLISH_5 = b"\x30\x04\x00\x01a\x00"
    """The same in MQTT 5: no properties."""

    def __init__(self, huge: bool) -> None:
        self.first = self.HUGE_PUBLISH if huge else b""
        # made once, here: not counted among what the client holds
        self.chunks = {
            level: b"\x00" * (1 << 20) if huge else small * (1 << 18)
            for level, small in ((4, self.SMALL_PUBLISH), (5, self.SMALL_PUBLISH_5))
        }
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve)

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            self.connections += 1
            with connection:
                connection.settimeout(10)
                try:
                    connect = connection.recv(65536)
                    connection.sendall(connack_for(connect))  # accepted, in its version
                    chunk = self.chunks[protocol_level(connect)]
                    connection.recv(65536)  # the alert's PUBLISH
                    connection.sendall(self.first)
                    while not self.stopped.is_set():
                        connection.sendall(chunk)
                except OSError:  # the client closed the connection
                    pass

    def __enter__(self) -> FloodingBroker:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stopped.set()
        self.thread.join(15)
        self.listener.close()


class Mqtt311Broker:
    """An MQTT broker of the 3.1.1 kind only (as brokers before MQTT 5 are: Azure IoT Hub's, mosquitto
    before 1.6): an MQTT 5 CONNECT gets CONNACK "unacceptable protocol version" and the connection is closed;
    a 3.1.1 client is accepted and each QoS 1 PUBLISH acknowledged (PUBACK), its topic and payload kept in
    `published`. Serves one client after another; `levels` lists each CONNECT's protocol level. Use as a
    context manager."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.levels: list[int] = []
        self.published: list[tuple[str, bytes]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve)

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            with connection, connection.makefile("rb") as stream, contextlib.suppress(OSError, IndexError):
                connection.settimeout(10)
                self._session(connection, stream)  # until the client closes the connection

    def _session(self, connection: socket.socket, stream: BinaryIO) -> None:
        while packet := self._packet(stream):
            kind, body = packet
            if kind >> 4 == 1:  # CONNECT
                self.levels.append(protocol_level(bytes([kind, 0]) + body))
                if self.levels[-1] == 5:
                    connection.sendall(CONNACK_REFUSED_VERSION)
                    return
                connection.sendall(CONNACK_ACCEPTED)
            elif kind >> 4 == 3:  # PUBLISH, QoS 1: topic, packet id, payload
                topic_length = int.from_bytes(body[:2], "big")
                packet_id = body[2 + topic_length : 4 + topic_length]
                self.published.append((body[2 : 2 + topic_length].decode(), body[4 + topic_length :]))
                connection.sendall(b"\x40\x02" + packet_id)
            elif kind >> 4 == 14:  # DISCONNECT
                return

    @staticmethod
    def _packet(stream: BinaryIO) -> tuple[int, bytes] | None:
        """The next packet's first byte and its body; None once the client closed."""
        first = stream.read(1)
        if not first:
            return None
        length, shift = 0, 0
        while True:
            byte = stream.read(1)[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return first[0], stream.read(length)

    def __enter__(self) -> Mqtt311Broker:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stopped.set()
        self.thread.join(15)
        self.listener.close()


class RefusingBroker:
    """An MQTT broker that refuses every client's CONNECT: a CONNACK with `code` (an MQTT 5 reason code to an
    MQTT 5 CONNECT, a 3.1.1 return code to a 3.1.1 one), then the connection closed. Use as a context manager."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve)

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            with connection, contextlib.suppress(OSError, IndexError):
                connection.settimeout(10)
                connect = connection.recv(65536)
                five = protocol_level(connect) == 5  # MQTT 5's CONNACK ends in its properties' length (none)
                connack = b"\x20\x03\x00" + bytes([self.code, 0]) if five else b"\x20\x02\x00" + bytes([self.code])
                connection.sendall(connack)

    def __enter__(self) -> RefusingBroker:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stopped.set()
        self.thread.join(15)
        self.listener.close()

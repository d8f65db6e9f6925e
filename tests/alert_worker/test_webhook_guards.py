"""What a webhook attempt never does, against real receivers: follow a redirect anywhere (another host, the
cloud's metadata address, a port on this host: a receiver's 3xx is an answer, never a request made for it),
or send an alert over TLS it cannot verify (a certificate of no CA this host trusts, or of another name); nor
wait on a proxy past the attempt's time."""

from __future__ import annotations

import itertools
import shutil
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from alert_worker.attempts import DeliveryRejected, DeliveryRetryable, attempt_bound_s
from alert_worker.webhook import deliver_webhook
from tests.alert_servers import Reply, WebhookServer
from tests.alert_worker.test_delivery import ALERT, SECRET, assert_no_secret, self_signed, webhook
from tests.conftest import unavailable


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_port_is_never_followed(status):
    """A receiver answering 3xx with a Location on another port (Redis's, Postgres's, the metadata
    service's, here a listening socket): no connection is ever made to it, whatever the method a redirect
    would keep (307/308 keep the POST and its body, signature and all)."""
    target = socket.create_server(("127.0.0.1", 0))
    target.setblocking(False)
    elsewhere = f"http://127.0.0.1:{target.getsockname()[1]}/latest/meta-data/"
    try:
        with WebhookServer(SECRET, Reply(status, headers={"Location": elsewhere})) as server:
            with pytest.raises(DeliveryRejected, match=f"HTTP {status}") as caught:
                deliver_webhook(ALERT, webhook(server.url))
            assert len(server.received) == 1
        with pytest.raises(BlockingIOError):  # nobody knocked
            target.accept()
    finally:
        target.close()
    assert caught.value.for_now and "redirects are not followed" in str(caught.value)
    assert_no_secret(caught.value)


def tls_server(server: WebhookServer, certificate: Path, key: Path) -> None:
    """`server`, not started yet, speaking TLS with `certificate`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)


def certificate_for(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` alone (a DNS name) and its key."""
    import subprocess

    certificate, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True,
    )  # fmt: skip
    return certificate, key


@pytest.mark.parametrize("case", ["untrusted", "another-name", "trusted"])
def test_a_webhook_over_tls_is_sent_only_to_a_certificate_verified_for_its_host(tmp_path, monkeypatch, case):
    """The default context's verification: a self-signed certificate is refused (retried, nothing sent), and
    so is one of a CA this host trusts (SSL_CERT_FILE) issued for another name; one for 127.0.0.1 of a
    trusted CA delivers."""
    if shutil.which("openssl") is None:
        unavailable("openssl is not installed")
    certificate, key = (
        certificate_for(tmp_path, "receiver.example") if case == "another-name" else self_signed(tmp_path)
    )
    if case != "untrusted":
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
    server = WebhookServer(SECRET)
    tls_server(server, certificate, key)
    with server:
        url = server.url.replace("http://", "https://")
        if case == "trusted":
            deliver_webhook(ALERT, webhook(url))
            assert len(server.received) == 1 and server.received[0].signature_ok
            return
        with pytest.raises(DeliveryRetryable, match="CERTIFICATE_VERIFY_FAILED") as caught:
            deliver_webhook(ALERT, webhook(url))
        assert server.received == []
    assert ALERT.plate not in str(caught.value)
    assert_no_secret(caught.value)


def test_a_proxy_trickling_its_answer_to_connect_is_cut_off_within_the_attempts_bound(monkeypatch):
    """HTTPS through a proxy (HTTPS_PROXY, as urllib takes it from the environment): the proxy's answer to
    CONNECT was read before the connection's socket was known to the attempt's deadline, each read within
    the timeout alone, so a proxy sending a header line a byte at a time held the receiver's lane for as
    long as it kept sending (past the lease: another worker claimed the alert). Now cut off with the
    exchange's time, the alert never sent."""
    proxy = socket.create_server(("127.0.0.1", 0))
    stop, heard = threading.Event(), []

    def trickle() -> None:
        connection, _ = proxy.accept()
        with connection:
            heard.append(connection.recv(65536))
            try:
                connection.sendall(b"HTTP/1.1 200 Connection established\r\n")
                for sent, byte in enumerate(itertools.cycle(b"X-Pad: 1\r\n")):  # header lines a byte at a time
                    if stop.wait(0.05) or sent > 600:  # for 30 s at most
                        return
                    connection.sendall(bytes([byte]))
            except OSError:  # cut off
                return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    for name in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
    try:
        started = time.monotonic()
        with pytest.raises(DeliveryRetryable, match="timed out"):
            deliver_webhook(ALERT, webhook("https://receiver.example/hooks/alpr", timeout_s=0.5))
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        thread.join(5)
        proxy.close()
    assert heard[0].startswith(b"CONNECT receiver.example:443 ")  # it went through the proxy
    assert elapsed < attempt_bound_s(0.5) + 1  # the exchange's 0.5 s; it was 30 s, as long as the proxy sent

"""The probe asking an http camera that could not be opened whether it redirects, over real sockets: bounded
as a whole however slowly the camera answers, and its answer's head read 8 KiB at most."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from common import defaults
from ingest.redirect_probe import redirect_origin


@pytest.fixture
def camera() -> Iterator[tuple[int, list[bytes]]]:
    """A camera on a free port answering each connection with the bytes of answer[0], sent a byte every
    answer[1:] seconds where given (else at once); (its port, the answer to set)."""
    listener = socket.create_server(("127.0.0.1", 0))
    answer: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(4096)
                every_s = float(answer[1]) if len(answer) > 1 else 0.0
                try:
                    if not every_s:
                        connection.sendall(answer[0])
                        continue
                    for byte in answer[0]:
                        if stop.wait(every_s):
                            return
                        connection.send(bytes([byte]))
                except OSError:  # the probe gave up and closed
                    continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], answer
    stop.set()
    listener.shutdown(socket.SHUT_RDWR)  # its accept returns
    listener.close()
    thread.join(5)


def test_a_camera_dripping_its_status_line_keeps_the_probe_no_longer_than_its_timeout(camera) -> None:  # type: ignore[no-untyped-def]
    """A review: http.client's timeout was each read's, so a camera sending its answer a byte a second kept the
    source's thread in the probe for minutes. Now the whole exchange ends within the timeout."""
    port, answer = camera
    answer += [b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.example/\r\n" + b"X: " + b"a" * 200, b"0.2"]
    started = time.monotonic()
    assert redirect_origin(f"http://127.0.0.1:{port}/x", timeout_s=1.0) is None
    assert time.monotonic() - started < 1.5


def test_a_redirect_is_told_and_one_past_the_heads_cap_is_not_read(camera) -> None:  # type: ignore[no-untyped-def]
    port, answer = camera
    answer.append(b"HTTP/1.1 302 Found\r\nLocation: http://user:pw@elsewhere.example:8080/p?q=1\r\n\r\n")
    assert redirect_origin(f"http://127.0.0.1:{port}/x", timeout_s=2.0) == "http://elsewhere.example:8080"
    padding = b"".join(
        b"X-Pad: " + b"a" * 1000 + b"\r\n" for _ in range(defaults.REDIRECT_PROBE_HEAD_BYTES // 1000 + 1)
    )
    answer[0] = b"HTTP/1.1 302 Found\r\n" + padding + b"Location: http://elsewhere.example/\r\n\r\n"
    started = time.monotonic()
    assert redirect_origin(f"http://127.0.0.1:{port}/x", timeout_s=2.0) is None
    assert time.monotonic() - started < 1.0


def test_a_dead_name_server_keeps_the_probe_no_longer_than_its_timeout(camera, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A review: the camera's name was looked up (getaddrinfo) outside the probe's deadline, so a dead DNS server
    held that camera's source thread as long as the resolver waited. Here the resolver (only it) takes 10 s; the
    camera, real, would answer a redirect: the probe gives up within its timeout, saying nothing."""
    port, answer = camera
    answer.append(b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.example/\r\n\r\n")
    real_lookup = socket.getaddrinfo

    def dead_resolver(host: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == "camera.example":
            time.sleep(10)
            host = "127.0.0.1"
        return real_lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", dead_resolver)
    started = time.monotonic()
    assert redirect_origin(f"http://camera.example:{port}/x", timeout_s=2.0) is None
    assert time.monotonic() - started < 2.5


def test_a_name_is_looked_up_and_its_addresses_tried_in_turn(camera, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A name's addresses, as the resolver gives them, tried in turn within the deadline: the first refuses (no
    camera on 127.0.0.2), the second is the camera, which answers a redirect."""
    port, answer = camera
    answer.append(b"HTTP/1.1 301 Moved\r\nLocation: https://elsewhere.example/\r\n\r\n")
    real_lookup = socket.getaddrinfo

    def slow_resolver(host: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host != "camera.example":
            return real_lookup(host, *args, **kwargs)
        time.sleep(0.3)
        return real_lookup("127.0.0.2", *args, **kwargs) + real_lookup("127.0.0.1", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_resolver)
    assert redirect_origin(f"http://camera.example:{port}/x", timeout_s=2.0) == "https://elsewhere.example"

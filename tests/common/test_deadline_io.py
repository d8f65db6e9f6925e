"""The deadline reader over a real socket pair: the whole read is bounded by its deadline however the peer
trickles, and by its byte cap however much it sends."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from common.deadline_io import DeadlineReader, HeadCutError


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(the reader's end, the peer's end) of a connected socket pair."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        yield ours, theirs


def trickle(peer: socket.socket, data: bytes, every_s: float) -> threading.Thread:
    """Sends `data` a byte every `every_s` seconds from a daemon thread, until the reader goes away."""

    def send() -> None:
        for byte in data:
            time.sleep(every_s)
            try:
                peer.send(bytes([byte]))
            except OSError:
                return

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_a_head_trickled_a_byte_at_a_time_ends_at_the_deadline(pair) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = pair
    trickle(theirs, b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * 100 + b"\r\n\r\n", 0.05)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        DeadlineReader(ours, time.monotonic() + 0.5, 8192).read_head()
    assert time.monotonic() - started < 0.8


def test_a_head_is_read_to_its_blank_line_and_one_past_the_cap_cut_short(pair) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = pair
    theirs.sendall(b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\nthe body")
    reader = DeadlineReader(ours, time.monotonic() + 2, 8192)
    assert reader.read_head() == b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n"
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"HTTP/1.1 302 Found\r\n" + b"X: " + b"a" * 100 + b"\r\nLocation: /x\r\n\r\n")
        cut = DeadlineReader(ours, time.monotonic() + 2, 40).read_head()
    assert cut == b"HTTP/1.1 302 Found\r\nX: " + b"a" * 17 + b"\r\n\r\n"  # 40 bytes read, the blank line added


def test_a_request_line_past_the_cap_is_refused(pair) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = pair
    theirs.sendall(b"GET /" + b"a" * 100)
    with pytest.raises(HeadCutError):
        DeadlineReader(ours, time.monotonic() + 2, 50).readline()


def test_the_streams_end_ends_a_read(pair) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = pair
    theirs.sendall(b"GET / HTTP/1.1\r\nrest")
    theirs.shutdown(socket.SHUT_WR)
    reader = DeadlineReader(ours, time.monotonic() + 2, 8192)
    assert reader.readline() == b"GET / HTTP/1.1\r\n"
    assert reader.read() == b"rest"

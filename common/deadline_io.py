"""A socket exchange bounded as a whole by a deadline (time.monotonic()), not each step by a timeout: a
socket's timeout is each read's, and a peer sending a byte a little inside it held the exchange for ever
(reviews: the metrics server's connections, the redirect probe's cameras). Each step waits what is left of
the time, and what is read is capped in bytes. Used by the metrics server (a scraper's request, read as a
file: `DeadlineReader`) and the redirect probe (a camera's answer's head: `DeadlineReader.read_head`)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

HEAD_END = b"\r\n\r\n"
"""The blank line that ends an HTTP head (its start line and header fields)."""


class HeadCutError(OSError):
    """A read past its exchange's byte cap: the exchange is ended, its peer unanswered."""


def left_s(deadline: float) -> float:
    """The time left before `deadline` (monotonic); TimeoutError where none is."""
    remaining_s = deadline - time.monotonic()
    if remaining_s <= 0:
        raise TimeoutError("the exchange's time is up")
    return remaining_s


def resolve_by(host: str, port: int, deadline: float) -> list[tuple[Any, ...]]:
    """getaddrinfo's TCP addresses of `host`:`port`, by `deadline` (TimeoutError past it). The lookup waits
    on the resolver as long as it takes, which no socket timeout bounds (a dead DNS server: its timeout a try,
    several tries; a review: a camera's source thread held that long), so it runs in a daemon thread waited on
    with the time left; past it, that thread is left to end with the resolver's own timeout. The lookup's
    error (socket.gaierror, UnicodeError of a name IDNA refuses) is raised here."""
    found: list[tuple[Any, ...]] = []
    failed: list[Exception] = []
    done = threading.Event()

    def look_up() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except Exception as error:  # raised in the caller's thread
            failed.append(error)
        finally:
            done.set()

    threading.Thread(target=look_up, name="name-lookup", daemon=True).start()
    if not done.wait(left_s(deadline)):
        raise TimeoutError("the exchange's time is up (looking up its name)")
    if failed:
        raise failed[0]
    return found


def connect_by(host: str, port: int, deadline: float) -> socket.socket:
    """A TCP connection to `host`:`port` made by `deadline`, the name's lookup included (`resolve_by`): its
    addresses tried in turn, as socket.create_connection, each connect waiting what is left of the time
    (TimeoutError past it); the last address's error where none connects."""
    error: OSError | None = None
    for family, kind, protocol, _, address in resolve_by(host, port, deadline):
        remaining_s = left_s(deadline)
        connection = socket.socket(family, kind, protocol)
        try:
            connection.settimeout(remaining_s)
            connection.connect(address)
            return connection
        except OSError as failure:
            connection.close()
            error = failure
    raise error or OSError(f"no address for {host!r}")


class DeadlineReader:
    """What a socket sends, read by `deadline` (monotonic; TimeoutError past it) and `max_bytes` at most
    (HeadCutError past them): each read waits what is left of the time (the socket's timeout, set before it,
    so a write after it too). A file to the reader of an HTTP request (`readline`, `read`), or the head of an
    answer in one call (`read_head`)."""

    def __init__(self, connection: socket.socket, deadline: float, max_bytes: int) -> None:
        self.connection, self.deadline, self.left = connection, deadline, max_bytes
        self.buffer = b""
        self.ended = False

    def fill(self) -> None:
        """One more chunk into the buffer (none at the end of the stream)."""
        remaining_s = left_s(self.deadline)
        if self.left <= 0:
            raise HeadCutError("past the exchange's byte cap")
        self.connection.settimeout(remaining_s)
        chunk = self.connection.recv(min(4096, self.left))
        self.left -= len(chunk)
        self.ended = not chunk
        self.buffer += chunk

    def read_head(self) -> bytes:
        """The HTTP head the socket sends (its start line and fields, to the blank line that ends them), with
        that blank line; where the stream ends or the byte cap is reached before it, what came, the blank line
        added (a field past the cap is not seen)."""
        while HEAD_END not in self.buffer and not self.ended and self.left > 0:
            self.fill()
        head = self.buffer.partition(HEAD_END)[0]
        self.take(len(head) + len(HEAD_END))
        return head + HEAD_END

    def readline(self, size: int = -1) -> bytes:
        while b"\n" not in self.buffer and not self.ended and (size < 0 or len(self.buffer) < size):
            self.fill()
        end = self.buffer.find(b"\n") + 1 or len(self.buffer)
        return self.take(end if size < 0 else min(end, size))

    def read(self, size: int = -1) -> bytes:
        while not self.ended and (size < 0 or len(self.buffer) < size):
            self.fill()
        return self.take(len(self.buffer) if size < 0 else size)

    def take(self, size: int) -> bytes:
        taken, self.buffer = self.buffer[:size], self.buffer[size:]
        return taken

    def close(self) -> None:
        """Nothing to release: the socket's owner closes it."""

"""The HTTP server of a process's /metrics: prometheus_client's WSGI app on its registry, one thread a
connection as its `start_http_server`, but each connection's socket timed out (METRICS_SOCKET_TIMEOUT_S)
and at most METRICS_MAX_CONNECTIONS served at once, the connections past them closed at once.
`start_http_server` set no timeout: a connection that never sent a request held its thread for ever, and
100 idle ones held 100 threads (a review). The timeout is the connection's whole, not each read's: one
sending a byte every 9 s held its slot for ever, and 16 of them shut Prometheus out (a review); and its
request is METRICS_MAX_REQUEST_BYTES at most (a scrape's GET is a few hundred), read by that deadline through
common/deadline_io.py's `DeadlineReader`."""

from __future__ import annotations

import logging
import socket
import threading
import time
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import make_wsgi_app
from prometheus_client.registry import Collector

from common import defaults
from common.deadline_io import DeadlineReader

log = logging.getLogger(__name__)


class TimedHandler(WSGIRequestHandler):
    """One request on a connection served within `timeout` seconds of its accept, whatever it sends and
    however slowly (`DeadlineReader`); logs no request."""

    timeout = defaults.METRICS_SOCKET_TIMEOUT_S

    def setup(self) -> None:
        deadline = time.monotonic() + (self.timeout or defaults.METRICS_SOCKET_TIMEOUT_S)
        super().setup()
        self.rfile.close()  # the buffered file over the socket: read through DeadlineReader instead
        self.rfile = DeadlineReader(self.connection, deadline, defaults.METRICS_MAX_REQUEST_BYTES)  # type: ignore[assignment]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """Log nothing (a scrape every few seconds)."""


class BoundedServer(ThreadingMixIn, WSGIServer):
    """A thread a connection, `max_connections` at most: one more is closed unanswered."""

    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 dropped a burst of connections' SYNs (a second's retry each)

    def __init__(
        self, address: tuple[str, int], family: socket.AddressFamily, timeout_s: float, max_connections: int
    ) -> None:
        self.address_family = family
        self.slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, type("Handler", (TimedHandler,), {"timeout": timeout_s}))

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # closed: the process holds no thread for it
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: its slot is free again
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that timed out or went away: closed, quietly (the base class printed a traceback)."""
        log.debug("metrics connection from %s ended in an error", client_address, exc_info=True)


def serve_metrics(
    registry: Collector,
    address: str,
    port: int,
    timeout_s: float = defaults.METRICS_SOCKET_TIMEOUT_S,
    max_connections: int = defaults.METRICS_MAX_CONNECTIONS,
) -> BoundedServer:
    """Serve `registry` at /metrics (any path, as start_http_server) on `address`:`port`, from a daemon
    thread; OSError where the address does not resolve or cannot be bound."""
    info = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, socket_address = info[0]
    server = BoundedServer((str(socket_address[0]), port), family, timeout_s, max_connections)
    server.set_app(make_wsgi_app(registry))
    threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True).start()
    return server

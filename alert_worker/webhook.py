"""One webhook attempt (`deliver_webhook`): the alert POSTed to the receiver's URL, signed
(alert_worker/signing.py), the whole exchange within the receiver's timeout and the attempt within its
bound (`_Deadline`, alert_worker/attempts.attempt_bound_s), redirects not followed, a 2xx status line the
receiver's yes; and what each answer comes to (`_status_error`): retried (408, 425, 429, 5xx, with its
Retry-After as a hint), rejected for now (3xx, REFUSED_FOR_NOW) or rejected for good (other 4xx)."""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC
from http.client import HTTPException
from typing import Any

from alert_worker.attempts import (
    DeliveryError,
    DeliveryRejected,
    DeliveryRetryable,
    attempt_bound_s,
    describe,
    hide_url,
    receiver_origin,
)
from alert_worker.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, alert_body, sign
from common.alerts import Alert, WebhookReceiver
from common.credentials import escape_controls, mask_url

USER_AGENT = "alpr-alerts/1"
"""User-Agent of webhook requests."""

RETRYABLE_STATUS = frozenset({408, 425, 429})
"""4xx answers worth retrying (timeout, too early, too many requests); every 5xx is too."""

REFUSED_AS_SETTINGS = frozenset({401, 403, 407})
"""4xx answers that refuse the sender, not the alert (the secret, a proxy's credentials): every alert gets
the same, so a probe so refused does not show the receiver taking alerts (`DeliveryRejected.answered`)."""

REFUSED_FOR_NOW = frozenset({401, 403, 404, 405, 407, 410})
"""4xx answers that may be the receiver's state for a while, not the alert's (with every 3xx): a maintenance
window, a deploy, a secret or proxy credentials being rotated; a static maintenance page answers a POST 405.
Rejected at once, every alert raised in a 25 s window of 404 was lost (10 of 22, a review; with 503 all 22
came through): now retried within ALERT_UNKNOWN_RECEIVER_GRACE_S of the alert (`DeliveryRejected.for_now`),
the receiver resting and probed as a failing one. Other 4xx (400, 409, 413, 422...) are about the alert
itself: rejected at once."""

MAX_RETRY_AFTER_S = 3600.0
"""Longest Retry-After honoured as a hint; a receiver asking for more gets this."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answers, not followed: urllib would turn the POST into a bodiless GET."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class _Deadline:
    """Ends an attempt in time: urllib's timeout bounds each socket operation, so a receiver that trickles
    its answer a byte at a time would hold a delivery (and its lease) for ever. The exchange has `seconds`
    from its connection, and the whole attempt `bound_s` from its start, whichever ends first; each
    connection's socket is known from its making (urllib lets go of it once the headers are in), and when
    the time is up it is shut, which wakes a read."""

    def __init__(self, seconds: float, bound_s: float) -> None:
        self.seconds, self.ends_at = seconds, time.monotonic() + bound_s
        self.sockets: list[socket.socket] = []
        self.expired = threading.Event()
        self.lock = threading.Lock()
        self.timer = self._timer(bound_s)

    def _timer(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(max(0.0, seconds), self._expire)
        timer.daemon = True
        timer.start()
        return timer

    def connected(self, sock: socket.socket) -> bool:
        """A connection is made (its TCP socket, before any proxy's tunnel or TLS handshake on it): the
        exchange's time starts now, within the attempt's bound; False (and nothing started) when the
        attempt's time is up already. One critical section with `_expire`: a timer firing between a check
        and the socket's registration shut nothing, and a trickling receiver held the attempt 90 s past its
        bound (a review)."""
        with self.lock:
            if self.expired.is_set():
                return False
            self.sockets.append(sock)
            self.timer.cancel()
            self.timer = self._timer(min(self.seconds, self.ends_at - time.monotonic()))
            return True

    def wrapped(self, sock: socket.socket) -> bool:
        """The connection's socket once TLS wraps it (the TCP one it was made from is detached: shutting
        that one shuts nothing), shut with the others at the time's end; False where that time is up."""
        with self.lock:
            if self.expired.is_set():
                return False
            self.sockets.append(sock)
            return True

    def cancel(self) -> None:
        with self.lock:
            self.timer.cancel()

    def track(self, connection_class: type[http.client.HTTPConnection]) -> Callable[..., http.client.HTTPConnection]:
        def connect(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
            connection = connection_class(*args, **kwargs)
            opened, make = connection.connect, connection._create_connection  # type: ignore[attr-defined]

            def make_in_time(*args: Any, **kwargs: Any) -> socket.socket:
                sock = make(*args, **kwargs)  # known from here: a proxy trickling its answer to CONNECT (read
                if not self.connected(sock):  # before TLS, and the socket known) held the attempt for ever
                    sock.close()
                    raise TimeoutError("connected only after the attempt's time: nothing sent")
                return sock

            def connect_in_time() -> None:  # the host name's lookup cannot be cut short: a connection made
                opened()  # after the attempt's bound sent the alert as the lease ran out, and another worker
                if connection.sock is None or not self.wrapped(connection.sock):  # sent it again (a receiver
                    connection.close()  # saw it twice); now nothing is sent
                    raise TimeoutError("connected only after the attempt's time: nothing sent")

            connection._create_connection = make_in_time  # type: ignore[attr-defined]
            connection.connect = connect_in_time  # type: ignore[method-assign]
            connection.response_class = _Answer
            return connection

        return connect

    def _expire(self) -> None:
        with self.lock:
            self.expired.set()
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def opener(self) -> urllib.request.OpenerDirector:
        """urllib's opener (proxies from the environment, verified TLS) without redirects, its
        connections tracked."""
        return urllib.request.build_opener(_NoRedirect, _TrackedHttp(self), _TrackedHttps(self))


class _AnsweredYes(Exception):  # noqa: N818 (what happened, not a failure)
    """The receiver's status line said 2xx, but what followed it could not be read."""


class _Answer(http.client.HTTPResponse):
    """http.client's response, its status line taken on its own: a receiver that answered `200 OK`, then
    headers http.client refuses (more than 100 of them, a line over 64 KiB) or a reset, took the alert all
    the same. Counted as a broken answer, the alert was sent again and again for a day (a review: 7 POSTs
    of the same alerts within minutes)."""

    def begin(self) -> None:
        try:
            super().begin()
        except (HTTPException, OSError):
            if isinstance(self.status, int) and 200 <= self.status <= 299:  # the status line was read
                raise _AnsweredYes from None
            raise


class _TrackedHttp(urllib.request.HTTPHandler):
    """urllib's HTTP handler, each connection it opens known to the exchange's deadline."""

    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self.deadline.track(http.client.HTTPConnection), req)


class _TrackedHttps(urllib.request.HTTPSHandler):
    """urllib's HTTPS handler (default verified context), each connection known to the deadline."""

    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(
            self.deadline.track(http.client.HTTPSConnection), req,
            context=self._context, check_hostname=self._check_hostname,  # type: ignore[attr-defined]
        )  # fmt: skip


def deliver_webhook(alert: Alert, receiver: WebhookReceiver, now_s: float | None = None) -> None:
    """POST `alert` to the receiver's URL, signed at `now_s` (Unix seconds, by the chain's shared clock:
    the alert worker passes Postgres's at the claim; default this host's); returns once it answered 2xx."""
    body = alert_body(alert)
    timestamp = str(int(time.time() if now_s is None else now_s))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(body, timestamp, receiver.secret.get_secret_value()),
        IDEMPOTENCY_HEADER: alert.alert_id,
    }
    request = urllib.request.Request(receiver.url, data=body, headers=headers, method="POST")
    where = f"webhook {receiver_origin(receiver.url)}"
    # the whole exchange, not each read, within timeout_s; the lookup and connection before it too, within the lease
    deadline = _Deadline(receiver.timeout_s, attempt_bound_s(receiver.timeout_s))
    try:
        # a 2xx status line is the receiver's yes: its body is not read (one sent a byte at a time held a
        # worker past its lease, the 200 thrown away and the alert sent again and again)
        with deadline.opener().open(request, timeout=receiver.timeout_s):
            deadline.cancel()
    except _AnsweredYes:  # its headers unreadable, but the yes is the status line
        return
    except urllib.error.HTTPError as error:
        with error:
            phrase = hide_url(" ".join(str(error.reason).split()), receiver.url)
            raise _status_error(where, error.code, phrase, error.headers.get("Retry-After")) from None
    except ValueError as error:  # UnicodeEncodeError: a URL http.client cannot send (as the receivers file checks)
        raise DeliveryRejected(f"{where}: the URL cannot be sent: {type(error).__name__}") from None
    except (urllib.error.URLError, OSError, HTTPException) as error:  # unreachable, timeouts, broken answers
        if deadline.expired.is_set():
            raise DeliveryRetryable(f"{where}: timed out: no answer within {receiver.timeout_s:g} s") from None
        # a broken answer quotes the receiver (BadStatusLine: its status line, plate and all): its words,
        # recorded, never logged
        if isinstance(error, HTTPException):
            words = escape_controls(mask_url(hide_url(" ".join(str(error).split()), receiver.url)))[:200]
            raise DeliveryRetryable(f"{where}: {type(error).__name__}", words=words) from None
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        raise DeliveryRetryable(f"{where}: {describe(reason, receiver.url)}") from None
    finally:
        deadline.cancel()


def _status_error(where: str, status: int, reason: str, retry_after: str | None) -> DeliveryError:
    """The error for a receiver's non-2xx answer (`reason`: its reason phrase, the URL hidden, kept as the
    error's `words`)."""
    message, words = f"{where}: HTTP {status}", mask_url(escape_controls(reason)[:80])
    if status in RETRYABLE_STATUS or 500 <= status <= 599:
        return DeliveryRetryable(message, retry_after_s=_retry_after_s(retry_after), words=words)
    if 300 <= status <= 399:
        return DeliveryRejected(f"{message} (redirects are not followed: give the final URL)", words, for_now=True)
    if status in (401, 403):  # what a receiver checking the signature answers (verify_signature failed)
        check = "the receiver's secret must be the receivers file's, its clock within its tolerance of Postgres's"
        return DeliveryRejected(f"{message} (the signature refused? {check}, which dates it)", words, for_now=True)
    answered = 400 <= status <= 499 and status not in REFUSED_AS_SETTINGS
    return DeliveryRejected(message, words, answered=answered, for_now=status in REFUSED_FOR_NOW)


def _retry_after_s(value: str | None, now_s: float | None = None) -> float | None:
    """A Retry-After as a wait in seconds, capped at MAX_RETRY_AFTER_S: ASCII digits, or an HTTP date (its
    distance from `now_s`, default this host's clock, none where past); anything else is no hint. It took
    `str.isdigit`, which says yes to `²` (one Latin-1 byte a receiver sent) where `float` says no: the
    ValueError escaped as an unexpected error, the receiver never rested, and it got 64 requests in 45 s
    where a plain 503 got 5 (a review)."""
    text = (value or "").strip()
    if text.isascii() and text.isdigit():
        digits = text.lstrip("0") or "0"  # int() refuses more than 4,300 digits: a long one is past the cap
        return MAX_RETRY_AFTER_S if len(digits) > 12 else min(float(digits), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):  # not a date (or an empty header)
        return None
    if when.tzinfo is None:  # "-0000": a date that names no zone, which HTTP's always is (GMT)
        when = when.replace(tzinfo=UTC)
    wait_s = when.timestamp() - (time.time() if now_s is None else now_s)
    return min(wait_s, MAX_RETRY_AFTER_S) if wait_s > 0 else None

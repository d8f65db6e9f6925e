"""What one delivery attempt may take and come to, whatever its transport (alert_worker/webhook.py,
alert_worker/mqtt_publish.py): its time bound within the delivery's lease (`attempt_bound_s`), the errors
it raises (`DeliveryRetryable`: worth another attempt later; `DeliveryRejected`: refused, for good or,
`for_now`, perhaps only for a while), and how a failure is worded without a secret: a webhook is named by
its scheme, host and port only (`receiver_origin`), as Slack- and Discord-style hooks carry their token in
the path (`hide_url`, `describe`)."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

from common import defaults
from common.credentials import escape_controls, mask_url, url_origin

ATTEMPT_SAFETY_S = 1.5
"""An attempt ends this long before its delivery's lease (the receiver's timeout plus
defaults.ALERT_LEASE_MARGIN_S) runs out: its outcome is recorded before another worker may claim it."""


class DeliveryError(Exception):
    """A delivery attempt failed; the message names the receiver (its origin, no path) and why, never a
    secret. What the receiver said in its own words (an HTTP reason phrase) is kept apart, in `words`:
    they may quote the alert's plate ("409 duplicate plate KPX4721"), so they go to the deliveries table's
    last error (`recorded`), never to a log line."""

    def __init__(self, message: str, words: str = "") -> None:
        super().__init__(message)
        self.words = words

    @property
    def recorded(self) -> str:
        """The message with the receiver's words, as the deliveries table keeps it."""
        return f"{self} {self.words}".rstrip()


class DeliveryRetryable(DeliveryError):  # noqa: N818 (the name says what to do with it)
    """The receiver may take the alert later: unreachable, overloaded, timed out, 408/425/429/5xx."""

    def __init__(self, message: str, retry_after_s: float | None = None, words: str = "") -> None:
        super().__init__(message, words)
        self.retry_after_s = retry_after_s
        """The receiver's Retry-After, in seconds, when it sent one: a hint for the next attempt."""


class DeliveryRejected(DeliveryError):  # noqa: N818
    """The receiver refused the alert (4xx, a redirect, bad credentials, a bad topic): for good, retrying
    cannot help, its settings or the receiver must change; or, `for_now`, perhaps only for a while."""

    def __init__(self, message: str, words: str = "", answered: bool = False, for_now: bool = False) -> None:
        super().__init__(message, words)
        self.answered = answered
        """Whether the refusal shows the receiver up and taking alerts, refusing this one (a 4xx of its own:
        409 a duplicate, 404, 422...), not its settings (a redirect; 401, 403, 407: the secret or a proxy's
        credentials) nor its load (408, 425, 429 are retried): a probe so refused hands its mark on."""
        self.for_now = for_now
        """Whether the refusal may be the receiver's state for a while rather than the alert's (REFUSED_FOR_NOW,
        a redirect, CONNACK_REFUSED_FOR_NOW): the worker retries it within ALERT_UNKNOWN_RECEIVER_GRACE_S of the
        alert, the receiver resting as a failing one, and rejects it after."""


def attempt_bound_s(timeout_s: float) -> float:
    """How long one attempt may take in all: the host name's lookup and the connection (each address tried
    for the timeout), then the exchange (the timeout), ending within the delivery's lease. An attempt
    bounded by the timeout alone never reached a receiver whose name took the timeout to look up (glibc's
    default with a dead first nameserver) or whose first address drops packets (a broken IPv6 route)."""
    return timeout_s + defaults.ALERT_LEASE_MARGIN_S - ATTEMPT_SAFETY_S


def receiver_origin(url: str) -> str:
    """A webhook's URL as it may be shown: scheme, host and port only (common/credentials.url_origin).
    Its path, query, fragment and any user:password are left out: each may be the receiver's token
    (`https://hooks.slack.com/services/T0/B0/<token>`)."""
    return url_origin(url)


MIN_HIDDEN_WORD = 6
"""A path segment or query value this long or longer is hidden wherever a message quotes it: a token
(Slack's, Discord's) is far longer; shorter words (`hook`, `api`, `v1`) would garble the message."""


def hide_url(text: str, url: str) -> str:
    """`text` (a library's or the receiver's words) with the receiver's URL replaced by its origin, and
    any piece of its path, query or fragment quoted by "…", longest first (http.client quotes a
    request's path in some errors; a receiver may echo its path, with or without the query, or just
    its token): the whole tail, path, query and fragment, and each path segment and query value of
    MIN_HIDDEN_WORD characters or more, as written and decoded."""
    parts = urlsplit(url)
    tail = url[len(f"{parts.scheme}://{parts.netloc}") :]
    text = text.replace(url, receiver_origin(url))
    pieces = {tail, tail.split("#")[0], parts.path, parts.query, parts.fragment}
    words = [*parts.path.split("/"), *(v for _, v in parse_qsl(parts.query, keep_blank_values=True))]
    words += [pair.partition("=")[2] for pair in parts.query.split("&")]
    pieces |= {w for word in words for w in (word, unquote(word)) if len(w) >= MIN_HIDDEN_WORD}
    for piece in sorted((p for p in pieces if len(p) > 1), key=len, reverse=True):  # a bare "/" hides nothing
        text = text.replace(piece, "…")
    return text


def describe(error: object, url: str | None = None) -> str:
    """An exception (or urllib's reason string) in a few words: its kind, then its message, with the
    receiver's `url` hidden (`hide_url`) and any other URL's password masked."""
    if isinstance(error, TimeoutError):
        return "timed out"
    text = " ".join(str(error).split())
    text = escape_controls(mask_url(hide_url(text, url) if url else text))
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {text}"[:200] if text else type(error).__name__
    return text[:200]

"""Whether an http(s) camera that could not be opened answers with a redirect (`redirect_origin`).

FFmpeg is told not to follow a camera's redirect (ingest/ffmpeg_open.py, `max_redirects` 0: a camera's
URL names where its frames come from), and says nothing when it meets one: a camera moved behind a
redirect was reported only as "cannot connect to stream" and retried with backoff for ever (a review).
Where such an open fails, one request that follows nothing, from the node (where the capture runs),
asks the camera: a 3xx answer is said, by where it points (its origin: no credentials, path or query).
The whole exchange is bounded, its answer's head read by common/deadline_io.py (REDIRECT_PROBE_HEAD_BYTES at
most): http.client's timeout was each read's, and a camera sending its status line a byte a second kept the
source's thread in the probe for minutes (a review)."""

from __future__ import annotations

import http.client
import io
import ssl
import time
from urllib.parse import SplitResult, urljoin, urlsplit

from common import defaults
from common.credentials import escape_controls, url_origin
from common.deadline_io import DeadlineReader, connect_by, left_s

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
"""The HTTP answers that send a client elsewhere (with a Location)."""


def redirect_origin(uri: str, timeout_s: float = defaults.REDIRECT_PROBE_TIMEOUT_S) -> str | None:
    """Where the http:// or https:// camera at `uri` redirects to, as its origin (`url_origin`: scheme,
    host and port, shown safely), or None: another scheme, no answer's head within `timeout_s` (all of it,
    connection and TLS included), an answer that is no redirect. One GET, its body not read; no credentials
    sent (a camera asking for them first answers 401: no redirect told); a camera's certificate not
    checked, as FFmpeg does not."""
    parts = urlsplit(uri)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    try:
        head = answer_head(parts, time.monotonic() + timeout_s)
        status_line, _, fields = head.partition(b"\r\n")
        status = int(status_line.split()[1])
        location = http.client.parse_headers(io.BytesIO(fields)).get("Location")
    except (OSError, ValueError, IndexError, http.client.HTTPException):
        return None
    if status not in REDIRECT_STATUSES or not location:
        return None
    try:  # a relative Location is the camera's own origin
        return escape_controls(url_origin(urljoin(f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/", location)))
    except ValueError:  # a host no parser takes: the redirect told, not where
        return "…"


def answer_head(parts: SplitResult, deadline: float) -> bytes:
    """The status line and headers of the camera's answer to one GET of `parts`, read by `deadline` (monotonic;
    TimeoutError past it) and REDIRECT_PROBE_HEAD_BYTES at most (what came by then). Each step waits what is
    left of the time, the name's lookup too (`connect_by`); a TLS handshake is bounded as a whole by the
    socket's timeout."""
    https = parts.scheme.lower() == "https"
    port = parts.port or (443 if https else 80)
    target = f"{parts.path or '/'}{'?' + parts.query if parts.query else ''}"
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in target):  # as http.client refuses them
        raise ValueError("a request target with control characters or spaces")
    host = f"[{parts.hostname}]" if ":" in str(parts.hostname) else str(parts.hostname)
    request = f"GET {target} HTTP/1.1\r\nHost: {host}{f':{parts.port}' if parts.port else ''}\r\n"
    request += "Accept-Encoding: identity\r\nConnection: close\r\n\r\n"
    with connect_by(str(parts.hostname), port, deadline) as raw:
        connection = raw
        if https:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            raw.settimeout(left_s(deadline))
            connection = context.wrap_socket(raw, server_hostname=str(parts.hostname))
        connection.settimeout(left_s(deadline))
        connection.sendall(request.encode("ascii"))
        return DeadlineReader(connection, deadline, defaults.REDIRECT_PROBE_HEAD_BYTES).read_head()

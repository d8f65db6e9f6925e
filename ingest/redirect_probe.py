"""Whether an http(s) camera that could not be opened answers with a redirect (`redirect_origin`).

FFmpeg is told not to follow a camera's redirect (ingest/ffmpeg_open.py, `max_redirects` 0: a camera's
URL names where its frames come from), and says nothing when it meets one: a camera moved behind a
redirect was reported only as "cannot connect to stream" and retried with backoff for ever (a review).
Where such an open fails, one request that follows nothing, from the node (where the capture runs),
asks the camera: a 3xx answer is said, by where it points (its origin: no credentials, path or query)."""

from __future__ import annotations

import http.client
import ssl
from urllib.parse import urljoin, urlsplit

from common import defaults
from common.credentials import escape_controls, url_origin

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
"""The HTTP answers that send a client elsewhere (with a Location)."""


def redirect_origin(uri: str, timeout_s: float = defaults.REDIRECT_PROBE_TIMEOUT_S) -> str | None:
    """Where the http:// or https:// camera at `uri` redirects to, as its origin (`url_origin`: scheme,
    host and port, shown safely), or None: another scheme, no answer within `timeout_s`, an answer
    that is no redirect. One GET, its body not read; no credentials sent (a camera asking for them
    first answers 401: no redirect told); a camera's certificate not checked, as FFmpeg does not."""
    parts = urlsplit(uri)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port
        if parts.scheme.lower() == "https":
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, port, timeout=timeout_s, context=context
            )
        else:
            connection = http.client.HTTPConnection(parts.hostname, port, timeout=timeout_s)
        try:
            connection.request("GET", f"{parts.path or '/'}{'?' + parts.query if parts.query else ''}")
            answer = connection.getresponse()
            location = answer.getheader("Location")
        finally:
            connection.close()
    except (OSError, ValueError, http.client.HTTPException):
        return None
    if answer.status not in REDIRECT_STATUSES or not location:
        return None
    try:  # a relative Location is the camera's own origin
        return escape_controls(url_origin(urljoin(f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/", location)))
    except ValueError:  # a host no parser takes: the redirect told, not where
        return "…"

"""Credentials kept out of sight: URLs masked before they reach a log line or an error message, and
a logging filter that masks any URL credentials a library message carries (a camera's RTSP
password, a Redis or Postgres password) on every handler of the process."""

from __future__ import annotations

import logging
import re

MASK = "***"
"""What a password is replaced with."""

URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*)(?::[^/\s]*)?@")
"""scheme://user:password@ (the password part optional): what masking rewrites."""


QUERY_PASSWORD = re.compile(r"(?i)\b(password=)[^&\s]+")
"""password=... in a URL's query or a libpq key=value string."""


def mask_url(text: str) -> str:
    """`text` with every URL's password (or lone user token) replaced by ***; the host stays readable.

    >>> mask_url("rtsp://admin:hunter2@10.0.0.5:554/s1")
    'rtsp://admin:***@10.0.0.5:554/s1'
    >>> mask_url("redis://:pw@redis:6379/0")
    'redis://:***@redis:6379/0'
    """
    masked = URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return QUERY_PASSWORD.sub(rf"\1{MASK}", masked)


class MaskCredentials(logging.Filter):
    """Rewrites each record's message with `mask_url`, arguments included, before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_url(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install_log_masking() -> None:
    """Mask credentials on every handler of the root logger (call after logging is configured)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, MaskCredentials) for f in handler.filters):
            handler.addFilter(MaskCredentials())

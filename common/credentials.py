"""Credentials kept out of sight: URLs masked before they reach a log line or an error message, and
a logging filter that masks any URL credentials a library message carries (a camera's RTSP
password, a Redis or Postgres password) on every handler of the process, and writes out the control
characters a message carries (no forged line, no terminal escape)."""

from __future__ import annotations

import logging
import re

MASK = "***"
"""What a password is replaced with."""

NETWORK_SCHEMES = ("rtsps?", "rtmps?", "https?", "srt", "udp", "tcp", "rediss?", "postgres(?:ql)?", "mqtts?", "amqps?")
"""Schemes whose broken forms (rtsp:/user:pw@host, rtsp//user:pw@host, http:user:pw@host) are masked too."""

URL_CREDENTIALS = re.compile(
    rf"(?P<scheme>\b(?:[A-Za-z][A-Za-z0-9+.-]*://|(?i:{'|'.join(NETWORK_SCHEMES)})(?::/{{0,2}}|//))|//(?=[^/\s:]*:))"
    r"(?P<user>[^/\s:]*)(?P<password>:\S*)?@"
)
"""scheme://user:password@ (the password optional, running to the token's last '@', so a raw '/' or '@'
in it is masked too, and the user may hold a raw '@' too: rtsp://admin@site:pw@host), and the broken
forms of the network schemes, and user:password@ after any `//` (rtsp!://admin:pw@host and
xrtsp//admin:pw@host, typos no scheme pattern knows, were shown whole): what masking rewrites. A path
such as gate:2024@night.mp4 or C:/videos/a@b.mp4 is left alone."""

SLASHED_CREDENTIALS = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s:@/]*/[^\s:@]*)(?P<password>:\S*)@"
)
"""scheme://us/er:password@ — a raw '/' in the user name (or one typed for ':'): a URL parser takes the host
to end there and the stream never connects, and the password was logged on every attempt (a review).
Masked as URL_CREDENTIALS does, the user kept; a path holding ':' and '@' after a '/' is masked too."""

QUERY_PASSWORD = re.compile(
    r"""(?i)(?<![\w.])((?:\w*(?:password|passwd|secret|token|credential|passcode)\w*|pwd|psd|psw|pw|p|pass|passw|passphrase|loginpas|auth"""
    r"""|(?:api|private|access|secret|client)[-_]?key|apikey|signature|sig)=)('[^']*'|"[^"]*"|[^&\s]+)"""
)
"""A credential in a URL's query (password=, pwd=, psd=, pw=, p= and passwd= as cameras take them, credential=,
passcode=, token=, api_key=, auth=, X-Amz-Signature=, ...) or a libpq key=value string (password=,
sslpassword=; quoted values whole).
A bare `key=` is left alone: our own records show theirs (a frame's store key); see QUERY_KEY."""

QUERY_KEY = re.compile(r"(?i)([?&]key=)(?!alpr:)([^&\s#]+)")
"""`key=` as a URL query's parameter (after ? or &), as stream and map services take an API key
(`live.m3u8?key=AIza...` was printed whole); a store key of our own (alpr:...) is not one."""


def mask_url(text: str) -> str:
    """`text` with every URL's password replaced by *** (a lone user token is kept, and *** added); the
    host stays readable.

    >>> mask_url("rtsp://admin:hunter2@10.0.0.5:554/s1")
    'rtsp://admin:***@10.0.0.5:554/s1'
    >>> mask_url("redis://:pw@redis:6379/0")
    'redis://:***@redis:6379/0'
    """
    masked = SLASHED_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    masked = URL_CREDENTIALS.sub(
        lambda m: f"{m['scheme']}{m['user']}:{MASK}@" if m["user"] or m["password"] else m[0], masked
    )  # udp://@:1234 (listen on every interface) has nothing to hide
    return QUERY_KEY.sub(rf"\1{MASK}", QUERY_PASSWORD.sub(rf"\1{MASK}", masked))


CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
"""What a log message may not carry as it is: line breaks and terminal escapes (a tab is left)."""


def escape_controls(text: str) -> str:
    """`text` with every control character but a tab written out (`\\n`, `\\x1b`): one log line each,
    and no terminal escape. A crafted job's function name, which RQ logs as it is, forged whole lines."""
    return CONTROL_CHARACTERS.sub(lambda m: repr(m[0])[1:-1], text)


class MaskCredentials(logging.Filter):
    """Rewrites each record's message with `mask_url`, arguments included, before any handler sees it,
    and writes out its control characters (`escape_controls`; a traceback the handler adds is kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = escape_controls(mask_url(message))
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install_log_masking() -> None:
    """Mask credentials on every handler of the root logger (call after logging is configured)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, MaskCredentials) for f in handler.filters):
            handler.addFilter(MaskCredentials())

"""Credentials kept out of sight: URLs masked before they reach a log line or an error message, and
a logging filter that masks any URL credentials a library message carries (a camera's RTSP
password, a Redis or Postgres password) on every handler of the process, and writes out the control
characters a message carries (no forged line, no terminal escape)."""

from __future__ import annotations

import hashlib
import logging
import re
from urllib.parse import urlsplit

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
    r"""(?i)(?<![\w.])((?:\w*(?:password|passwd|passwort|secret|token|credential|passcode|authsign|authbasic)\w*|pwd|psd"""
    r"""|psw|pw|p|pass|passw|passphrase|loginpas|clave|jwt|hdnts|policy|ticket|streamid|access_code|authorization"""
    r"""|auth|auth_?key|\w*session_?(?:id|key)"""
    r"""|(?:api|private|access|secret|client)[-_]?key|apikey|signature|sig)=)('[^']*'|"[^"]*"|[^&\s]+)"""
)
"""A credential in a URL's query (password=, pwd=, psd=, pw=, p= and passwd= as cameras take them, credential=,
passcode=, token=, api_key=, auth=, X-Amz-Signature=, a Dahua camera's authbasic=, Wowza's wmsAuthSign=, a
CDN's hdnts= or Policy=, jwt=, sessionid=, an SRT streamid=, ...) or a libpq key=value string (password=,
sslpassword=; quoted values whole). Masked here, none reaches `path_digest` either.
A bare `key=` is left alone: our own records show theirs (a frame's store key); see QUERY_KEY."""

QUERY_KEY = re.compile(r"(?i)([?&]key=)(?!alpr:)([^&\s#]+)")
"""`key=` as a URL query's parameter (after ? or &), as stream and map services take an API key
(`live.m3u8?key=AIza...` was printed whole); a store key of our own (alpr:...) is not one."""


ROLE_SCHEMES = re.compile(r"(?i)postgres(?:ql)?:")
"""Schemes whose lone user token (no password) is shown: a Postgres role, its password in a file
(ALPR_DATABASE_PASSWORD_FILE) or in trust; elsewhere (redis://TOKEN@host, rtsp://TOKEN@host) a lone
token is taken for the password someone put in the user's place, and masked whole."""


def _masked_credentials(found: re.Match[str]) -> str:
    scheme, user = found["scheme"], found["user"]
    if found["password"]:
        return f"{scheme}{user}:{MASK}@"
    if not user:  # udp://@:1234 (listen on every interface) has nothing to hide
        return found[0]
    return found[0] if ROLE_SCHEMES.match(scheme) else f"{scheme}{MASK}@"


def mask_url(text: str) -> str:
    """`text` with every URL's password replaced by ***, and a lone user token but a Postgres role's
    (ROLE_SCHEMES: it was shown with *** added, as if masked: redis://PASSWORD@host); the host stays
    readable.

    >>> mask_url("rtsp://admin:hunter2@10.0.0.5:554/s1")
    'rtsp://admin:***@10.0.0.5:554/s1'
    >>> mask_url("redis://:pw@redis:6379/0")
    'redis://:***@redis:6379/0'
    >>> mask_url("redis://R3dis@redis:6379/0 postgresql://alpr_app@db/alpr")
    'redis://***@redis:6379/0 postgresql://alpr_app@db/alpr'
    """
    masked = SLASHED_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    masked = URL_CREDENTIALS.sub(_masked_credentials, masked)
    return QUERY_KEY.sub(rf"\1{MASK}", QUERY_PASSWORD.sub(rf"\1{MASK}", masked))


AUTHORITY_END = re.compile(r"[/?#]")
"""Where a URL parser ends a URL's authority (user:password@host:port): its first '/', '?' or '#'."""


def authority_cut_short(url: str) -> bool:
    """Whether an '@' follows the authority of `url` as a URL parser reads it (in its path, query or
    fragment): a raw '/', '?' or '#' (or a second '@') in a user name or password ends the authority
    inside the credentials, and what comes before is taken for the host and port:
    rtsp://admin:1234/5678@cam parses as host `admin`, port 1234, and was shown `rtsp://admin:1234/…`
    (a review). Whether such an '@' is the credentials' or the path's cannot be told.

    >>> authority_cut_short("rtsp://1234/abcd@10.0.0.5/live"), authority_cut_short("rtsp://a:p%2F1@cam/live")
    (True, False)
    """
    after = url.split("://", 1)[1] if "://" in url else ""
    end = AUTHORITY_END.search(after)
    return end is not None and "@" in after[end.start() :]


def url_origin(url: str) -> str:
    """A URL as it may be shown with nothing of its path: scheme, host and port. Its path, query,
    fragment and any user:password are left out: each may be the token (a Slack-style hook's path, a
    UniFi camera's path, an RTMP stream key, a signed CDN query).

    >>> url_origin("https://hooks.example:8443/services/T0001/B0002/XoXo?sig=1#f")
    'https://hooks.example:8443'

    Where its authority may end inside its credentials (`authority_cut_short`), its scheme alone:

    >>> url_origin("rtsp://admin:1234/5678@10.0.0.5:554/x")
    'rtsp://…'
    """
    parts = urlsplit(url)
    if authority_cut_short(url):
        return f"{parts.scheme}://…"
    host = parts.hostname or "?"
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def path_digest(url: str) -> str | None:
    """A short digest naming what follows a URL's host (its path and query, their credentials masked
    first), or None where nothing does: what `shown_source` shows of it, and `alpr run`'s default
    camera id of a stream ends with. Two channels of one recorder (`/ch1`, `/ch2`; `?channel=1`,
    `?channel=2`) differ."""
    masked = urlsplit(mask_url(url))
    where = f"{masked.path.strip('/')}?{masked.query}" if masked.query else masked.path.strip("/")
    return hashlib.sha1(where.encode()).hexdigest()[:6] if where else None


def shown_source(source: str) -> str:
    """A camera's source as a log line or an error message may show it: a file or folder as its path
    (any URL credentials in it masked); a URL as its origin (`url_origin`), `/…` standing for the rest
    (rtsps://nvr:7441/…): the lines name the camera by its id. `mask_url` knows user:password and the
    query's usual names only: a UniFi camera's path is its token, an RTMP path the stream key, and each
    was logged at every reconnection; a digest of the rest, shown at first, gave a low-entropy secret
    to a guess list (a review); a URL whose authority may end inside its credentials (`authority_cut_short`),
    as its scheme alone (rtsp://…). Its control characters are written out (`escape_controls`): a file
    named with a line break and a terminal escape forged lines of `alpr run`'s output, which no log
    masking sees."""
    if "://" not in source:
        return escape_controls(mask_url(source))
    try:
        origin, parts = url_origin(source), urlsplit(source)
    except ValueError:  # a host no parser takes (`rtsp://[::1/live`): its scheme alone
        return escape_controls(f"{source.split('://', 1)[0][:20]}://…")
    if authority_cut_short(source):  # its "host" may be the user name and the password's start
        return escape_controls(origin)
    return escape_controls(f"{origin}/…" if parts.path.strip("/") or parts.query else origin)


CONTROL_CHARACTERS = re.compile(
    r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
"""What a log message may not carry as it is: line breaks and terminal escapes (a tab is left), Unicode's line
and paragraph separators (a line break to many log viewers) and its direction marks and overrides (U+202E turns
the rest of a line around on screen: a role name holding one, printed by `alpr db upgrade`, a review)."""


PIPELINE_COMMAND = re.compile(r"Command # (\d+) \(.*\) of pipeline caused error: ", re.DOTALL)
"""redis-py's account of a pipeline's refused command: its first 100 characters, arguments included —
a frame's or a plate crop's JPEG bytes (SET key <bytes>), a job's fields — and then the server's reason
(greedy: an argument holding the phrase itself ends at the last one)."""


def without_command_arguments(text: str) -> str:
    """`text` with redis-py's copy of a refused pipeline command left out, the server's reason kept:
    a read-only replica's refusal put 100 characters of a frame's JPEG bytes into every ingest warning
    while it lasted.

    >>> without_command_arguments("Command # 1 (SET alpr:frame:a \\xff\\xd8) of pipeline caused error: READONLY")
    'command 1 of a pipeline refused: READONLY'
    """
    return PIPELINE_COMMAND.sub(r"command \1 of a pipeline refused: ", text)


def escape_controls(text: str) -> str:
    """`text` with every control character but a tab written out (`\\n`, `\\x1b`): one log line each,
    and no terminal escape. A crafted job's function name, which RQ logs as it is, forged whole lines."""
    return CONTROL_CHARACTERS.sub(lambda m: repr(m[0])[1:-1], text)


TRACEBACKS = logging.Formatter()
"""Formats a record's traceback for masking, as every handler's formatter would."""


class MaskCredentials(logging.Filter):
    """Rewrites each record's message with `mask_url`, arguments included, before any handler sees it,
    leaves out a refused Redis pipeline command's arguments (`without_command_arguments`), and writes
    out its control characters (`escape_controls`); a traceback the record carries is masked the same
    way, its lines kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = escape_controls(mask_url(without_command_arguments(message)))
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:  # formatted once here, as a Formatter caches it
            record.exc_text = mask_url(without_command_arguments(TRACEBACKS.formatException(record.exc_info)))
        return True


def install_log_masking() -> None:
    """Mask credentials on every handler of the root logger (call after logging is configured)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, MaskCredentials) for f in handler.filters):
            handler.addFilter(MaskCredentials())

"""The Redis and Postgres URLs of the settings: checked when the settings load, so that a malformed one
is refused with a message that says what is wrong and quotes none of it (libpq and redis-py quote the
token they choke on, a password included), and a Postgres URL's password taken out, so that the driver
is handed it apart and never echoes it. A TLS file a Redis URL's query names (ssl_ca_certs…) must be
a file this process can read where it reaches Redis: a missing one read as "cannot reach Redis … No such
file or directory"."""

from __future__ import annotations

import os
import re
from typing import Literal
from urllib.parse import parse_qsl, unquote

ServerKind = Literal["redis", "postgres"]

BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
"""A '%' that does not start percent-encoding (%25 is a '%' itself)."""

UNSAFE_CHARACTER = re.compile(r"[\s\x00-\x1f\x7f]")
"""A space (any kind) or control character: never raw in a URL."""

HOST_PORT = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>[^:]*))?")
"""host, [IPv6] or host:port."""

REDIS_DATABASE = re.compile(r"/?\d*/?")
"""A Redis URL's path: empty or the database's number."""

MAX_PORT = 65535

REDIS_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
"""The query fields of a Redis URL naming a file redis-py loads at each connection (the CA's certificates,
the client's certificate and key)."""


def split_url(url: str) -> tuple[str, str, str, str]:
    """(scheme://, user information, hosts, the rest: path, query, fragment) of `url`; the user
    information ends at the authority's last '@'."""
    scheme, sep, rest = url.partition("://")
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    userinfo, _, hosts = rest[:end].rpartition("@")
    return scheme + sep, userinfo, hosts, rest[end:]


def url_problem(url: str, kind: ServerKind) -> str | None:
    """What is wrong with a Redis or Postgres URL, in words that quote none of it; None if nothing."""
    _, userinfo, hosts, rest = split_url(url)
    user, _, password = userinfo.partition(":")
    path = re.split(r"[?#]", rest, maxsplit=1)[0]
    for part, text in (("password", password), ("user name", user), ("host", hosts), ("path or query", rest)):
        if UNSAFE_CHARACTER.search(text):
            return f"the {part} has a space or control character; encode a space as %20"
        if BAD_PERCENT.search(text):
            return f"the {part} has a '%' that is not percent-encoding; encode it as %25"
    # an '@' after the authority but in no query value: a password's raw '/', '?' or '#' ended the
    # authority early (redis://:?xK9pq@remote:6379/0 has no host: redis-py connected to localhost:6379
    # without a password, while the log named the remote host); ?application_name=alpr@gate is a value
    query, _, fragment = rest[len(path) :].partition("#")
    names = [parameter.split("=", 1)[0] for parameter in query.removeprefix("?").split("&")]
    if "@" in password or "@" in path or "@" in fragment or any("@" in name for name in names):
        return "an '@', '/', '?' or '#' in the password must be percent-encoded (%40, %2F, %3F, %23)"
    if kind == "redis" and url.lower().startswith("unix://"):
        return _socket_problem(hosts, path, query) or _library_problem(url, kind)
    for host in hosts.split(",") if kind == "postgres" else [hosts]:
        match = HOST_PORT.fullmatch(host)
        port = match["port"] if match else "?"
        if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= MAX_PORT):
            return (
                "the port is not a number from 1 to 65535 (a ':', '?' or '#' in the password must be"
                " percent-encoded: %3A, %3F, %23)"
            )
    if kind == "redis" and not REDIS_DATABASE.fullmatch(unquote(path)):
        return (
            "the database (the URL's path) must be a number, as in redis://host:6379/0: Redis has no named"
            " databases, and redis-py would quietly use database 0"
        )
    return _library_problem(url, kind)


def tls_file_problem(url: str) -> str | None:
    """A TLS file named in a Redis URL's query (REDIS_TLS_FILES) that is no file this process can read,
    named by its field alone (the path is not quoted: this module quotes nothing of a URL). Checked where a
    role reaches Redis (alpr/connections.reach_redis), not when the settings load: a host whose shared
    environment names the chain's CA file but holds none (a cron box's `alpr db prune`) ran no command."""
    _, _, _, rest = split_url(url)
    query = rest.partition("?")[2].partition("#")[0]
    for name, value in parse_qsl(query):
        if name in REDIS_TLS_FILES and value and not (os.path.isfile(value) and os.access(value, os.R_OK)):
            return (
                f"the file its query's {name} names is missing or unreadable here (redis-py loads it at each"
                " connection: every one would fail)"
            )
    return None


def _socket_problem(hosts: str, path: str, query: str) -> str | None:
    """What is wrong with a Redis URL of a unix socket (`unix:///run/redis/redis.sock?db=0`, the password
    `unix://:pw@/run/…` or in the secret file): its path is the socket's, its database the `db` parameter.
    It was refused as a database named by its path, and a Redis reachable on its socket alone (`port 0`, a
    common hardening) could not be used."""
    if hosts or not path.startswith("/"):
        return "a unix socket's URL names no host, and the socket by its absolute path: unix:///run/redis/redis.sock"
    databases = [
        value for name, _, value in (p.partition("=") for p in query.removeprefix("?").split("&")) if name == "db"
    ]
    if any(not (value.isascii() and value.isdigit()) for value in databases):
        return "the database (the `db` parameter of a unix socket's URL) must be a number, as in ?db=0"
    return None


def _library_problem(url: str, kind: ServerKind) -> str | None:
    """What the driver's own URL parser refuses (a query parameter it does not know), without its words."""
    try:
        if kind == "postgres":
            from psycopg.conninfo import conninfo_to_dict

            conninfo_to_dict(url)
        else:
            import redis

            # its parser passes on a parameter it does not know, and the connection, made later, raised
            # a TypeError (a traceback, not the setting's one line): make one now, without connecting
            redis.ConnectionPool.from_url(url).make_connection()
    except Exception:  # their messages quote the token, which may be the password
        return "the driver cannot parse it (a query parameter it does not know, or a malformed value)"
    return None


def check_url(url: str | None, kind: ServerKind) -> str | None:
    """`url` unchanged when well formed (a pydantic validator); ValueError naming what is wrong."""
    if url is not None and (problem := url_problem(url, kind)):
        raise ValueError(problem)
    return url


def split_password(url: str) -> tuple[str, str | None]:
    """`url` without its password (the user information's, or a `password=` query parameter's) and
    that password, percent-decoded (None when the URL carries none)."""
    scheme, userinfo, hosts, rest = split_url(url)
    user, colon, password = userinfo.partition(":")
    found = unquote(password) if colon and password else None
    path, mark, query = rest.partition("?")
    kept = []
    for parameter in query.split("&") if mark else []:
        key, _, value = parameter.partition("=")
        if unquote(key) == "password":
            found = unquote(value) or found
        else:
            kept.append(parameter)
    query = ("?" + "&".join(kept)) if kept else ""
    return f"{scheme}{user}{'@' if user else ''}{hosts}{path}{query}", found

"""WARNINGs for the links that carry raw frames, the Redis password or plate text unencrypted off this host:
a Redis reached with redis:// (not rediss://), a Postgres reached without sslmode require, verify-ca or
verify-full, on a host other than this one (a loopback address, localhost, a unix socket). The roles said
nothing of it, though they warn when an alert receiver gets plate text unencrypted (a review). Each link is
warned of once a process, naming its host, never its URL (which may hold a password)."""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

ENCRYPTED_SSLMODES = frozenset({"require", "verify-ca", "verify-full"})
"""libpq's sslmodes that never fall back to a plain connection."""

_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def is_this_host(host: str | None) -> bool:
    """Whether `host` is reached without a network: none (a unix socket, libpq's and redis-py's default
    host aside), a socket's path, localhost or a loopback address."""
    if not host or host.startswith(("/", "@")):
        return True
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # a host name: off this host, as far as we can tell
        return False


def redis_host_in_clear(url: str) -> str | None:
    """The host a Redis URL reaches unencrypted off this host (redis://, not rediss:// nor a unix socket),
    or None."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "redis":
        return None
    host = parts.hostname or "localhost"  # redis-py's default host
    return None if is_this_host(host) else host


def postgres_hosts_in_clear(url: str, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The hosts a Postgres URL reaches off this host without TLS required (its sslmode, else PGSSLMODE,
    else libpq's `prefer`, which falls back to plain); [] where all are local or TLS is required. Hosts as
    libpq picks them: hostaddr where given, else host, else PGHOSTADDR, PGHOST."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception:  # malformed: refused, and said, where it is opened
        return []
    sslmode = str(params.get("sslmode") or environ.get("PGSSLMODE") or "prefer").lower()
    if sslmode in ENCRYPTED_SSLMODES:
        return []
    given = params.get("hostaddr") or params.get("host") or environ.get("PGHOSTADDR") or environ.get("PGHOST")
    return [host for host in str(given or "").split(",") if not is_this_host(host)]


def _first_time(kind: str, host: str) -> bool:
    with _warned_lock:
        if (kind, host) in _warned:
            return False
        _warned.add((kind, host))
        return True


def warn_if_redis_in_clear(url: str, what: str) -> None:
    """A WARNING, once a process for each host, when `url` reaches a Redis (holding `what`: the queues, the
    frame store) off this host with plain redis://."""
    host = redis_host_in_clear(url)
    if host is not None and _first_time("redis", host):
        log.warning("Redis for the %s at %s is reached with redis://, unencrypted: raw frames, plate crops and the"
                    " Redis password cross the network in the clear. Across hosts use rediss:// (TLS; "
                    "?ssl_ca_certs=<your CA file>); within one host's own network (a compose network) nothing"
                    " leaves the host", what, host)  # fmt: skip


def warn_if_postgres_in_clear(url: str | None) -> None:
    """A WARNING, once a process for each host, when `url` reaches a Postgres off this host without TLS
    required."""
    for host in postgres_hosts_in_clear(url) if url else []:
        if _first_time("postgres", host):
            log.warning("Postgres at %s is reached without TLS required (no sslmode=require, verify-ca or"
                        " verify-full): plate text and the frames log may cross the network in the clear. Across"
                        " hosts add ?sslmode=verify-full (sslrootcert=<your CA file>); within one host's own"
                        " network (a compose network) nothing leaves the host", host)  # fmt: skip

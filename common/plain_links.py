"""WARNINGs for the links that carry raw frames, the Redis password or plate text unencrypted off this host:
a Redis reached with redis:// (not rediss://), a Postgres reached without sslmode require, verify-ca or
verify-full, on a host other than this one (a loopback address, localhost, a unix socket). The roles said
nothing of it, though they warn when an alert receiver gets plate text unencrypted (a review). A role warns
of each link once, at its start (alpr/start_warnings.py), naming its host, never its URL (which may hold a password);
the hosts of ALPR_PLAIN_LINK_HOSTS (a compose network's service names: nothing leaves the host) are not warned
of."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

ENCRYPTED_SSLMODES = frozenset({"require", "verify-ca", "verify-full"})
"""libpq's sslmodes that never fall back to a plain connection."""


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


def links_in_clear(
    redis_urls: Mapping[str, str],
    database_url: str | None,
    known_hosts: frozenset[str],
    environ: Mapping[str, str] = os.environ,
) -> list[str]:
    """A WARNING's text for each link that crosses the network unencrypted: each Redis of `redis_urls` (what it
    holds -> its URL) reached with plain redis://, the Postgres of `database_url` without TLS required, off this
    host; a host in `known_hosts` (ALPR_PLAIN_LINK_HOSTS: a compose network's service names) is not one. Each
    names its host, never its URL (which may hold a password)."""
    said: list[str] = []
    for what, url in redis_urls.items():
        host = redis_host_in_clear(url)
        if host is not None and host.lower() not in known_hosts:
            said.append(f"Redis for the {what} at {host} is reached with redis://, unencrypted: raw frames, plate"
                        " crops and the Redis password cross the network in the clear. Across hosts use rediss://"
                        " (TLS; ?ssl_ca_certs=<your CA file>); a host reached only within this host's own network"
                        " (a compose network) is named in ALPR_PLAIN_LINK_HOSTS")  # fmt: skip
    for host in postgres_hosts_in_clear(database_url, environ) if database_url else []:
        if host.lower() not in known_hosts:
            said.append(f"Postgres at {host} is reached without TLS required (no sslmode=require, verify-ca or"
                        " verify-full): plate text and the frames log may cross the network in the clear. Across"
                        " hosts add ?sslmode=verify-full (sslrootcert=<your CA file>); a host reached only within"
                        " this host's own network (a compose network) is named in ALPR_PLAIN_LINK_HOSTS")  # fmt: skip
    return said

"""A role warns, once a process and without its credentials, when its Redis is reached with plain redis:// off
this host, or its Postgres without TLS required: raw frames, the Redis password and plate text crossed the
network unencrypted, unsaid (a review). Loopback, unix sockets, rediss:// and sslmode=require or stricter
are not warned of."""

from __future__ import annotations

import logging

import pytest

from alpr.wiring import reach_redis
from common import plain_links
from common.config import Settings
from common.db import open_pool
from common.errors import ConfigError
from common.plain_links import warn_if_postgres_in_clear, warn_if_redis_in_clear

PASSWORD = "s3cretPW-never-logged"
OFF_HOST = "192.0.2.7"  # TEST-NET-1: never answers


@pytest.fixture(autouse=True)
def nothing_warned_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plain_links, "_warned", set())


def warnings_said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == plain_links.__name__ and r.levelno == logging.WARNING]


@pytest.mark.parametrize(
    ("url", "host"),
    [
        (f"redis://:{PASSWORD}@{OFF_HOST}:6379/0", OFF_HOST),
        (f"REDIS://alpr:{PASSWORD}@redis.example.org/0", "redis.example.org"),
        (f"redis://:{PASSWORD}@[2001:db8::1]:6379/0", "2001:db8::1"),
        ("redis://127.0.0.1:6379/0", None),
        ("redis://127.8.9.1:6379/0", None),
        (f"redis://:{PASSWORD}@localhost:6379/0", None),
        ("redis://[::1]:6379/0", None),
        ("redis:///0", None),  # redis-py's default host: localhost
        (f"rediss://:{PASSWORD}@{OFF_HOST}:6380/0?ssl_ca_certs=/etc/ca.pem", None),
        ("unix:///run/redis/redis.sock?db=0", None),
    ],
)
def test_a_redis_reached_in_the_clear_off_this_host_is_warned_of_without_its_password(url, host, caplog):
    with caplog.at_level(logging.WARNING):
        warn_if_redis_in_clear(url, "frame store")
        warn_if_redis_in_clear(url, "frame store")  # once a process
    said = warnings_said(caplog)
    assert len(said) == (1 if host else 0), said
    if host:
        assert host in said[0] and "rediss://" in said[0] and "frame store" in said[0]
        assert PASSWORD not in caplog.text


@pytest.mark.parametrize(
    ("url", "environ", "hosts"),
    [
        (f"postgresql://alpr:{PASSWORD}@{OFF_HOST}:5432/alpr", {}, [OFF_HOST]),
        (f"postgresql://alpr:{PASSWORD}@db.example.org/alpr?sslmode=prefer", {}, ["db.example.org"]),
        (f"postgresql://alpr@db1.example.org,127.0.0.1/alpr?sslmode=disable&password={PASSWORD}", {},
         ["db1.example.org"]),
        (f"host={OFF_HOST} dbname=alpr password={PASSWORD}", {}, [OFF_HOST]),
        ("postgresql:///alpr", {"PGHOST": OFF_HOST}, [OFF_HOST]),
        (f"postgresql://alpr@{OFF_HOST}/alpr?sslmode=require", {}, []),
        (f"postgresql://alpr@{OFF_HOST}/alpr?sslmode=verify-full&sslrootcert=/etc/ca.pem", {}, []),
        (f"postgresql://alpr@{OFF_HOST}/alpr", {"PGSSLMODE": "verify-ca"}, []),
        ("postgresql://alpr@127.0.0.1:5432/alpr", {}, []),
        ("postgresql://alpr@localhost/alpr", {}, []),
        ("postgresql://alpr@%2Fvar%2Frun%2Fpostgresql/alpr", {}, []),
        ("postgresql:///alpr", {}, []),  # libpq's default: the unix socket
        ("postgresql://alpr@db.example.org/alpr?hostaddr=127.0.0.1", {}, []),  # reached at hostaddr
    ],
)  # fmt: skip
def test_the_postgres_hosts_reached_without_tls_required_off_this_host(url, environ, hosts):
    assert plain_links.postgres_hosts_in_clear(url, environ) == hosts


def test_a_postgres_off_this_host_without_tls_is_warned_of_once_without_its_password(caplog, monkeypatch):
    for variable in ("PGSSLMODE", "PGHOST", "PGHOSTADDR"):
        monkeypatch.delenv(variable, raising=False)
    url = f"postgresql://alpr:{PASSWORD}@{OFF_HOST}:5432/alpr"
    with caplog.at_level(logging.WARNING):
        warn_if_postgres_in_clear(url)
        warn_if_postgres_in_clear(url)
        warn_if_postgres_in_clear(f"postgresql://alpr@{OFF_HOST}:5432/alpr?sslmode=verify-full")
    said = warnings_said(caplog)
    assert len(said) == 1 and OFF_HOST in said[0] and "sslmode=verify-full" in said[0]
    assert PASSWORD not in caplog.text


def test_a_role_reaching_redis_off_this_host_in_the_clear_warns_and_on_this_host_does_not(caplog, redis_url):
    settings = Settings.load({"ALPR_REDIS_URL": f"redis://:{PASSWORD}@{OFF_HOST}:6379/0"})
    with caplog.at_level(logging.WARNING), pytest.raises(ConfigError):
        reach_redis(settings, timeout_s=0.3)
    assert [OFF_HOST in message for message in warnings_said(caplog)] == [True]
    assert PASSWORD not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        reach_redis(Settings.load({"ALPR_REDIS_URL": redis_url})).close()  # a real server, on 127.0.0.1
    assert warnings_said(caplog) == []


def test_a_role_opening_postgres_off_this_host_without_tls_warns_and_on_this_host_does_not(caplog, postgres_url):
    with caplog.at_level(logging.WARNING), pytest.raises(ConfigError):
        open_pool(f"postgresql://alpr:{PASSWORD}@{OFF_HOST}:5432/alpr?connect_timeout=1", wait_s=0.5)
    assert [OFF_HOST in message for message in warnings_said(caplog)] == [True]
    assert PASSWORD not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        open_pool(postgres_url).close()  # the real server, on 127.0.0.1
    assert warnings_said(caplog) == []

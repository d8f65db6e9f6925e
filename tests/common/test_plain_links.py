"""A role warns at its start, without credentials, when its Redis is reached with plain redis:// off this host,
or its Postgres without TLS required: raw frames, the Redis password and plate text crossed the network
unencrypted, unsaid (a review). Loopback, unix sockets, rediss://, sslmode=require or stricter and the hosts of
ALPR_PLAIN_LINK_HOSTS (the compose network's service names, which Compose sets) are not warned of."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import yaml

from alpr.cli import main
from common.plain_links import links_in_clear, postgres_hosts_in_clear
from tests.conftest import REPO

PASSWORD = "s3cretPW-never-logged"
OFF_HOST = "192.0.2.7"  # TEST-NET-1: only as text here (some networks, this CI's among them, use it)
NO_HOST = "redis.invalid"  # RFC 6761: never resolves, so a role's start fails at once, sending nothing


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
def test_a_redis_reached_in_the_clear_off_this_host_is_warned_of_without_its_password(url, host):
    said = links_in_clear({"frame store": url}, None, frozenset())
    assert len(said) == (1 if host else 0), said
    if host:
        assert host in said[0] and "rediss://" in said[0] and "frame store" in said[0]
        assert PASSWORD not in said[0]
        assert links_in_clear({"frame store": url}, None, frozenset({host})) == []  # named: known, not warned


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
    assert postgres_hosts_in_clear(url, environ) == hosts


def test_a_postgres_off_this_host_without_tls_is_warned_of_without_its_password():
    url = f"postgresql://alpr:{PASSWORD}@{OFF_HOST}:5432/alpr"
    said = links_in_clear({}, url, frozenset(), environ={})
    assert len(said) == 1 and OFF_HOST in said[0] and "sslmode=verify-full" in said[0] and PASSWORD not in said[0]
    assert links_in_clear({}, url, frozenset({OFF_HOST}), environ={}) == []
    assert links_in_clear({}, f"postgresql://alpr@{OFF_HOST}/alpr?sslmode=verify-full", frozenset(), environ={}) == []


def start_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "in the clear" in r.getMessage()]


@pytest.mark.parametrize("role", ["ocr", "ingest"])
def test_a_role_reaching_redis_and_postgres_off_this_host_in_the_clear_warns_at_start(
    role, caplog, monkeypatch, tmp_path
):
    """Said before the start fails on that very link (a name that never resolves), once each, no password."""
    monkeypatch.setenv("ALPR_REDIS_URL", f"redis://:{PASSWORD}@{NO_HOST}:6379/0")
    monkeypatch.setenv("ALPR_DATABASE_URL", f"postgresql://alpr:{PASSWORD}@db.invalid/alpr")
    cameras = tmp_path / "cameras.yaml"
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.zeros((48, 64, 3), np.uint8))
    cameras.write_text(yaml.safe_dump({"cameras": [{"id": "gate", "source": str(tmp_path / "images")}]}))
    args = ["worker", "ocr", "--burst"] if role == "ocr" else ["ingest", "--cameras", str(cameras)]
    with caplog.at_level(logging.WARNING):
        assert main(args) != 0  # Redis is never found
    said = start_warnings(caplog)
    assert len(said) == 2 and NO_HOST in said[0] and "db.invalid" in said[1], said
    assert PASSWORD not in caplog.text
    caplog.clear()
    monkeypatch.setenv("ALPR_PLAIN_LINK_HOSTS", f"{NO_HOST}, DB.invalid")
    with caplog.at_level(logging.WARNING):
        assert main(args) != 0
    assert start_warnings(caplog) == []


def test_a_role_on_this_host_is_not_warned_of(caplog, monkeypatch, redis_url, postgres_url):
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)  # a real server, on 127.0.0.1
    monkeypatch.setenv("ALPR_DATABASE_URL", postgres_url)
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    with caplog.at_level(logging.WARNING):
        assert main(["worker", "ocr", "--burst"]) == 0
    assert start_warnings(caplog) == []


def test_compose_names_its_own_network_s_hosts_as_plain_on_purpose():
    """Its roles reach redis, frames and postgres by service name on one host's network: without the setting
    every container warned at every start, a warning the operator learns to ignore."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    environment = compose["x-alpr-redis-env"]
    hosts = {host.strip() for host in environment["ALPR_PLAIN_LINK_HOSTS"].split(",")}
    urls = {"queues": environment["ALPR_REDIS_URL"], "frame store": environment["ALPR_FRAME_STORE_URL"]}
    assert len(links_in_clear(urls, None, frozenset())) == 2  # plain, off this host: warned of but for the setting
    assert links_in_clear(urls, None, frozenset(hosts)) == []
    assert {"redis", "frames", "postgres"} <= hosts

"""alpr_redis_up (common/redis_watch.py) against a private redis-server: 1 while a watched connection's
commands are answered, 0 from the first one that meets an outage (the server stopped; out of memory), 1
again once Redis answers, pipelines included. Recorded footage waits a Redis outage out and nothing
showed it (a review)."""

from __future__ import annotations

import subprocess
import time

import pytest
import redis

from common.metrics import Metrics
from common.queues import connect_redis
from common.redis_watch import watch_redis
from tests.helpers import free_port


def up(metrics: Metrics, name: str = "queues") -> float | None:
    return metrics.registry.get_sample_value("alpr_redis_up", {"redis": name})


def start_redis(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            redis.Redis(port=port).ping()
            return server
        except redis.ConnectionError:
            time.sleep(0.05)
    server.kill()
    pytest.fail("redis-server did not start")


def test_the_gauge_follows_the_last_command_through_an_outage_and_back():
    port = free_port()
    server = start_redis(port)
    try:
        connection = connect_redis(f"redis://127.0.0.1:{port}/0", timeout_s=2)
        connection.ping()  # reached before the watch, as a role does: that connection is made again watched
        metrics = Metrics()
        watch_redis(connection, metrics)
        watch_redis(connection, metrics, "frame_store")  # one Redis for both: watched once
        assert up(metrics) == 1 and up(metrics, "frame_store") is None
        connection.set("k", "v")
        server.terminate()
        server.wait(10)
        with pytest.raises(redis.ConnectionError):
            connection.get("k")
        assert up(metrics) == 0
        server = start_redis(port)
        with connection.pipeline() as pipeline:
            assert pipeline.set("k", "v").get("k").execute() == [True, b"v"]
        assert up(metrics) == 1
        connection.config_set("maxmemory", "1")  # full: writes refused for Redis's state, not the command's
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            connection.set("big", "x" * 1000)
        assert up(metrics) == 0
        connection.config_set("maxmemory", "0")
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):  # a command's own error: Redis is up
            connection.lpush("k", "x")
        assert up(metrics) == 1
    finally:
        server.terminate()
        server.wait(10)

"""alpr_redis_up and alpr_redis_refused_total (common/redis_watch.py) against private redis-servers: the
gauge 1 while a watched connection's commands are answered, 0 from the first one that cannot be sent (the
server stopped), 1 again once Redis answers, pipelines included; each command Redis refuses for its own
state counted by reason, where a scrape's reads, which a full or read-only Redis still answers, reset
nothing (a review: the gauge of the last outcome was back at 1 at every scrape, and MASTERDOWN, BUSY and
NOPERM counted as answered). Recorded footage waits a Redis outage out and nothing showed it (a review)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time

import pytest
import redis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from common.metrics import Metrics
from common.queues import connect_redis, queue_keys
from common.redis_watch import watch_redis
from tests.helpers import free_port


def up(metrics: Metrics, name: str = "queues") -> float | None:
    return metrics.registry.get_sample_value("alpr_redis_up", {"redis": name})


def refused(metrics: Metrics, reason: str, name: str = "queues") -> float | None:
    return metrics.registry.get_sample_value("alpr_redis_refused_total", {"redis": name, "reason": reason})


def scraped(metrics: Metrics) -> dict[str, float]:
    """One scrape of the process (its collectors run: the queue depths' LLEN on the watched connection)."""
    text = generate_latest(metrics.registry).decode()
    return {
        f"{sample.name}{{{','.join(f'{k}={v}' for k, v in sorted(sample.labels.items()))}}}": sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("alpr_redis")
    }


def run_until_killed(connection: redis.Redis) -> None:
    """A script that runs until SCRIPT KILL (Redis answers every other command BUSY meanwhile)."""
    with contextlib.suppress(redis.ResponseError):  # killed by the user
        connection.eval("while true do end", 0)


def start_redis(port: int, *options: str) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *options],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            redis.Redis(port=port).info("server")  # answered by a replica cut off from its master too
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
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):  # a command's own error: Redis is up
            connection.lpush("k", "x")
        assert up(metrics) == 1
        assert {k: v for k, v in scraped(metrics).items() if v} == {"alpr_redis_up{redis=queues}": 1}
    finally:
        server.terminate()
        server.wait(10)


def test_a_refused_write_stays_counted_through_the_scrapes_that_follow():
    """Full (maxmemory 1, noeviction): a worker's heartbeat is refused, and the scrapes' own LLEN, answered,
    leave the refusal shown; a full frame store is the ingest node's back-pressure (README, "No frame lost
    in silence"), not counted there, where the queues' Redis full is; a worker's refused frame store (a
    detector's plate crops) is counted: it stalled the chain, counted nowhere (a soak review)."""
    port = free_port()
    server = start_redis(port, "--maxmemory-policy", "noeviction")
    try:
        connection = connect_redis(f"redis://127.0.0.1:{port}/0", timeout_s=2)
        frames = connect_redis(f"redis://127.0.0.1:{port}/1", timeout_s=2)  # another pool: watched on its own
        metrics = Metrics()
        watch_redis(connection, metrics)
        watch_redis(frames, metrics, "frame_store", back_pressure=True)  # the ingest node's
        metrics.watch_queues(connection, queue_keys())
        detector = Metrics()
        crops = connect_redis(f"redis://127.0.0.1:{port}/2", timeout_s=2)
        watch_redis(crops, detector, "frame_store")  # a worker's (alpr/wiring.py)
        assert refused(detector, "out_of_memory", "frame_store") == 0  # from its start: an increase to alert on
        connection.config_set("maxmemory", "1")
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            connection.hset("rq:worker:w", "last_heartbeat", "now")
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            frames.set("frame:1", b"x" * 1000)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            crops.set("frame:1:plate0", b"x" * 1000)
        assert refused(detector, "out_of_memory", "frame_store") == 1
        first, second = scraped(metrics), scraped(metrics)
        assert first == second
        assert first["alpr_redis_refused_total{reason=out_of_memory,redis=queues}"] == 1
        assert "alpr_redis_refused_total{reason=out_of_memory,redis=frame_store}" not in first
        assert first["alpr_redis_refused_total{reason=read_only,redis=frame_store}"] == 0
        assert first["alpr_redis_up{redis=queues}"] == first["alpr_redis_up{redis=frame_store}"] == 1  # reached
        connection.config_set("maxmemory", "0")
        connection.set("k", "v")
        assert refused(metrics, "out_of_memory") == 1  # a count: an alert sees it rise, and then stop rising
    finally:
        server.terminate()
        server.wait(10)


def test_a_replica_cut_off_from_its_master_reads_as_refusing():
    """replica-serve-stale-data no and no master: every command, PING included, answered MASTERDOWN, which
    redis-py 8.1 gives as MasterDownError without its first word: counted as answered, as nothing."""
    master_port, port = free_port(), free_port()  # nothing listens on the master's
    server = start_redis(port, "--replicaof", "127.0.0.1", str(master_port), "--replica-serve-stale-data", "no")
    try:
        connection = connect_redis(f"redis://127.0.0.1:{port}/0", timeout_s=2)
        metrics = Metrics()
        watch_redis(connection, metrics)
        with pytest.raises(redis.exceptions.MasterDownError):
            connection.get("k")
        with pytest.raises(redis.exceptions.MasterDownError):
            connection.ping()  # a waiting worker's check
        assert scraped(metrics)["alpr_redis_refused_total{reason=master_down,redis=queues}"] == 2
    finally:
        server.terminate()
        server.wait(10)


def test_a_busy_script_and_an_acl_denial_are_refusals_and_a_busykey_is_not():
    """BUSY (a script past busy-reply-threshold) has no class of its own in redis-py: matched by its whole
    first word, so RESTORE's BUSYKEY, a command's own error, stays uncounted. NOPERM: the user's ACL."""
    port = free_port()
    server = start_redis(port, "--busy-reply-threshold", "100")
    try:
        connection = connect_redis(f"redis://127.0.0.1:{port}/0", timeout_s=5)
        metrics = Metrics()
        watch_redis(connection, metrics)
        connection.set("k", "v")
        with pytest.raises(redis.ResponseError, match="BUSYKEY"):
            connection.restore("k", 0, connection.dump("k"))
        connection.acl_setuser("reader", enabled=True, nopass=True, commands=["+get", "+ping"], keys=["*"])
        reader = connect_redis(f"redis://reader@127.0.0.1:{port}/0", timeout_s=5)
        reader_metrics = Metrics()
        watch_redis(reader, reader_metrics)
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.set("k", "w")
        assert refused(reader_metrics, "no_permission") == 1
        script = redis.Redis(port=port)
        running = threading.Thread(target=run_until_killed, args=(script,))
        running.start()
        try:
            deadline = time.monotonic() + 10
            while not refused(metrics, "busy") and time.monotonic() < deadline:
                with contextlib.suppress(redis.ResponseError):
                    connection.get("k")
                time.sleep(0.05)
        finally:
            redis.Redis(port=port).script_kill()
            running.join(10)
        assert refused(metrics, "busy") == 1
        assert {k: v for k, v in scraped(metrics).items() if v and "refused" in k} == {
            "alpr_redis_refused_total{reason=busy,redis=queues}": 1
        }
    finally:
        server.terminate()
        server.wait(10)


def test_a_primary_short_of_the_replicas_it_must_write_to_is_refusing():
    """min-replicas-to-write with the replica gone: Redis answers every write NOREPLICAS (a plain ResponseError
    in redis-py). A review found it counted nowhere while every job and frame write failed, `alpr_redis_up`
    at 1: neither alert could fire."""
    port = free_port()
    server = start_redis(port, "--min-replicas-to-write", "1")
    try:
        connection = connect_redis(f"redis://127.0.0.1:{port}/0", timeout_s=5)
        metrics = Metrics()
        watch_redis(connection, metrics)
        with pytest.raises(redis.ResponseError, match="NOREPLICAS"):
            connection.set("k", "v")
        assert connection.get("k") is None  # reads still answered: reachable
        assert up(metrics) == 1
        assert refused(metrics, "no_replicas") == 1
    finally:
        server.terminate()
        server.wait(10)

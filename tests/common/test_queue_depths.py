"""A scrape of a role's metrics while its queues' Redis hangs (paused: it keeps its connections and answers
nothing, as a partition dropping its packets does): the queue depths are read on a connection of their own,
bounded by QUEUE_DEPTH_TIMEOUT_S (common/metrics.py), so the scrape comes back well within Prometheus's
scrape_timeout (deploy/prometheus.yml) and says alpr_redis_up 0. A review: the depths read on the role's own
connection held each scrape its Redis timeout (30 s a worker), every scrape failed (`up` 0 for every process,
the whole chain paged as down) and alpr_redis_up, read 1 in the 30 s scrape, never raised AlprRedisUnreachable."""

from __future__ import annotations

import signal
import time
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from common import defaults
from common.metrics import Metrics
from common.queues import QUEUED_STAGES, connect_redis, queue_keys
from common.redis_watch import watch_redis
from tests.helpers import free_port
from tests.servers import PrivateRedis

PROMETHEUS = yaml.safe_load((Path(__file__).parents[2] / "deploy" / "prometheus.yml").read_text())
SCRAPE_TIMEOUT_S = float(PROMETHEUS["global"]["scrape_timeout"].removesuffix("s"))


def scrape(port: int) -> tuple[float, dict[str, float]]:
    """One scrape over HTTP, as Prometheus makes it (its scrape_timeout): how long it took, and the
    queue depths and alpr_redis_up it served."""
    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT_S) as response:
        text = response.read().decode()
    samples = {
        f"{sample.name}{{{','.join(f'{v}' for v in sample.labels.values())}}}": sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in ("alpr_queue_depth", "alpr_redis_up")
    }
    return time.monotonic() - started, samples


def test_a_hung_redis_holds_no_scrape_and_reads_as_unreachable(redis_server: PrivateRedis):
    connection = connect_redis(redis_server.url)  # a worker's: REDIS_TIMEOUT_S, 30 s
    connection.rpush(queue_keys()["detect"], "job")
    metrics = Metrics()  # as alpr/worker_command.py builds a worker's
    watch_redis(connection, metrics)
    metrics.watch_queues(connection, queue_keys(QUEUED_STAGES))
    port = free_port()
    metrics.serve(port, "127.0.0.1")
    took_s, served = scrape(port)
    assert served["alpr_queue_depth{detect}"] == 1 and served["alpr_redis_up{queues}"] == 1
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        for _ in range(3):  # the first scrape of the outage says so already, and each after it
            took_s, served = scrape(port)
            assert took_s < 2 * defaults.QUEUE_DEPTH_TIMEOUT_S + 0.5, took_s
            assert served == {"alpr_redis_up{queues}": 0}  # no depth to report
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    took_s, served = scrape(port)
    assert served["alpr_queue_depth{detect}"] == 1 and served["alpr_redis_up{queues}"] == 1

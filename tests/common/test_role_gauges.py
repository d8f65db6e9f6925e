"""Unlabelled gauges of one role (common/metrics_registry.RoleGauge): every process exported them at 0,
the prune's last success in every worker (`time() - min(alpr_prune_last_success_timestamp_seconds)`
read 56 years) and a redactor's inference threads (a review); now only the roles that set them do."""

from __future__ import annotations

import pytest
import redis
from prometheus_client import generate_latest

from alpr.cli import main
from common.config import Settings
from common.metrics import Metrics

ROLE_GAUGES = {
    "alpr_worker_threads", "alpr_prune_last_success_timestamp_seconds", "alpr_ledger_held_records",
    "alpr_ledger_unwritten_seconds", "alpr_watchlist_loaded_timestamp_seconds", "alpr_watchlist_refresh_seconds",
}  # fmt: skip


def exported(metrics: Metrics) -> set[str]:
    text = generate_latest(metrics.registry).decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}


def test_a_role_gauge_is_exported_from_its_first_value_on_and_only_then():
    metrics = Metrics()
    assert exported(metrics) & ROLE_GAUGES == set()
    assert {g.gauge._name for g in metrics.role_gauges()} == ROLE_GAUGES
    metrics.prune_succeeded.set_to_current_time()
    metrics.prune_succeeded.set_to_current_time()  # registered once
    assert exported(metrics) & ROLE_GAUGES == {"alpr_prune_last_success_timestamp_seconds"}
    assert metrics.registry.get_sample_value("alpr_prune_last_success_timestamp_seconds") > 1.7e9
    metrics.ledger_held_records.set_function(lambda: 7)
    assert metrics.registry.get_sample_value("alpr_ledger_held_records") == 7


@pytest.mark.parametrize(("stage", "threads"), [("ocr", 2.0), ("redact", None)])
def test_a_worker_exports_its_inference_threads_and_no_other_roles_gauge(stage, threads, redis_url, postgres_url):
    """An OCR worker has inference threads (ALPR_OCR_THREADS: its recognisers' ONNX sessions) and said
    none; a redactor has none and said 0."""
    from alpr.wiring import build_worker_context

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    environ = {"ALPR_OCR_THREADS": "2", "ALPR_KEEP_FRAMES": "none"}
    settings = Settings.load(environ, redis_url=redis_url, database_url=postgres_url)
    metrics = Metrics()
    build_worker_context(stage, settings, redis.Redis.from_url(redis_url), metrics)
    assert metrics.registry.get_sample_value("alpr_worker_threads") == threads
    assert exported(metrics) & ROLE_GAUGES == ({"alpr_worker_threads"} if threads else set())

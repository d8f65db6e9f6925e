"""Unlabelled metrics of one role (common/metrics_registry.RoleMetric): every process exported them at 0,
the prune's last success in every worker (`time() - min(alpr_prune_last_success_timestamp_seconds)`
read 56 years), a redactor's inference threads, and every role's unlabelled histograms and counters,
83 series of zeros in each process (reviews); now only the roles that set or use them do."""

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

ROLE_METRICS = {
    "detect": {"alpr_worker_threads", "alpr_detector_batch_frames"},
    "ocr": {"alpr_worker_threads", "alpr_capture_to_logged_seconds"},
    "redact": {"alpr_frames_lost", "alpr_reads_lost", "alpr_kept_frames_deleted"},
    "sight": {"alpr_reads_per_sighting", "alpr_sighting_delay_seconds", "alpr_alerts_unrouted",
              "alpr_watchlist_refresh_seconds", "alpr_watchlist_loaded_timestamp_seconds"},
    "alert": {"alpr_alert_latency_seconds", "alpr_late_alert_delay_seconds"},
    "ingest": {"alpr_ledger_held_records", "alpr_ledger_unwritten_seconds"},
    "prune": {"alpr_prune_last_success_timestamp_seconds"},
}  # fmt: skip
"""The unlabelled metrics each role exports, and no other."""


def families(metrics: Metrics) -> set[str]:
    """The metric families the process serves (a counter's without `_total`)."""
    return {family.name for family in metrics.registry.collect()}


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


def test_a_process_exports_no_role_s_unlabelled_metric_before_its_role_uses_it() -> None:
    metrics = Metrics()
    role_metrics = {m.metric._name for m in metrics.role_metrics()}
    assert role_metrics == set().union(*ROLE_METRICS.values())
    assert families(metrics) & role_metrics == set()
    metrics.alert_latency_seconds.observe(0.8)  # a role's own, from its first observation if not before
    metrics.frames_lost.inc()
    assert families(metrics) & role_metrics == {"alpr_alert_latency_seconds", "alpr_frames_lost"}
    assert metrics.registry.get_sample_value("alpr_alert_latency_seconds_bucket", {"le": "0.9"}) == 1
    assert metrics.registry.get_sample_value("alpr_frames_lost_total") == 1


@pytest.mark.parametrize("stage", ["ocr", "redact", "sight"])
def test_a_worker_exports_its_role_s_unlabelled_metrics_at_0_from_its_start_and_no_other_role_s(
    stage: str, redis_url: str, postgres_url: str
) -> None:
    """A counter first served at 1 shows Prometheus no increase: the role's own are served at 0 from its
    stage's start (AlprReadsLost, AlprAlertsUnrouted); another role's are not served at all."""
    from alpr.wiring import build_sighting_stage, build_worker_context

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    settings = Settings.load({"ALPR_KEEP_FRAMES": "none"}, redis_url=redis_url, database_url=postgres_url)
    metrics = Metrics()
    connection = redis.Redis.from_url(redis_url)
    if stage == "sight":
        build_sighting_stage(settings, connection, metrics).pool.close()
    else:
        build_worker_context("ocr" if stage == "ocr" else "redact", settings, connection, metrics)
    role_metrics = {m.metric._name for m in metrics.role_metrics()}
    assert families(metrics) & role_metrics == ROLE_METRICS[stage]
    if stage == "redact":
        assert metrics.registry.get_sample_value("alpr_reads_lost_total") == 0
    if stage == "sight":
        assert metrics.registry.get_sample_value("alpr_alerts_unrouted_total") == 0
        assert metrics.registry.get_sample_value("alpr_sighting_delay_seconds_count") == 0

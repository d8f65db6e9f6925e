"""The monitoring files agree with the code to the label value: every label matcher of the alert rules
(deploy/prometheus-rules.yml) and of the Grafana dashboard names a label its metric has and values
the code gives it (a rule on outcome="faild" or a panel on reason="no_such_reason" matched nothing,
and the checks of metric names alone passed); every alert fires in a promtool unit test and stays
quiet in another; a chain started by hand has a scrape config that gives each target the `role` the
rules count processes by; no panel plots a line per camera and reason; and a process serves no
`_created` series."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import get_args

import pytest
import redis
import yaml
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from alert_worker.outcomes import DeliveryOutcome
from alpr.pool_settings import POOLS
from common.jobs import SKIP_REASONS, StageName
from common.metrics import Metrics
from common.queues import QUEUE_NAMES, QUEUED_STAGES, queue_keys
from common.redis_watch import REDIS_NAMES, REFUSAL_REASONS
from common.worker_context import JobOutcome
from ingest.camera_sampling import INGEST_SKIP_REASONS
from sighting_worker.worker import ROUND_OUTCOMES
from tests.conftest import unavailable
from tests.helpers import free_port

REPO = Path(__file__).resolve().parent.parent
RULES_FILE = REPO / "deploy" / "prometheus-rules.yml"
DASHBOARD_FILE = REPO / "deploy" / "grafana" / "dashboards" / "alpr.json"
COMPOSE_SCRAPE = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
HOSTS_EXAMPLE = REPO / "deploy" / "prometheus-hosts.example.yml"
RULE_TESTS = REPO / "tests" / "prometheus"

SELECTOR = re.compile(r"(?:\b([A-Za-z_:][A-Za-z0-9_:]*)\s*)?\{([^{}]*)\}")
"""A PromQL series selector: a metric name and its label matchers (braces appear in no other place of an
expression)."""
MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
LITERAL = re.compile(r"[A-Za-z0-9_.:-]+")
"""A label value written out (a regular expression matcher may only list such values: `a|b`)."""

TARGET_LABELS = frozenset({"job", "instance", "role"})
"""The labels Prometheus gives every series of a target (role: the scrape config's, deploy/prometheus.yml)."""
FREE_LABELS = frozenset({"camera", "receiver", "instance", "fingerprint", "le"})
"""Labels whose values the deployment names (its cameras and receivers, its hosts): any value may be matched."""


def rule_exprs() -> dict[str, str]:
    rules = yaml.safe_load(RULES_FILE.read_text())
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def dashboard_exprs() -> dict[str, str]:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    return {f"{p['title']} ({t['refId']})": t["expr"] for p in dashboard["panels"] for t in p["targets"]}


def selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Each selector of `expr` with braces: its metric name and its matchers (label, operator, value)."""
    found = []
    for match in SELECTOR.finditer(expr):
        name, body = match.group(1), match.group(2)
        assert name, f"a selector without a metric name: {match.group(0)}"
        matchers = [(m.group(1), m.group(2), m.group(3)) for m in MATCHER.finditer(body)]
        assert MATCHER.sub("", body).strip() == "", f"matchers not understood in {match.group(0)}"
        found.append((name, matchers))
    return found


def matched_values(operator: str, value: str) -> list[str]:
    """The values a matcher names: its value, or each alternative of a regular expression listing them."""
    if operator in ("=", "!="):
        return [value]
    alternatives = value.split("|")
    assert all(LITERAL.fullmatch(a) for a in alternatives), f"{value!r}: list the values (a|b), no pattern"
    return alternatives


def exported_labels(redis_url: str) -> dict[str, frozenset[str]]:
    """Each series name a process exports, with its label names (prometheus_client's, from each metric)."""
    metrics = Metrics()
    metrics.watch_queues(redis.Redis.from_url(redis_url), queue_keys(QUEUED_STAGES))
    labels: dict[str, frozenset[str]] = {"up": frozenset()}  # Prometheus's own, per target
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            names = frozenset(metric._labelnames)
            for family in metric.describe():
                suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
                for suffix in suffixes:
                    labels[family.name + suffix] = names | ({"le"} if suffix == "_bucket" else set())
    for family in metrics.registry.collect():  # the collectors' own: queue depths, the process's
        for sample in family.samples:
            labels.setdefault(sample.name, frozenset(sample.labels))
    return labels


def label_values() -> dict[tuple[str | None, str], frozenset[str]]:
    """The values the code gives each label, by (series name, label); (None, label): on every series."""
    (scrape,) = COMPOSE_SCRAPE["scrape_configs"]
    (discovery,) = scrape["dns_sd_configs"]
    return {
        (None, "job"): frozenset({scrape["job_name"]}),
        (None, "role"): frozenset(discovery["names"]),  # Compose's service names give the role
        (None, "stage"): frozenset(get_args(StageName)),
        (None, "queue"): frozenset(QUEUE_NAMES),
        (None, "pool"): frozenset(POOLS),
        (None, "redis"): frozenset(REDIS_NAMES),
        ("alpr_redis_refused_total", "reason"): REFUSAL_REASONS,
        ("alpr_jobs_total", "outcome"): frozenset(get_args(JobOutcome)),
        ("alpr_alert_deliveries_total", "outcome"): frozenset(get_args(DeliveryOutcome)),
        ("alpr_sighting_rounds_total", "outcome"): frozenset(ROUND_OUTCOMES),
        ("alpr_frames_skipped_total", "reason"): SKIP_REASONS,
    }


def label_mistakes(where: str, expr: str, labels: dict[str, frozenset[str]]) -> list[str]:
    values = label_values()
    mistakes = []
    for name, matchers in selectors(expr):
        for label, operator, value in matchers:
            if label not in labels.get(name, frozenset()) | TARGET_LABELS:
                mistakes.append(f"{where}: {name} has no label {label}")
                continue
            if label in FREE_LABELS:
                continue
            known = values.get((name, label), values.get((None, label)))
            if known is None:
                mistakes.append(f"{where}: {name}{{{label}}}: no set of its values in the code to check against")
                continue
            mistakes += [
                f"{where}: {name}{{{label}{operator}{value!r}}}: {v!r} is none of {sorted(known)}"
                for v in matched_values(operator, value)
                if v not in known
            ]
    return mistakes


def test_every_label_matcher_of_the_rules_and_the_dashboard_names_a_value_the_code_gives(redis_url):
    """A typo in a label value (outcome="faild", reason="no_such_reason") makes a rule that never fires
    and a panel that plots nothing: the checks of metric names alone passed them (a review)."""
    labels = exported_labels(redis_url)
    exprs = {f"rule {name}": expr for name, expr in rule_exprs().items()}
    exprs |= {f"panel {title}": expr for title, expr in dashboard_exprs().items()}
    checked = [m for expr in exprs.values() for _, matchers in selectors(expr) for m in matchers]
    assert len(checked) >= 25  # the parsing found the matchers (31 as written)
    assert [m for where, expr in exprs.items() for m in label_mistakes(where, expr, labels)] == []
    assert label_mistakes("typo", 'sum(rate(alpr_jobs_total{stage="ocr", outcome=~"failed|rejectd"}[5m]))', labels) == [
        f"typo: alpr_jobs_total{{outcome=~'failed|rejectd'}}: 'rejectd' is none of {sorted(get_args(JobOutcome))}"
    ]
    assert label_mistakes("typo", 'alpr_frames_skipped_total{reasn="too_old"}', labels) == [
        "typo: alpr_frames_skipped_total has no label reasn"
    ]


def test_every_ingest_skip_reason_is_one_the_rules_may_name():
    assert set(INGEST_SKIP_REASONS) <= SKIP_REASONS and "over_job_time_budget" in SKIP_REASONS


def rule_test_cases() -> list[tuple[str, bool]]:
    """Each (alert, fires) a promtool unit test of tests/prometheus/ evaluates."""
    cases = []
    for path in sorted(RULE_TESTS.glob("*_test.yml")):
        for test in yaml.safe_load(path.read_text())["tests"]:
            cases += [(case["alertname"], bool(case.get("exp_alerts"))) for case in test.get("alert_rule_test", [])]
    return cases


def test_every_alert_fires_in_a_unit_test_and_stays_quiet_in_another():
    """AlprJobsFailing, AlprJobsRefused, AlprAlertDeliveriesFailing, AlprReadsLost, AlprFramesUnrecorded,
    AlprCameraFailing and AlprSlowToLog had no unit test: a rule matching nothing passed (a review)."""
    cases = set(rule_test_cases())
    alerts = set(rule_exprs())
    assert {a for a in alerts if (a, True) not in cases} == set(), "never fires in a unit test"
    assert {a for a in alerts if (a, False) not in cases} == set(), "never stays quiet in a unit test"
    assert {a for a, _ in cases} <= alerts
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool is not installed (Debian package prometheus)")
    files = [p.name for p in sorted(RULE_TESTS.glob("*_test.yml"))]
    tested = subprocess.run([promtool, "test", "rules", *files], cwd=RULE_TESTS, capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def roles_named(alert: str) -> set[str]:
    return {v for _, matchers in selectors(rule_exprs()[alert]) for label, op, value in matchers if label == "role"
            for v in matched_values(op, value)}  # fmt: skip


def test_a_chain_started_by_hand_has_a_scrape_config_giving_each_target_its_role():
    """The rules count processes by their `role` label, which only Compose's DNS names gave: a chain started
    by hand (README, "Set up the chain") scraped without it had AlprRoleMissing fire for every role and
    AlprWatchListStale never fire (a review). deploy/prometheus-hosts.example.yml gives each target its
    role; AlprScrapedWithoutRole fires for a target without one (tests/prometheus/health_rules_test.yml)."""
    example = yaml.safe_load(HOSTS_EXAMPLE.read_text())
    (scrape,) = example["scrape_configs"]
    (compose,) = COMPOSE_SCRAPE["scrape_configs"]
    assert scrape["job_name"] == compose["job_name"] == "alpr"
    roles = set(compose["dns_sd_configs"][0]["names"])
    assert all(set(c["labels"]) == {"role"} and c["targets"] for c in scrape["static_configs"])
    assert {c["labels"]["role"] for c in scrape["static_configs"]} == roles
    assert roles_named("AlprRoleMissing") == roles_named("AlprScrapedWithoutRole") == roles
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool is not installed (Debian package prometheus)")
    checked = subprocess.run([promtool, "check", "config", str(HOSTS_EXAMPLE)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout  # the rules beside it, found and valid


def test_no_panel_plots_a_line_for_every_camera_and_reason():
    """The skipped frames per camera and reason plotted 13 reasons a camera: thousands of lines at 500 cameras."""
    for where, expr in dashboard_exprs().items():
        for grouping in re.findall(r"\bby \(([^)]*)\)", expr):
            labels = {label.strip() for label in grouping.split(",")}
            if "camera" in labels and len(labels) > 1:
                assert re.match(r"topk\(\d+,", expr), where


UNPLOTTED_ALERT_METRICS = frozenset({
    "alpr_alert_deliveries_pending", "alpr_alert_lane_waiting", "alpr_alerts_unrouted", "alpr_camera_claimed",
    "alpr_camera_settings_changed", "alpr_camera_settings_differ", "alpr_database_up",
    "alpr_ledger_unwritten_seconds", "alpr_prune_last_success_timestamp_seconds", "alpr_settings_info",
    "alpr_sighting_rounds", "alpr_watchlist_loaded_timestamp_seconds", "alpr_watchlist_refresh_seconds",
})  # fmt: skip
"""Metric families an alert rule watches that no panel plots yet (a gap to close, not to grow)."""


def metric_families(exprs: list[str]) -> set[str]:
    return {re.sub(r"_(total|bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"\balpr_[a-z0-9_]+", e)}


def test_the_dashboard_plots_what_the_alerts_watch_in_panels_that_do_not_overlap():
    """AlprRedisUnreachable and AlprRedisRefusing fired on alpr_redis_up and alpr_redis_refused_total, which
    no panel plotted (a review): an operator paged had no graph of which Redis, since when, or why."""
    unplotted = metric_families(list(rule_exprs().values())) - metric_families(list(dashboard_exprs().values()))
    assert unplotted <= UNPLOTTED_ALERT_METRICS, "an alert's metric with no panel"
    panels = json.loads(DASHBOARD_FILE.read_text())["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells = [(p["id"], x, y) for p in panels for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
             for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])]  # fmt: skip
    assert all(0 <= x < 24 for _, x, _ in cells), "a panel past the grid's 24 columns"
    taken: dict[tuple[int, int], int] = {}
    overlaps = {(taken[(x, y)], pid) for pid, x, y in cells if taken.setdefault((x, y), pid) != pid}
    assert overlaps == set(), "panels overlap"


def scrape(port: int, accept: str) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


@pytest.mark.parametrize("accept", ["text/plain", "application/openmetrics-text; version=1.0.0"])
def test_a_process_serves_no_created_series(accept):
    """prometheus_client gives every counter's and histogram's series a `_created` twin: 347 of an ingest
    node's 833 series at 26 cameras (41%), read by no rule or panel. Dropped by the process's own registry,
    not by the library's flag for every registry of the process (left as it was)."""
    metrics, port = Metrics(), free_port()
    metrics.start_camera("gate", INGEST_SKIP_REASONS)
    metrics.jobs.labels(stage="detect", outcome="done").inc()
    metrics.serve(port, "127.0.0.1")
    served = scrape(port, accept)
    assert 'alpr_jobs_total{outcome="done",stage="detect"} 1.0' in served
    assert 'alpr_frames_skipped_total{camera="gate",reason="claim_unsure"} 0.0' in served
    assert "process_cpu_seconds_total" in served and "alpr_capture_to_logged_seconds" not in served  # the OCR role's
    assert "_created" not in served
    only = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics?name[]=alpr_jobs_total", timeout=10).read()
    assert only.decode().count("alpr_jobs_total{") == 1 and b"_created" not in only
    another = CollectorRegistry()  # the library's own default is untouched
    Counter("other", "another registry's counter", registry=another).inc()
    assert "other_created" in generate_latest(another).decode()

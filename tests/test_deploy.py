"""The deployment files agree with the code: every `alpr` service of docker-compose.yml runs a
command the CLI accepts with settings the config accepts, Prometheus scrapes those services on their
metrics port, every metric the Grafana dashboard plots is one the processes export, and the cameras
file of the compose stack is valid. `docker compose config` checks the file itself where a compose
client is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import redis
import yaml
from prometheus_client import generate_latest

from alpr.cli import build_parser
from common.config import Settings
from common.metrics import Metrics
from common.queues import queue_keys
from ingest.cameras import parse_cameras

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
ALPR_SERVICES = {name: s for name, s in COMPOSE["services"].items() if s.get("image", "").startswith("alpr-")}


def exported_metric_names() -> set[str]:
    metrics = Metrics()
    metrics.watch_queues(redis.Redis(port=1, socket_connect_timeout=0.1), queue_keys())  # depth family, no server
    for stage in ("detect", "ocr", "redact"):  # labelled series appear once used
        metrics.jobs.labels(stage=stage, outcome="failed")
        metrics.core_cpu_seconds.labels(stage=stage)
        metrics.stage_seconds.labels(stage=stage)
    text = generate_latest(metrics.registry).decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")} | {
        re.split(r"[{ ]", line)[0] for line in text.splitlines() if line and not line.startswith("#")
    }


def test_every_alpr_service_runs_a_valid_command_with_valid_settings():
    assert set(ALPR_SERVICES) == {"migrate", "ingest", "detect", "ocr", "redact"}
    for name, service in ALPR_SERVICES.items():
        args = build_parser().parse_args(service["command"])
        assert args.command in {"db", "ingest", "worker"}, name
        environment = {k: str(v) for k, v in service["environment"].items()}
        settings = Settings.load(environment)
        assert settings.metrics_port == 9100 and settings.database_url, name
    workers = {name: ALPR_SERVICES[name]["command"] for name in ("detect", "ocr", "redact")}
    assert workers == {stage: ["worker", stage] for stage in workers}


def test_prometheus_scrapes_the_services_on_their_metrics_port():
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    (sd,) = config["scrape_configs"][0]["dns_sd_configs"]
    assert set(sd["names"]) == {"ingest", "detect", "ocr", "redact"} and sd["port"] == 9100
    assert set(sd["names"]) <= set(COMPOSE["services"])


def test_the_dashboard_plots_only_exported_metrics():
    dashboard = json.loads((REPO / "deploy" / "grafana" / "dashboards" / "alpr.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    plotted = {m for expr in exprs for m in re.findall(r"\balpr_[a-z_]+", expr)}
    exported = exported_metric_names()
    assert plotted - exported == set()
    families = {re.sub(r"_(total|bucket|sum|count)$", "", m) for m in plotted}
    assert {"alpr_frames_ingested", "alpr_frames_processed", "alpr_queue_depth", "alpr_capture_to_logged_seconds"} <= (
        families
    )
    assert all(t["datasource"]["uid"] == "prometheus" for p in dashboard["panels"] for t in p["targets"])


def test_the_compose_cameras_file_is_valid():
    cameras = parse_cameras(yaml.safe_load((REPO / "deploy" / "cameras.compose.yaml").read_text()))
    assert [c.id for c in cameras] == ["demo-clip"] and cameras[0].loop


def test_docker_compose_config_accepts_the_file():
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        command = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        command = ["docker-compose"]
    else:
        pytest.skip("no docker compose client installed")
    result = subprocess.run([*command, "config", "--quiet"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

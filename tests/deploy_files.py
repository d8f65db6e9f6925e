"""Shared by the deployment tests (tests/test_deploy*.py): the compose file read once, its services, how
deploy/make-secrets.sh is run (the fixture `secrets_dir` is tests/conftest.py's), and what a container sees."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import redis
import yaml
from prometheus_client import generate_latest

from common.config import Settings
from common.metrics import Metrics
from common.queues import queue_keys

REPO = Path(__file__).resolve().parent.parent
COMPOSE_TEXT = (REPO / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
ALPR_SERVICES = {name: s for name, s in SERVICES.items() if s.get("image", "").startswith("alpr-")}
MAKE_SECRETS = REPO / "deploy" / "make-secrets.sh"
SECRET_NAMES = {
    "redis_password", "postgres_password", "postgres_app_password", "postgres_pruner_password",
    "grafana_admin_password", "job_key",
}  # fmt: skip
SECRETS_IN_CONTAINER = "/run/secrets/"
HOST_VARIABLES = {
    "ALPR_CAMERAS_FILE", "ALPR_SECRETS_DIR", "ALPR_RECEIVERS_FILE", "ALPR_ALERT_SECRETS_DIR", "ALPR_INGEST_MEMORY",
}  # fmt: skip
"""Variables compose itself interpolates on the host; never set in a container (no setting has their name)."""
HOST_SETTINGS = {"ALPR_RETENTION_DAYS", "ALPR_DETECTOR_THREADS"}
"""Settings compose takes from the host (its environment, .env) and hands on to each container that reads
them, one value for all of them, or a default of the deployment's own (the detector's one thread)."""
DEPLOYMENT_FILES = [REPO / "docker-compose.yml", REPO / "Dockerfile"] + sorted(
    REPO / name
    for name in subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "deploy"], capture_output=True, check=True, text=True
    ).stdout.split("\0")
    if name
)
"""The deployment files the project ships (tracked by git): an operator's own in deploy/ (a cameras file with
its passwords, git-ignored) are not read, nor their lines written to a test's output."""
ALLOWED_URL_CREDENTIALS = {("deploy/cameras.example.yaml", "rtsp://user:pass@")}
"""The example of a camera's credentials in its URL (masked in logs), the one allowed."""
DATABASE_LOGINS = {
    "alpr": "postgres_password", "alpr_app": "postgres_app_password", "alpr_pruner": "postgres_pruner_password",
}  # fmt: skip
"""Postgres roles and their password secrets: the owner (migrations only), the workers' role and the
prune's."""


WITHOUT_REDIS = {"migrate", "prune"}
"""Services that never open Redis: given neither its address nor its password."""
WITHOUT_DATABASE = {"detect"}
"""Services that never open Postgres (the detector decodes the cameras' frames): no address, no password."""


def database_role(service: str) -> str:
    """The role a service logs in to Postgres as: the owner for the migration, alpr_pruner for the prune
    (the workers' role may delete no plate data, the pruner nothing else), alpr_app for the rest."""
    return {"migrate": "alpr", "prune": "alpr_pruner"}.get(service, "alpr_app")


def run_make_secrets(*args: str, env: dict[str, str] | None = None) -> str:
    """deploy/make-secrets.sh's output; it must succeed."""
    result = subprocess.run(
        ["sh", str(MAKE_SECRETS), *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def container_environment(service: dict, secrets_dir: Path) -> dict[str, str]:
    """A service's environment as its container sees it with no host variable set (`${VAR:-default}`: the
    default), the secret files at their place here."""
    environment = {key: compose_default(str(value)) for key, value in (service.get("environment") or {}).items()}
    return {
        key: value.replace(SECRETS_IN_CONTAINER, f"{secrets_dir}/", 1)
        if value.startswith(SECRETS_IN_CONTAINER)
        else value
        for key, value in environment.items()
    }


def compose_default(value: str) -> str:
    """A value as compose interpolates it when its host variable is unset: `${VAR:-default}` its default."""
    return re.sub(r"(?<!\$)\$\{\w+:-([^}]*)\}", r"\1", value)


def secret_names(service: dict) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}


def redis_arguments(service: dict) -> list[str]:
    """The redis-server options of a Redis service: what follows the start script and its name."""
    command = service["command"]
    assert command[:2] == ["sh", "-c"], "Redis starts through the script that reads its password"
    return command[4:]


def tmpfs_options(service: dict) -> dict[str, dict[str, str]]:
    """A service's tmpfs mounts: path -> options (`/data:mode=0700,size=16m` -> {"mode": "0700", ...})."""
    mounts = {}
    for entry in service.get("tmpfs", []):
        path, _, options = entry.partition(":")
        mounts[path] = dict(option.partition("=")[::2] for option in options.split(",") if option)
    return mounts


def known_setting(variable: str) -> bool:
    field = variable.removeprefix("ALPR_").lower()
    return field in Settings.model_fields or (field.endswith("_file") and field[:-5] in Settings.model_fields)


def exported_metric_names() -> set[str]:
    metrics = Metrics()
    metrics.watch_queues(redis.Redis(port=1, socket_connect_timeout=0.1), queue_keys())  # depth family, no server
    for stage in ("detect", "ocr", "redact"):  # labelled series appear once used
        metrics.jobs.labels(stage=stage, outcome="failed")
        metrics.core_cpu_seconds.labels(stage=stage)
        metrics.stage_seconds.labels(stage=stage)
    for gauge in metrics.role_gauges():  # each exported by the roles that set it (common/metrics_registry.RoleGauge)
        gauge.set(1)
    for role_metric in metrics.role_metrics():  # each exported by the roles that use it (RoleMetric)
        role_metric.export()
    text = generate_latest(metrics.registry).decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")} | {
        re.split(r"[{ ]", line)[0] for line in text.splitlines() if line and not line.startswith("#")
    }

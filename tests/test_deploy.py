"""The deployment files agree with the code and keep their secrets: every `alpr` service of
docker-compose.yml runs a command the CLI accepts with settings the config accepts (passwords from
Docker secrets, frames in a Redis that never writes to disk), under a memory limit with no swap nor
core dump, healthy (each one that runs on) while it answers on its metrics port, no password is written in any
deployment file, Redis and Grafana require one, nothing but Prometheus and Grafana is published and
those on this host only, Prometheus scrapes the services on their metrics port, every metric the
Grafana dashboard plots is one the processes export, the cameras file of the compose stack is valid,
the sighting and alert pools read one receivers file (by default one that lists none), the image holds the
packages alone (nothing an operator put in deploy/), and every service's log is capped. Postgres's logins and
deploy/make-secrets.sh: tests/test_deploy_secrets.py; .env and `docker compose config`: tests/test_deploy_env.py."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from alpr.arguments import build_parser
from common import defaults
from common.config import Settings
from common.errors import ConfigError
from common.metrics import Metrics
from ingest.cameras import parse_cameras
from tests.conftest import unavailable
from tests.deploy_files import (
    ALLOWED_URL_CREDENTIALS,
    ALPR_SERVICES,
    COMPOSE,
    COMPOSE_TEXT,
    DATABASE_LOGINS,
    DEPLOYMENT_FILES,
    HOST_SETTINGS,
    HOST_VARIABLES,
    REPO,
    SECRET_NAMES,
    SECRETS_IN_CONTAINER,
    SERVICES,
    WITHOUT_DATABASE,
    WITHOUT_REDIS,
    container_environment,
    database_role,
    exported_metric_names,
    known_setting,
    redis_arguments,
    secret_names,
    tmpfs_options,
)
from tests.helpers import free_port


def test_every_alpr_service_runs_a_valid_command_with_valid_settings(secrets_dir: Path):
    assert set(ALPR_SERVICES) == {"migrate", "prune", "ingest", "detect", "ocr", "sight", "alert", "redact"}
    redis_password = (secrets_dir / "redis_password").read_text().strip()
    passwords = {role: (secrets_dir / secret).read_text().strip() for role, secret in DATABASE_LOGINS.items()}
    for name, service in ALPR_SERVICES.items():
        args = build_parser().parse_args(service["command"])
        assert args.command in {"db", "ingest", "worker"}, name
        assert service["ulimits"] == {"core": 0}, name  # a crash's core file held frames, plates unblurred
        settings = Settings.load(container_environment(service, secrets_dir))
        assert settings.metrics_port == 9100 and settings.metrics_address == "0.0.0.0", name
        if name in WITHOUT_REDIS:
            assert settings.secret("redis_password") is None and "ALPR_REDIS_URL" not in service["environment"]
        else:
            assert settings.redis_url == "redis://redis:6379/0" and settings.store_url == "redis://frames:6379/0"
            assert settings.secret("redis_password") == redis_password, name
            assert settings.secret("job_key") == (secrets_dir / "job_key").read_text().strip(), name
        if name in WITHOUT_DATABASE:
            assert settings.database_url is None and settings.secret("database_password") is None, name
        else:
            role = database_role(name)
            assert settings.database_url == f"postgresql://{role}@postgres:5432/alpr", name
            assert settings.secret("database_password") == passwords[role], name
    workers = {name: ALPR_SERVICES[name]["command"] for name in ("detect", "ocr", "sight", "alert", "redact")}
    assert workers == {stage: ["worker", stage] for stage in workers}
    detect = Settings.load(container_environment(ALPR_SERVICES["detect"], secrets_dir))
    assert detect.detector_threads == 1  # unset (one per core), each replica took every core: 2x the cores


def test_every_alpr_service_reads_its_passwords_from_docker_secrets():
    for name, service in ALPR_SERVICES.items():
        environment, needed = service["environment"], set()
        if name not in WITHOUT_REDIS:  # and every job it queues or runs signed with the job key
            assert environment["ALPR_REDIS_PASSWORD_FILE"] == "/run/secrets/redis_password", name
            assert environment["ALPR_JOB_KEY_FILE"] == "/run/secrets/job_key", name
            needed |= {"redis_password", "job_key"}
        if name not in WITHOUT_DATABASE:
            secret = DATABASE_LOGINS[database_role(name)]
            assert environment["ALPR_DATABASE_PASSWORD_FILE"] == f"/run/secrets/{secret}", name
            needed.add(secret)
        assert secret_names(service) == needed, name  # the passwords it uses, no other
        assert not {"ALPR_REDIS_PASSWORD", "ALPR_DATABASE_PASSWORD"} & set(environment), name
        for variable in {"ALPR_REDIS_URL", "ALPR_FRAME_STORE_URL", "ALPR_DATABASE_URL"} & set(environment):
            assert urlsplit(environment[variable]).password is None, (name, variable)


def test_every_password_in_an_environment_comes_from_a_secret_file():
    assert set(COMPOSE["secrets"]) == SECRET_NAMES
    for name, secret in COMPOSE["secrets"].items():
        assert secret == {"file": "${ALPR_SECRETS_DIR:-./secrets}/" + name}
    for name, service in SERVICES.items():
        for variable, value in (service.get("environment") or {}).items():
            if "PASSWORD" in variable or "SECRET" in variable:
                assert variable.endswith("_FILE"), f"{name}: {variable} holds a password itself"
                secret = str(value).removeprefix(SECRETS_IN_CONTAINER)
                assert str(value).startswith(SECRETS_IN_CONTAINER) and secret in secret_names(service), (name, variable)
        assert secret_names(service) <= SECRET_NAMES, name


def test_every_alpr_variable_of_the_deployment_is_a_known_setting():
    texts = {path.relative_to(REPO): path.read_text() for path in (REPO / "docker-compose.yml", REPO / "Dockerfile")}
    named = {variable for text in texts.values() for variable in re.findall(r"\bALPR_[A-Z0-9_]+", text)}
    assert {v for v in named - HOST_VARIABLES if not known_setting(v)} == set()
    assert not any(known_setting(v) for v in HOST_VARIABLES)
    assert set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE_TEXT)) <= HOST_VARIABLES | HOST_SETTINGS
    assert all(known_setting(v) for v in HOST_SETTINGS)
    for name, service in SERVICES.items():
        for variable in service.get("environment") or {}:
            assert not variable.startswith("ALPR_") or known_setting(variable), f"{name}: {variable}"


def test_no_password_is_written_in_the_deployment_files():
    literal = {
        "a password in a URL": re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s@:'\"]*:[^/\s@'\"]+@"),
        "a Postgres password": re.compile(r"\bPOSTGRES_PASSWORD\s*[:=]"),
        "a password on redis-server's command line": re.compile(r"--requirepass|--masterauth"),
        "a literal requirepass": re.compile(r"\b(?:requirepass|masterauth)[ \t]+(?!%s\b)\S+"),
        "redis-cli's password not from a file": re.compile(r"REDISCLI_AUTH=(?!\\?[\"']?\$+\(cat /run/secrets/)"),
        "a password set in place": re.compile(
            r"(?i)\b\w*(?:password|passwd)\w*[\"']?[ \t]*[:=][ \t]*(?![\"']?(?:\$|/run/secrets/))[^\s#]+"
        ),
    }
    found = []
    for path in DEPLOYMENT_FILES:
        relative = str(path.relative_to(REPO))
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for what, pattern in literal.items():
                for match in pattern.finditer(line):
                    if (relative, match.group()) not in ALLOWED_URL_CREDENTIALS:
                        found.append(f"{relative}:{number}: {what}")  # the line not shown: it may hold one
    assert found == []
    assert "user:pass@" in (REPO / "deploy" / "cameras.example.yaml").read_text()  # the allowance is still needed


def test_redis_requires_its_password_and_the_frames_redis_never_writes_to_disk():
    for name in ("redis", "frames"):
        service = SERVICES[name]
        script = service["command"][2]
        assert "/run/secrets/redis_password" in script and "requirepass" in script, name
        assert "redis_password" in secret_names(service), name
        assert not any("pass" in argument or "auth" in argument for argument in redis_arguments(service)), name
        assert "/run/redis" in tmpfs_options(service), name  # the config file with the password, never on disk
        assert "/run/secrets/redis_password" in " ".join(service["healthcheck"]["test"]), name
    queues = redis_arguments(SERVICES["redis"])
    assert queues[queues.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in SERVICES["redis"]["volumes"])
    frames = redis_arguments(SERVICES["frames"])
    assert frames[frames.index("--save") + 1] == "" and frames[frames.index("--appendonly") + 1] == "no"
    assert frames[frames.index("--maxmemory-policy") + 1] == "noeviction" and "--maxmemory" in frames
    assert "volumes" not in SERVICES["frames"] and "/data" in tmpfs_options(SERVICES["frames"])
    for name, service in ALPR_SERVICES.items():
        if name in WITHOUT_REDIS:
            continue
        assert urlsplit(service["environment"]["ALPR_FRAME_STORE_URL"]).hostname == "frames"
        assert urlsplit(service["environment"]["ALPR_REDIS_URL"]).hostname == "redis"


def test_grafana_requires_a_sign_in():
    grafana = SERVICES["grafana"]
    environment = grafana["environment"]
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and environment["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert environment["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in environment and "grafana_admin_password" in secret_names(grafana)
    assert not any(key.startswith("GF_AUTH_ANONYMOUS_") and key != "GF_AUTH_ANONYMOUS_ENABLED" for key in environment)
    for path in (REPO / "deploy" / "grafana").rglob("*"):
        if path.is_file():
            assert "anonymous" not in path.read_text().lower(), path


def test_prometheus_and_grafana_keep_their_data_on_named_volumes():
    """Their data on anonymous volumes (Prometheus's image) or none (Grafana) was lost at every `down`/`up`:
    the metrics' history with the windows the loss alerts look back over, Grafana's users and password."""
    assert "prometheus:/prometheus" in SERVICES["prometheus"]["volumes"]
    assert "--storage.tsdb.path=/prometheus" in SERVICES["prometheus"]["command"]
    assert "grafana:/var/lib/grafana" in SERVICES["grafana"]["volumes"]
    assert {"prometheus", "grafana"} <= set(COMPOSE["volumes"])
    provisioning = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/alpr.yml").read_text())
    folder = provisioning["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{folder}:ro" in SERVICES["grafana"]["volumes"]


def test_only_prometheus_and_grafana_are_published_and_on_this_host_only():
    published = {name: service["ports"] for name, service in SERVICES.items() if service.get("ports")}
    assert published == {"prometheus": ["127.0.0.1:9090:9090"], "grafana": ["127.0.0.1:3000:3000"]}
    assert not any("expose" in service for service in ALPR_SERVICES.values())


def test_an_ingest_node_stopping_has_the_time_to_record_every_frame_in_hand():
    """A stop waits for the camera threads, for a batch Redis does not answer, then writes the frames
    log: Docker's default 10 s grace killed the node first, its frames in hand unrecorded."""
    needed_s = defaults.CAMERA_STOP_S + defaults.INGEST_REDIS_TIMEOUT_S + defaults.LEDGER_CLOSE_S
    grace = SERVICES["ingest"]["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) >= needed_s + 10, (grace, needed_s)


def test_the_redactor_keeps_frames_in_an_absolute_folder_on_a_volume(secrets_dir: Path):
    redact = ALPR_SERVICES["redact"]
    settings = Settings.load(container_environment(redact, secrets_dir))
    assert settings.keep_dir == Path("/data/kept") and f"kept:{settings.keep_dir}" in redact["volumes"]
    assert (settings.keep_frames, settings.keep_max_age_h) == (defaults.KEEP_FRAMES, defaults.KEEP_MAX_AGE_H)
    assert {"ALPR_KEEP_DIR", "ALPR_RETENTION_DAYS"} <= set(redact["environment"])
    assert "ALPR_KEEP_FRAMES" not in redact["environment"]  # .env's (env_file), which a value here overrode
    # the keep age left unset follows a retention tightened below it; set to 72, the redactor refused to start
    assert "ALPR_KEEP_MAX_AGE_H" not in redact["environment"]
    assert redact["environment"]["ALPR_RETENTION_DAYS"] == ALPR_SERVICES["prune"]["environment"]["ALPR_RETENTION_DAYS"]


def test_the_ingest_node_spools_its_frame_records_on_a_volume(secrets_dir: Path):
    ingest = ALPR_SERVICES["ingest"]
    settings = Settings.load(container_environment(ingest, secrets_dir))
    assert settings.ledger_spool_dir == Path("/data/ledger")
    assert f"ledger:{settings.ledger_spool_dir}" in ingest["volumes"]
    assert "ledger" in COMPOSE["volumes"] and "/data/ledger" in (REPO / "Dockerfile").read_text()


def test_prometheus_scrapes_the_services_on_their_metrics_port(secrets_dir: Path):
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    (sd,) = config["scrape_configs"][0]["dns_sd_configs"]
    assert set(sd["names"]) == {"ingest", "detect", "ocr", "sight", "alert", "redact", "prune"} and sd["port"] == 9100
    assert set(sd["names"]) == set(ALPR_SERVICES) - {"migrate"}  # every long-running alpr service: none unwatched
    for name in sd["names"]:
        assert Settings.load(container_environment(SERVICES[name], secrets_dir)).metrics_port == 9100, name
    # a scrape waits on a hung Redis 2 s at most (the queue depths' connect and read: common/metrics.py), well
    # within the scrape's timeout, which the interval bounds (Prometheus refuses one longer)
    interval, timeout = (float(config["global"][key].rstrip("s")) for key in ("scrape_interval", "scrape_timeout"))
    assert 2 * defaults.QUEUE_DEPTH_TIMEOUT_S + 1 < timeout <= interval


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
    for shared in ("alpr_queue_depth", "alpr_frames_unaccounted"):  # every process reports the same count:
        assert all("max by " in e for e in exprs if shared in e), shared  # summed, two redactors showed double
    # the alert latency is the live alerts' (alert_worker/outcomes.py); a replay's late alerts are plotted apart
    latency = [e for p in dashboard["panels"] if "alpr_alert_latency_seconds" in str(p) for e in map(str, p["targets"])]
    assert "alpr_late_alert_delay_seconds" in families and "alpr_late_alert_delay_seconds" not in str(latency)


def test_the_alert_rules_watch_exported_metrics_load_in_prometheus_and_pass_their_unit_tests():
    """deploy/prometheus-rules.yml (the chain's own health: lost frames, failing jobs, a camera down,
    falling behind, alerts not delivered): mounted and named by the compose stack's Prometheus, every
    metric exported, and promtool's unit tests (tests/prometheus/rules_test.yml, prune_rules_test.yml) pass."""
    rules_file = REPO / "deploy" / "prometheus-rules.yml"
    rules = yaml.safe_load(rules_file.read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    named = {m for e in exprs for m in re.findall(r"\balpr_[a-z_]+", e)}
    assert named - exported_metric_names() == set() and len(named) >= 8
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]
    assert "./deploy/prometheus-rules.yml:/etc/prometheus/rules.yml:ro" in COMPOSE["services"]["prometheus"]["volumes"]
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool is not installed (Debian package prometheus)")
    checked = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", "rules_test.yml", "prune_rules_test.yml"],
                            cwd=REPO / "tests" / "prometheus", capture_output=True, text=True)  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_no_variable_compose_interpolates_stops_an_alpr_command():
    """`ALPR_INGEST_MEMORY=4g alpr status` exited 2, "unknown setting ALPR_INGEST_MEMORY": a variable set in
    the shell for compose stopped every alpr command run in that shell. Each variable docker-compose.yml
    interpolates is one the settings ignore (compose's alone) or a setting (handed on to the containers)."""
    interpolated = set(re.findall(r"(?<!\$)\$\{(ALPR_\w+)", COMPOSE_TEXT))
    assert "ALPR_INGEST_MEMORY" in interpolated
    for variable in sorted(interpolated):
        try:
            Settings.load(environ={variable: "x"})
        except ConfigError as error:  # a setting's value refused ("x" days), not the variable
            assert "unknown setting" not in str(error), variable


def test_the_compose_cameras_file_is_valid():
    cameras = parse_cameras(yaml.safe_load((REPO / "deploy" / "cameras.compose.yaml").read_text()), Settings.load({}))
    assert [c.id for c in cameras] == ["demo-clip"] and cameras[0].loop


def test_the_example_receivers_file_loads(tmp_path):
    from common.alerts import MqttReceiver, WebhookReceiver, load_receivers

    example = (REPO / "deploy" / "receivers.example.yaml").read_text()
    alerts_mount = next(v for v in COMPOSE["services"]["alert"]["volumes"] if "ALPR_ALERT_SECRETS_DIR" in v)
    mounted_at = alerts_mount.split(":")[-2]  # where compose shows the alert secrets: the example's files live there
    assert mounted_at == "/run/secrets/alerts" and example.count(mounted_at + "/") == 3  # the comment and two files
    (tmp_path / "alerts").mkdir()
    for name in ("webhook_secret", "mqtt_password"):
        (tmp_path / "alerts" / name).write_text(f"{name}-0123456789abcdef\n")
    (tmp_path / "receivers.yaml").write_text(example.replace("/run/secrets", str(tmp_path)))
    receivers = load_receivers(tmp_path / "receivers.yaml")
    assert {name: type(r) for name, r in receivers.items()} == {"ops": WebhookReceiver, "control-room": MqttReceiver}
    assert "0123456789abcdef" not in repr(receivers)  # secrets read, never shown


def test_the_sighting_and_alert_pools_read_one_receivers_file_that_by_default_lists_none(secrets_dir: Path):
    from common.alerts import load_receivers

    mounts = {}
    for name in ("sight", "alert"):
        settings = Settings.load(container_environment(ALPR_SERVICES[name], secrets_dir))
        assert settings.alert_receivers == Path("/config/receivers.yaml"), name
        [mount] = [v for v in ALPR_SERVICES[name]["volumes"] if v.endswith(":/config/receivers.yaml:ro")]
        mounts[name] = mount
    assert (
        mounts["sight"]
        == mounts["alert"]
        == ("${ALPR_RECEIVERS_FILE:-./deploy/receivers.compose.yaml}:/config/receivers.yaml:ro")
    )
    assert load_receivers(REPO / "deploy" / "receivers.compose.yaml") == {}  # alerts logged, sent nowhere
    assert "${ALPR_ALERT_SECRETS_DIR:-./secrets/alerts}:/run/secrets/alerts:ro" in ALPR_SERVICES["alert"]["volumes"]


def dockerignored(path: str) -> bool:
    """Whether .dockerignore leaves `path` (of the build context) out: the last of its patterns that matches
    the path or a folder above it decides, one starting `!` keeping it (Docker's rule; `*` here may also
    match a `/`, which only widens a pattern)."""
    ignored = False
    parts = path.split("/")
    for line in (REPO / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if pattern and not pattern.startswith("#"):
            keep = pattern.startswith("!")
            pattern = pattern.removeprefix("!").strip("/")
            if any(fnmatch.fnmatchcase("/".join(parts[:end]), pattern) for end in range(1, len(parts) + 1)):
                ignored = not keep
    return ignored


def test_the_image_holds_the_packages_and_nothing_an_operator_put_in_deploy() -> None:
    """`COPY deploy/ deploy/` baked whatever an operator kept in deploy/ (a cameras file with its streams'
    passwords, a receivers file with a webhook's secret) into the image, which nothing in it reads: compose
    bind-mounts each file a container reads (a review). The image copies the packages and what pip reads
    (pyproject.toml, README.md) alone (each package `pip install .` installs: no engine builds the image
    here), the build context leaves deploy/ out, and git an operator's files
    there (and .env); every file shipped in deploy/ stays tracked. The weights stay root's: only /data,
    the kept frames' and the ledger's volumes, is the runtime user's."""
    import tomllib

    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert not re.search(r"^ADD ", dockerfile, re.MULTILINE)
    copies = re.findall(r"^COPY (.+)$", dockerfile, re.MULTILINE)
    sources = {source.rstrip("/") for line in copies for source in line.split()[:-1]}
    assert sources == set(packages) | {"pyproject.toml", "README.md"}
    assert not any(dockerignored(source) or dockerignored(f"{source}/__init__.py") for source in sources)
    operators = ["deploy/cameras.yaml", "deploy/receivers.yaml", "deploy/cameras.yml", ".env"]
    assert all(dockerignored(path) for path in [*operators, "deploy/cameras.compose.yaml", "secrets/job_key"])
    chowned = re.findall(r"chown (?:-R )?\S+ ([^&\\\n]+)", dockerfile)  # the paths after the owner
    assert [paths.split() for paths in chowned] == [["/data"]]
    git = shutil.which("git")
    listed = subprocess.run([git or "git", "ls-files", "deploy"], cwd=REPO, capture_output=True, text=True)
    if git is None or listed.returncode != 0:
        unavailable("not a git checkout")
    shipped = listed.stdout.split()
    assert "deploy/cameras.example.yaml" in shipped and "deploy/prometheus-rules.yml" in shipped
    checked = subprocess.run([git, "check-ignore", "--no-index", *shipped, *operators], cwd=REPO,
                             capture_output=True, text=True)  # fmt: skip
    assert checked.stdout.split() == operators


def test_every_alpr_service_runs_without_capabilities_and_gains_none():
    """The roles decode what cameras send and run what queues hold: one taken over stays its user (alpr,
    no capability), and no setuid binary or file capability in the image lifts it (a review)."""
    for name, service in ALPR_SERVICES.items():
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("user") in (None, "alpr"), name  # the image's USER
    assert re.search(r"^USER alpr$", (REPO / "Dockerfile").read_text(), re.MULTILINE)


def memory_bytes(value: str) -> int:
    """A compose memory size in bytes: `512m`, `1g`, or a host variable's default (`${VAR:-1280m}`)."""
    size = re.sub(r"^\$\{\w+:-(.+)\}$", r"\1", value).lower()
    found = re.fullmatch(r"(\d+)([kmg]?)b?", size)
    assert found, value
    return int(found[1]) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[found[2]]


def test_every_alpr_service_has_a_memory_limit_and_every_long_running_one_a_healthcheck():
    """No alpr role had a memory bound (a role a hostile stream or job took over could take the host's
    memory) nor a healthcheck (a process that never became ready showed as up). Every one now has a
    limit; the ingest node's, a host variable, leaves one camera's reader its whole bound
    (ALPR_CAPTURE_MEMORY_MB), which stops it first; each long-running role is healthy while it answers
    on its metrics port, asked by the image's own Python: the check passes against a process serving
    metrics and fails with none, whatever proxy the container's environment names (Docker sets
    http_proxy from its client's proxies: urlopen asked the proxy for the container's 127.0.0.1)."""
    mib = 2**20
    for name, service in ALPR_SERVICES.items():
        assert 256 * mib <= memory_bytes(str(service["mem_limit"])) <= 4096 * mib, name
    ingest = str(ALPR_SERVICES["ingest"]["mem_limit"])
    assert ingest.startswith("${ALPR_INGEST_MEMORY:-")
    assert memory_bytes(ingest) >= (defaults.CAPTURE_MEMORY_MB + 256) * mib  # the node, one camera at its bound
    assert ALPR_SERVICES["migrate"]["healthcheck"] == {"disable": True}  # runs once, serves no metrics
    long_running = set(ALPR_SERVICES) - {"migrate"}
    tests = {json.dumps(ALPR_SERVICES[name]["healthcheck"]["test"]) for name in long_running}
    assert len(tests) == 1, tests  # one check, on each role's own port
    for name in long_running:
        assert "ALPR_METRICS_PORT" in ALPR_SERVICES[name]["environment"], name  # the port the check asks
    command = ALPR_SERVICES["ingest"]["healthcheck"]["test"]
    assert command[:2] == ["CMD", "python"]  # the image's, from its base image
    assert re.search(r"^FROM python:3[.\d]*-slim", (REPO / "Dockerfile").read_text(), re.MULTILINE)

    proxy = socket.socket()  # a proxy that refuses every connection (bound, never listening)
    proxy.bind(("127.0.0.1", 0))
    unreachable = f"http://127.0.0.1:{proxy.getsockname()[1]}"
    proxies = {name: unreachable for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY")}
    without_exceptions = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}

    def check(port: int) -> int:
        environment = {**without_exceptions, **proxies, "ALPR_METRICS_PORT": str(port)}
        return subprocess.run(
            [sys.executable, *command[2:]], env=environment, capture_output=True, timeout=60
        ).returncode

    with proxy:
        assert check(free_port()) != 0  # nothing serves: unhealthy
        port = free_port()
        Metrics().serve(port, "127.0.0.1")
        assert check(port) == 0  # asked directly, not through the proxy


def test_no_service_holding_frames_can_write_them_to_disk_in_a_core_dump_or_to_swap():
    """The frames Redis (every raw frame) had no core limit and no memory limit, and the alpr roles a
    mem_limit but no memswap_limit, which Docker then takes as leave to swap as much again: frames and
    plate crops could reach the host's disk in a core file or its swap (a review). Every service that can
    hold pixels now dumps no core and may not swap; the frames Redis's bound leaves its maxmemory room."""
    holding_pixels = {"frames", *ALPR_SERVICES}
    for name in holding_pixels:
        service = SERVICES[name]
        assert service.get("ulimits", {}).get("core") == 0, name
        assert "mem_limit" in service and "memswap_limit" in service, name
        assert memory_bytes(str(service["memswap_limit"])) == memory_bytes(str(service["mem_limit"])), name
        assert str(service["memswap_limit"]) == str(service["mem_limit"]), name  # one host variable for both
    frames = SERVICES["frames"]
    arguments = redis_arguments(frames)
    maxmemory = memory_bytes(arguments[arguments.index("--maxmemory") + 1])
    data = tmpfs_options(frames)["/data"]
    assert data.get("mode") == "0700" and "size" in data
    headroom = memory_bytes(str(frames["mem_limit"])) - maxmemory - memory_bytes(data["size"])
    assert headroom >= maxmemory // 4, "room for fragmentation and client buffers past maxmemory"


def test_every_service_keeps_a_bounded_log() -> None:
    """Docker's default json-file log grows without bound on the host's disk (a camera failing, a worker
    retrying, logs a line every few seconds for months): every service's is capped, a few files of a few MB."""
    for name, service in SERVICES.items():
        logging = service.get("logging") or {}
        assert logging.get("driver") in {"local", "json-file"}, name
        size, files = logging["options"]["max-size"], int(logging["options"]["max-file"])
        assert files >= 2 and memory_bytes(size) * files <= 64 * 2**20, name


def test_prometheus_and_grafana_gain_no_privileges_and_have_a_memory_limit():
    """They ran with no memory limit and could gain privileges through a setuid binary (a review)."""
    for name in ("prometheus", "grafana"):
        service = SERVICES[name]
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert 256 * 2**20 <= memory_bytes(str(service["mem_limit"])) <= 4096 * 2**20, name
        assert str(service.get("memswap_limit")) == str(service["mem_limit"]), name

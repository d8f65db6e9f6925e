"""docker-compose.yml as a compose client reads it: `docker compose config` accepts it where a client is
installed, and every line of .env reaches every alpr service (a misspelt setting refused there; the retention one
value for each service that reads it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from common.config import Settings
from common.errors import ConfigError
from tests.conftest import unavailable
from tests.deploy_files import (
    ALPR_SERVICES,
    COMPOSE_TEXT,
    HOST_VARIABLES,
    SECRET_NAMES,
    container_environment,
)


def compose_command() -> list[str]:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    unavailable("no docker compose client installed")


ENV_FILE_ENTRY = "  env_file:\n    - path: .env\n      required: false\n"
"""How the alpr services read .env, as docker-compose.yml writes it (the long form: Compose 2.24 or later)."""


def compose_config(command: list[str], project: Path, dot_env: str | None, environment: dict[str, str]) -> dict:
    """`config` of docker-compose.yml copied into `project`, a project of its own (the checkout's .env
    never read), with `dot_env` as its .env (None: none). docker-compose 1.x (Debian's 1.29) knows no
    env_file entry of the long form and needs the file it names: for it the copy names .env in the short
    form, an empty one made where none is given."""
    project.mkdir(exist_ok=True)
    text = COMPOSE_TEXT
    version = subprocess.run([*command, "version", "--short"], capture_output=True, text=True).stdout.strip()
    if command == ["docker-compose"] and version.startswith("1."):
        text = text.replace(ENV_FILE_ENTRY, "  env_file: [.env]\n")
        dot_env = "" if dot_env is None else dot_env
    (project / "docker-compose.yml").write_text(text)
    if dot_env is not None:
        (project / ".env").write_text(dot_env)
    result = subprocess.run([*command, "config"], cwd=project, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)  # YAML from every client (Debian's docker-compose 1.29 has no --format)


def test_docker_compose_config_accepts_the_file(secrets_dir: Path, tmp_path: Path):
    command = compose_command()
    without = {k: v for k, v in os.environ.items() if k != "ALPR_SECRETS_DIR"}
    resolved = compose_config(command, tmp_path / "named", None, {**without, "ALPR_SECRETS_DIR": str(secrets_dir)})
    assert {name: Path(s["file"]) for name, s in resolved["secrets"].items()} == {
        name: secrets_dir / name for name in SECRET_NAMES
    }
    by_default = compose_config(command, tmp_path / "default", None, without)  # no folder named anywhere
    assert {Path(s["file"]).parent for s in by_default["secrets"].values()} == {tmp_path / "default" / "secrets"}
    for name, service in ALPR_SERVICES.items():  # .env, where there is one, read by every alpr service
        assert service["env_file"] == [{"path": ".env", "required": False}], name
    assert COMPOSE_TEXT.count(ENV_FILE_ENTRY) == 1  # on the x-alpr anchor alone


RETENTION_READERS = {"migrate", "prune", "redact", "sight"}
"""Services that read ALPR_RETENTION_DAYS: the prune deletes records past it, the redactor its kept frames
within it, the sighting pool checks its repeat window against it, `migrate` reckons the audit retention it sets
in Postgres by it (730 days or the plate data's, the longer; 0 keeps the audit too), as the prune does."""


def test_the_retention_of_env_reaches_every_service_that_reads_it_alike(secrets_dir: Path, tmp_path: Path):
    """Compose wrote ALPR_RETENTION_DAYS: '30' in `prune` and in `redact`: a .env's ALPR_RETENTION_DAYS=7
    was ignored (plate data kept 30 days), and one service edited alone made them disagree (kept frames past
    the records naming them). Now one value, the host's (30 unset), in each service that reads it."""
    command = compose_command()
    written = {name: s["environment"].get("ALPR_RETENTION_DAYS") for name, s in ALPR_SERVICES.items()}
    assert {name for name, value in written.items() if value is not None} == RETENTION_READERS
    assert {written[name] for name in RETENTION_READERS} == {"${ALPR_RETENTION_DAYS:-30}"}
    without = {k: v for k, v in os.environ.items() if k != "ALPR_RETENTION_DAYS"}
    base = {**without, "ALPR_SECRETS_DIR": str(secrets_dir)}
    for project, dot_env, environment, days in (
        ("shell", None, {**base, "ALPR_RETENTION_DAYS": "7"}, 7),  # the shell's
        ("dot-env", "ALPR_RETENTION_DAYS=7\n", base, 7),  # .env's
        ("neither", None, base, 30),  # neither: the default
    ):
        resolved = compose_config(command, tmp_path / project, dot_env, environment)["services"]
        for name in RETENTION_READERS:
            settings = Settings.load(container_environment(resolved[name], secrets_dir))
            assert settings.retention_days == days, (name, project)


def test_every_setting_of_env_reaches_every_alpr_service(secrets_dir: Path, tmp_path: Path) -> None:
    """Compose handed a container only the variables its `environment:` interpolates: a .env's
    ALPR_KEEP_FRAMES=none (no redacted frame kept) was ignored without a word, frames kept, and a misspelt
    ALPR_RETENTON_DAYS=7 too (a review). Each line now reaches every alpr service, which takes a setting
    and refuses a misspelt one; compose's own variables there are ignored by the roles as before."""
    command = compose_command()
    base = {**os.environ, "ALPR_SECRETS_DIR": str(secrets_dir)}
    base = {k: v for k, v in base.items() if k not in {"ALPR_KEEP_FRAMES", "ALPR_DETECTOR_THREADS"}}
    host = "".join(f"{variable}=/elsewhere/{variable.lower()}\n" for variable in sorted(HOST_VARIABLES))
    host = host.replace("ALPR_INGEST_MEMORY=/elsewhere/alpr_ingest_memory", "ALPR_INGEST_MEMORY=2304m")
    dot_env = f"ALPR_KEEP_FRAMES=none\nALPR_DETECTOR_THREADS=2\n{host}"
    resolved = compose_config(command, tmp_path / "settings", dot_env, base)["services"]
    for name in ALPR_SERVICES:
        settings = Settings.load(container_environment(resolved[name], secrets_dir))  # compose's own: ignored
        assert settings.keep_frames == "none" and settings.detector_threads == 2, name
        assert settings.metrics_port == 9100, name  # what the service sets itself is kept
    assert Settings.load(container_environment(resolved["redact"], secrets_dir)).keep_dir == Path("/data/kept")
    misspelt = compose_config(command, tmp_path / "misspelt", "ALPR_RETENTON_DAYS=7\n", base)["services"]
    for name in ALPR_SERVICES:
        with pytest.raises(ConfigError, match="unknown setting ALPR_RETENTON_DAYS"):
            Settings.load(container_environment(misspelt[name], secrets_dir))

"""What a role keeps of the cars is bounded by the retention where it is kept, and nowhere else (a review):
checked in every command's settings, ALPR_RETENTION_DAYS of 1 or 2 with the default ALPR_KEEP_MAX_AGE_H
(72 h) stopped every command, `alpr db prune` and `alpr status` among them, even with ALPR_KEEP_FRAMES=none;
Compose's prune service, given the retention alone, exited 2 at every start: nothing was pruned. Real `alpr`
processes with the compose file's own environment for each service (its servers and secrets swapped for
the test's), on the real Postgres and a private Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

from alpr.cli import main
from common.config import Settings
from common.errors import ConfigError
from tests.common.test_retention import add_frame

REPO = Path(__file__).resolve().parent.parent.parent
SERVICES = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
REFUSED = "must be at most ALPR_RETENTION_DAYS"


def service_env(service: str, postgres_url: str, redis_url: str, tmp_path: Path, **changed: str) -> dict[str, str]:
    """A compose service's environment, its servers the test's, its secret files and metrics port left out,
    `changed` (ALPR_ variables) over it; this process's environment without its own ALPR_ variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    for key, value in SERVICES[service]["environment"].items():
        if not key.endswith("_FILE") and key not in ("ALPR_METRICS_PORT", "ALPR_METRICS_ADDRESS"):
            env[key] = str(value)
    env.update({"ALPR_DATABASE_URL": postgres_url, "ALPR_KEEP_DIR": str(tmp_path / "kept")})
    if "ALPR_REDIS_URL" in env:
        env.update({"ALPR_REDIS_URL": redis_url, "ALPR_FRAME_STORE_URL": redis_url})
    return env | changed


def alpr(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alpr.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


@pytest.mark.parametrize("days", ["1", "2"])
def test_a_short_retention_stops_neither_the_prune_nor_status_nor_a_role_that_keeps_nothing(
    days, postgres_url, redis_url, tmp_path
):
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    prune = service_env("prune", postgres_url, redis_url, tmp_path, ALPR_RETENTION_DAYS=days)
    assert "ALPR_KEEP_MAX_AGE_H" not in prune  # the retention alone, as Compose gives it
    for n, env in enumerate((prune, prune | {"ALPR_KEEP_FRAMES": "none"}, prune | {"ALPR_ALERT_REPEAT_S": "86400"})):
        with psycopg.connect(postgres_url) as db:  # a car seen 3 days ago, past the retention
            add_frame(db, "gate", f"gate-{n}", datetime.now(UTC) - timedelta(days=3))
        done = alpr(env, "db", "prune")  # the service's command, once (it runs `--every-h 6`)
        assert done.returncode == 0 and "1 plate_reads, 1 sightings, 1 frames" in done.stdout, done.stderr
        status = alpr(env | {"ALPR_REDIS_URL": redis_url}, "status")
        assert REFUSED not in status.stderr and "ALERT_REPEAT_S" not in status.stderr, status.stderr
        assert status.returncode == 0 and status.stdout.startswith("queue "), status.stdout + status.stderr
    # the sighting pool keeps nothing of the frames: it starts (one burst) with the default keep age
    sight = service_env("sight", postgres_url, redis_url, tmp_path, ALPR_RETENTION_DAYS=days)
    sight.pop("ALPR_ALERT_RECEIVERS")  # (the file is compose's: none here)
    done = alpr(sight, "worker", "sight", "--burst")
    assert done.returncode == 0 and REFUSED not in done.stderr, done.stderr


def test_the_redactor_keeps_frames_within_a_short_retention_and_refuses_a_keep_age_set_past_it(
    postgres_url, redis_url, tmp_path
):
    """The compose redact service, its retention tightened to 2 days: its keep age, left unset, is cut to
    48 h (said in its start line); one set past the retention is refused (exit 2, one line), unless it keeps
    no frame."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    redact = service_env("redact", postgres_url, redis_url, tmp_path, ALPR_RETENTION_DAYS="2")
    assert "ALPR_KEEP_MAX_AGE_H" not in redact and redact.get("ALPR_KEEP_FRAMES", "plates") == "plates"  # the default
    started = alpr(redact, "-v", "worker", "redact", "--burst")
    assert started.returncode == 0, started.stderr
    assert (f"redactor keeps plates frames in {tmp_path / 'kept'} for 48 h (ALPR_KEEP_MAX_AGE_H unset: its default"
            " 72 h cut to ALPR_RETENTION_DAYS, 2 days)") in started.stderr  # fmt: skip
    refused = alpr(redact | {"ALPR_KEEP_MAX_AGE_H": "72"}, "worker", "redact", "--burst")
    assert refused.returncode == 2 and refused.stderr.startswith("alpr: error: ALPR_KEEP_MAX_AGE_H (72 h) must be")
    assert "(2 days = 48 h)" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    none = alpr(redact | {"ALPR_KEEP_MAX_AGE_H": "72", "ALPR_KEEP_FRAMES": "none"}, "worker", "redact", "--burst")
    assert none.returncode == 0, none.stderr


def test_an_alert_repeat_set_past_half_the_retention_stops_the_sighting_pool_alone(postgres_url, redis_url, tmp_path):
    sight = service_env(
        "sight", postgres_url, redis_url, tmp_path, ALPR_RETENTION_DAYS="1", ALPR_ALERT_REPEAT_S="86400"
    )
    sight.pop("ALPR_ALERT_RECEIVERS")
    refused = alpr(sight, "worker", "sight", "--burst")
    assert refused.returncode == 2 and "ALPR_ALERT_REPEAT_S (86400 s) must be at most half of" in refused.stderr


def test_a_watch_read_threshold_below_the_trusted_reads_stops_the_sighting_pool_alone(
    postgres_url, redis_url, tmp_path
):
    """ALPR_WATCH_READ_MIN_CONFIDENCE below ALPR_OCR_MIN_CONFIDENCE was refused in every command's settings:
    the prune and status exited 2 on it, as on a keep age past the retention (a review). It is refused where
    it is used: at the sighting pool's start, in one line."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    thresholds = {
        "ALPR_OCR_MIN_CONFIDENCE": "0.99",
        "ALPR_WATCH_READ_MIN_CONFIDENCE": "0.9",
        "ALPR_RETENTION_DAYS": "9",
    }
    prune = service_env("prune", postgres_url, redis_url, tmp_path, **thresholds)
    done = alpr(prune, "db", "prune", "--dry-run")
    assert done.returncode == 0 and done.stdout.startswith("would delete"), done.stdout + done.stderr
    status = alpr(prune | {"ALPR_REDIS_URL": redis_url}, "status")
    assert status.returncode == 0 and status.stdout.startswith("queue "), status.stdout + status.stderr
    sight = service_env("sight", postgres_url, redis_url, tmp_path, **thresholds)
    sight.pop("ALPR_ALERT_RECEIVERS")
    refused = alpr(sight, "worker", "sight", "--burst")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert refused.stderr.startswith(
        "alpr: error: ALPR_WATCH_READ_MIN_CONFIDENCE (0.9) must be at least ALPR_OCR_MIN_CONFIDENCE (0.99):"
    )
    started = alpr(sight | {"ALPR_WATCH_READ_MIN_CONFIDENCE": "0.995"}, "worker", "sight", "--burst")
    assert started.returncode == 0, started.stderr


@pytest.mark.parametrize(
    ("environ", "role", "kept_h", "cut"),
    [
        ({"ALPR_RETENTION_DAYS": "1"}, "redact", 24.0, True),  # the default cut to the retention
        ({"ALPR_RETENTION_DAYS": "30"}, "redact", 72.0, False),  # the default, within it
        ({"ALPR_RETENTION_DAYS": "1", "ALPR_KEEP_MAX_AGE_H": "12"}, "redact", 12.0, False),
        (
            {"ALPR_RETENTION_DAYS": "1", "ALPR_KEEP_FRAMES": "none", "ALPR_KEEP_MAX_AGE_H": "100"},
            "redact",
            100.0,
            False,
        ),
        ({"ALPR_RETENTION_DAYS": "0", "ALPR_KEEP_MAX_AGE_H": "100000"}, "redact", 100000.0, False),  # kept for ever
        ({"ALPR_RETENTION_DAYS": "1", "ALPR_KEEP_MAX_AGE_H": "100"}, "sight", 100.0, False),  # no frame kept there
        ({"ALPR_RETENTION_DAYS": "1", "ALPR_ALERT_REPEAT_S": "43200"}, "sight", 72.0, False),
        ({"ALPR_RETENTION_DAYS": "1", "ALPR_ALERT_REPEAT_S": "86400"}, "redact", 24.0, True),
    ],
)
def test_a_role_runs_with_what_it_keeps_within_the_retention(environ, role, kept_h, cut):
    settings = Settings.load(environ).within_retention(role)
    assert settings.keep_max_age_h == kept_h and (
        settings.keep_age_cut_h == 72.0 if cut else settings.keep_age_cut_h is None
    )
    assert settings.within_retention(role) is settings  # the same again (`alpr worker` and the wiring both ask)


@pytest.mark.parametrize(
    ("environ", "role", "message"),
    [
        ({"ALPR_KEEP_MAX_AGE_H": "100000"}, "redact", r"ALPR_KEEP_MAX_AGE_H \(100000 h\) must be at most"
                                                      r" ALPR_RETENTION_DAYS \(30 days = 720 h\): kept frames"),
        ({"ALPR_KEEP_MAX_AGE_H": "49", "ALPR_RETENTION_DAYS": "2"}, "redact", r"\(49 h\) must be at most .* = 48 h"),
        ({"ALPR_ALERT_REPEAT_S": "86400", "ALPR_RETENTION_DAYS": "1.5"}, "sight",
         r"ALPR_ALERT_REPEAT_S \(86400 s\) must be at most half of ALPR_RETENTION_DAYS"),
    ],
)  # fmt: skip
def test_what_a_role_would_keep_past_the_retention_is_refused_at_its_start(environ, role, message):
    settings = Settings.load(environ)  # loaded: every other command runs with them
    with pytest.raises(ConfigError, match=message):
        settings.within_retention(role)

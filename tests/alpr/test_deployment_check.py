"""Two deployments pointed at one Redis, with the real roles on a private Redis and two schemas of the real
Postgres: a review's deployment A (schema A) took deployment B's (schema B) frames, logged them and their
reads in A's Postgres, matched them against A's watch list and alerted under B's camera ids; B's frames
stayed pending, then `lost`, and no role warned. Now a role refuses to start where a live role of another
deployment publishes its identity in the queues' Redis; a command warns; a stopped role is no longer seen."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import psycopg
import pytest

from alpr.cli import main
from common import defaults
from common.config import Settings
from common.queues import (
    INGEST_NODES_KEY,
    SIGHTING_WORKERS_KEY,
    beat_sighting_worker,
    connect_redis,
    leave,
    live_members,
)

EXIT_ERROR = 2
"""What `alpr` exits with on a refusal (alpr/cli.py: an AlprError)."""

JOB_KEY = "a-job-key-both-deployments-share"
"""ALPR_JOB_KEY of both deployments where they share one: their jobs cross silently (each signed with it)."""

NODE_WAIT_S = 60.0
"""The longest wait for deployment B's ingest node to beat (a cold interpreter imports OpenCV and more)."""


@pytest.fixture()
def second_schema(postgres_url: str) -> Iterator[str]:
    """Another schema of the same database: deployment B's, deployment A having `postgres_url`'s."""
    base = postgres_url.split("?")[0]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    yield f"{base}?options=-csearch_path%3D{schema}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")


def looping_camera(tmp_path: Path) -> Path:
    """A cameras file with one camera, a short clip played in a loop: a live camera's stand-in."""
    clip = tmp_path / "gate.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5, (160, 120))
    for i in range(10):
        writer.write(np.full((120, 160, 3), 60 + 10 * i, np.uint8))
    writer.release()
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(f"cameras:\n  - {{id: gate-1, source: {clip}, loop: true, sample_fps: 1}}\n")
    return cameras


def start_node(
    cameras: Path, redis_url: str, database_url: str, more: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Deployment B's ingest node, a process of its own, once it beats (it publishes its identity then)."""
    env = os.environ | {"ALPR_DATABASE_URL": database_url, "ALPR_REDIS_URL": redis_url} | (more or {})
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    node = subprocess.Popen(
        [sys.executable, "-m", "alpr.cli", "ingest", "--cameras", str(cameras), "--max-seconds", "120"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    connection = connect_redis(redis_url)
    deadline = time.monotonic() + NODE_WAIT_S
    while not live_members(connection, INGEST_NODES_KEY, defaults.CAMERA_CLAIM_TTL_S):
        if node.poll() is not None or time.monotonic() > deadline:
            node.kill()
            _, err = node.communicate()
            pytest.fail(f"deployment B's ingest node never beat: {err.decode()[-2000:]}")
        time.sleep(0.2)
    return node


def stop_node(node: subprocess.Popen[bytes]) -> None:
    node.terminate()  # SIGTERM: it stops as asked and leaves the members
    try:
        node.wait(30)
    except subprocess.TimeoutExpired:
        node.kill()
        node.wait()


def test_a_role_of_another_deployment_on_the_same_redis_is_refused_while_the_first_is_live(
    postgres_url, second_schema, redis_url, tmp_path, monkeypatch, caplog, capsys
):
    deployment_a, deployment_b = postgres_url, second_schema
    for url in (deployment_a, deployment_b):
        assert main(["db", "upgrade", "--database-url", url]) == 0
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    monkeypatch.setenv("ALPR_JOB_KEY", JOB_KEY)  # one key for both: B's node signs the identity it publishes
    node = start_node(looping_camera(tmp_path), redis_url, deployment_b, {"ALPR_JOB_KEY": JOB_KEY})
    try:
        capsys.readouterr()
        # deployment A's sighting worker: the same database, another schema (the review's case)
        assert main(["worker", "sight", "--burst", "--database-url", deployment_a]) == EXIT_ERROR
        said = capsys.readouterr().err
        assert "the queues' Redis (ALPR_REDIS_URL) serves another deployment: this sight" in said
        assert "schema differ" in said and "database differ" not in said and "server differ" not in said
        assert "the live ingest " in said and "(in alpr:ingest-nodes:settings; " in said
        assert "redis://host:6379/N" in said
        assert redis_url not in said and deployment_b.split("%3D")[1] not in said  # B's schema never named
        # a command only warns
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="alpr.deployment_check"):
            assert main(["replay", "--dry-run", "--database-url", deployment_a]) == 0
        assert any("serves another deployment: this command" in r.getMessage() for r in caplog.records)
        # a role of the same deployment starts
        assert main(["worker", "sight", "--burst", "--database-url", deployment_b]) == 0
        # two started at once pass each other's check: `alpr status` shows them
        from alpr.deployment_check import own_deployment  # here: an older tree fails on the lines above
        from common.role_settings import role_settings

        a_settings = Settings.load({"ALPR_DATABASE_URL": deployment_a, "ALPR_REDIS_URL": redis_url})
        entry = role_settings(a_settings, "sight", deployment=own_deployment(a_settings, "sight")).entry()
        beat_sighting_worker(connect_redis(redis_url), "a-sighting-worker", entry)
        capsys.readouterr()
        assert main(["status", "--interval", "0.1"]) == 0
        (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("roles of two deploy")]
        assert ": sight a-sighting-worker" in line and ": ingest " in line
        assert main(["status", "--json", "--interval", "0.1"]) == 0
        assert "sight a-sighting-worker" in json.loads(capsys.readouterr().out)["deployments_differ"]
        leave(connect_redis(redis_url), SIGHTING_WORKERS_KEY, "a-sighting-worker")
    finally:
        stop_node(node)
    assert not live_members(connect_redis(redis_url), INGEST_NODES_KEY, defaults.CAMERA_CLAIM_TTL_S)
    # deployment B stopped: nothing live differs, and deployment A's worker starts
    assert main(["worker", "sight", "--burst", "--database-url", deployment_a]) == 0


def test_a_detector_worker_without_postgres_is_told_apart_by_alpr_deployment(
    postgres_url, redis_url, settings, tmp_path, monkeypatch, capsys
):
    """No job key anywhere: nothing is signed, and a live member of another deployment refuses a start."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    node = start_node(looping_camera(tmp_path), redis_url, postgres_url, {"ALPR_DEPLOYMENT": "north"})
    try:
        capsys.readouterr()
        monkeypatch.setenv("ALPR_DEPLOYMENT", "south")  # refused before its model loads
        assert main(["worker", "detect", "--burst", "--model-dir", str(settings.model_dir)]) == EXIT_ERROR
        said = capsys.readouterr().err
        assert "this detect (ALPR_DEPLOYMENT south;" in said and "ALPR_DEPLOYMENT differ" in said
        assert "ALPR_DEPLOYMENT north, Postgres " in said  # what the node published
    finally:
        stop_node(node)


def test_a_role_started_after_another_deployments_ingest_node_ended_warns(
    postgres_url, second_schema, redis_url, tmp_path, monkeypatch, caplog
):
    """The review's script: deployment B's node queued its footage and ended; deployment A's workers took
    the jobs. Nothing of B is live, so A's roles start, saying at WARNING what the last node was."""
    deployment_a, deployment_b = postgres_url, second_schema
    for url in (deployment_a, deployment_b):
        assert main(["db", "upgrade", "--database-url", url]) == 0
    folder = tmp_path / "shots"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((120, 160, 3), 90, np.uint8))
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(f"cameras:\n  - {{id: gate-1, source: {folder}, realtime: false}}\n")
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    assert main(["ingest", "--cameras", str(cameras), "--database-url", deployment_b, "--max-seconds", "5"]) == 0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alpr.deployment_check"):
        assert main(["worker", "sight", "--burst", "--database-url", deployment_a]) == 0
    (said,) = [r.getMessage() for r in caplog.records if "another deployment" in r.getMessage()]
    assert said.startswith("the last ingest on ") and "schema differ from this sight's" in said
    assert "redis://host:6379/N" in said and deployment_b.split("%3D")[1] not in said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alpr.deployment_check"):  # deployment B's own: nothing said
        assert main(["worker", "sight", "--burst", "--database-url", deployment_b]) == 0
    assert not [r for r in caplog.records if "another deployment" in r.getMessage()]

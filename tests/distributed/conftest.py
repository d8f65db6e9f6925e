"""Fixtures for the chain on real servers: a private redis-server per test (own port, temp dir),
a fresh Postgres schema migrated with `alpr db upgrade`, and helpers to run `alpr` processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from alpr.cli import main


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture()
def chain_env(redis_url: str, postgres_url: str, settings, tmp_path: Path) -> dict[str, str]:
    """Environment for `alpr` processes of one chain, schema already migrated."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    env.update({
        "ALPR_REDIS_URL": redis_url,
        "ALPR_DATABASE_URL": postgres_url,
        "ALPR_MODEL_DIR": str(settings.model_dir),
        "ALPR_KEEP_DIR": str(tmp_path / "kept"),
        "PYTHONUNBUFFERED": "1",
    })  # fmt: skip
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    return env


def alpr_process(env: dict[str, str], args: list[str], log: Path, metrics_port: int | None = None) -> subprocess.Popen:
    env = dict(env)
    if metrics_port:
        env["ALPR_METRICS_PORT"] = str(metrics_port)
    handle = log.open("w")
    return subprocess.Popen([sys.executable, "-m", "alpr.cli", *args], env=env, stdout=handle, stderr=subprocess.STDOUT)


def write_cameras(path: Path, cameras: list[dict]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"cameras": cameras}))
    return path

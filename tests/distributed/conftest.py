"""Fixtures for the chain on real servers: the private Redis (tests/conftest.py), a fresh Postgres
schema migrated with `alpr db upgrade`, and the environment for `alpr` processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alpr.cli import main


@pytest.fixture()
def chain_env(redis_url: str, postgres_url: str, settings, tmp_path: Path) -> dict[str, str]:
    """Environment for `alpr` processes of one chain, schema already migrated; every job signed and
    checked with one job key, as `docker compose` runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    env.update({
        "ALPR_REDIS_URL": redis_url,
        "ALPR_DATABASE_URL": postgres_url,
        "ALPR_MODEL_DIR": str(settings.model_dir),
        "ALPR_KEEP_DIR": str(tmp_path / "kept"),
        "ALPR_LEDGER_SPOOL_DIR": str(tmp_path / "ledger-spool"),
        "ALPR_JOB_KEY": "chain-job-key-0123456789",
        "PYTHONUNBUFFERED": "1",
    })  # fmt: skip
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    return env

"""`alpr worker alert` through a Postgres read-only spell (a primary demoted, on a private cluster): its
duties' failures are said once a spell, and their end at INFO, not a WARNING a round (every second)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from alpr.cli import main
from tests.alert_worker.test_worker import receivers_file
from tests.helpers import wait_for

LACK = "could not add the deliveries recent alerts lack"
"""The WARNING of the alert pool's first duty failing."""


def read_only(url: str, on: bool) -> None:
    """Postgres takes no writes (as a demoted primary) or takes them again; every session takes it at its
    next command (a reload)."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"ALTER SYSTEM SET default_transaction_read_only = {'on' if on else 'off'}")
        admin.execute("SELECT pg_reload_conf()")


def test_a_read_only_spell_is_said_once_by_the_alert_pool_and_its_end_at_info(
    private_postgres, redis_url, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: a read-only Postgres failed the alert pool's first duty (adding the deliveries recent alerts
    lack) at every maintenance, a WARNING each second (9 in 10 s, 60 a minute), and nothing said when it went
    through again. Now one WARNING when it starts failing, the rounds counted, and one INFO line ("answers
    again", with how many rounds failed) once it goes through; the pool's other duty (queueing what is due)
    is told once a minute, as before, and its end too."""
    url = private_postgres.url
    assert main(["db", "upgrade", "--database-url", url]) == 0
    monkeypatch.setenv("ALPR_DATABASE_URL", url)
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    receivers_file(tmp_path, monkeypatch, {"ops": ("http://127.0.0.1:9/hook", 1)})
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen([sys.executable, "-m", "alpr.cli", "-v", "worker", "alert"], env=dict(os.environ),
                                  stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    lines = lambda: log_path.read_text().splitlines()  # noqa: E731
    try:
        wait_for(lambda: any("ready" in line or "Listening" in line for line in lines()), 30, "the worker")
        time.sleep(2)
        read_only(url, True)
        wait_for(lambda: any(LACK in line for line in lines()), 20, "the spell's WARNING")
        time.sleep(8)  # 8 rounds more
        spell = [line for line in lines() if LACK in line]
        assert len(spell) == 1 and spell[0].startswith("WARNING"), spell  # not one a round
        read_only(url, False)
        wait_for(lambda: any("recent alerts lack answers again" in line for line in lines()), 20, "its end")
    finally:
        read_only(url, False)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    assert [line for line in lines() if LACK in line] == spell
    ended = [line for line in lines() if "recent alerts lack answers again" in line]
    assert len(ended) == 1 and ended[0].startswith("INFO") and "failed rounds" in ended[0], ended
    rounds = int(ended[0].split("after ")[1].split()[0])
    assert rounds >= 4, ended  # counted, each round of the spell (8 s of rounds every second; 6 on busy CPUs)
    duty = [line for line in lines() if "pool duty" in line]
    assert [line.split()[0] for line in duty] == ["WARNING", "INFO"], duty  # queueing what is due: its spell too

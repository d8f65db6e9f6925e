"""alpr_database_up{pool} (common/db_watch.py) on a private Postgres cluster stopped and started again: real
alert and sighting workers (`alpr worker`, scraped) say 0 within seconds of Postgres going away and 1 once
it is back; a process idle since an outage asks Postgres itself, and a read-only one is not taken for back.
A review: a 12-minute Postgres outage raised no alert of its own, and no metric said it."""

from __future__ import annotations

import os
import time
import urllib.request

import psycopg
import pytest

from alpr.cli import main
from common.db import open_pool
from common.db_writes import OUTAGES, write_through_outage
from common.metrics import Metrics
from tests.helpers import alpr_process, free_port, wait_for


def database_up(port: int, pool: str) -> float | None:
    """The process's alpr_database_up{pool} as its metrics server serves it (None: not served, or no series)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f'alpr_database_up{{pool="{pool}"}} '):
            return float(line.split()[-1])
    return None


def test_a_postgres_outage_shows_in_the_workers_metrics_and_its_end_too(private_postgres, redis_url, tmp_path):
    """The alert worker (its round every second) and the sighting worker (its rounds) with nothing to do:
    each says 0 within seconds of Postgres stopping, and 1 within seconds of its return."""
    url = private_postgres.url
    assert main(["db", "upgrade", "--database-url", url]) == 0
    (tmp_path / "hook.secret").write_text("hook-secret-0123456789abcdef")
    (tmp_path / "receivers.yaml").write_text(
        f"receivers:\n  ops:\n    type: webhook\n    url: http://127.0.0.1:{free_port()}/hook\n"
        f"    secret_file: {tmp_path / 'hook.secret'}\n    timeout_s: 1\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    env |= {"ALPR_REDIS_URL": redis_url, "ALPR_DATABASE_URL": url, "ALPR_SIGHTING_POLL_S": "0.5",
            "ALPR_ALERT_RECEIVERS": str(tmp_path / "receivers.yaml")}  # fmt: skip
    ports = {"alert": free_port(), "sight": free_port()}
    workers = [alpr_process(env, ["worker", role], tmp_path / f"{role}.log", metrics_port=port)
               for role, port in ports.items()]  # fmt: skip
    try:
        wait_for(lambda: all(database_up(port, role) == 1 for role, port in ports.items()), 60, "both workers up")
        private_postgres.stop()
        began = time.monotonic()
        wait_for(lambda: all(database_up(port, role) == 0 for role, port in ports.items()), 30, "both say 0")
        assert time.monotonic() - began < 15
        private_postgres.start()
        began = time.monotonic()
        wait_for(lambda: all(database_up(port, role) == 1 for role, port in ports.items()), 30, "both say 1")
        assert time.monotonic() - began < 15
        assert all(worker.poll() is None for worker in workers)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
    logs = "".join((tmp_path / f"{role}.log").read_text() for role in ports)
    assert "Traceback" not in logs, logs


def test_a_process_idle_since_an_outage_asks_postgres_itself_and_takes_no_read_only_one_for_back(private_postgres):
    """An OCR worker whose last job met the outage runs no statement until its next job: its 0 lasted that
    long, and the rule on it fired with Postgres back. While no statement says anything, the watch asks
    Postgres every DB_CHECK_S (here 0.2 s): 0 while it is away, or takes no writes, 1 once it does."""
    from common.db_watch import DatabaseWatch

    pool = open_pool(private_postgres.url)
    metrics = Metrics()
    try:
        DatabaseWatch(pool, metrics, "ocr", check_s=0.2)

        def up() -> float | None:
            return metrics.registry.get_sample_value("alpr_database_up", {"pool": "ocr"})

        assert up() == 1  # the pool is open: Postgres answered
        private_postgres.stop()
        with pytest.raises(OUTAGES):
            write_through_outage(pool, lambda connection: connection.execute("SELECT 1"), 0.0)
        assert up() == 0
        time.sleep(1.5)
        assert up() == 0  # asked, and still away
        private_postgres.start()
        with psycopg.connect(private_postgres.url, autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            admin.execute("SELECT pg_reload_conf()")
        time.sleep(1.5)
        assert up() == 0  # it answers, but takes no writes: still an outage to the chain
        with psycopg.connect(private_postgres.url, autocommit=True) as admin:
            admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
            admin.execute("SELECT pg_reload_conf()")
        wait_for(lambda: up() == 1, 15, "the watch's own check")
    finally:
        pool.close()

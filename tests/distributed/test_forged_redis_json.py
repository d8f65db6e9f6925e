"""JSON the chain reads back from Redis (common/redis_json.py) written instead by an attacker with access to
the queues' Redis and no job key (a review): 1000 `[` in a job-key fingerprint entry, within its 1024-byte
bound, raised RecursionError, which the readers' own `except` lists missed. Every role (`alpr status`,
`alpr status --json`, `alpr ingest`, `alpr worker`) exited 1 at its start, and a running alert worker quit
("found an unhandled exception, quitting") at the first unsigned job it refused. Real `alpr` processes on
a private Redis and the real Postgres."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from common.job_key import FINGERPRINTS_KEY
from common.jobs import alert_job
from common.queues import QUEUE_NAMES, enqueue, stage_queue
from common.redis_json import json_object
from tests.helpers import alpr_process, wait_for

DEEP = "[" * 1000
"""The review's entry: 1000 bytes, within the fingerprints' MAX_ENTRY_BYTES (1024)."""


def alpr(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """`alpr ARGV` as its own process: its exit status, stdout and stderr."""
    command = [sys.executable, "-m", "alpr.cli", *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        (DEEP, None),
        ("[" * 100_000, None),  # over the bound: never parsed
        ('{"a":' * 600 + "1" + "}" * 600, None),  # objects nested past the interpreter's depth
        ('{"at": NaN}', None),
        ('{"at": [Infinity]}', None),
        (b'{"host": "\xff"}', None),  # not UTF-8
        ("[1, 2]", None),
        ('"text"', None),
        ("12", None),
        ("", None),
        (None, None),
        ('{"fingerprint": "1a2b", "at": 1.5}', {"fingerprint": "1a2b", "at": 1.5}),
        (b'{"state": "connected"}', {"state": "connected"}),
    ],
)
def test_json_read_back_is_an_object_within_its_bound_or_none(raw, parsed):
    assert json_object(raw, 1024) == parsed


def test_a_deeply_nested_fingerprint_entry_stops_no_role_at_its_start(chain_env, tmp_path: Path):
    folder = tmp_path / "shots"
    folder.mkdir()
    for name in ("a", "b", "c"):
        cv2.imwrite(str(folder / f"{name}.jpg"), np.full((120, 160, 3), 90, np.uint8))
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(f"cameras:\n  - {{id: gate, source: {folder}, realtime: false}}\n")
    connection = redis.Redis.from_url(chain_env["ALPR_REDIS_URL"])
    connection.hset(FINGERPRINTS_KEY, "detect", DEEP)
    runs = {
        "status": ["status", "--interval", "0.1"],
        "status --json": ["status", "--json"],
        "ingest": ["ingest", "--cameras", str(cameras), "--max-seconds", "5", "--metrics-port", "0"],
        "worker sight": ["worker", "sight", "--burst", "--metrics-port", "0"],
    }
    ended = {what: alpr(chain_env, *argv) for what, argv in runs.items()}
    assert {what: run.returncode for what, run in ended.items()} == dict.fromkeys(runs, 0), {
        what: run.stderr[-300:] for what, run in ended.items()
    }
    assert not [what for what, run in ended.items() if "RecursionError" in run.stdout + run.stderr]
    assert json.loads(ended["status --json"].stdout)["job_keys_differ"] is None  # the forged entry read as none
    assert connection.hget(FINGERPRINTS_KEY, "ingest") is not None  # each published its own all the same


def test_a_running_alert_worker_refusing_an_unsigned_job_goes_on_past_a_forged_entry(chain_env, tmp_path: Path):
    """The review's crash: the worker started, the entry was forged, an unsigned job came; telling the
    refusal read the entries, and the worker quit. It refuses the job, tells it, and takes the next."""
    (tmp_path / "hook.secret").write_text("hook-secret-0123456789abcdef")
    receivers = tmp_path / "receivers.yaml"
    receivers.write_text(f"receivers:\n  ops:\n    type: webhook\n    url: http://127.0.0.1:9/hook\n"
                         f"    secret_file: {tmp_path / 'hook.secret'}\n")  # fmt: skip
    env = chain_env | {"ALPR_ALERT_RECEIVERS": str(receivers)}
    connection = redis.Redis.from_url(env["ALPR_REDIS_URL"])
    log = tmp_path / "alert.log"
    worker = alpr_process(env, ["worker", "alert", "--metrics-port", "0"], log)
    try:
        wait_for(lambda: connection.scard(f"rq:workers:{QUEUE_NAMES['alert']}") > 0, 60, "the alert worker started")
        connection.hset(FINGERPRINTS_KEY, "detect", DEEP)
        unsigned = stage_queue(connection, "alert")  # no job key: its jobs unsigned, as any client of Redis may queue
        enqueue(unsigned, alert_job("read-0123456789abcdef", "ops", 1), 60)
        told, crashed = "jobs refused, not signed", "unhandled exception"
        wait_for(lambda: told in log.read_text() or crashed in log.read_text(), 60, "the refusal told, or a crash")
        assert told in log.read_text() and crashed not in log.read_text(), log.read_text()[-2000:]
        enqueue(unsigned, alert_job("read-0123456789abcdef", "ops", 2), 60)
        wait_for(lambda: stage_queue(connection, "alert").count == 0, 60, "the next job taken")
        time.sleep(1)
        assert worker.poll() is None, log.read_text()[-2000:]
    finally:
        worker.send_signal(signal.SIGTERM)
        status = worker.wait(60)
    text = log.read_text()
    assert "unhandled exception" not in text and "RecursionError" not in text, text[-2000:]
    assert status == 0, text[-2000:]

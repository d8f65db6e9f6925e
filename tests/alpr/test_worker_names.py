"""`alpr worker`'s RQ workers take names no restart and no client of Redis can make RQ refuse for good: a
container's worker is pid 1 on a hostname a restart keeps, so one restarted after a SIGKILL (the OOM
killer, `docker stop`'s grace run out) took the dead one's name, `STAGE-HOST-1-0`, whose registration RQ
keeps up to a minute and a half; RQ's register_birth refused it (ValueError), uncaught: the process exited 1
and crash-looped, loading its model each time, and anyone who could write to Redis made it permanent with
`HSET rq:worker:<the next name> birth x` (a review). Real worker processes (tests/alpr/named_worker.py), a
private Redis."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
from rq.worker import Worker
from rq.worker_registration import REDIS_WORKER_KEYS, WORKERS_BY_QUEUE_KEY

from common.queues import enqueue, stage_queue
from tests.common.recording_stage import detect_job
from tests.helpers import wait_for

REPO = Path(__file__).resolve().parents[2]
TAKEN = re.compile(r"worker (\S+): its name is registered in Redis already .* a new name in (\d+) s")


def named_worker(redis_url: str, *options: str) -> subprocess.Popen[str]:
    """A worker process of tests/alpr/named_worker.py, its modules loaded, waiting for a line to start."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "tests.alpr.named_worker", redis_url, *options]
    process = subprocess.Popen(command, cwd=REPO, env=env, text=True, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert process.stdout is not None and process.stdout.readline() == "ready\n", process.communicate(timeout=10)
    return process


def plant(connection: redis.Redis, name: str, fields: dict[Any, Any], ttl_s: int | None = None) -> None:
    """A registration of worker `name` with `fields`, no death recorded, listed as RQ lists its own."""
    key = Worker.redis_worker_namespace_prefix + name
    connection.hset(key, mapping=fields)
    if ttl_s is not None:
        connection.expire(key, ttl_s)
    connection.sadd(REDIS_WORKER_KEYS, key)
    connection.sadd(WORKERS_BY_QUEUE_KEY % "detect", key)


def registered(connection: redis.Redis) -> set[str]:
    return {key.decode() for key in connection.smembers(REDIS_WORKER_KEYS)}  # type: ignore[union-attr]


def test_a_worker_restarted_with_the_dead_ones_pid_and_host_starts_and_takes_jobs(redis_url: str) -> None:
    """The dead worker's own registration, SIGKILLed (no death recorded, its TTL running), under the name
    the restarted process would have taken from its host, pid and run alone, as pid 1 of a restarted
    container takes it: the new worker starts and takes the job."""
    connection = redis.Redis.from_url(redis_url)
    dead = named_worker(redis_url)
    try:
        dead.stdin.write("go\n")  # type: ignore[union-attr]
        dead.stdin.flush()  # type: ignore[union-attr]
        wait_for(lambda: registered(connection), 60, "the first worker to register")
        os.kill(dead.pid, signal.SIGKILL)  # as the OOM killer, or `docker stop` past its grace, leaves it
        dead.wait(timeout=10)
    finally:
        if dead.poll() is None:
            dead.kill()
            dead.wait(timeout=10)
    (dead_key,) = registered(connection)
    fields, ttl_s = connection.hgetall(dead_key), int(connection.ttl(dead_key))  # type: ignore[arg-type]
    assert fields and b"death" not in fields and ttl_s > 0
    job_id = enqueue(stage_queue(connection, "detect"), detect_job("after-restart"), 60)
    restarted = named_worker(redis_url, "burst")
    taken = f"detect-{socket.gethostname()}-{restarted.pid}-0"  # its host, pid and first run: the dead one's
    plant(connection, taken, fields, ttl_s)
    _, log = restarted.communicate("go\n", timeout=60)
    assert restarted.returncode == 0, log
    assert "There exists an active worker" not in log and "Traceback" not in log, log
    job = stage_queue(connection, "detect").fetch_job(job_id)
    assert job is not None and job.get_status() == "finished", log


def test_a_forged_registration_of_the_next_name_is_passed_over_with_a_warning(redis_url: str) -> None:
    """`HSET rq:worker:<name> birth x`, no TTL, of the names the worker draws (their random parts fixed by
    the test to forge them): each is warned of and the worker goes on under a new one, waiting 1 s, then
    2 s (a Redis forging every name gets no busy loop), and takes the job."""
    connection = redis.Redis.from_url(redis_url)
    job_id = enqueue(stage_queue(connection, "detect"), detect_job("forged-names"), 60)
    worker = named_worker(redis_url, "burst", "aaaaaaaa", "bbbbbbbb", "cccccccc")
    host = socket.gethostname()
    forged = [f"detect-{host}-{worker.pid}-0-aaaaaaaa", f"detect-{host}-{worker.pid}-1-bbbbbbbb"]
    for name in [*forged, f"detect-{host}-{worker.pid}-0", f"detect-{host}-{worker.pid}-1"]:  # the old names
        plant(connection, name, {b"birth": b"x"})
    _, log = worker.communicate("go\n", timeout=60)
    assert worker.returncode == 0, log
    assert [(name, int(wait_s)) for name, wait_s in TAKEN.findall(log)] == list(zip(forged, [1, 2], strict=True)), log
    assert "Traceback" not in log, log
    job = stage_queue(connection, "detect").fetch_job(job_id)
    assert job is not None and job.get_status() == "finished", log
    for name in forged:  # the forged registrations left as they were: not the worker's to remove
        assert connection.hgetall(Worker.redis_worker_namespace_prefix + name) == {b"birth": b"x"}


def test_a_redis_that_forges_every_name_gets_a_bounded_number_of_tries_and_a_stop_ends_them(redis_url: str) -> None:
    """Every name the worker draws forged (its random part fixed, each run's name planted): a few tries in 5
    s, each waited out with a backoff, not a busy loop; SIGTERM during a wait ends the process, exit 0."""
    connection = redis.Redis.from_url(redis_url)
    worker = named_worker(redis_url, "aaaaaaaa")
    host = socket.gethostname()
    for run in range(50):
        plant(connection, f"detect-{host}-{worker.pid}-{run}-aaaaaaaa", {b"birth": b"x"})
        plant(connection, f"detect-{host}-{worker.pid}-{run}", {b"birth": b"x"})  # the old names
    worker.stdin.write("go\n")  # type: ignore[union-attr]
    worker.stdin.flush()  # type: ignore[union-attr]
    first = ""
    while not TAKEN.search(first) and (line := worker.stderr.readline()):  # type: ignore[union-attr]
        first += line  # the first name refused: the worker's own signal handlers are in place
    time.sleep(4)
    worker.send_signal(signal.SIGTERM)
    _, rest = worker.communicate(timeout=30)
    log = first + rest
    assert worker.returncode == 0, log
    tries = TAKEN.findall(log)
    assert 1 <= len(tries) <= 3, log  # tried at once, after 1 s and after 2 more: not 50 times
    assert [int(wait_s) for _, wait_s in tries] == [1, 2, 4][: len(tries)], log
    assert "Traceback" not in log, log

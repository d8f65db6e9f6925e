"""RQ's controls through Redis, which any client of it can use, are refused by the chain's workers (on a
private Redis, with real StageWorkers): a review stopped every pool of the chain with one PUBLISH per
worker (`{"command":"shutdown"}` on `rq:pubsub:<name>`: each exited 0, logging nothing, jobs signed or
not) and parked every worker, unlogged, by setting the key `rq:suspended`."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import redis
from rq.command import PUBSUB_CHANNEL_TEMPLATE
from rq.suspension import WORKERS_SUSPENDED

from common.metrics import Metrics
from common.queues import enqueue, stage_queue
from common.worker import StageWorker
from common.worker_context import WorkerContext
from tests.common.recording_stage import Recorder, detect_job

RESCUE_S = 20
"""A worker the test could not stop otherwise gets SIGINT after this long (RQ's own stop)."""


@contextmanager
def rescued() -> Iterator[None]:
    """RQ's signal handlers put back as they were after the worker, which gets SIGINT if still working
    after RESCUE_S (a worker that took no job, parked, would wait for ever)."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    rescue = threading.Timer(RESCUE_S, os.kill, (os.getpid(), signal.SIGINT))
    rescue.start()
    try:
        yield
    finally:
        rescue.cancel()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def when_subscribed(connection: redis.Redis, worker: StageWorker, then: Callable[[], None]) -> threading.Thread:
    """A thread that waits until the worker listens on its RQ control channel (RQ subscribes as it
    starts), then calls `then`."""
    channel = PUBSUB_CHANNEL_TEMPLATE % worker.name

    def wait() -> None:
        deadline = time.monotonic() + RESCUE_S
        while time.monotonic() < deadline and not dict(connection.pubsub_numsub(channel)).get(channel.encode()):
            time.sleep(0.05)
        then()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def test_rq_commands_published_to_a_worker_are_refused_and_it_goes_on(redis_url, caplog):
    connection = redis.Redis.from_url(redis_url)
    queue = stage_queue(connection, "detect", "job-key-0123456789abcdef")  # signed jobs: it never helped
    stage = Recorder()
    worker = StageWorker(queue, WorkerContext(stage, Metrics()))  # type: ignore[arg-type]

    def attack() -> None:
        name = connection.smembers("rq:workers").pop().decode().removeprefix("rq:worker:")  # as the review did
        for message in ('{"command":"shutdown"}', '{"command":"kill-horse"}', "\xff not json"):
            connection.publish(PUBSUB_CHANNEL_TEMPLATE % name, message)
        time.sleep(1)  # RQ's worker sent itself SIGINT within this: stopped, the job below never taken
        enqueue(queue, detect_job("after"), 60)

    attacker = when_subscribed(connection, worker, attack)
    with rescued():
        worker.work(max_jobs=1, logging_level="WARNING")  # ends after one job, however it is stopped
    attacker.join()
    assert stage.batches == ["after"] and not worker.stop.is_set()
    refused = [r.getMessage() for r in caplog.records if "RQ command" in r.getMessage()]
    assert len(refused) == 1 and "'shutdown' refused (1 since" in refused[0]  # one a minute: a flood is one line
    assert all(r.levelname == "WARNING" for r in caplog.records if "RQ command" in r.getMessage())


@pytest.mark.parametrize("burst", [False, True])
def test_rq_suspension_is_ignored_with_one_warning(redis_url, caplog, burst):
    """Parked (or, in burst mode, stopped at once), every worker of the chain took no job, unlogged: the
    frames waiting expired. The key is ignored, warned of once however often it is seen."""
    connection = redis.Redis.from_url(redis_url)
    queue = stage_queue(connection, "detect")
    connection.set(WORKERS_SUSPENDED, 1)  # `rq suspend`, or any client of the queues' Redis
    for batch in ("one", "two"):
        enqueue(queue, detect_job(batch), 60)
    stage = Recorder()
    worker = StageWorker(queue, WorkerContext(stage, Metrics()))  # type: ignore[arg-type]
    with rescued():
        worker.work(burst=burst, max_jobs=None if burst else 2, logging_level="WARNING")
    assert stage.batches == ["one", "two"] and not worker.stop.is_set()  # checked before each job: twice
    warned = [r for r in caplog.records if WORKERS_SUSPENDED in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelname == "WARNING" and "ignored" in warned[0].getMessage()

"""alpr/worker_command.py's loop of RQ workers, on a real Redis: a Redis that answers PING but refuses
the worker's writes is retried with a backoff, and a stop during that backoff still ends the loop
cleanly (the pool's `finish` runs)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

import redis
from redis.client import PubSubWorkerThread

from alpr.worker_command import run_workers
from common.config import Settings
from common.metrics import Metrics
from common.worker import StageResult, WorkerContext
from tests.helpers import wait_for


class IdleStage:
    name = "redact"

    def handle(self, payload: object) -> StageResult:
        raise AssertionError("no job is queued")

    def maintain(self) -> None:
        pass


def test_a_stop_during_the_restart_backoff_ends_the_loop_cleanly(redis_server):
    """The backoff waited inside the handler of the worker's Redis error, RQ's signal handlers still in
    place: a SIGTERM there raised RQ's StopRequested out of the loop, so the alert pool's `finish` (its
    lanes handed back, attempts in flight waited for) never ran (a diff review)."""
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda received, _: sys.exit(128 + received))  # as `alpr worker` does
    connection = redis.Redis(port=redis_server.port)
    to_replica = threading.Timer(1.0, lambda: redis.Redis(port=redis_server.port).replicaof("127.0.0.1", "1"))
    terminate = threading.Timer(1.6, os.kill, (os.getpid(), signal.SIGTERM))  # in the first backoff's wait
    context = WorkerContext(IdleStage(), Metrics())  # type: ignore[arg-type]
    stop = threading.Event()
    settings = Settings.load({"ALPR_REDIS_URL": redis_server.url})
    try:
        to_replica.start()
        terminate.start()
        code = run_workers(argparse.Namespace(stage="redact", burst=False, max_jobs=None), settings, connection,
                           context, stop)  # fmt: skip
    finally:
        to_replica.cancel()
        terminate.cancel()
        signal.signal(signal.SIGTERM, previous)
        redis.Redis(port=redis_server.port).replicaof("NO", "ONE")
    assert code == 0 and stop.is_set()  # returned: `alpr worker` then runs the pool's finish
    # RQ's teardown failed on Redis before it stopped the worker's control channel thread: it retried every
    # 2 s for ever (into later tests). Stopped now, it ends once its reconnection attempt in hand gives up.
    wait_for(lambda: not any(isinstance(t, PubSubWorkerThread) for t in threading.enumerate()), 30,
             "the RQ workers' control channel threads to end")  # fmt: skip

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
from common.worker_context import StageResult, WorkerContext
from tests.helpers import wait_for


class IdleStage:
    name = "redact"

    def handle(self, payload: object) -> StageResult:
        raise AssertionError("no job is queued")

    def maintain(self) -> None:
        pass


class SignalledInTheBackoff(threading.Event):
    """`alpr worker`'s stop event, which sends the process SIGTERM as the loop enters its first timed wait
    (the restart backoff's): the signal lands in the backoff however loaded the machine. A timer at a fixed
    1.6 s landed in RQ's teardown instead (its control channel's thread joined for 1 s), so the test passed
    with the backoff waited inside the Redis error's handler again."""

    def __init__(self) -> None:
        super().__init__()
        self.signalled = False

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None and not self.signalled:
            self.signalled = True
            os.kill(os.getpid(), signal.SIGTERM)
        return super().wait(timeout)


def control_channel_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if isinstance(thread, PubSubWorkerThread)}


def test_a_stop_during_the_restart_backoff_ends_the_loop_cleanly(redis_server):
    """The backoff waited inside the handler of the worker's Redis error, RQ's signal handlers still in
    place: a SIGTERM there raised RQ's StopRequested out of the loop, so the alert pool's `finish` (its
    lanes handed back, attempts in flight waited for) never ran (a diff review)."""
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda received, _: sys.exit(128 + received))  # as `alpr worker` does
    connection = redis.Redis(port=redis_server.port)
    to_replica = threading.Timer(1.0, lambda: redis.Redis(port=redis_server.port).replicaof("127.0.0.1", "1"))
    give_up = threading.Timer(60, os.kill, (os.getpid(), signal.SIGTERM))  # no backoff: the loop still ends
    context = WorkerContext(IdleStage(), Metrics())  # type: ignore[arg-type]
    stop = SignalledInTheBackoff()
    settings = Settings.load({"ALPR_REDIS_URL": redis_server.url})
    earlier = control_channel_threads()  # other tests' workers: RQ's may end a minute after their stop
    try:
        to_replica.start()
        give_up.start()
        code = run_workers(argparse.Namespace(stage="redact", burst=False, max_jobs=None), settings, connection,
                           context, stop)  # fmt: skip
    finally:
        to_replica.cancel()
        give_up.cancel()
        signal.signal(signal.SIGTERM, previous)
        redis.Redis(port=redis_server.port).replicaof("NO", "ONE")
    assert stop.signalled, "the loop never waited out a restart backoff"
    assert code == 0 and stop.is_set()  # returned: `alpr worker` then runs the pool's finish
    # RQ's teardown failed on Redis before it stopped the worker's control channel thread: it retried every
    # 2 s for ever (into later tests). Stopped now, it ends once its reconnection attempt in hand gives up.
    wait_for(
        lambda: not control_channel_threads() - earlier, 30, "this test's RQ workers' control channel threads to end"
    )

"""A stop signal is never lost: RQ raises StopRequested wherever an idle worker's main thread is, and
the pool's periodic duties (which catch their own failures) must not swallow it."""

import os
import signal
import threading
import time

import pytest
import redis

from common.metrics import Metrics
from common.queues import stage_queue
from common.worker import StageWorker
from common.worker_context import StageResult, WorkerContext


class DutyInterruptedBySignal:
    """A stage whose periodic duty is where `kill -TERM` finds the worker; with `swallows`, the duty
    catches its own failures (as a duty that must not stop the pool may), the signal's too."""

    name = "detect"

    def __init__(self, swallows: bool) -> None:
        self.swallows = swallows
        self.duties = 0
        self.caught = False

    def handle(self, payload: object) -> StageResult:
        raise AssertionError("no job is queued")

    def maintain(self) -> None:
        self.duties += 1
        if self.duties > 1:
            return
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, in the main thread
            time.sleep(0.2)
        except Exception:
            self.caught = True
            if not self.swallows:
                raise


@pytest.mark.parametrize("swallows", [False, True])
def test_a_stop_signal_during_the_pools_duties_stops_the_worker(redis_url, swallows):
    stage = DutyInterruptedBySignal(swallows)
    queue = stage_queue(redis.Redis.from_url(redis_url), "detect")
    worker = StageWorker(queue, WorkerContext(stage, Metrics()))  # type: ignore[arg-type]
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    rescue = threading.Timer(20, os.kill, (os.getpid(), signal.SIGINT))  # a second signal: RQ's cold stop
    started = time.monotonic()
    rescue.start()
    try:
        worker.work(logging_level="WARNING")
    except SystemExit:
        pytest.fail("the stop was lost: only a second signal ended the worker")
    finally:
        rescue.cancel()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert time.monotonic() - started < 10 and stage.duties == 1 and worker.stop.is_set()
    assert stage.caught  # the signal's exception reached the duty: the case is the one it claims


def test_once_a_stop_was_asked_for_no_job_is_taken_and_a_refusal_check_lets_it_through(redis_url, monkeypatch):
    from rq.exceptions import StopRequested

    from common.stage_job import StageJob

    queue = stage_queue(redis.Redis.from_url(redis_url), "detect")
    worker = StageWorker(queue, WorkerContext(DutyInterruptedBySignal(False), Metrics()))  # type: ignore[arg-type]
    worker.stop.set()  # as request_stop does first, whatever then swallowed RQ's exception
    with pytest.raises(StopRequested):
        worker.dequeue_job_and_maintain_ttl(1)
    with pytest.raises(StopRequested):
        worker.run_maintenance_tasks()

    def interrupted(self):
        raise StopRequested()

    monkeypatch.setattr(StageJob, "_refusal", interrupted)  # the signal lands while a job is checked
    with pytest.raises(StopRequested):
        StageJob(connection=queue.connection).refusal()


def test_a_stop_during_registry_cleaning_leaves_no_maintenance_lock(redis_url, monkeypatch):
    """Else no worker of the pool would bring back a killed worker's job for up to 15 minutes."""
    import rq.worker.base
    from rq.exceptions import StopRequested

    queue = stage_queue(redis.Redis.from_url(redis_url), "ocr")
    worker = StageWorker(queue, WorkerContext(DutyInterruptedBySignal(False), Metrics()))  # type: ignore[arg-type]

    def interrupted(*args, **kwargs):
        raise StopRequested()  # as RQ's handler raises it when SIGTERM lands mid-cleaning

    monkeypatch.setattr(rq.worker.base, "clean_registries", interrupted)
    with pytest.raises(StopRequested):
        worker.clean_registries()
    assert queue.acquire_maintenance_lock()  # free again for the next cleaning

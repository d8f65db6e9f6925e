"""An ingest node stopped while its Redis stalls (SIGSTOP: the server keeps its connections and answers
nothing), on a private redis-server: whichever round trip the stop comes during, once it has gone unanswered
the node asks that Redis nothing more, and a camera thread never waits on Redis at all. Each round trip to a
stalled Redis waits out the connection's timeout (INGEST_REDIS_TIMEOUT_S in the product; 1 s here): a stop
that came during the store's read then waited on the depth read and on the batch's write too, and the node's
stop took 28 s in CI, past a supervisor's grace. The pool is the real redis-py one, spied on: each connection
taken from it is one round trip begun."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from common.config import Settings
from common.metrics import Metrics
from common.queues import CAMERA_STATE_KEY, connect_redis
from ingest import job_packer
from ingest.cameras import CameraConfig
from ingest.node import IngestNode
from tests.helpers import wait_for
from tests.ingest.helpers import taken_connections
from tests.servers import PrivateRedis

TIMEOUT_S = 1.0
"""The node's Redis timeout here (INGEST_REDIS_TIMEOUT_S, 10 s, in the product)."""


@contextmanager
def stalled(server: PrivateRedis) -> Iterator[None]:
    """`server` answers nothing within (SIGSTOP), as a frozen host or a full disk; answers again after."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


def footage_node(server: PrivateRedis, clip: Any) -> tuple[IngestNode, redis.Redis]:
    connection = connect_redis(server.url, timeout_s=TIMEOUT_S)
    settings = Settings.load({}, redis_url=server.url, frames_per_job=2, max_batch_wait_ms=50, max_queue_depth=256)
    camera = CameraConfig(id="cam", source=str(clip[0]), sample_fps=10, loop=True)
    return IngestNode([camera], settings, connection, connection, Metrics(), None), connection


def stop_during(
    node: IngestNode, owner: Any, name: str, server: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[float, Any]]:
    """`owner.name` (a round trip of the packer's loop) wrapped: once jobs flow, Redis stalls and the node is
    stopped while that call waits (the SIGTERM's moment). Returned: filled with (when the call returned, what it
    returned or raised)."""
    real: Callable[..., Any] = getattr(owner, name)
    stopped: list[tuple[float, Any]] = []

    def as_the_stop_comes(*args: Any, **kwargs: Any) -> Any:
        if node.summary.jobs < 2 or stopped or kwargs.get("pipeline") is not None:  # (a pipeline's: no round trip)
            return real(*args, **kwargs)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        node.stop.set()
        if name == "renew":
            node.claims.next_round_at = 0.0  # the round due now, as one that began just before the stop
        try:
            answer = real(*args, **kwargs)
        except redis.RedisError as error:
            stopped.append((time.monotonic(), error))
            raise
        stopped.append((time.monotonic(), answer))
        return answer

    monkeypatch.setattr(owner, name, as_the_stop_comes)
    return stopped


CALLS = {
    "the store's read": (lambda node: node.packer.room, "read"),
    "the claims' renewal": (lambda node: node.claims, "renew"),
    "the queued job's statistics": (lambda node: job_packer, "add_stats"),  # (a review: a second wait after it)
}


@pytest.mark.parametrize("call", CALLS)
def test_a_stop_during_an_unanswered_round_trip_asks_that_redis_nothing_more(
    redis_server, demo_clip, call, monkeypatch
):
    node, connection = footage_node(redis_server, demo_clip)
    owner, name = CALLS[call][0](node), CALLS[call][1]
    stopped = stop_during(node, owner, name, redis_server, monkeypatch)
    taken = taken_connections(connection)
    runner = threading.Thread(target=node.run, kwargs={"max_seconds": 60.0}, daemon=True)
    runner.start()
    try:
        wait_for(lambda: bool(stopped), 30, f"the stop during {call}")
        runner.join(30)
        assert not runner.is_alive()
    finally:
        assert redis_server.process is not None
        os.kill(redis_server.process.pid, signal.SIGCONT)
    stopped_at, answer = stopped[0]
    unanswered = {"read": answer is True, "renew": node.claims.stalled(), "add_stats": isinstance(answer, Exception)}
    assert unanswered[name]  # the call did reach the stalled Redis, and waited its timeout out
    after = [moment - stopped_at for moment in taken if moment > stopped_at]
    assert after == []  # (the depth read, then the batch's write, each waited 1 s more before)


def test_a_cameras_state_waits_on_no_redis_and_goes_out_with_the_next_depth_read(redis_server, demo_clip):
    node, connection = footage_node(redis_server, demo_clip)
    taken = taken_connections(connection)
    with stalled(redis_server):
        node.set_state(node.cameras[0], "reconnecting", errors=3)  # a camera thread's: it waited 1 s here
    assert taken == []
    assert connection.hget(CAMERA_STATE_KEY, "cam") is None
    node.packer.refresh_depth()
    stored = connection.hget(CAMERA_STATE_KEY, "cam")
    assert stored is not None and json.loads(stored)["state"] == "reconnecting"
    assert json.loads(stored)["errors"] == 3

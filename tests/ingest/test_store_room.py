"""An ingest node's reads of the frame store's room (ingest/store_room.py) where that Redis refuses INFO or stalls,
on private redis-servers: a refusal is not asked again (each was counted, and AlprRedisRefusing fired for ever), and
a frozen store does not hold the node's stop (each read waited its 10 s timeout, every turn of the packer's loop)."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

from common import defaults
from common.config import Settings
from common.metrics import Metrics
from common.queues import CAMERA_STATE_KEY, connect_redis
from common.redis_watch import watch_redis
from ingest.cameras import CameraConfig
from ingest.node import IngestNode
from ingest.store_room import StoreRoom
from tests.helpers import wait_for
from tests.ingest.helpers import taken_connections
from tests.servers import PrivateRedis


def test_a_store_refusing_info_is_asked_once_and_counted_once(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path, ["--maxmemory", "100mb", "--maxmemory-policy", "noeviction"])
    server.start()
    try:
        connect_redis(server.url).execute_command("ACL", "SETUSER", "ingest", "on", ">pw", "~*", "+@all", "-info")
        frames = connect_redis(server.url.replace("redis://", "redis://ingest:pw@"))
        metrics = Metrics()
        watch_redis(frames, metrics, "frame_store", back_pressure=True)  # as alpr/ingest_command.py watches it
        room = StoreRoom(frames)
        for _ in range(240):  # two minutes of reads, one each QUEUE_DEPTH_REFRESH_S
            room.read()
        refused = metrics.registry.get_sample_value(
            "alpr_redis_refused_total", {"redis": "frame_store", "reason": "no_permission"}
        )
        assert refused == 1 and room.unreadable and not room.full
    finally:
        server.stop()


def test_a_frozen_frame_store_does_not_hold_the_nodes_stop(tmp_path: Path, demo_clip) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "queues").mkdir()
    (tmp_path / "store").mkdir()
    queues_server, store_server = PrivateRedis(tmp_path / "queues"), PrivateRedis(tmp_path / "store")
    queues_server.start()
    store_server.start()
    try:
        settings = Settings.load({}, redis_url=queues_server.url, frame_store_url=store_server.url, max_queue_depth=256)
        queues = connect_redis(queues_server.url, timeout_s=defaults.INGEST_REDIS_TIMEOUT_S)
        frames = connect_redis(store_server.url, timeout_s=defaults.INGEST_REDIS_TIMEOUT_S)
        camera = CameraConfig(id="footage", source=str(demo_clip[0]), sample_fps=10, loop=True)
        node = IngestNode([camera], settings, queues, frames, Metrics(), None)
        runner = threading.Thread(target=node.run, kwargs={"max_seconds": 6.0}, daemon=True)
        began = time.monotonic()
        runner.start()
        time.sleep(1.0)
        os.kill(store_server.process.pid, signal.SIGSTOP)  # the store answers nothing, as a frozen host
        try:
            runner.join(60)
            assert not runner.is_alive(), (
                "the node did not stop within 60 s"
            )  # 11-30 s: one write's, one read's timeout
        finally:
            os.kill(store_server.process.pid, signal.SIGCONT)
        assert time.monotonic() - began < 60
    finally:
        store_server.stop()
        queues_server.stop()


def test_a_frame_store_away_leaves_the_cameras_states_going_to_the_queues_redis(tmp_path: Path, demo_clip) -> None:  # type: ignore[no-untyped-def]
    """The cameras' states reach the queues' Redis with the packer's depth reads alone (a camera thread waits on
    no Redis), and none runs while it waits a batch's retry out: with the frame store's own Redis away, `alpr
    status` showed every camera as the outage found it (a review: a failing camera's errors stuck at 1 while the
    node counted 5). They go on meanwhile, each QUEUE_DEPTH_REFRESH_S, to the queues' Redis that answers."""
    (tmp_path / "queues").mkdir()
    (tmp_path / "store").mkdir()
    queues_server, store_server = PrivateRedis(tmp_path / "queues"), PrivateRedis(tmp_path / "store")
    queues_server.start()
    store_server.start()
    with socket.socket() as probe:  # a port nothing listens on: a camera that fails and fails again
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    try:
        queues, frames = connect_redis(queues_server.url, timeout_s=1.0), connect_redis(store_server.url, timeout_s=1.0)
        settings = Settings.load({}, redis_url=queues_server.url, frame_store_url=store_server.url, frames_per_job=2,
                                 max_batch_wait_ms=50, max_queue_depth=256)  # fmt: skip
        footage = CameraConfig(id="footage", source=str(demo_clip[0]), sample_fps=10, loop=True)
        gate = CameraConfig(id="gate", source=f"http://127.0.0.1:{dead_port}/video", sample_fps=5)
        node = IngestNode([footage, gate], settings, queues, frames, Metrics(), None)
        runner = threading.Thread(target=node.run, kwargs={"max_seconds": 60.0}, daemon=True)
        runner.start()

        def gate_errors() -> int:
            stored = queues.hget(CAMERA_STATE_KEY, "gate")
            return -1 if stored is None else int(json.loads(stored)["errors"])

        try:
            wait_for(lambda: node.summary.jobs >= 2 and gate_errors() >= 1, 30, "jobs, and the gate's first error")
            store_server.stop()  # the packer now waits each batch's retry out
            wait_for(lambda: node.packer.redis_down, 15, "the store's outage met")
            at_outage = gate_errors()
            wait_for(lambda: gate_errors() >= at_outage + 2, 20, "the gate's later errors in the queues' Redis")
        finally:
            node.stop.set()
            runner.join(30)
        assert not runner.is_alive()
    finally:
        store_server.stop()
        queues_server.stop()


def test_a_frozen_queues_redis_is_not_written_the_states_at_each_retry_of_a_store_away(
    tmp_path: Path, demo_clip
) -> None:  # type: ignore[no-untyped-def]
    """The frame store's own Redis away and the queues' frozen too: each batch's retry wrote the cameras' states
    to the frozen queues' Redis first, waiting its timeout (1 s here, 10 s in the product) each time, so the
    retries and a stop came that much later (a review: retries 5.5 s apart for 1 s and 2 s of backoff). After
    one unanswered write, none for STATES_RETRY_S."""
    (tmp_path / "queues").mkdir()
    (tmp_path / "store").mkdir()
    queues_server, store_server = PrivateRedis(tmp_path / "queues"), PrivateRedis(tmp_path / "store")
    queues_server.start()
    store_server.start()
    try:
        queues, frames = connect_redis(queues_server.url, timeout_s=1.0), connect_redis(store_server.url, timeout_s=1.0)
        settings = Settings.load({}, redis_url=queues_server.url, frame_store_url=store_server.url, frames_per_job=2,
                                 max_batch_wait_ms=50, max_queue_depth=256)  # fmt: skip
        camera = CameraConfig(id="footage", source=str(demo_clip[0]), sample_fps=10, loop=True)
        node = IngestNode([camera], settings, queues, frames, Metrics(), None)
        runner = threading.Thread(target=node.run, kwargs={"max_seconds": 60.0}, daemon=True)
        runner.start()
        try:
            wait_for(lambda: node.summary.jobs >= 2, 30, "jobs")
            store_server.stop()  # refused at once: the packer waits each batch's retry out (1 s, 2 s, 4 s...)
            wait_for(lambda: node.packer.redis_down, 15, "the store's outage met")
            taken = taken_connections(queues)
            assert queues_server.process is not None
            os.kill(queues_server.process.pid, signal.SIGSTOP)
            try:
                time.sleep(9.0)  # three retries' waits at least
            finally:
                os.kill(queues_server.process.pid, signal.SIGCONT)
        finally:
            node.stop.set()
            runner.join(30)
        assert not runner.is_alive()
        assert len(taken) == 1, taken  # one write went unanswered; none after it (one a retry before)
    finally:
        store_server.stop()
        queues_server.stop()

"""An ingest node's cameras do not reconnect in lockstep (a review: 10 cameras behind one dead recorder all
hit it within the same second at 2.5, 6.5, 10.5, 16.5, 25.5 s, each attempt a child process): their first
opens are spread at start, their reconnect waits and those after refused credentials jittered. Checked by
bounds and seeded draws, not by timing."""

from __future__ import annotations

import http.server
import logging
import random
import re
import threading
import time

import pytest

from common import defaults
from common.config import Settings
from common.metrics import Metrics
from common.queues import connect_redis
from ingest.camera_sampling import start_spread_s
from ingest.cameras import CameraConfig
from ingest.node import IngestNode
from ingest.reconnect import SourceKeeper
from tests.helpers import http_server, wait_for


def test_the_first_opens_of_a_nodes_cameras_are_spread_a_little_and_a_lone_camera_waits_not():
    assert start_spread_s(1) == 0.0 and start_spread_s(0) == 0.0
    longest = defaults.CAMERA_START_SPREAD_S * 9
    waits = [start_spread_s(10, random.Random(seed)) for seed in range(10)]
    assert all(0.0 <= wait <= longest for wait in waits) and len(set(waits)) == 10
    assert max(waits) - min(waits) > longest / 4  # (these seeds: spread, not bunched)
    assert waits == [start_spread_s(10, random.Random(seed)) for seed in range(10)]  # seeded: repeatable
    many = [start_spread_s(1000, random.Random(seed)) for seed in range(50)]
    assert max(many) <= defaults.CAMERA_START_SPREAD_MAX_S < 1000 * defaults.CAMERA_START_SPREAD_S


def test_a_nodes_cameras_reconnect_jittered_not_in_lockstep(redis_url):
    """The node's keepers: jittered backoffs, each camera's attempts at its own times (the exact schedule
    put all ten at 1, 3, 7, 15, 31 s after the drop); live unless a file or declared footage."""
    cameras = [CameraConfig(id=f"c{index}", source=f"http://127.0.0.1:9/cam{index}.mjpg") for index in range(10)]
    others = [CameraConfig(id="rec", source="http://127.0.0.1:9/export.mp4", footage=True),
              CameraConfig(id="file", source="/srv/video/depot.mp4")]  # fmt: skip
    connection = connect_redis(redis_url)
    node = IngestNode(cameras + others, Settings.load({}, redis_url=redis_url), connection, connection, Metrics(),
                      None)  # fmt: skip
    keepers = [node.source_keeper(camera, node.stop.camera(camera.id)) for camera in cameras + others]
    assert [keeper.live for keeper in keepers] == [True] * 10 + [False, False]
    schedules = []
    for seed, keeper in enumerate(keepers[:10]):
        assert keeper.backoff.jitter == keeper.credentials_jitter == defaults.RECONNECT_JITTER > 0
        keeper.backoff.rng = random.Random(seed)
        waits = [keeper.backoff.next_delay() for _ in range(5)]
        exact = [min(defaults.RECONNECT_BACKOFF_S[1], defaults.RECONNECT_BACKOFF_S[0] * 2**n) for n in range(5)]
        assert all((1 - defaults.RECONNECT_JITTER) * e <= w <= e for w, e in zip(waits, exact, strict=True))
        schedules.append([sum(waits[: n + 1]) for n in range(5)])
    for attempt in range(5):  # each attempt of the ten cameras spread over a second and more, not one instant
        times = [schedule[attempt] for schedule in schedules]
        assert max(times) - min(times) > 0.2 * (attempt + 1), (attempt, times)


@pytest.fixture()
def refusing_camera():  # type: ignore[no-untyped-def]
    class Camera(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Camera) as base:
        yield f"{base.replace('://', '://admin:WrongPass@')}/mjpeg"


def test_the_retry_after_refused_credentials_is_jittered(refusing_camera, caplog):
    """Each camera's next login after a refusal at its own time: CREDENTIALS_RETRY_S lengthened by a seeded
    random share up to the jitter (the ERROR line says when), not every camera at the same instant; never
    shortened (cut by up to half, a review: 150 s, the wait that guards against a camera's lockout)."""
    caplog.set_level(logging.ERROR, logger="ingest.reconnect")
    said = []
    for seed in (1, 2):
        stop = threading.Event()
        keeper = SourceKeeper(refusing_camera, 2.0, "gate", stop, credentials_jitter=0.5, rng=random.Random(seed),
                              on_state=lambda state, errors, stop=stop: stop.set())  # fmt: skip
        keeper.run(lambda source: None)
        expected = defaults.CREDENTIALS_RETRY_S * random.Random(seed).uniform(1.0, 1.5)
        line = caplog.records[-1].getMessage()
        assert "WrongPass" not in line and (found := re.search(r"tried again in (\d+) s", line)), line
        assert int(found.group(1)) == round(expected) and 300 < round(expected) <= 450
        said.append(int(found.group(1)))
    assert said[0] != said[1]


def test_only_the_nodes_first_claim_round_is_spread_a_camera_won_later_opens_at_once(redis_url, monkeypatch):
    """The spread keeps a starting node's cameras from opening in one instant; a camera won in a later round
    (taken over from a dead node, won back) waited it too, dark meanwhile up to CAMERA_START_SPREAD_MAX_S
    more (a review). On a private Redis, through real rounds of claims (a spread of up to 600 s here, so
    that a wait shows: seeded, the first round's draws are 374 and 445 s)."""
    monkeypatch.setattr(defaults, "CAMERA_START_SPREAD_S", 600.0)
    monkeypatch.setattr(defaults, "CAMERA_START_SPREAD_MAX_S", 600.0)
    cameras = [CameraConfig(id=f"c{index}", source=f"http://127.0.0.1:9/cam{index}.mjpg") for index in range(2)]
    connection = connect_redis(redis_url)
    settings = Settings.load({}, redis_url=redis_url)

    def opened(metrics: Metrics) -> list[float]:  # each camera's source errors: refused at once, once opened
        return [metrics.registry.get_sample_value("alpr_source_errors_total", {"camera": c.id}) or 0 for c in cameras]

    first_metrics = Metrics()
    first = IngestNode(cameras, settings, connection, connection, first_metrics, None)
    random.seed(5)  # (start_spread_s draws from the module's generator)
    runner = threading.Thread(target=first.run, kwargs={"max_seconds": 30}, daemon=True)
    runner.start()
    time.sleep(3)
    assert opened(first_metrics) == [0, 0] and sorted(first.camera_threads) == ["c0", "c1"]  # spread: waiting
    first.stop.set()
    runner.join(15)  # its claims released
    later_metrics = Metrics()
    later = IngestNode(cameras, settings, connection, connection, later_metrics, None)
    found = later.claims.claim()
    assert found is not None and sorted(c.camera for c in found.won) == ["c0", "c1"]
    try:
        later.claimed(found)  # a round after the node's first, as its JobPacker hands them on
        wait_for(lambda: min(opened(later_metrics)) >= 1, 10, "both cameras won later opened at once")
    finally:
        later.stop.set()
        for thread in later.threads:
            thread.join(10)

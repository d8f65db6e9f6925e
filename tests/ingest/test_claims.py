"""One camera, one ingest node (ingest/claims.py), on a private Redis with real nodes: two nodes given
one camera both sampled it, and their watermarks for it overwrote each other; claimed all or nothing, a
node whose file overlapped another's was refused and its other cameras left dark. Processes killed and
nodes with conflicting settings: tests/distributed/test_takeover.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np

from alpr.cli import main
from common.config import Settings
from common.metrics import Metrics
from common.queues import connect_redis
from ingest.cameras import CameraConfig
from ingest.claims import CLAIM_PREFIX
from ingest.node import IngestNode, NodeSummary
from tests.helpers import wait_for, write_cameras


def looping_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "shots"
    folder.mkdir(exist_ok=True)
    cv2.imwrite(str(folder / "a.jpg"), np.full((120, 160, 3), 90, np.uint8))
    return folder


def node(redis_url: str, folder: Path, camera_ids: tuple[str, ...] = ("gate",)) -> IngestNode:
    connection = connect_redis(redis_url)
    cameras = [CameraConfig(id=camera_id, source=str(folder), loop=True, sample_fps=5) for camera_id in camera_ids]
    return IngestNode(cameras, Settings.load({}, redis_url=redis_url), connection, connection, Metrics(), None)


def start(ingest: IngestNode) -> tuple[threading.Thread, list[NodeSummary]]:
    result: list[NodeSummary] = []
    runner = threading.Thread(target=lambda: result.append(ingest.run()), daemon=True)
    runner.start()
    return runner, result


def test_nodes_with_overlapping_cameras_each_sample_theirs_and_stand_by_for_the_others(
    redis_url, tmp_path, monkeypatch, caplog
):
    """Claimed all or nothing, the second node of two with overlapping cameras files refused to start: the
    camera only it named was never sampled for as long as the first lived (a review). Each camera is
    claimed apart: the second samples its own, stands by for the shared one (said once, naming the node
    that holds it) and takes it over at its first renewal after the first node gave it up."""
    caplog.set_level("INFO", logger="ingest.claims")
    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_RENEW_S", 0.3)
    folder = looping_folder(tmp_path)
    first = node(redis_url, folder, ("gate", "yard"))
    runner, _ = start(first)
    connection = connect_redis(redis_url)
    wait_for(lambda: connection.get(CLAIM_PREFIX + "yard") == first.node_id.encode(), 10, "the first node's claims")
    second = node(redis_url, folder, ("dock", "yard"))
    second_runner, second_result = start(second)
    wait_for(lambda: second.summary.ingested["dock"] > 0, 10, "the second node sampling its own camera")
    time.sleep(1.0)  # renewals: yard stays the first node's, sampled by it alone
    assert connection.get(CLAIM_PREFIX + "yard") == first.node_id.encode()
    assert second.summary.ingested["yard"] == 0 and second_runner.is_alive()
    assert 0 < connection.ttl(CLAIM_PREFIX + "yard") <= 30  # lapses if its node dies
    held = [r.getMessage() for r in caplog.records if "held by another live node" in r.getMessage()]
    assert held == [f"cameras held by another live node: yard (ingest node {first.node_id!r}); this node stands"
                    " by for it and takes it over within 30 s of its holder stopping or dying"]  # fmt: skip
    assert second.metrics.camera_claimed.labels(camera="yard")._value.get() == 0
    assert second.metrics.camera_claimed.labels(camera="dock")._value.get() == 1
    first.stop.set()
    runner.join(30)
    wait_for(lambda: second.summary.ingested["yard"] > 0, 10, "the second node taking yard over")
    assert connection.get(CLAIM_PREFIX + "yard") == second.node_id.encode()
    assert f"camera yard: claimed (ingest node {first.node_id!r}, which sampled it before, gave it up)" in caplog.text
    assert second.metrics.camera_takeovers.labels(camera="yard")._value.get() == 0  # given up: no takeover
    second.stop.set()
    second_runner.join(30)
    assert second_result and second_result[0].lost == {}
    assert connection.get(CLAIM_PREFIX + "yard") is None and connection.get(CLAIM_PREFIX + "dock") is None


def test_a_frozen_node_loses_one_camera_to_a_standby_and_samples_its_other_on_resuming(
    redis_url, tmp_path, monkeypatch, caplog
):
    """Split brain: a node that stops renewing (frozen, cut off) has its claims lapse; the standby takes one
    camera over (WARNING naming the holder, counted). The frozen node, resumed, stopped whole: its other
    camera dark until restarted. It stops the camera taken alone (its thread ended, its state and its
    claimed metric let go; one WARNING), samples the other on, and takes the camera back once the
    standby gives it up."""
    from ingest.claims import CameraClaims

    caplog.set_level("INFO", logger="ingest")
    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_RENEW_S", 0.3)
    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_TTL_S", 2)
    folder = looping_folder(tmp_path)
    first = node(redis_url, folder, ("gate", "yard"))
    frozen = threading.Event()
    renew = first.claims.renew
    monkeypatch.setattr(first.claims, "renew", lambda: None if frozen.is_set() else renew())
    runner, result = start(first)
    connection = connect_redis(redis_url)
    wait_for(lambda: first.summary.ingested["yard"] > 0, 10, "the first node sampling")
    second = node(redis_url, folder, ("yard",))
    second_runner, _ = start(second)
    time.sleep(1.0)
    assert second.summary.ingested["yard"] == 0
    frozen.set()
    wait_for(lambda: connection.get(CLAIM_PREFIX + "yard") == second.node_id.encode(), 10, "the takeover")
    assert f"camera yard: taken over from ingest node {first.node_id!r}, which stopped renewing" in caplog.text
    assert second.metrics.camera_takeovers.labels(camera="yard")._value.get() == 1
    wait_for(lambda: second.summary.ingested["yard"] > 0, 10, "the standby sampling")
    frozen.clear()  # resumed: its next renewal finds yard another's
    wait_for(lambda: first.metrics.camera_claimed.labels(camera="yard")._value.get() == 0, 10, "yard found lost")
    wait_for(lambda: not any(t.is_alive() for t in first.threads if t.name == "camera-yard"), 10, "yard's thread end")
    yard, gate = first.summary.ingested["yard"], first.summary.ingested["gate"]
    time.sleep(1.0)
    assert runner.is_alive() and first.summary.ingested["yard"] == yard and first.summary.ingested["gate"] > gate
    lost = [r for r in caplog.records if r.getMessage().startswith("camera yard: claimed by ingest node")]
    assert [(r.levelname, r.getMessage()) for r in lost] == [("WARNING", (
        f"camera yard: claimed by ingest node {second.node_id!r} since this node's claim on it lapsed (Redis away"
        " or this node frozen past 2 s): this node stops sampling it and stands by for it; its other cameras go on"
    ))]  # fmt: skip
    assert f"yard (ingest node {second.node_id!r})" not in caplog.text  # not told again as held
    assert first.metrics.camera_claimed.labels(camera="yard")._value.get() == 0
    assert first.metrics.camera_claimed.labels(camera="gate")._value.get() == 1
    assert "yard" not in first.states and "gate" in first.states  # yard's state is the standby's to write
    assert first.summary.lost == {"yard": second.node_id}
    assert isinstance(first.claims, CameraClaims) and first.claims.held == {"gate"}
    second.stop.set()  # gives yard up: the first node, standing by, takes it back
    second_runner.join(30)
    wait_for(lambda: first.summary.ingested["yard"] > yard, 10, "the first node sampling yard again")
    assert connection.get(CLAIM_PREFIX + "yard") == first.node_id.encode()
    assert first.metrics.camera_claimed.labels(camera="yard")._value.get() == 1
    first.stop.set()
    runner.join(30)
    assert result and result[0].lost == {}
    assert connection.get(CLAIM_PREFIX + "yard") is None and connection.get(CLAIM_PREFIX + "gate") is None


def test_a_node_whose_every_camera_another_node_claimed_meanwhile_stands_by_for_it(
    redis_url, tmp_path, monkeypatch, caplog
):
    """Its claims lapsed (Redis away past their 30 s) and another node took its only camera: it stopped
    (exit 1). It stands by, sampling nothing, as a node started with every camera held elsewhere, and
    takes the camera back once that claim lapses."""
    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_RENEW_S", 0.2)
    ingest = node(redis_url, looping_folder(tmp_path))
    runner, result = start(ingest)
    connection = connect_redis(redis_url)
    wait_for(lambda: ingest.summary.ingested["gate"] > 0, 10, "its sampling")
    connection.set(CLAIM_PREFIX + "gate", "other-node", px=2500)
    wait_for(lambda: ingest.metrics.camera_claimed.labels(camera="gate")._value.get() == 0, 10, "gate lost")
    assert "this node stops sampling it and stands by for it; it samples no camera now" in caplog.text
    sampled = ingest.summary.ingested["gate"]
    time.sleep(1.0)
    assert runner.is_alive() and ingest.summary.ingested["gate"] == sampled
    assert ingest.summary.lost == {"gate": "other-node"}
    assert connection.get(CLAIM_PREFIX + "gate") == b"other-node"  # not released: not its own
    wait_for(lambda: ingest.summary.ingested["gate"] > sampled, 10, "gate taken back once that claim lapsed")
    assert connection.get(CLAIM_PREFIX + "gate") == ingest.node_id.encode()
    ingest.stop.set()
    runner.join(30)
    assert result and result[0].lost == {}


def test_alpr_ingest_whose_every_camera_another_node_samples_stands_by(redis_url, tmp_path, capsys, caplog):
    """It exited 2 at once ("give each node its own cameras"): a standby node crash-looped, serving no
    metrics, and systemd's start limit gave it up. It stays up, samples nothing, and says why."""
    connection = connect_redis(redis_url)
    connection.set(CLAIM_PREFIX + "gate", "host-1-2-3", ex=30)
    cameras = write_cameras(tmp_path / "cameras.yaml", [{"id": "gate", "source": str(looping_folder(tmp_path))}])
    started = time.monotonic()
    assert main(["ingest", "--cameras", str(cameras), "--redis-url", redis_url, "--max-seconds", "3"]) == 0
    assert time.monotonic() - started >= 3  # stood by until its time was up
    out = capsys.readouterr().out
    assert "every camera of this node is held by another live node: gate (ingest node 'host-1-2-3')" in caplog.text
    assert "gate: 0 frames queued, 0 skipped" in out
    assert connection.get(CLAIM_PREFIX + "gate") == b"host-1-2-3"


def test_a_node_started_while_redis_is_away_claims_its_cameras_once_it_answers(redis_server, monkeypatch, caplog):
    """A node waits a Redis outage out (its cameras skip meanwhile): it claims its cameras when Redis is back."""
    from ingest.claims import CameraClaims

    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_RENEW_S", 0.0)
    claims = CameraClaims(connect_redis(redis_server.url, timeout_s=1), "node-1", ["gate"])
    redis_server.stop()
    claims.claim()
    assert "cameras not claimed yet" in caplog.text
    redis_server.start()
    found = claims.renew()
    assert found is not None and not found.lost
    assert connect_redis(redis_server.url).get(CLAIM_PREFIX + "gate") == b"node-1"


def test_a_node_restarted_after_a_crash_takes_its_dead_predecessors_cameras_over(redis_url, tmp_path, caplog):
    """The node id holds the pid, so a node restarted right after a crash (a kill -9, an OOM kill) could not
    tell its own dead predecessor: refused for up to 30 s (exit 2), and under systemd's default start limit
    (5 starts in 10 s) the unit stayed down (a review). A live node of another process is still refused."""
    import os
    import signal

    from tests.helpers import alpr_process

    camera = {"id": "gate", "source": str(looping_folder(tmp_path)), "loop": True, "sample_fps": 5}
    command = ["ingest", "--cameras", str(write_cameras(tmp_path / "cameras.yaml", [camera])), "--redis-url", redis_url]
    connection = connect_redis(redis_url)
    first = alpr_process(dict(os.environ), command, tmp_path / "first.log")
    try:
        wait_for(lambda: connection.get(CLAIM_PREFIX + "gate") is not None, 60, "the first node's claim")
        holder = connection.get(CLAIM_PREFIX + "gate")
        assert holder is not None
        assert main([*command, "--max-seconds", "2"]) == 0  # alive: stood by, sampled nothing
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
        first.wait(10)
    assert connection.get(CLAIM_PREFIX + "gate") == holder  # left to lapse, 30 s
    started = time.monotonic()
    assert main([*command, "--max-seconds", "2"]) == 0
    assert time.monotonic() - started < 15
    assert f"camera gate: taken over from ingest node {holder.decode()!r}, of this host, which ended" in caplog.text
    assert connection.get(CLAIM_PREFIX + "gate") is None  # released once it stopped
    from ingest.claims import NODE_PREFIX

    assert connection.keys(NODE_PREFIX + "*") == [NODE_PREFIX.encode() + holder]  # the dead node's, lapsing


def test_a_process_is_judged_ended_only_where_it_can_be_told():
    """Only on this host's boot, in its pid namespace: there a pid gone, ended (a zombie) or used again by a
    process started at another time (a container's process 1 after a restart) is an ended node; anywhere
    else nothing is concluded, and a live node elsewhere keeps its cameras."""
    import dataclasses
    import subprocess

    from ingest.node_process import NodeProcess, started_ticks

    here = NodeProcess.this_process()
    assert here is not None and not here.ended()
    assert dataclasses.replace(here, started_ticks=here.started_ticks + 1).ended()  # this pid, another process
    child = subprocess.Popen(["sleep", "60"])
    try:
        found = started_ticks(child.pid)
        assert found is not None
        alive = dataclasses.replace(here, pid=child.pid, started_ticks=found[0])
        assert not alive.ended()
        child.kill()
        wait_for(lambda: (started_ticks(child.pid) or (0, ""))[1] == "Z", 10, "the child to be a zombie")
        assert alive.ended()  # ended, not yet reaped
        child.wait(10)
        assert alive.ended()  # gone
        for elsewhere in ({"host": "another-host"}, {"boot_id": "another-boot"}, {"pid_namespace": "pid:[1]"}):
            assert not dataclasses.replace(alive, **elsewhere).ended(), elsewhere
    finally:
        child.kill()
        child.wait(10)
    assert NodeProcess.from_json(here.as_json()) == here
    for record in (None, "{}", "not json", '{"pid": 1}', here.as_json().replace(f'"pid": {here.pid}', '"pid": -1')):
        assert NodeProcess.from_json(record) is None, record


def test_alpr_status_lists_the_cameras_no_live_node_claims(redis_url, tmp_path, monkeypatch, capsys):
    """A camera whose node died with none standing by, or that only a refused node named, was sampled by
    none and `alpr status` listed it nowhere (a review: it lists cameras by their states and counts)."""
    from ingest.claims import WANTED_PREFIX

    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_RENEW_S", 0.3)
    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_TTL_S", 1)
    ingest = node(redis_url, looping_folder(tmp_path), ("gate", "yard"))
    monkeypatch.setattr(ingest.claims, "renew", lambda: None)  # it dies, as far as its claims tell
    runner, _ = start(ingest)
    connection = connect_redis(redis_url)
    wait_for(lambda: ingest.summary.ingested["gate"] > 0, 10, "the node sampling")
    wait_for(lambda: connection.get(CLAIM_PREFIX + "gate") is None, 10, "its claims lapsing")
    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_TTL_S", 30)  # a claim of 30 s is a node's again
    connection.set(CLAIM_PREFIX + "yard", "node-2", ex=30)  # held by another live node
    connection.set(WANTED_PREFIX + "dock", "node-3|1700000000", ex=60)  # named by a node, never claimed
    assert main(["status", "--interval", "0.1", "--redis-url", redis_url]) == 0
    listed = capsys.readouterr().out.partition("cameras no live ingest node claims (sampled by none):")[2]
    rows = {line.split()[0]: line for line in listed.splitlines() if line.startswith("  ")}
    assert set(rows) == {"gate", "dock"}, listed
    assert f"last held by ingest node {ingest.node_id}, which stopped renewing" in rows["gate"]
    assert "never claimed" in rows["dock"]
    ingest.stop.set()
    runner.join(30)

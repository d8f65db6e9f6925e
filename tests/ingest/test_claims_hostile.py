"""Camera claims (ingest/claims.py) against a client of the queues' Redis that holds no job key and writes
the claims' own keys (a review): a wrong-typed key switched claims off on every node (each camera sampled
by every node), a forged record crashed `alpr ingest` at its first round on every restart, a claim with no
expiry kept a camera dark for ever, and a huge holder record was fetched whole every renewal. On a private
redis-server, with real `alpr ingest` processes where the harm was a crash; a node of an earlier version
(no holder record) taken over from was not reported."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable

import pytest
import redis

from common.queues import INGEST_NODES_KEY, connect_redis
from ingest.claims import CLAIM_PREFIX, HOLDER_PREFIX, NODE_PREFIX, CameraClaims
from ingest.node_process import NodeProcess
from tests.helpers import alpr_process, wait_for, write_cameras
from tests.ingest.test_claims import looping_folder, node, start

DEEP = "[" * 1000
"""JSON nested past Python's recursion limit, within the 1 KB a node record may hold."""


def forged_process(**fields: object) -> str:
    """A node record naming a process of this host's boot and pid namespace, as a standby would judge."""
    here = NodeProcess.this_process()
    assert here is not None
    return json.dumps({**dataclasses.asdict(here), **fields})


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait(10)
    return child.pid


def held_by_evil(connection: redis.Redis) -> None:
    connection.set(CLAIM_PREFIX + "cam-a", "evil", ex=25)


ATTACKS: dict[str, tuple[Callable[[redis.Redis], None], bool]] = {
    "holder settings nested 1000 deep": (
        lambda c: (held_by_evil(c), c.hset(HOLDER_PREFIX + "cam-a", mapping={"node": "evil", "settings": DEEP})),
        False,
    ),
    "node record nested 1000 deep": (lambda c: (held_by_evil(c), c.set(NODE_PREFIX + "evil", DEEP)), False),
    "node record of pid 2**31": (
        lambda c: (held_by_evil(c), c.set(NODE_PREFIX + "evil", forged_process(pid=2**31))),
        False,
    ),
    "holder record renewed '²'": (
        lambda c: c.hset(HOLDER_PREFIX + "cam-a", mapping={"node": "evil", "renewed": "²", "released": "0"}),
        True,
    ),
}
"""Each forged record, and whether cam-a is this node's after it (else held by 'evil', stood by for).
Each made `alpr ingest` exit 1 at its first round of claims: RecursionError (a fingerprint, a node record),
OverflowError (os.kill of a pid past C's int), ValueError (float('²'), which str.isdigit passed)."""


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_forged_claim_record_crashes_no_alpr_ingest(attack, redis_url, tmp_path):
    forge, ours = ATTACKS[attack]
    connection = connect_redis(redis_url)
    forge(connection)
    cameras = [{"id": camera_id, "source": str(looping_folder(tmp_path)), "loop": True, "sample_fps": 5}
               for camera_id in ("cam-a", "cam-b")]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    env.update({"ALPR_REDIS_URL": redis_url, "ALPR_LEDGER_SPOOL_DIR": str(tmp_path / "spool")})
    args = ["ingest", "--cameras", str(write_cameras(tmp_path / "cameras.yaml", cameras)), "--max-seconds", "3"]
    process = alpr_process(env, args, tmp_path / "ingest.log")
    assert process.wait(60) == 0, (tmp_path / "ingest.log").read_text()[-3000:]
    out = (tmp_path / "ingest.log").read_text()
    assert "cam-b: 0 frames queued" not in out and "cam-b:" in out  # its other camera sampled
    if ours:
        assert "cam-a: 0 frames queued" not in out and "camera cam-a: taken over from ingest node 'evil'" in out
    else:
        assert "cam-a: 0 frames queued" in out and "cam-a (ingest node 'evil')" in out  # stood by for


def test_wrong_typed_keys_leave_each_camera_to_one_node(redis_url, tmp_path, monkeypatch, caplog):
    """`SET alpr:camera-holder:cam-a x` (or `SET alpr:ingest-nodes x`): the round of claims failed with
    WRONGTYPE, each node presumed every camera its own (as with Redis away) and two nodes on one cameras
    file sampled both cameras, renewals failing silently, no node's heartbeat written. A wrong-typed key of
    the claims' is free: replaced; the heartbeat is written whatever the claims do."""
    caplog.set_level("INFO", logger="ingest")
    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_RENEW_S", 0.3)
    connection = connect_redis(redis_url)
    connection.set(HOLDER_PREFIX + "gate", "x")
    connection.hset(CLAIM_PREFIX + "yard", "node", "x")
    connection.set(INGEST_NODES_KEY, "x")
    folder = looping_folder(tmp_path)
    first = node(redis_url, folder, ("gate", "yard"))
    runner, _ = start(first)
    wait_for(lambda: first.summary.ingested["gate"] > 0 and first.summary.ingested["yard"] > 0, 10, "the sampling")
    second = node(redis_url, folder, ("gate", "yard"))
    second_runner, _ = start(second)
    try:
        wait_for(lambda: "this node stands by for them" in caplog.text, 10, "the second node standing by")
        time.sleep(1.0)  # renewals
        assert second.summary.ingested == {} or set(second.summary.ingested.values()) == {0}
        assert connection.get(CLAIM_PREFIX + "gate") == connection.get(CLAIM_PREFIX + "yard") == first.node_id.encode()
        assert connection.type(INGEST_NODES_KEY) == b"zset"
        assert {m.decode() for m in connection.zrange(INGEST_NODES_KEY, 0, -1)} == {first.node_id, second.node_id}
        assert "not claimed yet" not in caplog.text
        assert f"its claim {CLAIM_PREFIX}yard was a hash" in caplog.text
    finally:
        for ingest, thread in ((second, second_runner), (first, runner)):
            ingest.stop.set()
            thread.join(30)


def test_a_claim_round_redis_refuses_takes_no_camera_and_is_said_once(redis_server, monkeypatch, caplog):
    """A round Redis answers with an error (here its memory full: OOM) is no outage: the node presumed
    every camera its own and renewals failed unsaid. It takes none it does not hold, says so once (ERROR),
    and claims them once a round succeeds."""
    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_RENEW_S", 0.0)
    connection = connect_redis(redis_server.url)
    claims = CameraClaims(connection, "node-1", ["gate"])
    connection.config_set("maxmemory", "1")  # noeviction: every write refused
    found = claims.claim()
    assert found is not None and not found.won and claims.held == set()
    assert claims.renew() is None and claims.held == set()
    refused = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(refused) == 1 and "maxmemory" in refused[0].getMessage(), caplog.text
    connection.config_set("maxmemory", "0")
    found = claims.renew()
    assert found is not None and [c.camera for c in found.won] == ["gate"] and claims.held == {"gate"}


def test_a_claim_with_no_expiry_is_taken_at_once(redis_url, tmp_path, monkeypatch, caplog):
    """`SET alpr:camera-claim:gate ghost-node` (no TTL) kept the camera dark for ever, the node saying it
    would take it over within 40 s of its holder stopping. No node's claim outlives CAMERA_CLAIM_TTL_S: a
    claim with no expiry, or a longer one, is no node's, and is taken (a WARNING naming the key)."""
    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_RENEW_S", 0.3)
    connection = connect_redis(redis_url)
    connection.set(CLAIM_PREFIX + "gate", "ghost-node")
    connection.set(CLAIM_PREFIX + "yard", "ghost-node", ex=3600)
    ingest = node(redis_url, looping_folder(tmp_path), ("gate", "yard"))
    runner, _ = start(ingest)
    try:
        wait_for(lambda: ingest.summary.ingested["gate"] > 0 and ingest.summary.ingested["yard"] > 0, 10, "both")
        assert f"its claim {CLAIM_PREFIX}gate, by 'ghost-node', had no expiry" in caplog.text
        assert f"its claim {CLAIM_PREFIX}yard, by 'ghost-node', had 3600 s to live" in caplog.text
        assert "held by another live node" not in caplog.text
        assert 0 < connection.ttl(CLAIM_PREFIX + "gate") <= 30
        assert ingest.metrics.camera_takeovers.labels(camera="gate")._value.get() == 0  # no node's: no takeover
    finally:
        ingest.stop.set()
        runner.join(30)


def test_a_huge_holder_or_node_record_is_not_fetched(redis_url):
    """A 200 MB `settings` field in a holder record was sent whole with every round (every 10 s: the node
    peaked at 728 MB against 149 MB), and a node record's GET had no bound either. Redis now sends a
    field's length past 4 KB instead of it, and no node record past 1 KB."""
    connection = connect_redis(redis_url)
    connection.set(CLAIM_PREFIX + "gate", "evil", ex=25)
    connection.hset(HOLDER_PREFIX + "gate", mapping={"node": "evil", "settings": "x" * 8_000_000})
    connection.set(NODE_PREFIX + "evil", "y" * 8_000_000)
    claims = CameraClaims(connection, "node-1", ["gate"])
    sent = connection.info("stats")["total_net_output_bytes"]
    found = claims.claim()
    sent = connection.info("stats")["total_net_output_bytes"] - sent
    assert found is not None and found.held == {"gate": "evil"}
    assert sent < 64_000, sent


def test_a_claim_overwritten_while_held_is_not_said_to_have_lapsed(redis_url, tmp_path, monkeypatch, caplog):
    """A forged node record ("this node's process has ended") let a standby of this host take a camera
    whose claim was valid: the holder said its claim had lapsed (Redis away or this node frozen), which it
    had not. It says its claim was overwritten while it held it."""
    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_RENEW_S", 0.3)
    folder = looping_folder(tmp_path)
    first = node(redis_url, folder)
    paused = threading.Event()
    renew = first.claims.renew
    monkeypatch.setattr(first.claims, "renew", lambda: None if paused.is_set() else renew())
    runner, _ = start(first)
    second_runner = None
    try:
        connection = connect_redis(redis_url)
        wait_for(lambda: first.summary.ingested["gate"] > 0, 10, "the first node sampling")
        paused.set()  # a few seconds between its renewals: its claim has 30 s to live
        time.sleep(0.5)
        connection.set(NODE_PREFIX + first.node_id, forged_process(pid=dead_pid()), ex=30)
        second = node(redis_url, folder)
        second_runner, _ = start(second)
        wait_for(lambda: connection.get(CLAIM_PREFIX + "gate") == second.node_id.encode(), 10, "the takeover")
        paused.clear()
        wait_for(lambda: first.metrics.camera_claimed.labels(camera="gate")._value.get() == 0, 10, "gate lost")
        lost = [r.getMessage() for r in caplog.records if r.getMessage().startswith("camera gate: claimed by")]
        assert len(lost) == 1 and "while this node still held it" in lost[0] and "lapsed" not in lost[0], lost
    finally:
        first.stop.set()
        runner.join(30)
        if second_runner is not None:
            second.stop.set()
            second_runner.join(30)


def test_a_camera_taken_from_a_node_of_an_earlier_version_is_a_takeover(redis_url, tmp_path, monkeypatch, caplog):
    """A node of an earlier version writes no holder record: a camera whose claim it let lapse was taken as
    if never claimed (no WARNING, no takeover counted, no span unsampled). A claim this node saw held that
    lapsed is a takeover from its node, the span counted from its last renewal (its lapse less the claims'
    TTL); one given up before its lapse is no takeover."""
    caplog.set_level("INFO", logger="ingest")
    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_RENEW_S", 0.3)
    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_TTL_S", 2)
    connection = connect_redis(redis_url)
    connection.set(CLAIM_PREFIX + "gate", "old-node", px=1500)
    connection.set(CLAIM_PREFIX + "yard", "old-node", px=2000)
    ingest = node(redis_url, looping_folder(tmp_path), ("gate", "yard"))
    runner, _ = start(ingest)
    try:
        wait_for(lambda: "this node stands by for them" in caplog.text, 10, "standing by")
        connection.delete(CLAIM_PREFIX + "yard")  # given up
        wait_for(lambda: ingest.summary.ingested["gate"] > 0 and ingest.summary.ingested["yard"] > 0, 10, "both")
        assert "camera gate: taken over from ingest node 'old-node', which stopped renewing its claim" in caplog.text
        assert "camera yard: claimed (ingest node 'old-node', which sampled it before, gave it up)" in caplog.text
        takeovers = ingest.metrics.camera_takeovers
        assert takeovers.labels(camera="gate")._value.get() == 1 and takeovers.labels(camera="yard")._value.get() == 0
        unsampled_s = ingest.metrics.camera_unsampled_seconds.labels(camera="gate")._value.get()
        assert 1.5 < unsampled_s < 5, unsampled_s
    finally:
        ingest.stop.set()
        runner.join(30)


def test_a_node_record_names_a_pid_the_kernel_gives_or_none():
    """A record with pid 2**31 passed (an int, at least 1) and os.kill raised OverflowError: only pids up to
    Linux's PID_MAX_LIMIT are read, and a check of another pid concludes nothing."""
    from ingest.node_process import PID_MAX, process_exists

    assert NodeProcess.from_json(forged_process(pid=PID_MAX)) is not None
    for pid in (0, -1, PID_MAX + 1, 2**31, 2**64):
        assert NodeProcess.from_json(forged_process(pid=pid)) is None, pid
    assert process_exists(2**31)  # unknowable: not judged ended

"""`alpr status` against a queues' Redis written by an attacker with no job key (a review): one key of the
chain's holding another type ended the chain's part with `ResponseError WRONGTYPE`, the pools and their
settings never shown; forged names and fields were read whole (300,000 camera names: 17 s, 500 MB and
300,000 lines; three 150 MB holder records: 450 MB printed; 100,000 worker names: 23 s). Real `alpr
status` processes on a private Redis and the real Postgres."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time

import pytest
import redis
from rq import Worker

from alpr.status_reads import MAX_CAMERAS_READ, MAX_MEMBERS_LOOKED_AT, MAX_UNCLAIMED_SHOWN
from common import queues
from common.queues import CAMERA_STATE_KEY, MAX_MEMBERS_READ, QUEUE_NAMES, STATS_INGESTED_KEY, stage_queue
from ingest.claims import HOLDER_PREFIX, WANTED_PREFIX


def status(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "alpr.cli", "status", *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False)


def said(run: subprocess.CompletedProcess[str]) -> list[str]:
    """Its lines on stderr of its own (not the logging's warnings: a Redis with no password)."""
    return [line for line in run.stderr.splitlines() if line.startswith("alpr:")]


@pytest.mark.parametrize(
    ("key", "wanted", "in_json"),
    [
        ("alpr:job-key:fingerprints", "hash", True),
        ("alpr:ingest-nodes", "sorted set", True),
        ("alpr:sighting-workers", "sorted set", True),
        (f"rq:workers:{QUEUE_NAMES['detect']}", "set", True),
        (HOLDER_PREFIX + "gate", "hash", False),  # `--json` reads no cameras
        ("alpr:cameras:state", "hash", True),  # `--json` reads it for the silent cameras
        ("alpr:stats:ingested", "hash", False),
    ],
)
def test_a_key_of_another_type_is_named_in_one_line_and_the_rest_shown(chain_env, key, wanted, in_json):
    connection = redis.Redis.from_url(chain_env["ALPR_REDIS_URL"])
    connection.set(WANTED_PREFIX + "gate", "node-1|1700000000", ex=600)  # a camera no node claims: listed
    connection.set(WANTED_PREFIX + "yard", "node-1|1700000000", ex=600)
    connection.set(key, "x")
    shown = status(chain_env, "--interval", "0.1")
    assert shown.returncode == 2, shown.stderr
    assert said(shown) == [f"alpr: {key} holds a string, not the {wanted} the chain writes there (written by"
                           " another client?): what status reads there is left out"]  # fmt: skip
    for part in ("queue    waiting", "cameras no live ingest node claims", "pools, sized", "frames log:"):
        assert part in shown.stdout, (part, shown.stdout)
    assert "  yard                 never claimed" in shown.stdout
    document = status(chain_env, "--json")
    assert (document.returncode, said(document)) == ((2, said(shown)) if in_json else (0, []))
    parsed = json.loads(document.stdout)
    assert parsed["unreadable_keys"] == ({key: "string"} if in_json else {})
    assert set(parsed["queues"]) == set(QUEUE_NAMES) and "pools" in parsed


def test_forged_names_and_fields_are_read_within_bounds_and_listed_up_to_a_count(chain_env):
    """50,000 forged camera names of each kind (unclaimed, counted), 50,000 forged worker names beside a
    real worker's registration, three holder records naming a node of 20 MB and a camera state of 20 MB:
    Redis sends a little, status lists up to a count and takes about as long as with none of them (it took
    some 20 s more, and 80 MB were sent and 100,000 lines printed)."""
    connection = redis.Redis.from_url(chain_env["ALPR_REDIS_URL"])
    Worker([stage_queue(connection, "detect")], connection=connection, name="detect-real").register_birth()
    started = time.monotonic()
    assert status(chain_env, "--interval", "0.1").returncode == 0
    baseline_s = time.monotonic() - started
    workers_key = f"rq:workers:{QUEUE_NAMES['detect']}"
    with connection.pipeline(transaction=False) as pipeline:
        for number in range(50_000):
            pipeline.set(f"{WANTED_PREFIX}forged-{number:05d}", "evil|1700000000", ex=600)
            pipeline.sadd(workers_key, f"rq:worker:forged-{number:05d}")
        for number in range(0, 50_000, 1000):
            pipeline.hset(STATS_INGESTED_KEY, mapping={f"counted-{n:05d}": 1 for n in range(number, number + 1000)})
        pipeline.execute()
    connection.hset(CAMERA_STATE_KEY, "gate", b"{" + b" " * 20_000_000 + b"}")
    for camera in ("big-a", "big-b", "big-c"):
        connection.hset(HOLDER_PREFIX + camera, mapping={"node": b"n" * 20_000_000, "renewed": 1, "released": 1})
    sent = connection.info("stats")["total_net_output_bytes"]
    started = time.monotonic()
    shown = status(chain_env, "--interval", "0.1")
    took_s = time.monotonic() - started
    sent = connection.info("stats")["total_net_output_bytes"] - sent
    assert shown.returncode == 0, shown.stderr
    assert sent < 2_000_000, sent  # was 80 MB
    assert took_s < baseline_s + 5, (took_s, baseline_s)
    lines = shown.stdout.splitlines()
    assert len(lines) < MAX_CAMERAS_READ + 100, len(lines)  # were 100,000 and more
    assert f"  (only the first {MAX_CAMERAS_READ} cameras of each count were read: forged fields?)" in lines
    assert "  (1 field passed over: a camera id or a value longer than the chain writes)" in lines
    listed = shown.stdout.partition("cameras no live ingest node claims (sampled by none):")[2]
    assert len(listed.partition("\n\npools")[0].splitlines()) < 30
    more = re.search(r"^  and ([0-9]+) more$", listed, re.MULTILINE)
    assert more and int(more[1]) >= MAX_CAMERAS_READ - MAX_UNCLAIMED_SHOWN, listed
    assert "  big-a                last held by a node whose id is too long to be one" in listed
    assert f"only the first {MAX_CAMERAS_READ} camera names found were looked at" in listed
    queue_row = next(line for line in lines if line.startswith("detect "))  # the first table's
    assert queue_row.split()[3] == "1"  # the real worker counted, the forged names passed over in Redis
    with connection.pipeline(transaction=False) as pipeline:  # registrations forged for some: read up to a count
        for number in range(MAX_MEMBERS_READ + 10):
            pipeline.hset(f"rq:worker:forged-{number:05d}", "birth", "2024-01-01T00:00:00Z")
        pipeline.execute()
    flooded = status(chain_env, "--interval", "0.1")
    assert flooded.returncode == 0 and said(flooded) == [
        f"alpr: warning: the detect queue's worker set ({workers_key}) holds 50001 members (forged?): not all were"
        f" read (at most {MAX_MEMBERS_READ} workers, {MAX_MEMBERS_LOOKED_AT} names), the workers counted may be short"
    ]
    assert next(line for line in flooded.stdout.splitlines() if line.startswith("detect ")).split()[3] == "1000"


def test_a_claim_no_node_could_have_written_holds_no_camera(chain_env):
    """A claim key with no expiry (`SET alpr:camera-claim:cam-a ghost-node`), one past the claims' TTL, of
    another type or past their bound is no node's claim (ingest takes it at its next round), yet status
    counted the camera held by the key's mere existence (EXISTS): sampled by none, it was listed nowhere,
    and its last state showed `connected` for ever. A node's own claim still holds its camera."""
    from ingest.claims import CLAIM_PREFIX

    connection = redis.Redis.from_url(chain_env["ALPR_REDIS_URL"])
    cameras = ("cam-a", "cam-b", "cam-c", "cam-d", "cam-e")
    for camera in cameras:
        connection.set(WANTED_PREFIX + camera, "node-1|1700000000", ex=600)
    live = json.dumps({"state": "connected", "since": time.time() - 60, "errors": 0})
    connection.hset(CAMERA_STATE_KEY, mapping={"cam-a": live, "cam-c": live})
    connection.set(CLAIM_PREFIX + "cam-a", "ghost-node")  # no expiry
    connection.set(CLAIM_PREFIX + "cam-b", "ghost-node", ex=3600)  # past CAMERA_CLAIM_TTL_S
    connection.set(CLAIM_PREFIX + "cam-c", "node-1", ex=30)  # a node's claim
    connection.hset(CLAIM_PREFIX + "cam-d", "node", "node-1")
    connection.expire(CLAIM_PREFIX + "cam-d", 20)
    connection.set(CLAIM_PREFIX + "cam-e", "n" * 5000, ex=20)  # past the claims' bound (FIELD_BOUND)
    shown = status(chain_env, "--interval", "0.1")
    assert shown.returncode == 0, shown.stderr
    listed = shown.stdout.partition("cameras no live ingest node claims (sampled by none):")[2]
    rows = {line.split()[0]: line.split(None, 1)[1] for line in listed.splitlines() if line.startswith("  cam-")}
    taken = "no node's claim; a node naming the camera takes it at its next round"
    lapses = re.fullmatch(r"claimed by 'ghost-node' for ([0-9]+) s \(a node's claim lapses within 30 s\): (.*)",
                          rows.pop("cam-b", ""))  # fmt: skip
    assert lapses and 3500 < int(lapses[1]) <= 3600 and lapses[2] == taken, listed
    assert rows == {
        "cam-a": f"claimed by 'ghost-node' with no expiry: {taken}",
        "cam-d": f"its claim key holds a hash: {taken}",
        "cam-e": f"claimed by '{'n' * 100}'..., 5000 bytes long (a node's id is far shorter): {taken}",
    }, listed
    states = {line.split()[0]: line for line in shown.stdout.splitlines() if line.startswith("cam-")}
    assert "node gone" in states["cam-a"] and "connected" in states["cam-c"], states


def test_forged_statistics_past_any_count_size_no_pool_and_end_nothing(chain_env):
    """Values no worker writes in the pools' statistics (finite, within STAT_BYTES): 1e308 seconds of work
    overflowed the workers needed to infinity, and `alpr status` ended in a traceback (OverflowError, a
    review); two buckets of 1e308 add up to infinity; a negative count. Each read as nothing, while a
    camera queues frames (the pools sized for them)."""
    connection = redis.Redis.from_url(chain_env["ALPR_REDIS_URL"])
    now_s = queues.redis_now(connection)
    for bucket in queues.pool_stats_buckets(now_s)[-2:]:
        connection.hset(bucket, mapping={"detect:busy_seconds": "1e308", "detect:frames": 1})
    connection.hset(queues.STATS_BUSY_KEY, mapping={"redact": "1e308", "ocr": "-5"})
    connection.hset(queues.STATS_FRAMES_KEY, mapping={"redact": 1, "ocr": 2})
    stop = threading.Event()

    def queue_frames() -> None:  # a camera queueing frames meanwhile
        while not stop.wait(0.05):
            connection.hincrby(STATS_INGESTED_KEY, "gate", 1)

    camera = threading.Thread(target=queue_frames)
    camera.start()
    try:
        shown = status(chain_env, "--interval", "1")
    finally:
        stop.set()
        camera.join()
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    pools = shown.stdout.partition("pools, sized for ")[2]
    assert float(pools.split()[0]) > 0, pools  # frames offered: the pools sized for them
    rows = {line.split()[0]: line.split()[1:] for line in pools.splitlines()[2:] if line.split()}
    assert rows["detect"][1:3] == rows["redact"][1:3] == ["0.000", "1"], rows  # no work per frame: 1 worker at least
    assert rows["ocr"][1:3] == ["0.000", "1"], rows  # was -2.500 s a frame

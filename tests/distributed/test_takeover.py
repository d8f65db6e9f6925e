"""Several `alpr ingest` processes sharing cameras (ingest/claims.py), on a private Redis and a real Postgres:
each camera sampled by one node at a time, a standby that takes a camera over when its holder is killed
(the span without frames counted), and settings that differ between the nodes' cameras files told. A review
of real nodes: claimed all or nothing, the node whose file overlapped another's exited 2 and a camera only
it named stayed dark; a standby only crash-looped its way to a takeover, nothing recorded the gap; and a
refused node rewrote the cameras table, then after the takeover sampled another camera under the same id;
and a node frozen past its claims' lapse that found one camera taken stopped whole, its other cameras dark."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import psycopg
import pytest

from alpr.cli import main
from common import defaults
from common.queues import connect_redis
from ingest.claims import CLAIM_PREFIX
from tests.distributed.test_chain import scrape
from tests.helpers import alpr_process, free_port, wait_for, write_cameras


@pytest.fixture()
def node_env(redis_url: str, postgres_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    env.update({"ALPR_REDIS_URL": redis_url, "ALPR_DATABASE_URL": postgres_url, "ALPR_JOB_KEY": "takeover-job-key-0123",
                "ALPR_LEDGER_SPOOL_DIR": str(tmp_path / "spool"), "PYTHONUNBUFFERED": "1"})  # fmt: skip
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    return env


def camera(tmp_path: Path, camera_id: str, shade: int = 90, **fields: object) -> dict[str, object]:
    """A camera on a looping folder of one image: live-like, sampled at its rate for as long as it runs."""
    folder = tmp_path / f"shots-{camera_id}-{shade}"
    folder.mkdir(exist_ok=True)
    cv2.imwrite(str(folder / "a.jpg"), np.full((120, 160, 3), shade, np.uint8))
    return {"id": camera_id, "source": str(folder), "loop": True, "sample_fps": 5, **fields}


QUICK_RENEWALS = {"CAMERA_CLAIM_RENEW_S": 1.0}
"""`alpr_process` timers: claims renewed (and a standby's cameras tried) every second, not every 10 s: a
camera given up, or whose holder on this host is gone, is taken within a second; claims still lapse 30 s
after their last renewal."""

SHORT_CLAIMS = {"CAMERA_CLAIM_TTL_S": 3, **QUICK_RENEWALS}
"""QUICK_RENEWALS and claims that lapse 3 s after their last renewal: a freeze past them in seconds, not the
30 s a node's claims outlive it."""


class Node:
    """One `alpr ingest` process and its metrics port (`timers`: alpr_process's)."""

    def __init__(self, env: dict[str, str], cameras: Path, log: Path, timers: dict[str, float] | None = None) -> None:
        self.port, self.log = free_port(), log
        self.process = alpr_process(env, ["ingest", "--cameras", str(cameras)], log, self.port, timers)

    def metric(self, name: str, camera_id: str) -> float:
        try:
            return scrape(self.port).get(f'{name}{{camera="{camera_id}"}}', 0.0)
        except OSError:
            return 0.0

    def text(self) -> str:
        return self.log.read_text()


@pytest.fixture()
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.process.kill()
        node.process.wait(10)


def holder(redis_url: str, camera_id: str) -> str | None:
    value = connect_redis(redis_url).get(CLAIM_PREFIX + camera_id)
    return value.decode() if value else None


def test_nodes_with_overlapping_cameras_files_sample_every_camera_each_by_one_node(
    node_env, redis_url, tmp_path, nodes
):
    a = write_cameras(tmp_path / "a.yaml", [camera(tmp_path, "cam-a"), camera(tmp_path, "cam-b")])
    b = write_cameras(tmp_path / "b.yaml", [camera(tmp_path, "cam-b"), camera(tmp_path, "cam-c")])
    nodes += [Node(node_env, a, tmp_path / "a.log"), Node(node_env, b, tmp_path / "b.log")]
    first, second = nodes
    ingested = "alpr_frames_ingested_total"
    wait_for(lambda: first.metric(ingested, "cam-a") > 0 and second.metric(ingested, "cam-c") > 0, 60,
             "both nodes sampling the cameras only each names")  # fmt: skip
    time.sleep(3)
    assert first.process.poll() is None and second.process.poll() is None
    shared = [node for node in nodes if node.metric(ingested, "cam-b") > 0]
    assert len(shared) == 1  # sampled, by one node alone
    standby = second if shared == [first] else first
    assert standby.metric("alpr_camera_claimed", "cam-b") == 0 and shared[0].metric("alpr_camera_claimed", "cam-b") == 1
    assert f"cam-b (ingest node {holder(redis_url, 'cam-b')!r}); this node stands by for it" in standby.text()


def test_a_standby_takes_over_the_cameras_of_a_node_killed_and_counts_the_span_unsampled(
    node_env, redis_url, tmp_path, nodes
):
    cameras = write_cameras(tmp_path / "cameras.yaml", [camera(tmp_path, "cam-a"), camera(tmp_path, "cam-b")])
    nodes.append(Node(node_env, cameras, tmp_path / "owner.log", QUICK_RENEWALS))
    owner = nodes[0]
    wait_for(lambda: owner.metric("alpr_frames_ingested_total", "cam-a") > 0, 60, "the owner sampling")
    owner_id = holder(redis_url, "cam-a")
    nodes.append(Node(node_env, cameras, tmp_path / "standby.log", QUICK_RENEWALS))
    standby = nodes[1]
    wait_for(lambda: "this node stands by for them" in standby.text(), 60, "the standby standing by")
    time.sleep(2)
    assert standby.process.poll() is None and standby.metric("alpr_frames_ingested_total", "cam-a") == 0
    owner.process.send_signal(signal.SIGKILL)
    owner.process.wait(10)
    killed = time.monotonic()
    within_s = defaults.CAMERA_CLAIM_TTL_S + QUICK_RENEWALS["CAMERA_CLAIM_RENEW_S"] + 3
    wait_for(lambda: holder(redis_url, "cam-a") not in (None, owner_id) and holder(redis_url, "cam-b") not in
             (None, owner_id), within_s, "the standby's takeover")  # fmt: skip
    taken_s = time.monotonic() - killed
    wait_for(lambda: standby.metric("alpr_frames_ingested_total", "cam-a") > 0, 15, "the standby sampling")
    for camera_id in ("cam-a", "cam-b"):
        assert f"camera {camera_id}: taken over from ingest node {owner_id!r}" in standby.text()
        assert standby.metric("alpr_camera_takeovers_total", camera_id) == 1
        unsampled_s = standby.metric("alpr_camera_unsampled_seconds_total", camera_id)
        assert 0 < unsampled_s < taken_s + 5, (camera_id, unsampled_s, taken_s)
    said = re.findall(r"camera cam-a: unsampled for ([0-9.]+) s between the last frame of ingest node", standby.text())
    assert len(said) == 1


def test_conflicting_settings_are_told_and_a_standby_leaves_the_cameras_table_alone(
    node_env, postgres_url, redis_url, tmp_path, nodes
):
    mine = [camera(tmp_path, "cam-a", region="us"), camera(tmp_path, "cam-b")]
    theirs = [
        camera(tmp_path, "cam-a", shade=30, sample_fps=2, region="eu"),
        {**camera(tmp_path, "cam-b"), "enabled": False},
    ]
    nodes.append(Node(node_env, write_cameras(tmp_path / "a.yaml", mine), tmp_path / "a.log", QUICK_RENEWALS))
    owner = nodes[0]
    wait_for(lambda: owner.metric("alpr_frames_ingested_total", "cam-a") > 0, 60, "the owner sampling")
    owner_id = holder(redis_url, "cam-a")

    def rows() -> list[tuple[str, str, bool]]:
        with psycopg.connect(postgres_url) as connection:
            return connection.execute("SELECT camera_id, region, enabled FROM cameras ORDER BY 1").fetchall()

    wait_for(lambda: rows() == [("cam-a", "us", True), ("cam-b", "us", True)], 15, "the owner's rows")
    nodes.append(Node(node_env, write_cameras(tmp_path / "b.yaml", theirs), tmp_path / "b.log", QUICK_RENEWALS))
    other = nodes[1]
    wait_for(lambda: "this node stands by for it" in other.text(), 60, "the other node standing by")
    time.sleep(2)
    assert other.process.poll() is None
    assert f"cam-a (ingest node {owner_id!r}; its settings differ: source, sample_fps, region)" in other.text()
    assert rows() == [("cam-a", "us", True), ("cam-b", "us", True)]  # a node standing by writes no row
    owner.process.send_signal(signal.SIGTERM)  # gives its cameras up: taken at the next renewal
    assert owner.process.wait(60) == 0
    renew_s = QUICK_RENEWALS["CAMERA_CLAIM_RENEW_S"]
    wait_for(
        lambda: other.metric("alpr_frames_ingested_total", "cam-a") > 0, renew_s + 10, "the other node taking cam-a"
    )
    assert (f"camera cam-a: this node's settings for it differ from those of ingest node {owner_id!r}, which"
            " sampled it before: source, sample_fps, region") in other.text()  # fmt: skip
    assert other.metric("alpr_camera_settings_changed_total", "cam-a") == 1
    wait_for(lambda: rows() == [("cam-a", "eu", True), ("cam-b", "us", True)], 15, "cam-a's row the new holder's")
    record = connect_redis(redis_url).hgetall("alpr:camera-holder:cam-a")
    assert record[b"settings"] and str(theirs[0]["source"]).encode() not in b" ".join(record.values())  # a digest


def test_a_node_frozen_past_its_claims_loses_one_camera_and_samples_its_other_on_resuming(
    node_env, postgres_url, redis_url, tmp_path, nodes
):
    """A node frozen (SIGSTOP) past its claims' lapse finds, resumed, that a standby took one of its two
    cameras: it stopped whole (exit 1), its other camera dark until restarted. It stops that camera alone
    (one WARNING naming it and its holder), samples the other on, and stands by; the camera taken is
    sampled by one node at a time, and the node's stop leaves the holder's watermark in place."""
    both = write_cameras(tmp_path / "both.yaml", [camera(tmp_path, "cam-a"), camera(tmp_path, "cam-b")])
    nodes.append(Node(node_env, both, tmp_path / "frozen.log", SHORT_CLAIMS))
    frozen = nodes[0]
    ingested = "alpr_frames_ingested_total"
    wait_for(lambda: frozen.metric(ingested, "cam-a") > 0 and frozen.metric(ingested, "cam-b") > 0, 60,
             "the first node sampling both cameras")  # fmt: skip
    frozen_id = holder(redis_url, "cam-b")
    nodes.append(Node(node_env, write_cameras(tmp_path / "b.yaml", [camera(tmp_path, "cam-b")]),
                      tmp_path / "standby.log", SHORT_CLAIMS))  # fmt: skip
    standby = nodes[1]
    wait_for(lambda: "this node stands by for it" in standby.text(), 60, "the standby standing by")
    frozen.process.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: holder(redis_url, "cam-b") not in (None, frozen_id), 15, "the standby's takeover")
        standby_id = holder(redis_url, "cam-b")
        wait_for(lambda: standby.metric(ingested, "cam-b") > 0, 15, "the standby sampling cam-b")
    finally:
        frozen.process.send_signal(signal.SIGCONT)
    resumed_s = time.time()
    wait_for(lambda: frozen.metric("alpr_camera_claimed", "cam-b") == 0, 15, "the resumed node finding cam-b taken")
    time.sleep(3)  # renewals: cam-a sampled on, cam-b by the standby alone

    def logged(camera_id: str, after_s: float = 0.0) -> list[tuple[str, float]]:
        with psycopg.connect(postgres_url) as connection:
            return connection.execute("SELECT frame_id, extract(epoch FROM captured_at)::float FROM frames WHERE"
                                      " camera_id = %s AND captured_at > to_timestamp(%s) ORDER BY captured_at",
                                      (camera_id, after_s)).fetchall()  # fmt: skip

    assert frozen.process.poll() is None, frozen.text()[-3000:]  # it stopped, exit 1, cam-a dark
    assert len(logged("cam-a", resumed_s + 1)) >= 5  # sampled on: 5 frames/s
    assert holder(redis_url, "cam-a") == frozen_id and holder(redis_url, "cam-b") == standby_id
    assert frozen.metric("alpr_camera_claimed", "cam-a") == 1 and frozen.metric("alpr_camera_claimed", "cam-b") == 0
    assert standby.metric("alpr_camera_claimed", "cam-b") == 1
    lost = f"WARNING ingest.node: camera cam-b: claimed by ingest node {standby_id!r} since this node's claim"
    assert lost in frozen.text() and frozen.text().count("camera cam-b: claimed by ingest node") == 1
    assert f"(ingest node {standby_id!r})" not in frozen.text()  # not told again as held by another
    frozen_a, frozen_b = frozen.metric(ingested, "cam-a"), frozen.metric(ingested, "cam-b")
    time.sleep(1)
    assert frozen.metric(ingested, "cam-b") == frozen_b and frozen.metric(ingested, "cam-a") > frozen_a
    # cam-b by one node at a time: the frozen node's frames all dated before the standby's first
    runs = [(frame_id.rsplit(":", 1)[1].split(".")[0], captured_s) for frame_id, captured_s in logged("cam-b")]
    first_run = runs[0][0]  # the frozen node's; then the standby's alone
    assert len({run for run, _ in runs}) == 2, runs
    taken_s = min(captured_s for run, captured_s in runs if run != first_run)
    overlap = [captured_s - taken_s for run, captured_s in runs if run == first_run and captured_s > taken_s]
    assert overlap == [], (overlap, resumed_s - taken_s)  # resumed, it sampled a frame of cam-b before its round
    frozen.process.send_signal(signal.SIGTERM)
    assert frozen.process.wait(60) == 0  # a camera taken and stood by for is no failure
    said = re.findall(r"^(cam-[ab]): (\d+) frames queued, (\d+) skipped(?: \((\d+) of them never sampled: no"
                      r" frames-log row\))?(.*)$", frozen.text(), re.MULTILINE)  # fmt: skip
    # less the frames its rate gave while its claims were in doubt (claim_unsure): never sampled, no row
    sampled = {camera_id: int(queued) + int(skipped) - int(never or 0) for camera_id, queued, skipped, never, _ in said}
    assert [rest for *_, rest in said] == ["", f"; taken by ingest node {standby_id!r}, stood by for"], said
    assert len(logged("cam-a")) == sampled["cam-a"]  # every frame it sampled has its row, cam-b's in hand too
    assert len([f for f, _ in logged("cam-b") if f.rsplit(":", 1)[1].startswith(f"{first_run}.")]) == sampled["cam-b"]
    with psycopg.connect(postgres_url) as connection:
        marks = dict(connection.execute("SELECT camera_id, recorded_until_s FROM camera_watermarks").fetchall())
    assert "cam-b" in marks and "cam-a" not in marks, marks  # its own taken away; cam-b's the standby's

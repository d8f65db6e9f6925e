"""The whole chain as separate processes on real servers: an ingest node with three cameras
(synthetic clips with known plates, two cars side by side with plates one character apart among
them), two workers of each kind, an alert worker and a webhook receiver, Redis, Postgres. Ends with
exactly the expected reads, every frame logged once, exactly one sighting per car with its plate, one
alert for the listed plate delivered once, metrics that match, and no raw frame left behind."""

from __future__ import annotations

import json
import re
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import redis

from alpr.cli import main
from common.frame_store import KEY_PREFIX
from tests.alert_servers import WebhookServer
from tests.helpers import alpr_process, free_port, wait_for, workers_role, write_cameras, write_clip

CAMERA_PASSES = {
    "cam-north": (("KPX4721", "KPX4727"), "7ABC284"),  # two cars side by side, then one
    "cam-east": ("GHT2093", "LMN5821"),
    "cam-west": ("4RTY532", "BDF3301"),
}
CAMERA_PLATES = {
    camera: tuple(p for group in passes for p in ((group,) if isinstance(group, str) else group))
    for camera, passes in CAMERA_PASSES.items()
}
FRAMES_PER_CAMERA = 40  # two passes x 4 s at 10 fps, sampled at 5 fps
LISTED = "7ABC284"
SECRET = "chain-hook-secret-0123456789"


def scrape(port: int) -> dict[str, float]:
    """Prometheus text exposition to {'name{labels}': value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def total(samples_by_process: list[dict[str, float]], pattern: str) -> float:
    regex = re.compile(pattern)
    return sum(v for samples in samples_by_process for k, v in samples.items() if regex.fullmatch(k))


@pytest.fixture()
def cameras_file(tmp_path):
    """The three cameras' clips, drawn side by side (11.6 s one after another here, 7.7 s in threads: the
    drawing's blur, noise and encoding let go of the GIL), or copied where this session drew them already
    (cam-west's is tests/detector_worker's clip of one plate a read box)."""
    with ThreadPoolExecutor(len(CAMERA_PASSES)) as drawing:
        list(drawing.map(lambda camera: write_clip(tmp_path / f"{camera}.mp4", CAMERA_PASSES[camera], seed=len(camera)),
                         CAMERA_PASSES))  # fmt: skip
    cameras = [{"id": camera, "source": str(tmp_path / f"{camera}.mp4"), "sample_fps": 5, "region": "us",
                "realtime": False} for camera in CAMERA_PASSES]  # fmt: skip
    return write_cameras(tmp_path / "cameras.yaml", cameras)


@pytest.fixture()
def as_workers(chain_env):  # type: ignore[no-untyped-def]
    """A URL logging in as a role given the workers' rights (`alpr db upgrade --grant`), as Compose's roles
    log in: the chain runs on what it was granted, no more."""
    with workers_role(chain_env["ALPR_DATABASE_URL"]) as (_, url):
        yield url


@pytest.fixture()
def hook():  # type: ignore[no-untyped-def]
    with WebhookServer(SECRET) as server:
        yield server


def test_three_cameras_through_two_workers_of_each_kind(chain_env, as_workers, cameras_file, tmp_path, hook):
    (tmp_path / "hook.secret").write_text(SECRET)
    (tmp_path / "receivers.yaml").write_text(
        f"receivers:\n  ops:\n    type: webhook\n    url: {hook.url}\n    secret_file: {tmp_path / 'hook.secret'}\n"
    )
    env = dict(
        # recorded footage (not live) waits for the chain at the default depth and age limit: its frames are
        # dated by the footage however long they wait (dated when handed on, one clip's three cars gave 11
        # sightings), and never shed as too old (with 64 jobs queued, 256 of a video's 317 frames were)
        chain_env, ALPR_DATABASE_URL=as_workers, ALPR_FRAMES_PER_JOB="4", ALPR_DETECTOR_BATCH_SIZE="2",
        ALPR_KEEP_FRAMES="all", ALPR_ALERT_RECEIVERS=str(tmp_path / "receivers.yaml"),
    )  # fmt: skip
    owner = chain_env["ALPR_DATABASE_URL"]  # the test's own look at the logs
    assert main(["watchlist", "add", LISTED, "--reason", "stolen", "--database-url", owner]) == 0
    workers, ports = [], {}
    for stage in ("detect", "ocr", "redact", "sight", "alert"):
        for n in range(1 if stage == "alert" else 2):
            port = free_port()
            ports[f"{stage}{n}"] = port
            workers.append(alpr_process(env, ["worker", stage], tmp_path / f"{stage}{n}.log", port))
    ingest_port = free_port()
    try:
        ingest_log = tmp_path / "ingest.log"
        ingest = alpr_process(
            env, ["ingest", "--cameras", str(cameras_file), "--linger", "120"], ingest_log, ingest_port
        )
        workers.append(ingest)
        wait_for(lambda: "detect jobs" in ingest_log.read_text() or ingest.poll() is not None, 120, "the ingest node")
        assert ingest.poll() is None, ingest_log.read_text()
        ingest_metrics = scrape(ingest_port)
        expected_frames = FRAMES_PER_CAMERA * len(CAMERA_PLATES)
        with psycopg.connect(owner) as db:
            # redacted and read: the redactor's outcome can come first, with the frame's reads still queued
            done_sql = (
                "SELECT count(*) FROM frames WHERE outcome <> 'pending' AND read_outcome IS DISTINCT FROM 'pending'"
            )
            wait_for(lambda: db.execute(done_sql).fetchone()[0] >= expected_frames, 240,
                     "every frame through the chain")  # fmt: skip
            frames = db.execute(
                "SELECT camera_id, count(*), count(DISTINCT frame_id) FROM frames WHERE outcome = 'done' GROUP BY 1"
            ).fetchall()
            reads = db.execute("SELECT camera_id, plate_text, format_match, confidence FROM plate_reads").fetchall()
            outcomes = dict(db.execute("SELECT outcome, count(*) FROM frames GROUP BY 1").fetchall())
            assert outcomes == {"done": expected_frames}, outcomes
            kept = [Path(row[0]) for row in db.execute("SELECT kept_path FROM frames").fetchall()]
            registered = db.execute("SELECT camera_id, region, enabled FROM cameras ORDER BY 1").fetchall()
            duplicates = db.execute(
                "SELECT count(*) FROM (SELECT frame_id, plate_index FROM plate_reads"
                " GROUP BY 1, 2 HAVING count(*) > 1) d"
            ).fetchone()[0]
        assert {c: (n, d) for c, n, d in frames} == {c: (FRAMES_PER_CAMERA,) * 2 for c in CAMERA_PLATES}
        assert duplicates == 0
        assert len(kept) == expected_frames and all(p.is_file() and p.stat().st_size > 0 for p in kept)
        assert registered == [(c, "us", True) for c in sorted(CAMERA_PLATES)]
        for camera, plates in CAMERA_PLATES.items():
            trusted = Counter(t for c, t, matched, conf in reads if c == camera and matched and conf >= 0.5)
            seen = {text for text, count in trusted.items() if count >= 4}
            assert seen == set(plates), (camera, trusted)
        with psycopg.connect(owner) as db:
            expected_cars = sum(len(p) for p in CAMERA_PLATES.values())
            sighted_sql = "SELECT count(*) FROM sightings"
            wait_for(lambda: db.execute(sighted_sql).fetchone()[0] >= expected_cars, 60, "every car's sighting")
            wait_for(lambda: hook.received, 60, "the alert at the receiver")
            # every camera grouped past its last read by more than the gap: no pass is left to close, so a
            # second sighting or alert would be there now; and no delivery is left to make. (Past its own
            # last read: a camera with no work is not visited, and its cursor stays where its last pass
            # closed, which may lie before another camera's last frame.)
            grouped = (
                "SELECT bool_and(c.grouped_until_s > (SELECT extract(epoch FROM max(r.captured_at)) FROM plate_reads r"
                " WHERE r.camera_id = c.camera_id) + 2)"
                " AND NOT EXISTS (SELECT 1 FROM alert_deliveries WHERE status IN ('pending', 'sending'))"
                " FROM sighting_cursors c"
            )
            wait_for(lambda: db.execute(grouped).fetchone()[0], 60, "every camera grouped to its end")
            sightings = db.execute("SELECT camera_id, plate, reads FROM sightings").fetchall()
            deliveries = db.execute("SELECT status FROM alert_deliveries").fetchall()
            all_sightings = db.execute("SELECT count(*) FROM sightings").fetchone()[0]
        for camera, plates in CAMERA_PLATES.items():  # one sighting per car, with its plate
            assert sorted(p for c, p, _ in sightings if c == camera) == sorted(plates), sightings
        assert all(reads >= 5 for _, _, reads in sightings), sightings
        assert deliveries == [("delivered",)]
        # one alert for the listed car; an early alert carries its read, which fuzzy matching lets differ by a
        # look-alike (a frame's 7 read T: distance 0.5), so the listed plate is what must be exact
        alerts = [json.loads(r.body) for r in hook.received]
        assert [a["watch_plate"] for a in alerts] == [LISTED]
        assert alerts[0]["plate"] == LISTED or (alerts[0]["kind"] == "read" and alerts[0]["distance"] <= 1.0), alerts
        assert all(r.signature_ok for r in hook.received)
        # version 2 (common/alerts.py): the list, how probable the listed plate was, the texts read
        first = alerts[0]
        assert (first["version"], first["list_name"]) == (2, "default") and first["candidates"], first
        exact = first["distance"] == 0
        assert (first["match_probability"] == first["confidence"]) if exact else first["match_probability"] >= 0.001
        redis_client = redis.Redis.from_url(env["ALPR_REDIS_URL"])
        assert redis_client.keys(KEY_PREFIX + "*") == []  # no raw frame outlives its processing

        samples = {name: scrape(port) for name, port in ports.items()}
        by_stage = {s: [v for k, v in samples.items() if k.startswith(s)] for s in ("detect", "ocr", "redact")}
        sight = [v for k, v in samples.items() if k.startswith("sight")]
        assert total(sight, r"alpr_sightings_closed_total\{.*\}") == all_sightings  # counted where they happen
        assert total(sight, r'alpr_alerts_raised_total\{kind="read"\}') == 1
        alert = [v for k, v in samples.items() if k.startswith("alert")]
        assert total(alert, r'alpr_alert_deliveries_total\{outcome="sent",receiver="ops"\}') == 1
        for camera in CAMERA_PLATES:
            assert ingest_metrics[f'alpr_frames_ingested_total{{camera="{camera}"}}'] == FRAMES_PER_CAMERA
        assert total(by_stage["detect"], r'alpr_frames_processed_total\{stage="detect"\}') == expected_frames
        assert total(by_stage["redact"], r'alpr_frames_processed_total\{stage="redact"\}') == expected_frames
        jobs = {s: total(by_stage[s], rf'alpr_jobs_total\{{outcome="done",stage="{s}"\}}') for s in by_stage}
        # a job packs up to 4 frames: fewer when the node waited for room (a job without plates has no OCR job)
        assert jobs["detect"] == jobs["redact"] >= expected_frames / 4 and 0 < jobs["ocr"] <= jobs["detect"]
        assert total(by_stage["detect"], r"alpr_detector_batch_frames_count") >= expected_frames / 2  # 2 per inference
        assert total(by_stage["detect"], r"alpr_detector_batch_frames_sum") == expected_frames
        assert total(by_stage["ocr"], r"alpr_plate_reads_total\{.*\}") == len(reads)
        # exported, but recorded footage (these cameras) is dated by the footage: no latency of a live frame
        assert total(by_stage["ocr"], r"alpr_capture_to_logged_seconds_count") == 0
        everything = " ".join(k for s in [ingest_metrics, *samples.values()] for k in s)
        assert not any(p in everything for plates in CAMERA_PLATES.values() for p in plates), "plate text in a label"
    finally:
        for process in workers:
            process.terminate()
        for process in workers:
            process.wait(timeout=30)

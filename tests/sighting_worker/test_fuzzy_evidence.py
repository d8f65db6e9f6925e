"""A fuzzy watch-list match alerts only where the recogniser's own candidates name the listed plate
(sighting_worker/match_evidence.py), on the real Postgres through the sighting stage, with the candidates
the real recogniser gave two real photos (an alert review's chain run, plate_reads.candidates as logged):
a car read right no longer raises the alerts of the listed plates one edit or a look-alike swap from it,
the misread the fuzzy match is there for still does, and each alert's body (version 2) says on which
list, how probable the listed plate was and what else the plate was read as."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from alert_worker.signing import alert_body
from alpr.cli import main
from alpr.wiring import build_sighting_stage
from common.alerts import Alert
from common.config import Settings
from common.db import open_pool
from common.frame_log import FrameLog, FrameRecord
from common.frame_store import frame_key
from common.jobs import FrameRef
from common.metrics import Metrics
from common.plate_log import PostgresPlateLog
from common.queues import connect_redis
from common.types import PlateCandidate, PlateRead
from common.watchlist import WatchList
from common.watchlist_entry import WatchEntry

YG9X2G = [("YG9X2G", 0.9979), ("YG9X2C", 0.0002), ("YG9X26", 0.0002), ("YG9Y2G", 0.0002), ("YG9K2G", 0.0002)]
"""The real recogniser's candidates for a us photo read right (YG9X2G), as logged at camera cam_us_as_eu."""

RK026AJ = [("RK026AJ", 0.9636), ("RKO26AJ", 0.0091), ("RKZ6AJ", 0.0109), ("RK0Z6J", 0.0109), ("RK0Z6A", 0.0109)]
"""Its candidates for an eu photo of RKO26AJ misread RK026AJ (the review's one rescue by a fuzzy match)."""

ENTRIES = [
    ("YG9X2G", "truth"), ("RKO26AJ", "truth"),  # the photos' own plates: RKO26AJ among the misread's candidates
    ("YG92G", "near_len"), ("YG9X26", "near_look1"), ("YG9XZ6", "near_look2"), ("YG9X2M", "near_sub1"),
    ("RKOZ6AJ", "near_look1"), ("RKQZ6AJ", "near_look2"),  # the review's near-miss lists, none the car passing
]  # fmt: skip
"""The review's watch-list entries within ALPR_WATCH_MAX_DISTANCE (1.0) of the two reads: before, each raised
an alert (eight: precision 2 in 8, as the review's 287 in 1,432). YG9X26 is among YG9X2G's candidates, at
0.0002: under the floor (0.001)."""


def frame_ref(camera: str, index: int, at_s: float) -> FrameRef:
    frame_id = f"{camera}:run1:{index}"
    return FrameRef(frame_id=frame_id, camera_id=camera, seq=index, frame_index=index, captured_at_s=at_s,
                    source_time_s=index / 5, key=frame_key(frame_id), region="us")  # fmt: skip


def read(candidates: list[tuple[str, float]], x: float = 300.0) -> PlateRead:
    return PlateRead((x, 400.0, x + 90.0, 440.0), 0.9, tuple(PlateCandidate(t, p, None) for t, p in candidates))


def log_frames(pool: Any, frames: list[tuple[FrameRef, list[PlateRead]]]) -> None:
    """As the chain does: the ingest node's pending rows, the OCR pool's reads, the frames settled."""
    frame_log = FrameLog(pool, 0)
    frame_log.record_sampled([FrameRecord(ref, "pending") for ref, _ in frames])
    PostgresPlateLog(pool).record_many(frames)
    frame_log.record_reads([(ref, "done") for ref, _ in frames])
    frame_log.record_final([FrameRecord(ref, "done", plates=len(reads)) for ref, reads in frames])


@pytest.fixture()
def stage_pool(postgres_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    pool = open_pool(postgres_url)
    WatchList(pool).import_rows([WatchEntry(plate, f"{name} entry", name) for plate, name in ENTRIES])
    yield pool
    pool.close()


def alerts(pool: Any) -> list[dict[str, Any]]:
    with pool.connection() as connection:
        rows = connection.execute("SELECT body FROM alerts").fetchall()
    return sorted((row[0] for row in rows), key=lambda body: (body["plate"], body["watch_plate"]))


@pytest.mark.parametrize("kind", ["read", "sighting"])
def test_a_fuzzy_match_alerts_only_where_the_reads_own_candidates_name_the_listed_plate(
    stage_pool: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """`read`: the early alert on a sure read; `sighting`: early alerts off (ALPR_WATCH_READ_MIN_CONFIDENCE
    1), the alert on the sighting of that one read (its candidates are the sighting's)."""
    if kind == "sighting":
        monkeypatch.setenv("ALPR_WATCH_READ_MIN_CONFIDENCE", "1")
    start_s = time.time() - 30
    log_frames(stage_pool, [(frame_ref("north", 1, start_s), [read(YG9X2G)])])
    log_frames(stage_pool, [(frame_ref("south", 1, start_s), [read(RK026AJ)])])
    stage = build_sighting_stage(Settings.load(), connect_redis(redis_url), Metrics())
    stage.poll()
    stage.poll()
    bodies = alerts(stage_pool)
    got = [(b["kind"], b["plate"], b["watch_plate"], b["distance"], b.get("list_name")) for b in bodies]
    assert got == [
        (kind, "RK026AJ", "RKO26AJ", 0.5, "truth"),  # the misread: the listed text among its candidates, 0.0091
        (kind, "YG9X2G", "YG9X2G", 0.0, "truth"),  # exact, as before
    ], got  # before: six more, every near-miss entry within 1.0 of the two plates
    rescue, exact = bodies
    assert rescue["match_probability"] == 0.0091 and exact["match_probability"] == 0.9979
    assert rescue["candidates"] == [  # best first, the recogniser's order among equals
        {"text": "RK026AJ", "confidence": 0.9636}, {"text": "RKZ6AJ", "confidence": 0.0109},
        {"text": "RK0Z6J", "confidence": 0.0109},
    ] if kind == "read" else [  # a sighting's: by probability, then text
        {"text": "RK026AJ", "confidence": 0.9636}, {"text": "RK0Z6A", "confidence": 0.0109},
        {"text": "RK0Z6J", "confidence": 0.0109},
    ]  # fmt: skip
    assert exact["candidates"][0] == {"text": "YG9X2G", "confidence": 0.9979} and len(exact["candidates"]) == 3
    for body in bodies:  # version 2, read back by the alert pool and sent as stored
        assert body["version"] == 2 and json.loads(alert_body(Alert.model_validate(body))) == body


def test_the_floor_zero_matches_on_distance_alone_as_before(
    stage_pool: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ALPR_WATCH_FUZZY_MIN_PROBABILITY 0: every entry within the distance alerts (the earlier rule)."""
    monkeypatch.setenv("ALPR_WATCH_FUZZY_MIN_PROBABILITY", "0")
    start_s = time.time() - 30
    log_frames(stage_pool, [(frame_ref("north", 1, start_s), [read(YG9X2G)])])
    stage = build_sighting_stage(Settings.load(), connect_redis(redis_url), Metrics())
    stage.poll()
    listed = {b["watch_plate"]: b["match_probability"] for b in alerts(stage_pool)}
    assert listed == {"YG9X2G": 0.9979, "YG92G": 0.0, "YG9X26": 0.0002, "YG9XZ6": 0.0, "YG9X2M": 0.0}


def test_a_sightings_probability_of_the_listed_plate_is_its_reads_mean(
    stage_pool: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A car read right ten times (early alerts off), one read naming the listed YG9X2M at 0.009: the mean
    over its reads, 0.0009, is under the floor, where a read's alone (or the largest) would alert: a
    lookalike parked in view, read for hours, would alert once any read named the listed plate faintly.
    Named at 0.009 by two reads (0.0018), it alerts."""
    monkeypatch.setenv("ALPR_WATCH_READ_MIN_CONFIDENCE", "1")
    start_s = time.time() - 30
    for camera, naming in (("north", 1), ("south", 2)):
        frames = [
            (frame_ref(camera, i, start_s + 0.2 * i), [read(YG9X2G + ([("YG9X2M", 0.009)] if i < naming else []))])
            for i in range(10)
        ]
        log_frames(stage_pool, frames)
    stage = build_sighting_stage(Settings.load(), connect_redis(redis_url), Metrics())
    stage.poll()
    got = [(b["camera_id"], b["watch_plate"], b["match_probability"]) for b in alerts(stage_pool)]
    assert sorted(got) == [("north", "YG9X2G", 0.9979), ("south", "YG9X2G", 0.9979), ("south", "YG9X2M", 0.0018)]

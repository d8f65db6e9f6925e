"""A pass of a listed plate alerted on once however its reads come to the sighting pool, for a lookalike
entry (a fuzzy match) as for the listed plate itself, on the real Postgres and a private Redis (the helpers
and fixture of tests/sighting_worker/chain_scenes.py)."""

from __future__ import annotations

import time

import pytest

from alpr.wiring import build_sighting_stage
from common import defaults
from common.metrics import Metrics
from common.queues import connect_redis
from common.types import PlateCandidate, PlateRead
from tests.sighting_worker.chain_scenes import frame, late_pass, log_frames, plate, table


@pytest.mark.parametrize(
    ("text", "first"), [("KPX4727", "KPX4724"), ("KPX4721", "KPX4721")], ids=["lookalike", "listed"]
)
def test_a_read_grouped_before_the_early_scan_took_it_raises_one_alert_a_pass(
    chain, redis_url, monkeypatch, text, first
):
    """A backlog, three reads a round: the early scan takes them in log order, the grouping in capture order,
    so a car logged after later cars is grouped, and its sighting closed and alerted on, before the early scan
    takes its reads (as a read committed between a round's early query and its grouping query is). The
    sighting's pass kept no box: a lookalike's read (KPX4727 for the listed KPX4721) taken later was held by
    no pass, and alerted on again, on the same read (a review: 4 lookalike entries twice, the exact entry
    once). Its first read is another lookalike (KPX4724), not the sighting's voted plate. The listed plate read
    throughout (the control) was one alert already."""
    pool, settings = chain
    monkeypatch.setattr("common.defaults.SIGHTING_BATCH_READS", 3)
    start_s = time.time() - 30
    log_frames(pool, late_pass(20, start_s + 5, "GHT2093") + late_pass(25, start_s + 6, "7ABC284"))
    car = [(frame(i, start_s + i * 0.2), [hesitant(first if i == 0 else text, 100 + 20 * i)]) for i in range(6)]
    log_frames(pool, car, in_capture_order=True)
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    for _ in range(12):
        stage.poll()
    assert table(pool, "SELECT plate, reads FROM sightings ORDER BY first_seen") == [
        (text, 6), ("GHT2093", 5), ("7ABC284", 5),
    ]  # fmt: skip
    assert alerts_on_the_listed_plate(pool) == [("read", first)]  # early: its reads matched as they were grouped


def hesitant(text: str, x: float) -> PlateRead:
    """A read of `text` whose candidates name the listed KPX4721 too, as the recogniser's do for a character
    it hesitates over (a fuzzy match alerts only so: sighting_worker/match_evidence.py)."""
    read = plate(text, x)
    if any(candidate.text == "KPX4721" for candidate in read.candidates):
        return read
    return PlateRead(
        read.box_xyxy, read.detection_confidence, (*read.candidates, PlateCandidate("KPX4721", 0.025, "us"))
    )


def alerts_on_the_listed_plate(pool) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(kind, plate read) of the alerts on the listed KPX4721."""
    return table(pool, "SELECT kind, body->>'plate' FROM alerts WHERE body->>'watch_plate' = 'KPX4721'")


@pytest.mark.parametrize("text", ["KPX4727", "KPX4721"], ids=["lookalike", "listed"])
def test_a_text_read_again_out_of_the_first_reads_reach_is_one_alert_for_a_lookalike_as_for_the_listed_plate(
    chain, redis_url, text
):
    """One text read again within the pass gap (ALPR_ALERT_REPEAT_S) is one car, one alert, wherever in view:
    so it was for the listed plate (the control), not for a lookalike (KPX4727 for the listed KPX4721) read
    in two frames 1 s apart, its box 900 px on in the second: out of reach of the first read's pass, its
    second read was alerted on again (a review: OUM7311, 2 alerts on each of 4 lookalike entries, 1 on the
    exact one). The tracker makes one sighting of them (a read reading the same joins anywhere)."""
    pool, settings = chain
    start_s = time.time() - 30
    log_frames(pool, [(frame(0, start_s), [plate(text, 100)]), (frame(1, start_s + 1), [plate(text, 1000)])])
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    for _ in range(2):
        stage.poll()
    assert table(pool, "SELECT plate, reads FROM sightings") == [(text, 2)]
    assert alerts_on_the_listed_plate(pool) == [("read", text)]


@pytest.mark.parametrize("text", ["KPX4727", "KPX4721"], ids=["lookalike", "listed"])
def test_a_text_read_again_after_its_sighting_alerted_is_one_alert_for_a_lookalike_as_for_the_listed_plate(
    chain, redis_url, text
):
    """A car read five times, none sure enough for an early alert (0.87), its sighting sure enough: its
    alert began a pass that kept no box, which no read reached. Standing, it is read surely again 4 s later
    (past the sighting gap: a sighting of its own): for a lookalike (KPX4727 for the listed KPX4721) that
    read was alerted on again, for the listed plate (the control) not."""
    pool, settings = chain
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    start_s = time.time() - 5
    log_frames(pool, [(frame(i, start_s + i * 0.2), [plate(text, 300, 0.87)]) for i in range(5)])
    poll_until(pool, stage, 1)
    assert alerts_on_the_listed_plate(pool) == [("sighting", text)]
    log_frames(pool, [(frame(9, time.time() - 0.2), [plate(text, 300)])])
    poll_until(pool, stage, 2)
    assert table(pool, "SELECT plate, reads FROM sightings ORDER BY first_seen") == [(text, 5), (text, 1)]
    assert alerts_on_the_listed_plate(pool) == [("sighting", text)]


def poll_until(pool, stage, sightings: int) -> None:  # type: ignore[no-untyped-def]
    """The stage's rounds until that many sightings are logged (at most 20 s)."""
    deadline = time.monotonic() + 20
    while len(table(pool, "SELECT 1 FROM sightings")) < sightings and time.monotonic() < deadline:
        time.sleep(defaults.SIGHTING_POLL_S)
        stage.poll()

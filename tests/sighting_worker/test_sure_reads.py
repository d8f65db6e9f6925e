"""A listed plate read once surely enough to be trusted alone (ALPR_OCR_MIN_CONFIDENCE) but not enough for an
early alert is alerted on at its sighting, whatever other plate's read the tracker took into that sighting by
its box, on the real Postgres and a private Redis (the helpers and fixture of
tests/sighting_worker/chain_scenes.py): live, and logged an hour late (grouped apart)."""

from __future__ import annotations

import time

import pytest

from alpr.wiring import build_sighting_stage
from common.metrics import Metrics
from common.queues import connect_redis
from tests.sighting_worker.chain_scenes import frame, live_car, log_frames, plate, table


@pytest.mark.parametrize("late", [False, True], ids=["live", "logged-an-hour-late"])
@pytest.mark.parametrize(("other", "alerted"), [("ZZY9035", True), ("KPX4724", False)], ids=["next-car", "misread"])
def test_a_listed_plate_read_surely_once_beside_the_next_cars_unsure_read_is_alerted_on(
    chain, redis_url, monkeypatch, late, other, alerted
):
    """KPX4721 read once at 0.87 (trusted alone, under the early alert's 0.9), then 1 s later the next car,
    30 px on, read ZZY9035 at 0.6: the tracker takes it into the listed car's sighting by its box, and the
    vote set the one against the other (0.87 / (1 + (0.6 / 0.87)**2) = 0.59): no alert, where the read
    alone raised one (a review: 3 of 26 such reads). A read that far from the plate no longer contests it;
    a misread one character off (KPX4724, the control) still does."""
    pool, settings = chain
    monkeypatch.setattr("common.defaults.LATE_SIGHTING_HOLD_S", 0.0)
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    if late:
        log_frames(pool, live_car(1, "AAA1111"))
        stage.poll()
    start_s = time.time() - (3600 if late else 30)
    log_frames(
        pool, [(frame(10, start_s), [plate("KPX4721", 300, 0.87)]), (frame(11, start_s + 1), [plate(other, 330, 0.6)])]
    )
    for _ in range(3):
        stage.poll()
    assert table(pool, "SELECT plate, reads FROM sightings WHERE plate = 'KPX4721'") == [("KPX4721", 2)]
    alerts = table(pool, "SELECT kind, body->>'plate', (body->>'confidence')::float, body ? 'late' FROM alerts")
    assert alerts == ([("sighting", "KPX4721", 0.87, late)] if alerted else []), alerts

"""Late reads of one vehicle pass that come over several of the sighting pool's rounds, on the real Postgres
and a private Redis (the helpers and fixture of tests/sighting_worker/chain_scenes.py): a spool replayed in
batches, or an OCR pool catching up, is one late sighting a pass, not one a round; and a listed car's pass
is alerted on once, however far apart in time its late reads lie and however late each batch comes."""

from __future__ import annotations

import time

import pytest

from alpr.wiring import build_sighting_stage
from common.metrics import Metrics
from common.queues import connect_redis
from tests.sighting_worker.chain_scenes import frame, late_pass, live_car, log_frames, plate, table


def live_rounds(pool, stage, first_index: int, rounds: int = 3) -> None:  # type: ignore[no-untyped-def]
    """The camera live meanwhile: a car read now, a round after each."""
    for k in range(rounds):
        time.sleep(0.3)
        log_frames(pool, live_car(first_index + k, f"LIV{first_index + k:04d}"))
        stage.poll()


def test_a_late_pass_logged_over_three_rounds_is_one_sighting(chain, redis_url, monkeypatch):
    """A car's twelve reads, captured an hour ago, logged in three batches (the middle one first, as an OCR
    pool catching up may), a live round between each: one late sighting of twelve reads once no late read
    has joined it for LATE_SIGHTING_HOLD_S, not one of four a round (a review: three cars for one). A car
    half a minute after it in the last batch is a sighting of its own (the control)."""
    pool, settings = chain
    monkeypatch.setattr("common.defaults.LATE_SIGHTING_HOLD_S", 1.5, raising=False)
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    log_frames(pool, live_car(1, "AAA1111"))
    stage.poll()
    late_s = time.time() - 3600
    car = [(frame(500 + i, late_s + i * 0.2), [plate("LATE123", 100 + 20 * i)]) for i in range(12)]
    other = late_pass(600, late_s + 30, "LATE456")
    for number, batch in enumerate((car[4:8], car[:4], car[8:] + other)):
        log_frames(pool, batch)
        stage.poll()
        live_rounds(pool, stage, 10 + 3 * number, rounds=1)
    time.sleep(1.6)
    stage.poll()
    late = table(pool, "SELECT sighting_id, plate, reads FROM sightings WHERE plate LIKE 'LATE%' ORDER BY first_seen")
    assert late == [("gate:gate:run1:500:0", "LATE123", 12), ("gate:gate:run1:600:0", "LATE456", 5)]
    registry = stage.metrics.registry
    assert registry.get_sample_value("alpr_sighting_late_reads_total", {"camera": "gate"}) == 17


@pytest.mark.parametrize("sighting_closed", [False, True], ids=["sighting_open", "sighting_closed"])
def test_a_listed_cars_long_late_pass_logged_in_two_batches_raises_one_alert(
    chain, redis_url, monkeypatch, sighting_closed
):
    """A listed car parked in view, read every second for 150 s an hour ago (longer than the pass gap,
    ALPR_ALERT_REPEAT_S, 60 s: one pass by the grouping's rules, each read within the gap of the one before),
    logged in two batches, the pass let go of by the cursor in between (EARLY_RESCAN_S at 0, live rounds).
    The second batch's reads lie further than the pass gap from the first batch's alert, which raised a
    second alert (a review): its reads join the pass's late track while it is held open, and once it
    closed, its logged sighting is the pass's span. The same car five minutes before is another pass: its
    own alert (the control)."""
    pool, settings = chain
    monkeypatch.setattr("common.defaults.EARLY_RESCAN_S", 0.0)
    monkeypatch.setattr("common.defaults.LATE_SIGHTING_HOLD_S", 0.5 if sighting_closed else 30.0, raising=False)
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    log_frames(pool, live_car(1, "AAA1111"))
    stage.poll()
    late_s = time.time() - 3600
    parked = [(frame(500 + i, late_s + i), [plate("KPX4721", 300 + i % 2)]) for i in range(150)]
    log_frames(pool, parked[:75], in_capture_order=True)
    stage.poll()
    assert table(pool, "SELECT body->>'frame_id' FROM alerts") == [("gate:run1:500",)]
    live_rounds(pool, stage, 10)
    if sighting_closed:
        time.sleep(0.6)
        stage.poll()
        assert table(pool, "SELECT reads FROM sightings WHERE plate = 'KPX4721'") == [(75,)]
        assert "KPX4721" not in str(table(pool, "SELECT state->'alerted' FROM sighting_cursors"))  # let go of
    log_frames(pool, parked[75:], in_capture_order=True)
    stage.poll()
    assert table(pool, "SELECT body->>'frame_id' FROM alerts") == [("gate:run1:500",)]  # one pass, one alert
    log_frames(pool, late_pass(700, late_s - 300))
    stage.poll()
    alerts = table(pool, "SELECT body->>'frame_id', body->>'late' FROM alerts ORDER BY captured_at")
    assert alerts == [("gate:run1:704", "true"), ("gate:run1:500", "true")]


def test_a_late_track_held_at_a_camera_gone_quiet_is_closed_all_the_same(chain, redis_url, monkeypatch):
    """A round visits only the cameras with work: a camera whose only work is a late track held open (its
    spool replayed, the camera itself quiet since) is one, or its late sighting waited for its next car."""
    pool, settings = chain
    monkeypatch.setattr("common.defaults.LATE_SIGHTING_HOLD_S", 1.0, raising=False)
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    log_frames(pool, live_car(1, "AAA1111"))
    stage.poll()
    time.sleep(settings.sighting_gap_s + 0.5)
    stage.poll()
    assert table(pool, "SELECT plate FROM sightings") == [("AAA1111",)]
    log_frames(pool, late_pass(500, time.time() - 3600, "LATE123"))
    stage.poll()
    assert table(pool, "SELECT plate FROM sightings") == [("AAA1111",)]  # held open
    time.sleep(1.1)
    stage.poll()
    assert table(pool, "SELECT plate, reads FROM sightings ORDER BY first_seen") == [("LATE123", 5), ("AAA1111", 1)]


def earlier_release_groups(state: dict) -> bool:  # type: ignore[type-arg]
    """Whether a sighting worker of the release before late tracks were held (f6b2a11) groups a camera whose
    cursor holds `state`, and drops nothing of it. Its rule, fixed here (not this release's constants): its
    `check_state_version` refuses a state whose `version` is not an int or is past its CURSOR_STATE_VERSION, 1
    (that camera never grouped again, an ERROR once); it reads `tracker`, `early` and `alerted` and saves no
    other part (a `late` part would be dropped with its tracks' reads)."""
    found = state.get("version", 0)
    return type(found) is int and found <= 1 and set(state) <= {"version", "tracker", "early", "alerted"}


def test_a_cursor_holding_no_late_track_is_saved_in_the_form_the_earlier_release_groups(chain, redis_url, monkeypatch):
    """Saved as version 2 whether it held a late track or not, every camera's cursor was refused by the
    sighting workers of the earlier release after a rollback: not one sighting or alert since (215 reads
    left ungrouped in 70 s, a review). A cursor holding no late track is saved in version 1's form; one
    holding late tracks is version 2 (a worker of version 1 would drop them: it refuses the camera), and
    version 1 again once they are closed."""
    pool, settings = chain
    monkeypatch.setattr("common.defaults.LATE_SIGHTING_HOLD_S", 1.0, raising=False)
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())

    def saved() -> dict:  # type: ignore[type-arg]
        ((state,),) = table(pool, "SELECT state FROM sighting_cursors")
        return state  # type: ignore[no-any-return]

    log_frames(pool, live_car(1, "AAA1111"))
    stage.poll()
    assert earlier_release_groups(saved()), saved()
    log_frames(pool, late_pass(500, time.time() - 3600, "LATE123"))
    stage.poll()
    held = saved()
    assert held["version"] == 2 and len(held["late"]["tracks"]) == 1 and not earlier_release_groups(held)
    time.sleep(1.1)
    stage.poll()
    assert table(pool, "SELECT plate, reads FROM sightings WHERE plate LIKE 'LATE%'") == [("LATE123", 5)]  # closed
    assert earlier_release_groups(saved()), saved()

"""A listed car still in view (parked or queued: its reads span OPEN_TRACK_DWELL_S) whose running plate vote
is sure enough for a sighting (reads at 0.87: at least ALPR_OCR_MIN_CONFIDENCE, under
ALPR_WATCH_READ_MIN_CONFIDENCE, so no early alert on a read), rests on OPEN_TRACK_MIN_READS reads and matches
exactly is alerted on while it stands there, not once it has left; a passing car, a lookalike's fuzzy match
and a vote of fewer reads are judged at the close; once for its pass, neither again in
its later rounds nor at its sighting's close; and by an entry that expired during its stay, as it was
listed when the car was seen. On the real Postgres and a private Redis (tests/sighting_worker/chain_scenes.py's
fixture)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from alpr.cli import main
from alpr.wiring import build_sighting_stage
from common.config import Settings
from common.jobs import FrameRef
from common.metrics import Metrics
from common.queues import connect_redis
from common.types import PlateRead
from sighting_worker.alert_ids import alert_id
from tests.sighting_worker.chain_scenes import frame, log_frames, plate, table
from tests.sighting_worker.test_round_statements import counted_connection

UNSURE_READ = 0.87
"""Sure enough for a sighting (ALPR_OCR_MIN_CONFIDENCE, 0.85), not for an early alert on a read (0.9)."""


def parked(first: int, from_s: float, until_s: float, text: str = "KPX4721") -> list[tuple[FrameRef, list[PlateRead]]]:
    """A car standing still in front of the camera, read every 0.2 s from `from_s` to `until_s` at UNSURE_READ."""
    count = int((until_s - from_s) / 0.2) + 1
    return [(frame(first + i, from_s + i * 0.2), [plate(text, 500.0, UNSURE_READ)]) for i in range(count)]


def alerts(pool) -> list[tuple]:  # type: ignore[no-untyped-def, type-arg]
    return table(pool, "SELECT alert_id, kind, body->>'sighting_id', body->>'watch_plate' FROM alerts")


def test_a_parked_listed_car_read_unsure_is_alerted_on_while_it_stands_there_once_for_its_pass(chain, redis_url):
    """Parked 20 s so far, read at 0.87 throughout: its track is open (the car has not gone for the gap),
    its vote KPX4721 at 0.87. Before, no alert until the car left (an hour parked, an hour late); now one
    in this round, on its pass; later rounds of the same car, and its sighting closed, raise none."""
    pool, settings = chain
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    now = time.time()
    frames = parked(0, now - 20, now - 0.4)
    log_frames(pool, frames, in_capture_order=True)
    stage.poll()
    assert table(pool, "SELECT 1 FROM sightings") == []  # still in view: no sighting yet
    raised = alerts(pool)
    assert len(raised) == 1, raised  # alerted on in the round its (open) track's vote is sure
    identifier, kind, sighting_id, watch_plate = raised[0]
    assert (kind, sighting_id, watch_plate) == ("sighting", f"gate:{frames[0][0].frame_id}:0", "KPX4721")
    assert table(pool, "SELECT receiver, status FROM alert_deliveries") == [("ops", "pending")]
    for step in range(3):  # still parked, read every round: its pass, alerted on already
        time.sleep(0.5)
        more = parked(1000 + 100 * step, frames[-1][0].captured_at_s + 0.2, time.time() - 0.4)
        log_frames(pool, more, in_capture_order=True)
        frames += more
        stage.poll()
        assert len(alerts(pool)) == 1
    time.sleep(settings.sighting_settle_s + settings.sighting_gap_s + 0.5)  # gone: its sighting closes
    stage.poll()
    stage.poll()
    assert table(pool, "SELECT sighting_id, plate FROM sightings") == [(sighting_id, "KPX4721")]
    assert alerts(pool) == raised  # the closing sighting is the pass alerted on: no second alert
    key = getattr(stage.alert_queue, "job_key", None)
    assert identifier == alert_id("sighting", sighting_id, "default", "KPX4721", key=key)  # its sighting's id


def test_an_entry_that_expires_while_the_listed_car_stands_there_still_alerts(chain, redis_url, postgres_url):
    """The car is seen while KPX4721 (on `wanted`) is listed; the entry expires 2 s later, the car still
    there. Before, its reads at 0.87 waited for the sighting's close, judged as of max(first seen, the
    close less the frames' lifetime): a stay longer than the frames' lifetime past the expiry raised no
    alert at all (a review: 95 s parked, the lifetime scaled to 77 s). Now its open track's vote is
    matched in the round after the expiry, judged as of the reads it rests on, the car's: an alert."""
    pool, settings = chain
    expires = datetime.fromtimestamp(time.time() + 2, UTC).isoformat()
    assert main(["watchlist", "add", "KPX4721", "--reason", "wanted", "--list", "wanted", "--expires", expires,
                 "--database-url", postgres_url]) == 0  # fmt: skip
    now = time.time()
    frames = parked(0, now - 20, now - 0.4)
    log_frames(pool, frames, in_capture_order=True)  # seen while listed
    time.sleep(2.5)  # the entry has expired; the car stands there still
    log_frames(pool, parked(1000, frames[-1][0].captured_at_s + 0.2, time.time() - 0.4), in_capture_order=True)
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    stage.poll()
    assert table(pool, "SELECT 1 FROM sightings") == []  # in view still
    assert sorted(row[3] for row in alerts(pool)) == ["KPX4721", "KPX4721"]  # default (stolen) and wanted
    assert sorted(table(pool, "SELECT body->>'reason' FROM alerts")) == [("stolen",), ("wanted",)]
    time.sleep(settings.sighting_settle_s + settings.sighting_gap_s + 0.5)
    stage.poll()
    stage.poll()
    assert len(table(pool, "SELECT 1 FROM sightings")) == 1
    assert len(alerts(pool)) == 2  # its sighting, closed, raises neither again


def test_an_unsure_vote_of_a_listed_plate_in_view_raises_nothing_until_it_is_sure(chain, redis_url):
    """The rule a closing track's vote must meet, no looser: a parked car read at 0.6 (a vote under
    ALPR_OCR_MIN_CONFIDENCE) raises no alert while in view, as its sighting would raise none."""
    pool, settings = chain
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    now = time.time()
    frames = [(frame(i, now - 10 + i * 0.2), [plate("KPX4721", 500.0, 0.6)]) for i in range(45)]
    log_frames(pool, frames, in_capture_order=True)
    stage.poll()
    assert alerts(pool) == []


def test_a_parked_lookalike_is_left_to_its_close_not_matched_fuzzily_in_view(chain, redis_url):
    """KPX4727, one character off the listed KPX4721 and naming it among its candidates (a fuzzy match its
    evidence bears out), parked 20 s and read at 0.87: no alert while it stands there (a fuzzy match waits for
    the final vote; its evidence is not looked up each round), one at its sighting's close."""
    pool, settings = chain
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    now = time.time()
    frames = parked(0, now - 20, now - 0.4, text="KPX4727")
    log_frames(pool, frames, in_capture_order=True)
    with counted_connection() as sent:
        stage.poll()
        for step in range(3):
            time.sleep(0.5)
            more = parked(1000 + 100 * step, frames[-1][0].captured_at_s + 0.2, time.time() - 0.4, text="KPX4727")
            log_frames(pool, more, in_capture_order=True)
            frames += more
            stage.poll()
    assert table(pool, "SELECT 1 FROM sightings") == []  # in view still
    assert alerts(pool) == []
    assert sum(statement.startswith("WITH reads AS") for statement in sent) == 0
    time.sleep(settings.sighting_settle_s + settings.sighting_gap_s + 0.5)  # gone: its sighting closes
    stage.poll()
    stage.poll()
    assert [row[1:] for row in alerts(pool)] == [("sighting", f"gate:{frames[0][0].frame_id}:0", "KPX4721")]


def test_a_passing_car_misread_once_under_the_watch_read_threshold_is_not_alerted_on(chain, redis_url):
    """A passing car KPX4799 (listed nowhere): its first read KPX4721 (listed) at 0.86, under the watch-read
    threshold (0.9), then ten reads KPX4799 at 0.95. Its open track voted KPX4721 on that one read and was
    alerted on at once, an alert its sighting (KPX4799) contradicts (a review): a passing car, 1.6 s in view,
    is judged at its close."""
    pool, settings = chain
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    now = time.time() - 2.5
    log_frames(pool, [(frame(0, now), [plate("KPX4721", 500.0, 0.86)])], in_capture_order=True)
    stage.poll()
    rest = [(frame(i, now + 0.6 + 0.1 * i), [plate("KPX4799", 500.0 + 5 * i, 0.95)]) for i in range(1, 11)]
    log_frames(pool, rest, in_capture_order=True)
    time.sleep(2.5)
    stage.poll()
    time.sleep(settings.sighting_settle_s + settings.sighting_gap_s + 0.5)
    stage.poll()
    stage.poll()
    assert table(pool, "SELECT plate FROM sightings") == [("KPX4799",)]
    assert alerts(pool) == []


def test_a_lookalike_vote_become_the_listed_plate_raises_the_exact_alert(chain, redis_url):
    """An open track first voting the lookalike KPX4727 (a fuzzy match of KPX4721 its candidates bear out),
    then read exactly KPX4721: its fuzzy alert, raised while open, took the pass and the alert id, and the
    exact one was dropped (ON CONFLICT DO NOTHING; a review). Now the fuzzy match waits for the close, where
    the vote is final: one alert, exact, on KPX4721."""
    pool, settings = chain
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    t0 = time.time() - 2.6
    log_frames(pool, [(frame(i, t0 + 0.1 * i), [plate("KPX4727", 500.0, 0.87)]) for i in range(3)],
               in_capture_order=True)  # fmt: skip
    stage.poll()
    rest = [(frame(i, t0 + 0.7 + 0.1 * i), [plate("KPX4721", 500.0, 0.89)]) for i in range(3, 25)]
    log_frames(pool, rest, in_capture_order=True)
    time.sleep(2.5)
    stage.poll()
    time.sleep(settings.sighting_settle_s + settings.sighting_gap_s + 0.5)
    stage.poll()
    stage.poll()
    assert table(pool, "SELECT plate FROM sightings") == [("KPX4721",)]
    bodies = table(pool, "SELECT body->>'plate', body->>'watch_plate', body->>'distance' FROM alerts")
    assert [(text, watch_plate, float(distance)) for text, watch_plate, distance in bodies] == [
        ("KPX4721", "KPX4721", 0.0)
    ]


def misread(index: int) -> str:
    """KPX4721 with one character, a different one each read, misread (0 for O, 8 for B, ...)."""
    position = index % 7
    return "KPX4721"[:position] + "B0Z8A7L"[position] + "KPX4721"[position + 1 :]


def test_a_parked_car_voted_on_two_exact_reads_is_not_matched_in_view(chain, redis_url):
    """A car parked 20 s, read 99 times: twice exactly KPX4721 (listed) at 0.89, else at 0.4 with one
    character misread, a different one each time. Its vote is KPX4721, sure enough for a sighting (each
    position agrees), but two reads say it: fewer than OPEN_TRACK_MIN_READS, no alert while it stands there;
    its sighting, closed, raises one."""
    pool, settings = chain
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    now = time.time()
    frames = [
        (
            frame(i, now - 20 + i * 0.2),
            [plate("KPX4721", 500.0, 0.89) if i in (10, 50) else plate(misread(i), 500.0, 0.4)],
        )
        for i in range(99)
    ]
    log_frames(pool, frames, in_capture_order=True)
    stage.poll()
    assert table(pool, "SELECT 1 FROM sightings") == []  # in view still
    assert alerts(pool) == []
    time.sleep(settings.sighting_settle_s + settings.sighting_gap_s + 0.5)
    stage.poll()
    stage.poll()
    assert table(pool, "SELECT plate, reads FROM sightings") == [("KPX4721", 99)]
    assert [row[1:] for row in alerts(pool)] == [("sighting", f"gate:{frames[0][0].frame_id}:0", "KPX4721")]


def test_a_car_in_view_under_the_dwell_is_not_matched_before_its_close(chain, redis_url):
    """A listed car read at 0.87 for 5 s (under OPEN_TRACK_DWELL_S: a slow pass) and still in view raises no
    alert yet; its sighting, closed, raises one."""
    pool, settings = chain
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    now = time.time()
    frames = parked(0, now - 5, now - 0.4)
    log_frames(pool, frames, in_capture_order=True)
    stage.poll()
    assert alerts(pool) == []
    time.sleep(settings.sighting_settle_s + settings.sighting_gap_s + 0.5)
    stage.poll()
    stage.poll()
    assert [row[1:] for row in alerts(pool)] == [("sighting", f"gate:{frames[0][0].frame_id}:0", "KPX4721")]


def test_an_entry_listed_while_the_car_stands_there_is_matched_at_the_next_reload(chain, redis_url, postgres_url,
                                                                                  monkeypatch):  # fmt: skip
    """The car's open track was matched (LMN5555: listed nowhere) and is not matched again while its vote
    stands; the watch-lists reloaded with LMN5555 listed since, it is: an alert while the car is there."""
    pool, _ = chain
    monkeypatch.setenv("ALPR_WATCH_REFRESH_S", "0.1")
    settings = Settings.load()
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    now = time.time()
    frames = parked(0, now - 20, now - 0.4, text="LMN5555")
    log_frames(pool, frames, in_capture_order=True)
    stage.poll()
    assert alerts(pool) == []
    assert main(["watchlist", "add", "LMN5555", "--reason", "wanted", "--database-url", postgres_url]) == 0
    time.sleep(0.3)
    more = parked(1000, frames[-1][0].captured_at_s + 0.2, time.time() - 0.4, text="LMN5555")
    log_frames(pool, more, in_capture_order=True)
    stage.poll()
    assert table(pool, "SELECT 1 FROM sightings") == []
    assert [row[1:] for row in alerts(pool)] == [("sighting", f"gate:{frames[0][0].frame_id}:0", "LMN5555")]

"""A listed car still in view whose running plate vote is already sure enough for a sighting (reads at 0.87:
at least ALPR_OCR_MIN_CONFIDENCE, under ALPR_WATCH_READ_MIN_CONFIDENCE, so no early alert on a read) is
alerted on in the round its vote becomes sure, not once it has left; once for its pass, neither again in
its later rounds nor at its sighting's close; and by an entry that expired during its stay, as it was
listed when the car was seen. On the real Postgres and a private Redis (tests/sighting_worker/test_worker.py's
fixtures)."""

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
from tests.sighting_worker.test_round_statements import counted_connection
from tests.sighting_worker.test_worker import chain, frame, log_frames, plate, table

__all__ = ["chain"]

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


def test_a_parked_lookalike_is_matched_once_while_its_vote_stands_not_every_round(chain, redis_url):
    """KPX4727, one character off the listed KPX4721 and naming it among its candidates (a fuzzy match its
    evidence bears out), parked and read at 0.87: alerted on while it stands there, once. Its evidence is
    averaged over every read of its stay (one query over them): looked up when its vote first matched, not
    again every round while the vote stays KPX4727 (an hour parked: 18,000 reads every 0.2 s)."""
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
    assert [row[1:] for row in alerts(pool)] == [("sighting", f"gate:{frames[0][0].frame_id}:0", "KPX4721")]
    assert sum(statement.startswith("WITH reads AS") for statement in sent) == 1


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

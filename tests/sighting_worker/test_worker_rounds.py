"""The sighting pool's rounds on the real Postgres and a private Redis: a parked car sampled slowly, a camera's
frame interval learnt, rounds that visit only cameras with work, alerts due at once when their job could not be
queued, frames queued but not recorded holding grouping back, and the early scan's reads."""

from __future__ import annotations

import time

import psycopg
import pytest

from alpr.wiring import build_sighting_stage
from common import defaults
from common.config import Settings
from common.frame_log import FrameLog, FrameRecord
from common.metrics import Metrics
from common.queues import connect_redis
from tests.sighting_worker.chain_scenes import frame, log_frames, passes, plate, table


@pytest.mark.parametrize("fps", [1.0, 0.5, 0.4, 0.2])
def test_a_car_parked_in_front_of_a_camera_sampled_slowly_is_one_sighting_and_one_alert(
    chain, redis_url, monkeypatch, fps
):
    """A camera sampled more slowly than one frame a sighting gap (ALPR_SIGHTING_GAP_S, 2 s, for every
    camera; any sample_fps above 0 is accepted) made a parked car read surely in every frame a sighting
    per frame: 24 in a minute at 0.4 frames/s (a review), and with ALPR_ALERT_REPEAT_S at 0 (the pass gap
    the sighting gap) an alert per frame. The camera's gap is now at least two of its frame intervals,
    learnt from its frames in the frames log (its sample rate is kept nowhere in Postgres)."""
    monkeypatch.setenv("ALPR_ALERT_REPEAT_S", "0")
    pool, _ = chain
    start_s = time.time() - 120
    log_frames(pool, [(frame(i, start_s + i / fps), [plate("KPX4721", 500.0)]) for i in range(int(60 * fps))])
    stage = build_sighting_stage(Settings.load(), connect_redis(redis_url), Metrics())
    for _ in range(2):
        stage.poll()
    assert [(p, n) for p, n in table(pool, "SELECT plate, reads FROM sightings")] == [("KPX4721", int(60 * fps))]
    assert table(pool, "SELECT kind FROM alerts") == [("read",)]


def test_a_cameras_frame_interval_is_learnt_from_its_frames_erring_short(chain):
    """From the frames log (every frame sampled, read or not): a restart's pause of five minutes does not
    lengthen it, one frame dated out of step does not shorten it; too few frames: unknown."""
    from common.sighting_log import frame_interval

    pool, _ = chain
    start_s = time.time() - 600
    times = [start_s + 2.5 * i for i in range(8)] + [start_s + 320 + 2.5 * i for i in range(8)]
    times.append(times[-1] + 0.3)  # out of step
    FrameLog(pool, 0).record_sampled([FrameRecord(frame(i, at_s), "pending") for i, at_s in enumerate(times)])
    FrameLog(pool, 0).record_sampled([FrameRecord(frame(0, start_s, camera="new"), "pending")])
    with pool.connection() as connection:
        assert frame_interval(connection, "gate") == pytest.approx(2.5)
        assert frame_interval(connection, "new") is None and frame_interval(connection, "none") is None


def test_a_camera_of_unknown_frame_interval_costs_one_lookup_a_period_not_one_a_round(chain, redis_url, monkeypatch):
    """A camera with a single frame logged has no frame interval: it was looked up again every round
    (0.2 s), a query a round for each such camera with work. Now once per FRAME_INTERVAL_UNKNOWN_S; the
    interval is learnt at the first lookup after that. Queries counted as Postgres is sent them."""
    from common.sighting_log import FRAME_INTERVAL

    pool, settings = chain
    sent: list[str] = []
    execute = psycopg.Cursor.execute

    def counted(cursor, query, *args, **kwargs):  # type: ignore[no-untyped-def]
        sent.append(query if isinstance(query, str) else "")
        return execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counted)
    start_s = time.time() - 2.05
    log_frames(pool, [(frame(0, start_s), [plate("KPX4721", 500.0)])])  # its track open for about 2 s
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    visited: list[str] = []
    group_camera = stage.group_camera
    stage.group_camera = lambda camera_id: visited.append(camera_id) or group_camera(camera_id)  # type: ignore[method-assign]
    for _ in range(5):
        stage.poll()
    assert visited == ["gate"] * 5  # a camera with work each round (its track open)
    assert sent.count(FRAME_INTERVAL) == 1  # unknown, and not asked again within the period
    log_frames(pool, [(frame(1, start_s + 0.2), [plate("KPX4721", 500.0)])])  # its interval now known: 0.2 s
    with pool.connection() as connection:
        assert stage.camera_frame_interval(connection, "gate") is None  # within the period: as it was
        assert sent.count(FRAME_INTERVAL) == 1
        monkeypatch.setattr(defaults, "FRAME_INTERVAL_UNKNOWN_S", 0.0)  # the period over
        # Postgres keeps capture times to the microsecond: the two frames' 0.2 s came back as 0.200001
        assert stage.camera_frame_interval(connection, "gate") == pytest.approx(0.2, abs=2e-6)
        assert stage.camera_frame_interval(connection, "gate") == pytest.approx(0.2, abs=2e-6)  # known: kept a minute
    assert sent.count(FRAME_INTERVAL) == 2


def test_a_pass_that_kept_no_box_is_held_open_by_no_lookalike() -> None:
    """A pass saved before it kept its newest read's box ([first, last, touched] or with the nearest
    match's distance), or begun by a sighting, was within reach of any read: the first lookalike held it
    open and its box became the pass's, so it held it on for good. Without a box, none holds it."""
    from common.types import Observation
    from sighting_worker.passes import Pass

    lookalike = Observation("gate", "gate:run1:9", 0, 100.5, (1000.0, 400.0, 1090.0, 440.0), "KPX4799", 0.95)
    for saved in ([100.0, 100.2, 5.0], [100.0, 100.2, 5.0, 0.0], {"span": [100.0, 100.2, 5.0], "nearest": 0.0}):
        assert not Pass.from_state(saved).reaches(lookalike)
    kept = Pass.from_state([100.0, 100.2, 5.0, 0.0])
    kept.note(Observation("gate", "gate:run1:1", 0, 100.2, (100.0, 400.0, 190.0, 440.0), "KPX4721", 0.95))
    assert kept.to_state()["span"] == [100.0, 100.2, 5.0] and kept.nearest == 0.0 and not kept.reaches(lookalike)
    assert kept.reaches(Observation("gate", "gate:run1:9", 0, 100.5, (120.0, 400.0, 210.0, 440.0), "KPX47", 0.4))
    assert Pass.from_state([100.0, 100.2, 5.0, 0.0, 100.2, 145.0, 420.0, 90.0]).reaches(lookalike) is False


def test_an_alert_whose_job_could_not_be_queued_is_due_at_once_not_half_a_minute_later(
    chain, redis_url, redis_server, postgres_url
):
    """Redis away as the alert is committed: its delivery was marked queued all the same, and the alert
    pool queued it only ALERT_REQUEUE_AFTER_S (30 s) later; now it is due at the pool's next round."""
    from common.alert_log import AlertLog

    pool, settings = chain
    log_frames(pool, [(frame(i, time.time() - 30 + i * 0.2), [plate("KPX4721", 100 + 10 * i)]) for i in range(5)])
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    redis_server.stop()
    assert len(stage.poll().alerts) == 1
    assert AlertLog(pool, 0.0).due(defaults.ALERT_REQUEUE_AFTER_S, limit=10) == [
        (table(pool, "SELECT alert_id FROM alerts")[0][0], "ops", 0)
    ]


@pytest.mark.parametrize("raiser_killed", [True, False])
def test_an_alert_whose_raiser_died_before_queueing_it_is_due_within_seconds(
    chain, redis_url, monkeypatch, raiser_killed
):
    """A sighting worker killed between its commit and queueing the alert's job (OOM, the end of a stop's
    grace) left the delivery marked queued at the commit: the alert pool queued it 30 s later (a review:
    the receiver had it 40 s after the commit). It now waits ALERT_UNCONFIRMED_S for the raiser to say it
    queued it; one that did is left alone for ALERT_REQUEUE_AFTER_S, as before."""
    from common.alert_log import AlertLog

    monkeypatch.setattr(defaults, "ALERT_UNCONFIRMED_S", 1.0)
    pool, settings = chain
    log_frames(pool, [(frame(i, time.time() - 30 + i * 0.2), [plate("KPX4721", 100 + 10 * i)]) for i in range(5)])
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    if raiser_killed:  # the process gone right after its commit: nothing after it ran
        monkeypatch.setattr(stage, "after_commit", lambda *_: None)
    assert len(stage.poll().alerts) == 1
    alerts = AlertLog(pool, 0.0)
    assert alerts.due(defaults.ALERT_REQUEUE_AFTER_S, limit=10) == []  # the raiser's to queue, at first
    time.sleep(1.2)
    due = alerts.due(defaults.ALERT_REQUEUE_AFTER_S, limit=10)
    assert due == ([(table(pool, "SELECT alert_id FROM alerts")[0][0], "ops", 0)] if raiser_killed else [])


def test_a_round_visits_only_the_cameras_with_work(chain, redis_url):
    """300 idle cameras cost a round 0.3 s of queries, more than the 0.2 s between rounds: early alerts
    waited on them. A round now visits a camera met for the first time, with reads not taken or not
    grouped, or with an open track — and no other (the idle ones' cursors stay as they were)."""
    pool, settings = chain
    with pool.connection() as connection:
        for camera in ("idle1", "idle2"):
            connection.execute("INSERT INTO sighting_cursors (camera_id) VALUES (%s)", (camera,))
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    visited: list[str] = []
    group_camera = stage.group_camera
    stage.group_camera = lambda camera_id: visited.append(camera_id) or group_camera(camera_id)  # type: ignore[method-assign]
    stage.poll()
    assert visited == ["idle1", "idle2"]  # met for the first time
    visited.clear()
    stage.poll()
    assert visited == []  # idle: nothing to do
    start_s = time.time() - 30
    log_frames(pool, [(frame(i, start_s + i * 0.2), [plate("KPX4721", 100 + 10 * i)]) for i in range(5)])
    stage.poll()
    assert visited == ["gate"] and len(table(pool, "SELECT 1 FROM sightings")) == 1  # new reads, grouped
    visited.clear()
    stage.poll()
    assert visited == []  # its reads taken and grouped, no track open
    now_s = time.time()  # a car just seen (after the last round's horizon, now - 2 s)
    log_frames(pool, [(frame(i, now_s - 1.9 + (i - 5) * 0.1), [plate("GHT2093", 100)]) for i in range(5, 8)])
    time.sleep(0.6)  # its reads past the settle time (2 s), its track within the gap (2 s)
    stage.poll()
    assert visited == ["gate"] and len(table(pool, "SELECT 1 FROM sightings")) == 1  # grouped, not closed
    stage.poll()
    assert visited == ["gate", "gate"]  # its reads taken and grouped: visited for its open track alone


@pytest.mark.parametrize("node_watermark", [True, False])
def test_a_frame_queued_but_not_yet_recorded_holds_grouping_back(chain, redis_url, node_watermark):
    """The ingest node records frames a moment after queuing them (its ledger is asynchronous): a frame
    with no row yet is invisible to the frames log, and only the node's watermark keeps grouping from
    passing it. Without one (the control), its reads, logged late, miss their sightings."""
    pool, settings = chain
    frames = passes(time.time() - 30)
    log_frames(pool, frames[:5] + frames[6:])  # frame 5: sampled and queued, no row, no read yet
    if node_watermark:
        with pool.connection() as connection:
            connection.execute("INSERT INTO camera_watermarks VALUES ('gate', %s)", (frames[5][0].captured_at_s,))
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    early = stage.poll().sightings
    log_frames(pool, frames[5:6])
    if node_watermark:
        with pool.connection() as connection:
            connection.execute("UPDATE camera_watermarks SET recorded_until_s = %s", (time.time() - 1,))
    sightings = early + stage.poll().sightings
    reads = {s.plate: s.reads for s in sightings if s.plate in ("7ABC284", "KPX4721")}
    assert reads == ({"7ABC284": 10, "KPX4721": 10} if node_watermark else {"7ABC284": 9, "KPX4721": 9}), sightings


@pytest.mark.parametrize("rescan_s", [30.0, 0.0])
def test_a_read_committed_after_higher_ids_still_raises_its_early_alert(chain, redis_url, monkeypatch, rescan_s):
    """Read ids are drawn at insert; an OCR worker's commit can land after another's with higher ids. The
    early match reads a window of ids again (EARLY_RESCAN_S); without it (the control) the read is missed."""
    pool, settings = chain
    monkeypatch.setattr("common.defaults.EARLY_RESCAN_S", rescan_s)
    with pool.connection() as connection:
        reserved = connection.execute("SELECT nextval('plate_reads_id_seq')").fetchone()[0]  # drawn, not committed
    now_s = time.time()
    log_frames(pool, [(frame(i, now_s - 5 + i * 0.2), [plate("GHT2093", 100 + 10 * i)]) for i in range(3)])
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    stage.poll()  # takes the reads committed so far
    late = (frame(9, now_s - 1), [plate("KPX4721", 600)])
    log_frames(pool, [late], settled=False)
    with pool.connection() as connection:  # ... and this one commits last, under the lower id
        connection.execute("UPDATE plate_reads SET id = %s WHERE frame_id = %s", (reserved, late[0].frame_id))
    alerts = stage.poll().alerts
    assert [(a.kind, a.plate) for a in alerts] == ([("read", "KPX4721")] if rescan_s else [])


def test_the_early_scan_saves_the_reads_it_took_as_runs_and_reads_the_old_form():
    """A car park's frame logs its 100 reads together: ids taken one by one, 14,500 of them, rewrote
    250 KB of the cursor's JSON every round (a sighting pool audit)."""
    from sighting_worker.early_scan import EarlyScan

    early = EarlyScan(from_id=0)
    frames = [list(range(start, start + 100)) for start in range(1000, 15_000, 250)]  # other cameras between
    for ids in frames:
        early.took(ids, now_s=0.0)
    state = early.state()
    assert state["seen"] == [[ids[0], ids[-1]] for ids in frames]
    assert EarlyScan.load(0, {"early": state}).seen == early.seen == {i for ids in frames for i in ids}
    assert EarlyScan.load(0, {"early": {"seen": [5, 7, 8], "marks": []}}).seen == {5, 7, 8}  # as saved before

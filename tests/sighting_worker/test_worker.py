"""The sighting pool's edge on the real Postgres and a private Redis: reads logged by OCR workers in
any order are grouped in capture order once their frames are settled; each car passing is one
sighting with the voted plate; a listed plate raises one early alert per pass (never a second at the
sighting), logged with its delivery and queued; a group that dies mid-transaction is done again from
the saved cursor with nothing emitted twice; a worker process killed mid-group loses nothing."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import psycopg
import pytest

from alpr.cli import main
from alpr.wiring import build_sighting_stage
from common import defaults
from common.alerts import Alert
from common.config import Settings
from common.frame_log import FrameLog, FrameRecord
from common.metrics import Metrics
from common.queues import connect_redis, stage_queue
from sighting_worker.alert_ids import alert_id
from sighting_worker.passes import load_passes, passes_state
from tests.sighting_worker.chain_scenes import frame, log_frames, passes, plate, rounds, table


def test_each_car_is_one_sighting_and_a_listed_plate_one_alert(chain, redis_url):
    pool, settings = chain
    start_s = time.time() - 30
    log_frames(pool, passes(start_s))
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    first = stage.poll()
    rows = table(pool, "SELECT plate, reads, texts FROM sightings ORDER BY first_seen, plate")
    assert [(p, n) for p, n, _ in rows] == [("7ABC284", 10), ("KPX4721", 10), ("GHT2093", 10)]
    assert {tuple(t) for t in rows[0][2]} == {("7ABC284", 9), ("7ABC204", 1)}  # the misread outvoted
    alerts = table(pool, "SELECT kind, body->>'plate', body->>'watch_plate', body->>'reason' FROM alerts")
    assert alerts == [("read", "KPX4721", "KPX4721", "stolen")]  # early, once for the pass; not again at close
    assert table(pool, "SELECT receiver, status FROM alert_deliveries") == [("ops", "pending")]
    assert len(first.alerts) == 1 and stage_queue(connect_redis(redis_url), "alert").count == 1
    again = stage.poll()  # the reads logged lately are matched again (commits land in any order): no new alert
    assert again.sightings == [] and again.alerts == []  # nothing twice
    assert len(table(pool, "SELECT 1 FROM sightings")) == 3 and len(table(pool, "SELECT 1 FROM alerts")) == 1


def test_reads_wait_for_a_frame_not_yet_settled(chain, redis_url):
    pool, settings = chain
    start_s = time.time() - 30
    frames = passes(start_s)
    log_frames(pool, frames[:5])
    log_frames(pool, frames[5:6], settled=False)  # redacted, read, but its reads not yet recorded as done
    log_frames(pool, frames[6:])
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    assert stage.poll().sightings == []  # the two cars are still in view at the unsettled frame
    FrameLog(pool, 0).record_reads([(frames[5][0], "done")])
    FrameLog(pool, 0).record_final([FrameRecord(frames[5][0], "done", plates=2)])
    sightings = stage.poll().sightings
    assert sorted(s.plate for s in sightings) == ["7ABC284", "GHT2093", "KPX4721"]
    assert [s.reads for s in sightings] == [10, 10, 10]  # the reads at the old horizon too


def test_a_frame_unsettled_again_behind_the_cursor_holds_no_later_car_back(chain, redis_url):
    """A frame swept lost, then redacted late (its reads pending again), lies before what the camera has
    grouped: it held the horizon, and no later car had a sighting until its reads came, up to 12 minutes
    (a sighting pool audit). Its reads could never be grouped anyway."""
    pool, settings = chain
    start_s = time.time() - 60
    log_frames(pool, passes(start_s)[:10])
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    assert sorted(s.plate for s in stage.poll().sightings) == ["7ABC284", "KPX4721"]
    FrameLog(pool, 0).record_sampled([FrameRecord(frame(99, start_s + 1), "pending")])  # unsettled again
    now_s = time.time()  # a car just seen (after the last round's horizon, now - 2 s)
    log_frames(pool, [(frame(100 + i, now_s - 1.9 + i * 0.1), [plate("GHT2093", 300 + 15 * i)]) for i in range(5)])
    time.sleep(settings.sighting_settle_s + settings.sighting_gap_s + 0.5)  # settled, and its gap passed
    assert [(s.plate, s.reads) for s in stage.poll().sightings] == [("GHT2093", 5)]


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_a_backlog_is_grouped_in_steps_without_losing_a_read(chain, redis_url, monkeypatch, batch):
    """At most `batch` reads a round (two plates per frame: a batch of 1 holds part of a capture time)."""
    pool, settings = chain
    log_frames(pool, passes(time.time() - 30))
    monkeypatch.setattr("common.defaults.SIGHTING_BATCH_READS", batch)
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    rounds = [stage.poll().sightings for _ in range(60)]
    assert rounds[0] == []  # 30 reads: the first round took only its batch, and no pass ended in it
    sightings = [s for found in rounds for s in found]
    assert sorted((s.plate, s.reads) for s in sightings) == [("7ABC284", 10), ("GHT2093", 10), ("KPX4721", 10)]


def test_a_group_that_dies_mid_transaction_is_done_again_once(chain, redis_url):
    """Postgres itself fails the transaction after the sightings were written (a trigger on the alerts
    table): nothing of it stays, and the next round does it all once."""
    pool, settings = chain
    log_frames(pool, passes(time.time() - 30))
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    with pool.connection() as connection:
        connection.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$;"
            " CREATE TRIGGER refuse BEFORE INSERT ON alerts FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    assert stage.poll().sightings == []  # the camera's fault is logged; the round (and the pool) goes on
    assert table(pool, "SELECT 1 FROM sightings") == []  # rolled back with the transaction
    assert rounds(stage) == {"grouped": 0, "camera_failed": 1, "watchlist_unavailable": 0}  # Prometheus alerts
    with pool.connection() as connection:
        connection.execute("DROP TRIGGER refuse ON alerts")
    assert len(stage.poll().sightings) == 3
    assert len(table(pool, "SELECT 1 FROM sightings")) == 3 and len(table(pool, "SELECT 1 FROM alerts")) == 1


def test_a_sighting_worker_killed_mid_group_loses_and_repeats_nothing(chain, redis_url, postgres_url, capsys):
    pool, settings = chain
    cars = 300  # a backlog: one camera per car, each its own transaction
    for car in range(cars):
        log_frames(pool, [(frame(i, time.time() - 60 + i * 0.2, f"cam{car}"), [plate(f"AB{car:04d}", 100 + 10 * i)])
                          for i in range(5)])  # fmt: skip
    env = dict(os.environ)  # the tests' own ALPR_TEST* variables are gone already (tests/conftest.py)
    worker = [sys.executable, "-m", "alpr.cli", "worker", "sight"]
    started = time.monotonic()
    process = subprocess.Popen(worker, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not table(pool, "SELECT 1 FROM sightings LIMIT 1") and time.monotonic() < deadline:
        time.sleep(0.02)
    capsys.readouterr()
    assert main(["status", "--interval", "0.1"]) == 0
    assert "sighting workers (no queue: they read the logs): 1" in capsys.readouterr().out
    os.kill(process.pid, signal.SIGKILL)  # mid-round: some cameras grouped, one perhaps mid-transaction
    process.wait(timeout=10)
    done_before = len(table(pool, "SELECT 1 FROM sightings"))
    assert 0 < done_before < cars, done_before
    assert subprocess.run([*worker, "--burst"], env=env, timeout=120).returncode == 0
    assert main(["status", "--interval", "0.1"]) == 0  # the one that ended is gone; the killed one ages out
    counted = re.search(r"sighting workers \(no queue: they read the logs\): (\d+)", capsys.readouterr().out)
    fresh = time.monotonic() - started < defaults.SIGHTING_HEARTBEAT_TTL_S - 1  # its first beat still counts
    assert counted is not None
    assert (int(counted[1]) == 1) if fresh else (int(counted[1]) <= 1)
    plates = [row[0] for row in table(pool, "SELECT plate FROM sightings")]
    assert sorted(plates) == [f"AB{car:04d}" for car in range(cars)]  # every car once, none twice
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT count(*) FROM sighting_cursors WHERE grouped_until_s > 0").fetchone() == (cars,)


@pytest.mark.parametrize(("repeat_s", "alerts"), [(0.0, 3), (defaults.ALERT_REPEAT_S, 2)])
def test_a_listed_car_long_in_view_is_alerted_once_per_pass(chain, redis_url, monkeypatch, repeat_s, alerts):
    """Reads of the listed plate for 6 s (longer than the gap) are one pass: one alert. The plate back
    4 s later (hidden by traffic, say): a second sighting, but within ALPR_ALERT_REPEAT_S (60 s) of the
    last read, the same pass — no second alert; with the setting at 0, the gap alone decides: a second
    alert. Back 70 s later: a new pass and an alert either way (the positive control)."""
    pool, _ = chain
    monkeypatch.setenv("ALPR_ALERT_REPEAT_S", str(repeat_s))
    start_s = time.time() - 120
    frames = [(frame(i, start_s + i * 0.2), [plate("KPX4721", 100 + 10 * i)]) for i in range(30)]
    frames += [(frame(i, start_s + 10 + i * 0.2), [plate("KPX4721", 100 + 10 * i)]) for i in range(30, 40)]
    frames += [(frame(i, start_s + 80 + i * 0.2), [plate("KPX4721", 100 + 10 * i)]) for i in range(40, 45)]
    log_frames(pool, frames)
    stage = build_sighting_stage(Settings.load(), connect_redis(redis_url), Metrics())
    stage.poll()
    assert [row[0] for row in table(pool, "SELECT plate FROM sightings")] == ["KPX4721"] * 3
    assert table(pool, "SELECT kind FROM alerts") == [("read",)] * alerts


@pytest.mark.parametrize(("repeat_s", "let_go"), [(0.0, True), (defaults.ALERT_REPEAT_S, False)])
def test_a_quiet_cameras_cursor_lets_go_of_the_listed_plates_it_alerted_on(
    chain, redis_url, monkeypatch, repeat_s, let_go
):
    """A round that took no reads returned before the cursor's passes were pruned: a listed plate and its
    car's track (`"alerted": {"default:KPX4721": [{"span": ..., "points": ...}]}`) stayed in the cursor's
    state for as long as the camera stayed quiet, or retired: for good (a review). A pass goes once no read
    can join it: past twice the pass gap (ALPR_ALERT_REPEAT_S, or the sighting gap, 2 s, where it is 0) and
    untouched for EARLY_RESCAN_S (here 0); within ALPR_ALERT_REPEAT_S (60 s) it stays (the repeat window
    needs it). A quiet round with nothing to let go of writes nothing (the row's xmin stays)."""
    pool, _ = chain
    monkeypatch.setattr("common.defaults.EARLY_RESCAN_S", 0.0)
    monkeypatch.setenv("ALPR_ALERT_REPEAT_S", str(repeat_s))
    stage = build_sighting_stage(Settings.load(), connect_redis(redis_url), Metrics())
    log_frames(pool, [(frame(i, time.time() - 30 + i * 0.2), [plate("KPX4721", 100 + 20 * i)]) for i in range(5)])
    stage.poll()
    assert len(table(pool, "SELECT 1 FROM alerts")) == 1 and len(table(pool, "SELECT 1 FROM sightings")) == 1
    ((state,),) = table(pool, "SELECT state FROM sighting_cursors")
    assert "KPX4721" in json.dumps(state["alerted"])
    assert passes_state(load_passes(state["alerted"])) == state["alerted"]  # as saved: a quiet round writes nothing
    time.sleep(0.6)  # untouched past EARLY_RESCAN_S and two polls; nothing logged since: a quiet camera
    stage.poll()
    ((state, xmin),) = table(pool, "SELECT state, xmin::text FROM sighting_cursors")
    assert ("KPX4721" not in json.dumps(state)) is let_go
    if let_go:
        assert state["alerted"] == {}
    stage.poll()
    assert table(pool, "SELECT xmin::text FROM sighting_cursors") == [(xmin,)]  # nothing more to let go of
    assert len(table(pool, "SELECT 1 FROM alerts")) == 1 and len(table(pool, "SELECT 1 FROM sightings")) == 1


def test_a_plate_on_two_lists_raises_both_and_an_entry_expired_since_the_car_passed_still_does(
    chain, redis_url, postgres_url
):
    """KPX4721 is on the default list (stolen) and on `parking`: one alert each. LMN5555's entry expired
    after the car was seen but before the grouping (late) matched it: judged as of the capture, it alerts;
    the same entry expired before the car was seen does not (ZZZ1111, the control)."""
    pool, settings = chain
    now = time.time()
    for args in (
        ["KPX4721", "--reason", "unpaid", "--list", "parking"],
        ["LMN5555", "--reason", "wanted", "--expires", datetime.fromtimestamp(now + 2, UTC).isoformat()],
        ["ZZZ1111", "--reason", "wanted", "--expires", datetime.fromtimestamp(now - 45, UTC).isoformat()],
    ):
        assert main(["watchlist", "add", *args, "--database-url", postgres_url]) == 0  # fmt: skip
    start_s = now - 40
    frames = [(frame(i, start_s + i * 0.2), [plate("KPX4721", 100 + 10 * i), plate("LMN5555", 600 + 10 * i),
                                             plate("ZZZ1111", 1000 + 5 * i)]) for i in range(5)]  # fmt: skip
    log_frames(pool, frames)
    time.sleep(2.5)  # LMN5555's entry expires before the grouping
    build_sighting_stage(settings, connect_redis(redis_url), Metrics()).poll()
    alerts = table(pool, "SELECT body->>'watch_plate', body->>'reason' FROM alerts ORDER BY 1, 2")
    assert alerts == [("KPX4721", "stolen"), ("KPX4721", "unpaid"), ("LMN5555", "wanted")]


def test_a_quiet_night_keeps_the_watch_list_fresh(chain, redis_url):
    """The list's age is what Prometheus alerts on: a round with no reads at all still brings it up to date
    (it was loaded only to match a read: a quiet night looked like a list gone stale)."""
    stage = build_sighting_stage(chain[1], connect_redis(redis_url), Metrics())
    assert stage.watch is not None
    stage.watch.refresh_s = 0.0
    stage.poll()
    first = stage.metrics.registry.get_sample_value("alpr_watchlist_loaded_timestamp_seconds")
    time.sleep(1.1)
    stage.poll()
    assert first and stage.metrics.registry.get_sample_value("alpr_watchlist_loaded_timestamp_seconds") > first
    assert rounds(stage) == {"grouped": 2, "camera_failed": 0, "watchlist_unavailable": 0}


def test_a_long_round_does_not_commit_its_alerts_deliveries_already_due(chain, monkeypatch):
    """The grace for the raiser to queue a delivery ran from the round's transaction start (now()): a round
    longer than it committed the delivery due at once, and the alert pool queued a second job (a review)."""
    from common.alert_log import AlertLog
    from common.alert_raising import insert_alerts

    monkeypatch.setattr(defaults, "ALERT_UNCONFIRMED_S", 1.0)
    pool, _ = chain
    alert = Alert(alert_id="read-0123456789abcdef", camera_id="gate", plate="KPX4721", watch_plate="KPX4721",
                  reason="stolen", distance=0.0, confidence=0.97, captured_at_s=time.time(), frame_id="gate:run1:3",
                  kind="read")  # fmt: skip
    with pool.connection() as connection, connection.transaction():
        connection.execute("SELECT pg_sleep(1.5)")  # a long round: grouping before the outbox
        insert_alerts(connection, [alert], ["ops"])
    assert AlertLog(pool, 0.0).due(defaults.ALERT_REQUEUE_AFTER_S, limit=10) == []  # the raiser's, for now
    time.sleep(1.2)
    assert AlertLog(pool, 0.0).due(defaults.ALERT_REQUEUE_AFTER_S, limit=10) == [(alert.alert_id, "ops", 0)]


JOB_KEY = "chain-job-key-0123456789abcdef"


def unkeyed_ids(frame_id: str, plate_text: str) -> set[str]:
    """What an id was, and what one without the key computes trying a plate: SHA-256 of frame id, the
    read's index in its frame (a few to try), list and plate."""
    return {
        "read-" + hashlib.sha256(f"{frame_id}|{index}|default|{plate_text}".encode()).hexdigest()[:32]
        for index in range(4)
    }


def test_an_alert_id_keyed_with_the_job_key_tells_no_plate_and_still_dedupes(chain, redis_url, monkeypatch):
    """A security review: alert ids were SHA-256(frame id | read index | list | plate), logged at INFO and
    RQ job ids: whoever knew a frame id found the listed plate by hashing each plate of its format offline
    (~1.8e8 tries). With the chain's job key they are keyed: the same alert gets the same id in every
    worker holding the key (a camera grouped again from scratch raises nothing twice), and trying the
    right plate without the key finds nothing."""
    pool, _ = chain
    log_frames(pool, passes(time.time() - 30))
    monkeypatch.setenv("ALPR_JOB_KEY", JOB_KEY)
    keyed = Settings.load()
    build_sighting_stage(keyed, connect_redis(redis_url), Metrics()).poll()
    [(identifier, frame_id)] = table(pool, "SELECT alert_id, body->>'frame_id' FROM alerts")
    assert identifier not in unkeyed_ids(frame_id, "KPX4721")  # the plate cannot be tried without the key
    assert identifier in {
        alert_id("read", frame_id, index, "default", "KPX4721", key=JOB_KEY) for index in range(4)
    }  # fmt: skip

    def grouped_again_from_scratch(settings: Settings) -> set[str]:
        """Another worker meets the camera afresh (its cursor gone): every read matched again."""
        with pool.connection() as connection:
            connection.execute("UPDATE sighting_cursors SET grouped_until_s = 0, early_read_id = 0, state = '{}'")
        build_sighting_stage(settings, connect_redis(redis_url), Metrics()).poll()
        return {row[0] for row in table(pool, "SELECT alert_id FROM alerts")}

    assert grouped_again_from_scratch(keyed) == {identifier}  # the same id: not raised twice
    monkeypatch.setenv("ALPR_JOB_KEY", "another-key-0123456789abcdef")
    assert len(grouped_again_from_scratch(Settings.load())) == 2  # the id is the key's: another key, another id


def test_alert_ids_differ_between_keys_and_are_the_plain_hash_only_without_one():
    parts = ("gate:run1:4", 1, "stolen", "KPX4721")
    plain = "read-" + hashlib.sha256(b"gate:run1:4|1|stolen|KPX4721").hexdigest()[:32]
    assert alert_id("read", *parts) == plain  # without a key, as before: ids already raised keep matching
    one, other = alert_id("read", *parts, key=JOB_KEY), alert_id("read", *parts, key=JOB_KEY + "x")
    assert len({plain, one, other}) == 3 and one == alert_id("read", *parts, key=JOB_KEY)  # deterministic
    assert re.fullmatch(r"read-[0-9a-f]{32}", one)  # the id's form is unchanged (Alert's pattern, RQ job ids)
    candidates = {"read-" + hashlib.sha256(f"gate:run1:4|1|stolen|KPX47{n:02d}".encode()).hexdigest()[:32]
                  for n in range(100)}  # fmt: skip
    assert one not in candidates and plain in candidates  # a plain hash gave the plate away

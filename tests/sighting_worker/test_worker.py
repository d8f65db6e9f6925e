"""The sighting pool's edge on the real Postgres and a private Redis: reads logged by OCR workers in
any order are grouped in capture order once their frames are settled; each car passing is one
sighting with the voted plate; a listed plate raises one early alert per pass (never a second at the
sighting), logged with its delivery and queued; a group that dies mid-transaction is done again from
the saved cursor with nothing emitted twice; a worker process killed mid-group loses nothing."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.types.json import Jsonb

from alert_worker.signing import alert_body
from alpr.cli import main
from alpr.wiring import build_sighting_stage
from common import defaults
from common.alerts import Alert
from common.config import Settings
from common.db import open_pool
from common.frame_log import FrameLog, FrameRecord
from common.frame_store import frame_key
from common.jobs import FrameRef
from common.metrics import Metrics
from common.plate_log import PostgresPlateLog
from common.queues import connect_redis, stage_queue
from common.types import PlateCandidate, PlateRead
from sighting_worker.alert_ids import alert_id
from sighting_worker.cursor_state import CURSOR_STATE_VERSION, WITHOUT_LATE_VERSION
from sighting_worker.passes import load_passes, passes_state
from sighting_worker.worker import ROUND_OUTCOMES

SECRET = "hook-secret-0123456789abcdef"


def frame(index: int, at_s: float, camera: str = "gate") -> FrameRef:
    frame_id = f"{camera}:run1:{index}"
    return FrameRef(frame_id=frame_id, camera_id=camera, seq=index, frame_index=index, captured_at_s=at_s,
                    source_time_s=index / 5, key=frame_key(frame_id), region="us")  # fmt: skip


RUNNER_UP = {"KPX4727": "KPX4721"}
"""Texts whose reads name another as their runner-up, as a recogniser's candidates do for a character it
hesitates over (7 against 1): the lookalike's fuzzy match of the listed KPX4721 is borne out by its own
candidates, which a fuzzy match needs to alert (sighting_worker/match_evidence.py)."""


def plate(text: str, x: float, confidence: float = 0.95) -> PlateRead:
    runner_up = [PlateCandidate(RUNNER_UP[text], round((1 - confidence) / 2, 4), "us")] if text in RUNNER_UP else []
    return PlateRead((x, 400.0, x + 90.0, 440.0), 0.9, (PlateCandidate(text, confidence, "us"), *runner_up))


def passes(start_s: float) -> list[tuple[FrameRef, list[PlateRead]]]:
    """Two cars side by side for 2 s (5 frames/s), one misread frame each; then, 5 s later, a third."""
    frames = []
    for i in range(10):
        left = "7ABC204" if i == 4 else "7ABC284"
        right = "KPX4727" if i == 6 else "KPX4721"
        frames.append((frame(i, start_s + i * 0.2), [plate(left, 100 + 20 * i), plate(right, 600 + 20 * i)]))
    for i in range(10, 20):
        frames.append((frame(i, start_s + 5 + i * 0.2), [plate("GHT2093", 300 + 15 * i)]))
    return frames


@pytest.fixture()
def chain(postgres_url, redis_url, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    assert main(["watchlist", "add", "KPX4721", "--reason", "stolen", "--database-url", postgres_url]) == 0
    receivers = tmp_path / "receivers.yaml"
    (tmp_path / "hook.secret").write_text(SECRET)
    receivers.write_text(f"receivers:\n  ops:\n    type: webhook\n    url: http://127.0.0.1:9/x\n"
                         f"    secret_file: {tmp_path / 'hook.secret'}\n")  # fmt: skip
    monkeypatch.setenv("ALPR_ALERT_RECEIVERS", str(receivers))
    monkeypatch.setenv("ALPR_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    pool = open_pool(postgres_url)
    yield pool, Settings.load()
    pool.close()


def log_frames(pool, frames, settled: bool = True, in_capture_order: bool = False) -> None:  # type: ignore[no-untyped-def]
    """As the chain does: the ingest node's pending rows, the OCR pool's reads (last frame first, unless
    `in_capture_order`), then (when settled) the redactor's outcome and the OCR pool's read outcome."""
    frame_log = FrameLog(pool, 0)
    frame_log.record_sampled([FrameRecord(ref, "pending") for ref, _ in frames])
    PostgresPlateLog(pool).record_many(frames if in_capture_order else list(reversed(frames)))  # in any order
    if settled:
        frame_log.record_reads([(ref, "done") for ref, _ in frames])
        frame_log.record_final([FrameRecord(ref, "done", plates=len(reads)) for ref, reads in frames])


def table(pool, query: str) -> list[tuple]:  # type: ignore[no-untyped-def, type-arg]
    with pool.connection() as connection:
        return connection.execute(query).fetchall()


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


class HostClockAhead:
    """`time` as the sighting worker's modules see it: its wall clock `ahead_s` ahead of Postgres's (and of
    the tests'), the monotonic clock real, as on a host whose clock is set wrong."""

    def __init__(self, ahead_s: float) -> None:
        self.ahead_s = ahead_s

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)

    def time(self) -> float:
        return time.time() + self.ahead_s


@contextmanager
def stage_with_clock_ahead(monkeypatch, settings, redis_url, ahead_s: float):  # type: ignore[no-untyped-def]
    """A sighting stage, built and run within, whose host clock is `ahead_s` ahead (`HostClockAhead`, its
    watch-list cache's wall clock too)."""
    fast = HostClockAhead(ahead_s)
    with monkeypatch.context() as patch:
        for module in ("sighting_worker.worker", "sighting_worker.passes", "common.watchlist_cache"):
            patch.setattr(f"{module}.time", fast, raising=False)
        stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
        stage.watch.wall_clock = fast.time
        yield stage


def test_a_worker_whose_host_clock_runs_ahead_alerts_on_an_entry_expiring_soon_and_groups_by_postgres(
    chain, redis_url, postgres_url, monkeypatch
):
    """A sighting worker whose host clock ran 30 minutes ahead judged a listed car's entry, 10 minutes left,
    as of its own clock less the 12 minutes loaded: expired, no alert; and it set the cursor of the camera
    it met first 18 minutes ahead, none of its reads ever grouped (a review). It goes by Postgres's clock:
    the camera's first cursor, the as-of time of the watch-list, the passes met and the early scan's marks."""
    pool, settings = chain
    now_s = time.time()
    expires = datetime.fromtimestamp(now_s + 600, UTC).isoformat()
    add = ["watchlist", "add", "LMN5555", "--reason", "wanted", "--expires", expires, "--database-url", postgres_url]
    assert main(add) == 0
    log_frames(pool, [(frame(i, now_s - 30 + i * 0.2), [plate("LMN5555", 100 + 10 * i)]) for i in range(5)])
    with stage_with_clock_ahead(monkeypatch, settings, redis_url, 1800.0) as stage:
        found = stage.poll()
    assert [(a.kind, a.plate) for a in found.alerts] == [("read", "LMN5555")]
    assert [(s.plate, s.reads) for s in found.sightings] == [("LMN5555", 5)]
    ((grouped_s, state, postgres_s),) = table(
        pool, "SELECT grouped_until_s, state, extract(epoch FROM now())::float8 FROM sighting_cursors"
    )
    assert grouped_s <= postgres_s
    marks = [mark[0] for mark in state["early"]["marks"]]
    touched = [span["span"][2] for spans in state["alerted"].values() for span in spans]
    assert marks and touched and all(postgres_s - 60 < at_s <= postgres_s for at_s in marks + touched)


def test_reads_at_a_camera_a_worker_with_its_clock_ahead_met_first_are_grouped_by_the_next_worker(
    chain, redis_url, monkeypatch
):
    """The camera a worker with its host clock 30 minutes ahead met first had its cursor 18 minutes ahead,
    kept by the correct worker that took over: its reads were never grouped, a listed car read below the
    early bar (0.87) never alerted on (a review)."""
    pool, settings = chain
    now_s = time.time()
    log_frames(pool, [(frame(i, now_s - 20 + i * 0.2), [plate("AAA1111", 100 + 10 * i)]) for i in range(5)])
    with stage_with_clock_ahead(monkeypatch, settings, redis_url, 1800.0) as fast:
        fast.poll()
    now_s = time.time()  # a car just seen (after the last round's horizon, now - 2 s)
    log_frames(pool, [(frame(i, now_s - 1.9 + i * 0.1), [plate("KPX4721", 100 + 10 * i, 0.87)]) for i in range(5, 10)])
    time.sleep(settings.sighting_settle_s + settings.sighting_gap_s)  # settled, and its gap passed
    build_sighting_stage(settings, connect_redis(redis_url), Metrics()).poll()
    assert table(pool, "SELECT plate, reads FROM sightings ORDER BY first_seen") == [("AAA1111", 5), ("KPX4721", 5)]
    assert table(pool, "SELECT kind, body->>'plate' FROM alerts") == [("sighting", "KPX4721")]


def test_a_cursor_saved_past_postgres_now_is_set_back_once_with_an_error(chain, redis_url, caplog):
    """A cursor an earlier worker whose host clock ran ahead saved 18 minutes ahead (its reads captured
    before never grouped) is set back as for a camera met first, at the next round, with an ERROR once."""
    pool, settings = chain
    now_s = time.time()
    log_frames(pool, [(frame(i, now_s - 30 + i * 0.2), [plate("KPX4721", 100 + 10 * i)]) for i in range(5)])
    with pool.connection() as connection:  # as that worker left it: the reads taken early, none grouped
        connection.execute("UPDATE sighting_cursors SET grouped_until_s = %s, early_read_id = (SELECT max(id)"
                           " FROM plate_reads)", (now_s + 1080,))  # fmt: skip
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    with caplog.at_level(logging.ERROR, logger="sighting_worker.worker"):
        assert [(s.plate, s.reads) for s in stage.poll().sightings] == [("KPX4721", 5)]
        stage.poll()
    assert len(re.findall(r"camera gate: its cursor was 10[78]\d s past Postgres's clock", caplog.text)) == 1
    assert table(pool, "SELECT kind FROM alerts") == [("sighting",)]  # the pass, never alerted on: now
    ((ahead_s,),) = table(pool, "SELECT grouped_until_s - extract(epoch FROM now())::float8 FROM sighting_cursors")
    assert ahead_s <= 0


def test_a_sighting_worker_warns_at_start_of_a_host_clock_off_postgres(chain, redis_url, monkeypatch, caplog):
    pool, settings = chain
    with caplog.at_level(logging.WARNING, logger="sighting_worker.worker"):
        build_sighting_stage(settings, connect_redis(redis_url), Metrics())
        assert "off Postgres's" not in caplog.text
        with stage_with_clock_ahead(monkeypatch, settings, redis_url, 5.0):
            pass
    assert re.search(r"this host's clock is \+5\.\d s off Postgres's", caplog.text), caplog.text


def test_a_cursor_saved_by_a_newer_worker_is_refused_and_left_as_it_is_and_an_older_one_read(chain, redis_url, caplog):
    """A worker of the form before each alerted pass kept its reads and tracks read the new form, dropped what
    it did not know and saved the rest: beside a newer worker during an upgrade, a lookalike's pass was
    alerted on twice (a review). The cursor's state has a version: one newer than the worker knows fails
    that camera, an ERROR naming both versions once, and is left as it is; one saved before versions is read."""
    pool, settings = chain
    log_frames(pool, passes(time.time() - 30))
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    assert len(stage.poll().sightings) == 3
    (state,) = [row[0] for row in table(pool, "SELECT state FROM sighting_cursors")]
    assert state["version"] == WITHOUT_LATE_VERSION  # no late track held (tests/sighting_worker/test_late_passes.py)
    with pool.connection() as connection:  # as saved before there were versions
        connection.execute("UPDATE sighting_cursors SET state = state - 'version'")
    now_s = time.time()
    log_frames(pool, [(frame(i, now_s - 1.9 + (i - 30) * 0.1), [plate("GHT2093", 100)]) for i in range(30, 33)])
    stage.poll()
    assert table(pool, "SELECT state->'version' FROM sighting_cursors") == [(WITHOUT_LATE_VERSION,)]
    assert rounds(stage) == {"grouped": 2, "camera_failed": 0, "watchlist_unavailable": 0}
    newer = dict(state, version=CURSOR_STATE_VERSION + 1, kept_elsewhere={"of": "a newer form"})  # readable, not whole
    with pool.connection() as connection:
        connection.execute("UPDATE sighting_cursors SET state = %s", (Jsonb(newer),))
    log_frames(pool, [(frame(i, now_s - 1.5 + (i - 40) * 0.1), [plate("KPX4721", 300)]) for i in range(40, 43)])
    saved = table(pool, "SELECT grouped_until_s, early_read_id, state, updated_at FROM sighting_cursors")
    with caplog.at_level(logging.ERROR, logger="sighting_worker.worker"):
        refused = [stage.poll(), stage.poll()]
    assert [(r.sightings, r.alerts) for r in refused] == [([], [])] * 2
    assert len(table(pool, "SELECT 1 FROM alerts")) == 1  # the first round's, none since
    assert table(pool, "SELECT grouped_until_s, early_read_id, state, updated_at FROM sighting_cursors") == saved
    assert rounds(stage) == {"grouped": 2, "camera_failed": 2, "watchlist_unavailable": 0}
    message = f"camera gate: its cursor was saved by a newer sighting worker (state version {CURSOR_STATE_VERSION + 1};"
    assert caplog.text.count(message) == 1 and f"knows versions up to {CURSOR_STATE_VERSION})" in caplog.text


def test_a_pass_first_alerted_on_a_misread_is_alerted_again_on_its_exact_reads_once(chain, redis_url):
    """The listed car's first sure read is a misread (KPX4727, one character off): it raised the pass's
    alert, and the nine exact reads after it were silenced — an operator may dismiss a fuzzy match. The
    nearer match now alerts again, once (eight more exact reads: nothing)."""
    pool, settings = chain
    start_s = time.time() - 30
    frames = [(frame(0, start_s), [plate("KPX4727", 100, 0.93)])]
    frames += [(frame(i, start_s + i * 0.2), [plate("KPX4721", 100 + 10 * i, 0.97)]) for i in range(1, 10)]
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    log_frames(pool, frames[:1])  # the misread is logged and matched first
    stage.poll()
    log_frames(pool, frames[1:])
    stage.poll()
    stage.poll()
    alerts = table(pool, "SELECT kind, body->>'plate', (body->>'distance')::float FROM alerts ORDER BY created_at")
    assert alerts == [("read", "KPX4727", 1.0), ("read", "KPX4721", 0.0)]


def test_a_listed_plate_misread_for_longer_than_the_gap_is_still_one_pass(chain, redis_url):
    """The listed plate read for 1 s, then misread for 3 s (KPX47: half hidden; the tracker keeps it one
    car), then read again: the misreads, two characters off, held no pass open, so the car raised a
    second alert as if it had come back."""
    pool, settings = chain
    start_s = time.time() - 40
    frames = [(frame(i, start_s + i * 0.2), [plate("KPX4721", 100 + 10 * i)]) for i in range(5)]
    frames += [(frame(i, start_s + i * 0.2), [plate("KPX47", 100 + 10 * i)]) for i in range(5, 20)]
    frames += [(frame(i, start_s + i * 0.2), [plate("KPX4721", 100 + 10 * i)]) for i in range(20, 25)]
    log_frames(pool, frames)
    build_sighting_stage(settings, connect_redis(redis_url), Metrics()).poll()
    assert table(pool, "SELECT kind FROM alerts") == [("read",)]
    assert len(table(pool, "SELECT 1 FROM sightings")) == 1


@pytest.mark.parametrize(
    ("every_s", "parked_x"),
    [(20.0, 180.0), (1.5, 1000.0)],
    ids=["read-every-20s-where-the-listed-car-stood", "read-within-the-gap-elsewhere-in-view"],
)
def test_an_unlisted_lookalike_parked_in_view_does_not_silence_the_listed_cars_next_pass(
    chain, redis_url, every_s, parked_x
):
    """KPX4799, two characters from the listed KPX4721 (no match at distance 1), parked in view for
    five minutes: its reads held the listed plate's pass open (any read within ALPR_ALERT_REPEAT_S,
    anywhere), and the listed car, back 5.6 minutes later, raised no alert. A misread holds a pass
    only within the sighting gap and the car's reach, as the tracker would join it."""
    pool, settings = chain
    start_s = time.time() - 400
    at = [start_s + 0.2 * k for k in range(5)]
    at += [start_s + every_s * k for k in range(1, int(330 / every_s) + 1)]
    at += [start_s + 340 + 0.2 * k for k in range(5)]
    frames = []
    for index, at_s in enumerate(sorted(at)):
        listed = at_s < start_s + 1 or at_s >= start_s + 340
        x = 100 + 30 * (index % 5) if listed else parked_x
        frames.append((frame(index, at_s), [plate("KPX4721" if listed else "KPX4799", x)]))
    log_frames(pool, frames)
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    for _ in range(3):
        stage.poll()
    assert [p for (p,) in table(pool, "SELECT plate FROM sightings WHERE plate = 'KPX4721'")] == ["KPX4721"] * 2
    alerts = table(pool, "SELECT body->>'plate' FROM alerts ORDER BY (body->>'captured_at_s')::float")
    assert alerts == [("KPX4721",), ("KPX4721",)]  # one per pass


def test_a_listed_cars_sighting_beside_a_parked_lookalike_does_not_join_the_lookalikes_pass(chain, redis_url):
    """A review of the lookalike fix: a sighting (no read's box) was held by a lookalike's pass within
    the sighting gap alone, wherever it was: the listed car's first pass, alerted only at its sighting
    (reads of 0.87: sure for a sighting, not for an early alert), joined the pass of a lookalike parked
    elsewhere in view, which the lookalike then kept open, and the listed car's next pass raised nothing.
    A sighting is weighed by its best read's box, as a read is."""
    pool, settings = chain
    start_s = time.time() - 400
    events = [(start_s + k, "lookalike") for k in range(361)]  # KPX4727 parked at x=1000, read every second
    events += [(start_s + 100.1 + 0.2 * k, "first") for k in range(5)]  # the listed car, unsure reads
    events += [(start_s + 340.1 + 0.2 * k, "second") for k in range(5)]  # and again, sure ones
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    index = 0
    for phase in (
        [e for e in sorted(events) if e[0] < start_s + 200],
        [e for e in sorted(events) if e[0] >= start_s + 200],
    ):
        frames = []
        for at_s, what in phase:
            sure = 0.87 if what == "first" else 0.95
            reads = (
                [plate("KPX4727", 1000.0, 0.95)]
                if what == "lookalike"
                else [plate("KPX4721", 100 + 30 * (index % 5), sure)]
            )
            frames.append((frame(index, at_s), reads))
            index += 1
        log_frames(pool, frames, in_capture_order=True)
        for _ in range(4):
            stage.poll()
    alerts = table(pool, "SELECT body->>'plate', (body->>'captured_at_s')::float8 FROM alerts ORDER BY 2")
    listed = [at_s - start_s for plate_text, at_s in alerts if plate_text == "KPX4721"]
    assert len(listed) == 2 and listed[0] < 200 < listed[1], alerts  # each of its passes


def test_a_lookalike_driving_by_a_parked_listed_car_is_alerted_on(chain, redis_url):
    """The mirror: the listed KPX4721 parked at x=1000 (one alerted pass) and another car, KPX4727,
    driving by at x=100 (a sure sighting of unsure reads): its sighting was held by the listed car's pass
    within the sighting gap alone, and no alert raised; alone, it raises its fuzzy alert."""
    pool, settings = chain
    start_s = time.time() - 300
    events = [(start_s + k, "listed") for k in range(200)] + [
        (start_s + 100.1 + 0.2 * k, "lookalike") for k in range(5)
    ]
    frames = []
    for index, (at_s, what) in enumerate(sorted(events)):
        reads = (
            [plate("KPX4721", 1000.0, 0.95)] if what == "listed" else [plate("KPX4727", 100 + 30 * (index % 5), 0.87)]
        )
        frames.append((frame(index, at_s), reads))
    log_frames(pool, frames, in_capture_order=True)
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    for _ in range(4):
        stage.poll()
    assert "KPX4727" in [plate_text for (plate_text,) in table(pool, "SELECT body->>'plate' FROM alerts")]


@pytest.mark.parametrize("in_capture_order", [True, False], ids=["logged-in-capture-order", "logged-last-first"])
@pytest.mark.parametrize("confidence", [0.95, 0.6], ids=["sure-lookalike", "unsure-lookalike"])
def test_a_lookalike_one_character_off_parked_in_view_does_not_silence_the_listed_car(
    chain, redis_url, in_capture_order, confidence
):
    """KPX4727, one character from the listed KPX4721 (a fleet's next car: a match at distance 1),
    parked elsewhere in view and read every 20 s: each of its reads widened the listed car's pass (any
    match within ALPR_ALERT_REPEAT_S, anywhere), and the listed car, back 5.6 minutes later, raised no
    alert; reads logged last first, its first pass lost its alert instead (a review). The lookalike's
    own sure reads raise one alert for its whole stay (a fuzzy match, as without the listed car), not
    one each read; unsure, none."""
    pool, settings = chain
    start_s = time.time() - 400
    at = [start_s + 0.2 * k for k in range(5)]
    at += [start_s + 20.0 * k for k in range(1, 17)]
    at += [start_s + 340 + 0.2 * k for k in range(5)]
    frames = []
    for index, at_s in enumerate(sorted(at)):
        listed = at_s < start_s + 1 or at_s >= start_s + 340
        read = plate("KPX4721", 100 + 30 * (index % 5)) if listed else plate("KPX4727", 1000.0, confidence)
        frames.append((frame(index, at_s), [read]))
    log_frames(pool, frames, in_capture_order=in_capture_order)
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    for _ in range(3):
        stage.poll()
    alerts = table(pool, "SELECT body->>'plate', (body->>'captured_at_s')::float FROM alerts ORDER BY 2")
    listed_passes = sorted(round(at_s - start_s) // 100 for plate_text, at_s in alerts if plate_text == "KPX4721")
    assert listed_passes == [0, 3], alerts  # one alert on each of the listed car's passes (t = 0 s and 340 s)
    assert len([a for a in alerts if a[0] == "KPX4727"]) == (1 if confidence >= 0.85 else 0), alerts


@pytest.mark.parametrize("live", [False, True], ids=["grouped-with-its-reads", "grouped-rounds-after-its-alert"])
@pytest.mark.parametrize("step_px", [40.0, 0.0], ids=["moving", "standing"])
def test_a_car_reading_one_character_off_a_listed_plate_is_alerted_on_once_a_pass(chain, redis_url, live, step_px):
    """KPX4727 in every frame for the listed KPX4721 (a fuzzy match: what it is for), ten sure reads at 5
    frames/s: its early `read` alert, then a `sighting` alert for the same pass at its close, which was
    weighed by its best read's box against the pass's newest read as if at one time (0.5 plate widths):
    a car moving 40 px a frame (a plate 90 px wide) was taken for another (a review). The tracker grouped
    the pass's reads into the sighting: it is the pass's car. Live, the sighting closes rounds after the
    alert, the pass's reads carried in the cursor; standing, the control."""
    pool, settings = chain
    start_s = time.time() - (2.0 if live else 30.0)
    frames = [(frame(i, start_s + i * 0.2), [plate("KPX4727", 100 + step_px * i)]) for i in range(10)]
    log_frames(pool, frames, in_capture_order=True)
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    first = stage.poll()
    assert [(a.kind, a.plate) for a in first.alerts] == [("read", "KPX4727")]  # early, from the first round
    deadline = time.monotonic() + 20
    while not table(pool, "SELECT 1 FROM sightings") and time.monotonic() < deadline:
        time.sleep(defaults.SIGHTING_POLL_S)
        stage.poll()
    stage.poll()
    assert table(pool, "SELECT plate, reads FROM sightings") == [("KPX4727", 10)]
    alerts = table(pool, "SELECT kind, body->>'plate', (body->>'distance')::float FROM alerts")
    assert alerts == [("read", "KPX4727", 1.0)]  # not again at its sighting


def test_a_misread_in_a_listed_cars_pass_raises_no_second_alert_however_fast_or_late_it_is(chain, redis_url):
    """A listed car per camera, eight sure reads at 5 frames/s, one read one character off (KPX4727). The
    misread was held in the car's pass only within reach of the pass's newest read's box, standing: a fast
    car (camA: 150 px a frame, a plate 90 px wide, 1.3 widths allowed in 0.2 s), or a misread logged after
    the later frames (camB: OCR workers log in any order; 240 px and 0.8 s from the newest read) was taken
    for another car, and alerted on again (a review). The pass now follows its car's motion to the read's
    capture time, as the tracker does. camC: an ordinary car (the control); camD: a lookalike standing
    where the fast listed car was a moment before, behind it, is another car and alerted on."""
    pool, settings = chain
    start_s = time.time() - 30

    def car(camera: str, step_px: float, misread_at: int) -> list[tuple[FrameRef, list[PlateRead]]]:
        return [
            (frame(i, start_s + i * 0.2, camera),
             [plate("KPX4727" if i == misread_at else "KPX4721", 50 + step_px * i, 0.92 if i == misread_at else 0.95)])
            for i in range(8)
        ]  # fmt: skip

    fast, late, ordinary, beside = car("camA", 150, 4), car("camB", 60, 3), car("camC", 60, 4), car("camD", 150, -1)
    for i in range(4, 8):
        beside[i][1].append(plate("KPX4727", 50))  # standing where the listed car was at first
    for frames in (fast, late[:3] + late[4:] + late[3:4], ordinary, beside):  # camB's misread logged last
        log_frames(pool, frames, in_capture_order=True)
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    for _ in range(3):
        stage.poll()
    assert len(table(pool, "SELECT 1 FROM sightings")) == 5
    alerts = table(pool, "SELECT camera_id, kind, body->>'plate' FROM alerts ORDER BY camera_id, body->>'plate'")
    assert alerts == [
        ("camA", "read", "KPX4721"), ("camB", "read", "KPX4721"), ("camC", "read", "KPX4721"),
        ("camD", "read", "KPX4721"), ("camD", "read", "KPX4727"),
    ]  # fmt: skip


def live_car(index: int, text: str) -> list[tuple[FrameRef, list[PlateRead]]]:
    """A car read in one frame just now, at camera `gate` (the camera live: its rounds go on)."""
    return [(frame(index, time.time() - 1.5), [plate(text, 300)])]


def late_pass(first_index: int, start_s: float, text: str = "KPX4721") -> list[tuple[FrameRef, list[PlateRead]]]:
    """A car's pass at camera `gate` captured at `start_s`, long ago: five sure reads 0.2 s apart."""
    return [(frame(first_index + i, start_s + i * 0.2), [plate(text, 100 + 20 * i)]) for i in range(5)]


def test_a_listed_cars_pass_logged_an_hour_late_in_two_batches_raises_one_alert(chain, redis_url, monkeypatch):
    """A spool replayed after an outage: a listed car's reads captured an hour ago are logged now in two
    batches, the camera live meanwhile. The first batch's alert's pass lay far behind the cursor and no
    read met it for EARLY_RESCAN_S (here 0: 0.4 s), so the cursor let it go (passes.prune) before the second
    batch came, which raised a second alert (a fault review: two webhooks, two Idempotency-Keys, one pass).
    The second batch's first read is a misread, held by the pass as where its car was. The same car five
    minutes before that is another pass: its alert (the control). The late tracks are not held open past the
    round (LATE_SIGHTING_HOLD_S at 0): the first batch's track, held, would have kept its pass."""
    pool, settings = chain
    monkeypatch.setattr("common.defaults.EARLY_RESCAN_S", 0.0)
    monkeypatch.setattr("common.defaults.LATE_SIGHTING_HOLD_S", 0.0)
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    log_frames(pool, live_car(1, "AAA1111"))
    stage.poll()
    late_s = time.time() - 3600
    listed = late_pass(500, late_s)
    log_frames(pool, listed[:2])
    stage.poll()
    assert len(table(pool, "SELECT 1 FROM alerts")) == 1
    for k in range(3):
        time.sleep(0.3)
        log_frames(pool, live_car(10 + k, f"LIV{k:04d}"))
        stage.poll()
    assert "KPX4721" not in str(table(pool, "SELECT state FROM sighting_cursors"))  # the pass was let go of
    misread = [(listed[2][0], [plate("KPX4727", 140, 0.93)])]  # its car's, within reach of the alert's read
    log_frames(pool, misread)
    log_frames(pool, listed[3:])
    stage.poll()
    assert len(table(pool, "SELECT 1 FROM alerts")) == 1  # one pass, one alert
    log_frames(pool, late_pass(600, late_s - 300))
    stage.poll()
    alerts = table(pool, "SELECT body->>'frame_id' FROM alerts ORDER BY captured_at")
    assert [frame_id for (frame_id,) in alerts] == ["gate:run1:604", "gate:run1:501"]  # logged last first


def test_a_late_pass_alerted_on_for_one_list_is_still_alerted_on_for_a_list_that_lists_it_since(
    chain, redis_url, postgres_url, monkeypatch
):
    """The alerts looked up for a pass let go of are the same watch-list entry's: KPX4721 listed on
    `parking` too between the two late batches, the second raises parking's alert, and not stolen's again."""
    pool, _ = chain
    monkeypatch.setattr("common.defaults.EARLY_RESCAN_S", 0.0)
    monkeypatch.setenv("ALPR_WATCH_REFRESH_S", "0.1")
    stage = build_sighting_stage(Settings.load(), connect_redis(redis_url), Metrics())
    log_frames(pool, live_car(1, "AAA1111"))
    stage.poll()
    listed = late_pass(500, time.time() - 3600)
    log_frames(pool, listed[:2])
    stage.poll()
    assert main(["watchlist", "add", "KPX4721", "--reason", "unpaid", "--list", "parking",
                 "--database-url", postgres_url]) == 0  # fmt: skip
    for k in range(3):
        time.sleep(0.3)
        log_frames(pool, live_car(10 + k, f"LIV{k:04d}"))
        stage.poll()
    log_frames(pool, listed[2:])
    stage.poll()
    alerts = table(pool, "SELECT body->>'reason', body->>'frame_id' FROM alerts ORDER BY captured_at")
    assert alerts == [("stolen", "gate:run1:501"), ("unpaid", "gate:run1:504")]


def test_an_alert_on_a_read_logged_an_hour_late_says_it_is_late_and_when_it_was_logged(chain, redis_url):
    """An alert on a read captured an hour ago and logged now (a spool replayed) went out as any `read`
    alert, an operator left to notice captured_at_s (a fault review): it says `late` and when its read was
    logged (`logged_at_s`). A live alert's body has no such fields (those of version 2, common/alerts.py
    ALERT_BODY_VERSION, besides the earlier ones)."""
    pool, settings = chain
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    log_frames(pool, live_car(1, "KPX4721"))
    stage.poll()
    log_frames(pool, late_pass(500, time.time() - 3600))
    logged_s = time.time()
    stage.poll()
    (late,), (live,) = table(pool, "SELECT body FROM alerts ORDER BY captured_at")
    assert sorted(live) == [
        "alert_id", "camera_id", "candidates", "captured_at_s", "confidence", "distance", "frame_id", "kind",
        "list_name", "match_probability", "plate", "reason", "sighting_id", "version", "watch_plate",
    ]  # fmt: skip
    assert late["late"] is True and late["kind"] == "read" and late["captured_at_s"] < logged_s - 3590
    assert logged_s - 5 < late["logged_at_s"] < logged_s + 5  # Postgres's clock, this machine's
    assert set(late) == {*live, "late", "logged_at_s"}
    for body in (late, live):  # as sent: the same fields, read back by the alert pool
        assert json.loads(alert_body(Alert.model_validate(body))) == body


def test_a_backlogs_listed_read_matched_after_it_was_grouped_is_not_late(chain, redis_url, monkeypatch):
    """A backlog, three reads a round: the early scan takes them in log order, the grouping in capture order.
    A car captured later but logged first holds the early scan back, so the listed car's reads are grouped
    before the early scan takes them: behind the cursor by then, but logged in time, and neither late nor
    grouped again (in its one sighting)."""
    pool, settings = chain
    monkeypatch.setattr("common.defaults.SIGHTING_BATCH_READS", 3)
    start_s = time.time() - 30
    log_frames(pool, late_pass(20, start_s + 5, "GHT2093") + late_pass(25, start_s + 6, "7ABC284"))
    listed = [(frame(i, start_s + i * 0.2), [plate("KPX4721", 100 + 20 * i)]) for i in range(15)]
    log_frames(pool, listed, in_capture_order=True)
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    for _ in range(15):
        stage.poll()
    assert table(pool, "SELECT plate, reads FROM sightings ORDER BY first_seen") == [
        ("KPX4721", 15), ("GHT2093", 5), ("7ABC284", 5),
    ]  # fmt: skip
    assert table(pool, "SELECT kind, body ? 'late' FROM alerts") == [("read", False)]


def test_reads_logged_an_hour_late_are_grouped_apart_into_late_sightings_counted_and_told(
    chain, redis_url, caplog, monkeypatch
):
    """Reads captured behind the camera's cursor were read by no grouping (it goes forward in capture
    time): a spool replayed after an outage left its cars in no sighting, unfound by `alpr search` and the
    sightings export, unsaid (a fault review). They are grouped apart into late sightings, a listed car
    read unsurely there alerted on late, counted per camera and told in a WARNING a minute; a late read a
    logged sighting holds already (a lost frame's, redacted late) is in no second one. Their tracks closed at
    the round's end (LATE_SIGHTING_HOLD_S at 0; held open: tests/sighting_worker/test_late_passes.py)."""
    pool, settings = chain
    monkeypatch.setattr("common.defaults.LATE_SIGHTING_HOLD_S", 0.0)
    caplog.set_level(logging.WARNING, logger="sighting_worker.worker")
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    start_s = time.time() - 3
    log_frames(pool, [(frame(i, start_s + i * 0.2), [plate("GHT2093", 300 + 15 * i)]) for i in range(5)])
    stage.poll()
    time.sleep(settings.sighting_gap_s + 0.5)
    stage.poll()
    assert table(pool, "SELECT plate FROM sightings") == [("GHT2093",)]
    late_s = time.time() - 3600
    listed = [(frame(500 + i, late_s + i * 0.2), [plate("KPX4721", 100 + 20 * i, 0.87)]) for i in range(5)]
    other = late_pass(600, late_s + 10, "LATE123")
    lost = [(frame(50, start_s + 0.5), [plate("GHT2093", 330)])]  # within the live car's sighting
    log_frames(pool, listed + other + lost)
    stage.poll()
    sightings = table(pool, "SELECT plate, reads FROM sightings ORDER BY first_seen")
    assert sightings == [("KPX4721", 5), ("LATE123", 5), ("GHT2093", 5)]
    ((alert,),) = table(pool, "SELECT body FROM alerts")
    assert alert["kind"] == "sighting" and alert["plate"] == "KPX4721" and alert["late"] is True
    assert alert["logged_at_s"] > time.time() - 30
    registry = stage.metrics.registry
    assert registry.get_sample_value("alpr_sighting_late_reads_total", {"camera": "gate"}) == 11
    told = [r.getMessage() for r in caplog.records if "grouped past their capture" in r.getMessage()]
    assert len(told) == 1 and told[0].startswith("11 read(s)") and "KPX4721" not in told[0]
    log_frames(pool, late_pass(700, late_s + 30, "LATE456"))
    stage.poll()
    assert len(table(pool, "SELECT 1 FROM sightings")) == 4
    assert registry.get_sample_value("alpr_sighting_late_reads_total", {"camera": "gate"}) == 16
    assert len([r for r in caplog.records if "grouped past their capture" in r.getMessage()]) == 1  # a minute


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


def test_sighting_rounds_go_on_while_redis_takes_connections_and_never_answers(chain, redis_url):
    """Grouping needs no Redis; its heartbeat does (`alpr status`). A Redis that accepts and never answers
    held each beat for the whole socket timeout, the rounds behind it: 4 rounds in 41 s (a review)."""
    import threading

    import redis

    from alpr.worker_command import sighting_rounds
    from tests.alert_servers import MuteBroker

    pool, settings = chain
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    rounds: list[float] = []
    poll = stage.poll

    def counted_poll():  # type: ignore[no-untyped-def]  # the real round, counted
        rounds.append(time.monotonic())
        return poll()

    stage.poll = counted_poll
    stop = threading.Event()
    with MuteBroker(accept_connect=False) as frozen:
        beats = redis.Redis(port=frozen.port, socket_timeout=20)  # the heartbeat's Redis: it never answers
        quick = settings.model_copy(update={"sighting_poll_s": 0.1})
        rounder = threading.Thread(target=sighting_rounds, args=(stage, quick, stop, False, beats, "w1"), daemon=True)
        started = time.monotonic()
        rounder.start()
        time.sleep(3)
        stop.set()
        rounder.join(10)
        beats.connection_pool.disconnect(inuse_connections=True)  # the stuck beat let go
    assert not rounder.is_alive() and len([at for at in rounds if at - started < 3]) >= 10


def test_the_heartbeat_ends_with_the_rounds_and_stops_while_a_round_hangs(chain, redis_url, monkeypatch):
    """On its own thread it beat on while a round hung (the pool shown alive in `alpr status`), and after
    a burst's rounds had ended and the worker's entry was taken away (a ghost): a review."""
    import threading

    from alpr.worker_command import sighting_rounds
    from common.queues import SIGHTING_WORKERS_KEY

    monkeypatch.setattr(defaults, "SIGHTING_HEARTBEAT_TTL_S", 1.5)  # a beat every 0.5 s
    pool, settings = chain
    connection = connect_redis(redis_url)
    stage = build_sighting_stage(settings, connection, Metrics())
    sighting_rounds(stage, settings, threading.Event(), True, connection, "burst")  # one round
    assert connection.zscore(SIGHTING_WORKERS_KEY, "burst") is not None
    assert not any(thread.name == "sighting-heartbeat" for thread in threading.enumerate())
    stop = threading.Event()
    with psycopg.connect(settings.database_url, autocommit=True) as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE sighting_cursors IN ACCESS EXCLUSIVE MODE")  # the next round hangs on it
        rounds = threading.Thread(target=sighting_rounds, args=(stage, settings, stop, False, connection, "hung"))
        rounds.start()
        time.sleep(2.0)  # past the TTL since the round began: beats until then, none after
        last = connection.zscore(SIGHTING_WORKERS_KEY, "hung")
        time.sleep(1.2)
        assert last is not None and connection.zscore(SIGHTING_WORKERS_KEY, "hung") == last
        stop.set()
        locker.execute("ROLLBACK")
    rounds.join(20)
    assert not rounds.is_alive()
    # idle between rounds longer than the TTL (ALPR_SIGHTING_POLL_S may be 60 s against 30): still alive
    stop = threading.Event()
    slow = settings.model_copy(update={"sighting_poll_s": 3.0})
    rounds = threading.Thread(target=sighting_rounds, args=(stage, slow, stop, False, connection, "idle"))
    rounds.start()
    time.sleep(2.0)  # the round is over, the wait goes on past the TTL
    seen = connection.zscore(SIGHTING_WORKERS_KEY, "idle")
    time.sleep(0.8)
    assert seen is not None and connection.zscore(SIGHTING_WORKERS_KEY, "idle") != seen
    stop.set()
    rounds.join(20)


def rounds_on(url: str, redis_url: str, monkeypatch, listed: bool = False):  # type: ignore[no-untyped-def]
    """A sighting stage as `alpr worker sight` builds it on the database at `url` (upgraded; KPX4721 listed
    with `listed`), and its rounds' thread, not started: (stage, stop event, thread)."""
    import threading

    from alpr.worker_command import sighting_rounds

    assert main(["db", "upgrade", "--database-url", url]) == 0
    if listed:
        assert main(["watchlist", "add", "KPX4721", "--reason", "stolen", "--database-url", url]) == 0
    monkeypatch.setenv("ALPR_DATABASE_URL", url)
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    monkeypatch.delenv("ALPR_ALERT_RECEIVERS", raising=False)
    settings = Settings.load()
    connection = connect_redis(redis_url)
    stage = build_sighting_stage(settings, connection, Metrics())
    stop = threading.Event()
    rounds = threading.Thread(target=sighting_rounds, args=(stage, settings, stop, False, connection, "w1"),
                              daemon=True)  # fmt: skip
    return stage, stop, rounds


def test_a_sighting_worker_resumes_within_seconds_of_postgres_coming_back(private_postgres, redis_url, monkeypatch):
    """A round begun while Postgres was away waited psycopg_pool's default 30 s for a connection, and was
    not served when Postgres came back (the pool's own attempt had given up); the loop then rested up to
    30 s more (the sources' back-off): a listed car read just after a 70 s outage was alerted on 26.8 s
    late (a review). A round now waits DB_ATTEMPT_S at most, and the loop DB_OUTAGE_BACKOFF_S."""

    url = private_postgres.url
    stage, stop, rounds = rounds_on(url, redis_url, monkeypatch, listed=True)
    rounds.start()
    try:
        time.sleep(1.0)  # rounds going
        private_postgres.stop()
        time.sleep(8.0)  # a round waits for a connection; the pool's own attempt gives up meanwhile
        private_postgres.start()
        back = time.monotonic()
        pool = open_pool(url)
        try:
            now_s = time.time()
            log_frames(pool, [(frame(i, now_s - 0.5 + i * 0.1), [plate("KPX4721", 100 + 20 * i)]) for i in range(3)])
            while not table(pool, "SELECT 1 FROM alerts") and time.monotonic() - back < 45:
                time.sleep(0.1)
            resumed_s = time.monotonic() - back
        finally:
            pool.close()
    finally:
        stop.set()
        rounds.join(40)
        stage.pool.close()
    assert not rounds.is_alive()
    assert resumed_s < defaults.DB_ATTEMPT_S + defaults.DB_OUTAGE_BACKOFF_S[1] + 2.0, resumed_s  # 23 s before


@contextmanager
def stage_as_workers_role(postgres_url, redis_url, monkeypatch, statement):  # type: ignore[no-untyped-def]
    """A sighting stage logged in as a new role with the workers' rights, `statement` (its `{role}` the
    role's name) run as the superuser once it has started (a right revoked before is refused at start);
    the role's name as the stage's `role`."""
    from tests.helpers import workers_role

    with workers_role(postgres_url) as (role, url):
        monkeypatch.setenv("ALPR_DATABASE_URL", url)
        stage = build_sighting_stage(Settings.load(), connect_redis(redis_url), Metrics())
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(statement.format(role=role))
        stage.role = role
        try:
            yield stage
        finally:
            stage.pool.close()


def test_a_watch_list_read_over_the_rounds_own_connection_alerts_under_a_connection_limit(
    chain, redis_url, postgres_url, monkeypatch
):
    """The list was loaded over a second connection of the pool while the round's transaction held the
    first: a role's connection limit (or a full server) refused it, and a worker just started matched the
    listed car against no entry at all — its sighting logged, its reads taken, no alert ever (a review)."""
    pool, _ = chain
    log_frames(pool, passes(time.time() - 30))
    with stage_as_workers_role(postgres_url, redis_url, monkeypatch, "ALTER ROLE {role} CONNECTION LIMIT 1") as stage:
        result = stage.poll()
    assert [(a.kind, a.plate) for a in result.alerts] == [("read", "KPX4721")]
    assert table(pool, "SELECT kind, body->>'plate' FROM alerts") == [("read", "KPX4721")]


def test_reads_wait_while_no_watch_list_could_ever_be_loaded(chain, redis_url, postgres_url, monkeypatch, caplog):
    """A worker that never loaded the list took the reads all the same, matched against nothing: the
    listed car's pass closed without an alert, for good. Now its rounds roll back and the reads wait;
    once the list loads, the car is alerted on."""
    pool, _ = chain
    log_frames(pool, passes(time.time() - 30))
    with stage_as_workers_role(postgres_url, redis_url, monkeypatch, "REVOKE SELECT ON watchlist FROM {role}") as stage:
        refused = stage.poll()
        assert refused.sightings == [] and refused.alerts == []
        assert table(pool, "SELECT 1 FROM sightings") == [] and "reads wait for it" in caplog.text
        assert rounds(stage) == {"grouped": 0, "camera_failed": 0, "watchlist_unavailable": 1}  # Prometheus alerts
        assert stage.metrics.registry.get_sample_value("alpr_watchlist_loaded_timestamp_seconds") == 0
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"GRANT SELECT ON watchlist TO {stage.role}")
        granted = stage.poll()
        assert rounds(stage) == {"grouped": 1, "camera_failed": 0, "watchlist_unavailable": 1}
    assert len(granted.sightings) == 3 and [(a.kind, a.plate) for a in granted.alerts] == [("read", "KPX4721")]
    loaded = stage.metrics.registry.get_sample_value("alpr_watchlist_loaded_timestamp_seconds")
    assert loaded is not None and abs(loaded - time.time()) < 30


def rounds(stage) -> dict[str, float | None]:  # type: ignore[no-untyped-def]
    """The stage's sighting rounds so far, by outcome, as Prometheus reads them."""
    registry = stage.metrics.registry
    return {o: registry.get_sample_value("alpr_sighting_rounds_total", {"outcome": o}) for o in ROUND_OUTCOMES}


def test_a_sighting_worker_whose_role_has_exactly_its_rights_groups_and_alerts(chain, redis_url, postgres_url,
                                                                              caplog):  # fmt: skip
    """SIGHTING_WORKER_RIGHTS are all the pool needs: a camera met first (its reads' last id), its cursor
    locked and saved, the reads grouped once settled (frames, watermarks), the lists read (their change
    count not: without it they are loaded every refresh), the sightings, the alert and its delivery
    logged, then marked queued (a failure there is only logged)."""
    from common import db_rights
    from tests.helpers import role_with_rights

    pool, _ = chain
    log_frames(pool, passes(time.time() - 30))
    with (
        role_with_rights(postgres_url, db_rights.SIGHTING_WORKER_RIGHTS) as (_, url),
        caplog.at_level(logging.DEBUG),
    ):
        assert main(["worker", "sight", "--burst", "--database-url", url]) == 0
    assert "permission denied" not in caplog.text and "grouping failed" not in caplog.text
    assert "could not mark" not in caplog.text  # (its error's type alone)
    assert table(pool, "SELECT plate FROM sightings ORDER BY first_seen, plate") == [
        ("7ABC284",), ("KPX4721",), ("GHT2093",)
    ]  # fmt: skip
    assert table(pool, "SELECT kind, body->>'plate' FROM alerts") == [("read", "KPX4721")]
    marked = "queued_at > now() - interval '10 seconds'"  # unmarked, it is ALERT_REQUEUE_AFTER_S - 3 s ago
    assert table(pool, f"SELECT receiver, status, {marked} FROM alert_deliveries") == [("ops", "pending", True)]
    assert stage_queue(connect_redis(redis_url), "alert").count == 1


def test_a_sighting_worker_whose_role_lacks_a_right_stops_at_start_naming_it(chain, redis_url, postgres_url, capsys):
    """It started, then failed every camera's grouping each round, a WARNING each: no sighting, no alert."""
    from common import db_rights
    from tests.helpers import refused_at_start

    pool, _ = chain
    log_frames(pool, passes(time.time() - 30))
    refused_at_start(
        postgres_url, capsys, "sighting worker", db_rights.SIGHTING_WORKER_RIGHTS, ("sightings", "INSERT"),
        ["worker", "sight", "--burst"],
    )  # fmt: skip
    assert table(pool, "SELECT 1 FROM sighting_cursors WHERE grouped_until_s > 0") == []  # nothing taken


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
    from common.alerts import Alert

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


def test_a_worker_frozen_inside_a_cameras_transaction_holds_the_camera_seconds_not_minutes(
    chain, redis_url, caplog, monkeypatch
):
    """A sighting worker frozen (SIGSTOP, a paused VM) while it held a camera's cursor row held that camera
    from every other worker until Postgres's idle-in-transaction limit of two minutes: a listed car's alert
    came 117 s late (a review). The sighting pool's sessions are now ended after
    SIGHTING_IDLE_IN_TRANSACTION_S: a second worker raises the alert within seconds. The frozen worker, once
    thawed, fails that camera's round (nothing of it committed) and raises nothing twice after."""
    import threading

    assert defaults.SIGHTING_IDLE_IN_TRANSACTION_S <= 10  # shipped: seconds, not minutes
    monkeypatch.setattr(defaults, "SIGHTING_IDLE_IN_TRANSACTION_S", 2.0)  # the pools' sessions': 2 s, not 5
    pool, settings = chain
    frozen_stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    frozen, thawed = threading.Event(), threading.Event()
    look_up = frozen_stage.camera_frame_interval

    def freezing(connection, camera_id):  # type: ignore[no-untyped-def]  # inside the transaction, row locked
        frozen.set()
        thawed.wait(60)  # no statement meanwhile, as a process stopped
        return look_up(connection, camera_id)

    frozen_stage.camera_frame_interval = freezing  # type: ignore[method-assign]
    log_frames(pool, [(frame(i, time.time() - 40 + i * 0.2), [plate("GHT2093", 100 + 10 * i)]) for i in range(5)])
    rounds_of_frozen: list[object] = []
    frozen_round = threading.Thread(target=lambda: rounds_of_frozen.append(frozen_stage.poll()), daemon=True)
    frozen_round.start()
    try:
        assert frozen.wait(10)
        now_s = time.time()
        log_frames(pool, [(frame(i, now_s + (i - 10) * 0.2), [plate("KPX4721", 100 + 20 * i)]) for i in range(10, 15)])
        healthy = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
        started = time.monotonic()
        while not table(pool, "SELECT 1 FROM alerts") and time.monotonic() - started < 30:
            healthy.poll()
            time.sleep(defaults.SIGHTING_POLL_S)
        waited_s = time.monotonic() - started
        assert table(pool, "SELECT kind, body->>'plate' FROM alerts") == [("read", "KPX4721")]
        assert waited_s < defaults.SIGHTING_IDLE_IN_TRANSACTION_S + 3, waited_s  # 120 s before
    finally:
        thawed.set()
        frozen_round.join(20)
    assert not frozen_round.is_alive() and len(rounds_of_frozen) == 1
    assert "its transaction was ended by Postgres" in caplog.text
    for _ in range(20):  # both go on: the cars' sightings once each, the alert once
        for stage in (frozen_stage, healthy):
            stage.poll()
        time.sleep(defaults.SIGHTING_POLL_S)
    assert sorted(table(pool, "SELECT plate FROM sightings")) == [("GHT2093",), ("KPX4721",)]
    assert table(pool, "SELECT kind, body->>'plate' FROM alerts") == [("read", "KPX4721")]


@pytest.mark.parametrize("kept_alive", [True, False], ids=["kept-alive", "silent"])
def test_a_round_busy_longer_than_the_idle_limit_is_not_ended_for_it(chain, redis_url, monkeypatch, kept_alive):
    """The sighting pool's sessions are ended after SIGHTING_IDLE_IN_TRANSACTION_S idle in a transaction (a
    frozen worker), but a round's own Python work between two statements can be longer: 5,000 reads matched
    against 100,000 listed plates took 17 s here, 49 s with the CPUs busy. The round sends Postgres a
    statement every SIGHTING_ALIVE_EVERY_S meanwhile; silent (the control), Postgres ends it. Here the limit
    is 1 s and matching a read takes 0.25 s."""
    monkeypatch.setattr("common.db.SIGHTING_SESSION_SETTINGS", "SET idle_in_transaction_session_timeout = '1s'")
    monkeypatch.setattr(defaults, "SIGHTING_ALIVE_EVERY_S", 0.2 if kept_alive else 3600.0)
    pool, settings = chain
    log_frames(pool, [(frame(i, time.time() - 30 + i * 0.2), [plate("KPX4721", 100 + 10 * i)]) for i in range(10)])
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    assert stage.watch is not None
    match_lists = stage.watch.match_lists

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(0.25)
        return match_lists(*args, **kwargs)

    monkeypatch.setattr(stage.watch, "match_lists", slow)
    stage.poll()
    grouped = (table(pool, "SELECT kind FROM alerts"), len(table(pool, "SELECT 1 FROM sightings")))
    assert grouped == (([("read",)], 1) if kept_alive else ([], 0))
    assert rounds(stage)["camera_failed"] == (0 if kept_alive else 1)


def idle_limit_1s(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The sighting pool's sessions ended after 1 s idle in a transaction (5 s in service); kept alive every 0.2 s."""
    monkeypatch.setattr("common.db.SIGHTING_SESSION_SETTINGS", "SET idle_in_transaction_session_timeout = '1s'")
    monkeypatch.setattr(defaults, "SIGHTING_ALIVE_EVERY_S", 0.2)


def slow_index_build(monkeypatch, seconds: float) -> list[float]:  # type: ignore[no-untyped-def]
    """Each watch-list index built from now on takes `seconds` more (a list of 1.5 million plates, or the CPUs
    busy); when each build began (monotonic)."""
    import common.watchlist_index

    build = common.watchlist_index.WatchIndex.__init__
    began: list[float] = []

    def slow(self, entries, *args, **kwargs):  # type: ignore[no-untyped-def]
        began.append(time.monotonic())
        time.sleep(seconds)
        build(self, entries, *args, **kwargs)

    monkeypatch.setattr(common.watchlist_index.WatchIndex, "__init__", slow)
    return began


def test_a_watch_list_built_longer_than_the_idle_limit_neither_stops_the_worker_nor_loses_its_alerts(
    chain, redis_url, monkeypatch, caplog
):
    """A round's start read the cameras and the watch-lists in one transaction, then built the entries and
    their index in Python with it open: past the sighting pool's idle-in-transaction limit (1.5 million
    plates, or the CPUs busy), Postgres ended the session, and the IdleInTransactionSessionTimeout (an
    InternalError, not an OperationalError) went out of the worker's loop: the worker exited, and again at
    each start, which takes the same path (a review). The reads are now made in autocommit: none is open."""
    from alpr.worker_command import _rounds

    idle_limit_1s(monkeypatch)
    pool, settings = chain
    log_frames(pool, passes(time.time() - 30))
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    builds = slow_index_build(monkeypatch, 1.5)
    _rounds(stage, settings, threading.Event(), True, [None])  # the worker's loop, one round (burst)
    assert len(builds) == 1  # the first load: past the limit
    assert table(pool, "SELECT kind, body->>'plate' FROM alerts") == [("read", "KPX4721")]
    assert len(table(pool, "SELECT 1 FROM sightings")) == 3
    assert rounds(stage) == {"grouped": 1, "camera_failed": 0, "watchlist_unavailable": 0}
    assert "ended" not in caplog.text and "not reloaded" not in caplog.text


@pytest.mark.parametrize("slow", ["index", "rows"])
def test_a_watch_list_due_for_reload_within_a_cameras_transaction_fails_neither_camera_nor_round(
    chain, redis_url, postgres_url, monkeypatch, caplog, slow
):
    """A camera's transaction matched each read against the list, reloading it there when due: a list that
    built past the idle limit had Postgres end the camera's session; the camera failed (the index built
    slowly: the next statement was ended), or, where Python was slow between the reload's own statements
    (turning a long list's rows into entries), the reload's error was passed over and the camera's next
    statement found the connection closed, an OperationalError that took the whole round for a Postgres
    outage: no other camera grouped (a review). The list is now reloaded between cameras, in autocommit."""
    idle_limit_1s(monkeypatch)
    pool, settings = chain
    start_s = time.time() - 30
    for camera in ("gate", "yard"):
        log_frames(pool, [(frame(i, start_s + i * 0.2, camera), [plate("KPX4721", 100 + 10 * i)]) for i in range(5)])
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    watch = stage.watch
    assert watch is not None
    now = [0.0]
    watch.clock = lambda: now[0]
    watch.current()  # loaded before the round
    if slow == "index":
        slow_index_build(monkeypatch, 1.5)
    else:
        version = watch.watchlist.version
        slowed = [False]

        def slow_after_version(connection=None):  # type: ignore[no-untyped-def]
            found = version(connection)
            if slowed[0]:
                time.sleep(1.5)  # stands for converting a long list's rows, between the reload's statements
            return found

        monkeypatch.setattr(watch.watchlist, "version", slow_after_version)
    look_up, first = stage.camera_frame_interval, []

    def list_changed_meanwhile(connection, camera_id):  # type: ignore[no-untyped-def]  # in the transaction
        if not first:
            first.append(camera_id)
            now[0] += watch.refresh_s  # the reload due
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("INSERT INTO watchlist (list_name, plate, reason) VALUES ('default', 'ZZZ999', 'x')")
            if slow == "rows":
                slowed[0] = True
        return look_up(connection, camera_id)

    monkeypatch.setattr(stage, "camera_frame_interval", list_changed_meanwhile)
    result = stage.poll()
    assert sorted(a.camera_id for a in result.alerts) == ["gate", "yard"]
    assert rounds(stage) == {"grouped": 1, "camera_failed": 0, "watchlist_unavailable": 0}
    assert "ZZZ999" in {e.plate for e in watch.loaded()}  # reloaded between the cameras
    assert "ended by Postgres" not in caplog.text and "not reloaded" not in caplog.text


def test_a_session_ended_by_postgres_mid_round_fails_that_camera_alone(chain, redis_url, postgres_url, caplog):
    """A camera's session Postgres ended (pg_terminate_backend, AdminShutdown) or found closed raised an
    OperationalError, taken for a Postgres outage: the round ended there, its other cameras not grouped, and
    the loop waited out its back-off. It is now that camera's failure alone, logged once; the next round
    groups it from its cursor, and nothing is alerted on twice."""
    pool, settings = chain
    start_s = time.time() - 30
    for camera in ("gate", "yard"):
        log_frames(pool, [(frame(i, start_s + i * 0.2, camera), [plate("KPX4721", 100 + 10 * i)]) for i in range(5)])
    stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    look_up, ended = stage.camera_frame_interval, []

    def terminated(connection, camera_id):  # type: ignore[no-untyped-def]  # in the camera's transaction
        if not ended:
            ended.append(camera_id)
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (connection.info.backend_pid,))
        return look_up(connection, camera_id)

    stage.camera_frame_interval = terminated  # type: ignore[method-assign]
    first = stage.poll()
    other = ({"gate", "yard"} - set(ended)).pop()
    assert [a.camera_id for a in first.alerts] == [other]  # the other camera grouped in the same round
    assert rounds(stage) == {"grouped": 0, "camera_failed": 1, "watchlist_unavailable": 0}
    assert caplog.text.count(f"camera {ended[0]}: its transaction was ended by Postgres") == 1
    again = stage.poll()
    assert [a.camera_id for a in again.alerts] == ended
    assert rounds(stage) == {"grouped": 1, "camera_failed": 1, "watchlist_unavailable": 0}
    assert sorted(table(pool, "SELECT camera_id FROM alerts")) == [("gate",), ("yard",)]
    assert sorted(table(pool, "SELECT camera_id FROM sightings")) == [("gate",), ("yard",)]


def test_a_round_whose_session_postgres_ended_idle_in_a_transaction_does_not_stop_the_worker(
    chain, postgres_url, caplog
):
    """IdleInTransactionSessionTimeout is an InternalError, which the worker's loop let out: the worker
    exited (a review). That round fails alone, logged, and the next is tried as usual."""
    from alpr.worker_command import _rounds

    pool, settings = chain
    stop = threading.Event()

    class EndedOnce:  # a SightingStage's pool and round: the pool the real one's is (open_pool's)
        polls = 0

        def __init__(self) -> None:
            self.pool = pool

        def poll(self) -> None:
            self.polls += 1
            if self.polls > 1:
                stop.set()
                return
            with psycopg.connect(postgres_url) as connection:
                connection.execute("SET idle_in_transaction_session_timeout = '200ms'")
                connection.execute("SELECT 1")  # within a transaction
                time.sleep(0.6)
                connection.execute("SELECT 1")  # Postgres ended the session meanwhile

    stage = EndedOnce()
    _rounds(stage, settings, stop, False, [None])
    assert stage.polls == 2
    assert "Postgres ended its session (IdleInTransactionSessionTimeout)" in caplog.text


def test_a_worker_whose_clock_check_found_no_postgres_at_start_still_counts_late_reads(
    chain, redis_url, monkeypatch, caplog
):  # fmt: skip
    """The late reads' WARNING state was made at the end of the start's clock comparison, after its early
    return when Postgres did not answer within 2 s: every round that took a late read then failed its
    camera (AttributeError) for the life of the process (a diff review)."""
    from sighting_worker.worker import SightingStage

    compare = SightingStage.compare_clocks

    def compare_unanswered(stage: SightingStage) -> None:  # every connection of the real pool in use
        held = [stage.pool.getconn() for _ in range(stage.pool.max_size)]
        try:
            compare(stage)  # waits DB_ATTEMPT_S for a connection, then gives up (PoolTimeout)
        finally:
            for connection in held:
                stage.pool.putconn(connection)

    monkeypatch.setattr(defaults, "DB_ATTEMPT_S", 0.2)
    monkeypatch.setattr(SightingStage, "compare_clocks", compare_unanswered)
    pool, settings = chain
    with caplog.at_level(logging.WARNING, logger="sighting_worker.worker"):
        stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    assert "could not compare this host's clock with Postgres's (PoolTimeout)" in caplog.text
    start_s = time.time() - 3
    log_frames(pool, [(frame(i, start_s + i * 0.2), [plate("GHT2093", 300 + 15 * i)]) for i in range(5)])
    stage.poll()
    log_frames(pool, late_pass(600, time.time() - 3600, "LATE123"))
    stage.poll()
    assert rounds(stage)["camera_failed"] == 0
    assert stage.metrics.registry.get_sample_value("alpr_sighting_late_reads_total", {"camera": "gate"}) == 5


def test_a_read_only_primary_is_one_warning_and_waited_out_not_a_warning_a_camera_a_round(
    private_postgres, redis_url, monkeypatch, caplog
):
    """A primary demoted (a failover) refused every camera's cursor lock: the pool logged a WARNING a
    camera a round, 272 in 60 s for one camera (a review), and kept its sessions to the old server. It
    waits the outage out as Postgres being away, says so once, and connects afresh."""

    import psycopg

    from tests.helpers import wait_for

    url = private_postgres.url
    stage, stop, rounds = rounds_on(url, redis_url, monkeypatch)
    pool = open_pool(url)

    def read_only(on: bool) -> None:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"ALTER SYSTEM SET default_transaction_read_only = {'on' if on else 'off'}")
            admin.execute("SELECT pg_reload_conf()")

    caplog.set_level("INFO")
    rounds.start()
    try:
        time.sleep(1.0)
        now_s = time.time()  # reads to group once settled (2 s): by then Postgres takes no writes
        log_frames(pool, [(frame(i, now_s - 0.5 + 0.1 * i, camera), [plate("KPX4721", 100)]) for i in range(2)
                          for camera in ("gate", "yard", "dock")])  # fmt: skip
        read_only(True)
        stage.pool.drain()  # the sessions already open keep the setting they began with
        caplog.clear()
        time.sleep(6.0)
        spell = [r for r in caplog.records if r.levelno >= logging.WARNING]
        read_only(False)
        log_frames(pool, [(frame(5, time.time(), "gate"), [plate("KPX4721", 100)])])
        wait_for(lambda: any("answers again" in r.getMessage() for r in caplog.records), 20, "the rounds going on")
    finally:
        stop.set()
        rounds.join(40)
        stage.pool.close()
        pool.close()
        read_only(False)
    assert not rounds.is_alive()
    assert len(spell) == 1 and "Postgres read-only" in spell[0].getMessage(), [r.getMessage() for r in spell]

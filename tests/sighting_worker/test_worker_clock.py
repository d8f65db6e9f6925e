"""The sighting pool against clocks that disagree: a host clock ahead of Postgres's, cursors saved past
Postgres's now or by a newer worker, and late reads counted when the clock check found no Postgres at start."""

from __future__ import annotations

import logging
import re
import time
from contextlib import contextmanager
from datetime import UTC, datetime

from psycopg.types.json import Jsonb

from alpr.cli import main
from alpr.wiring import build_sighting_stage
from common import defaults
from common.metrics import Metrics
from common.queues import connect_redis
from sighting_worker.cursor_state import CURSOR_STATE_VERSION, WITHOUT_LATE_VERSION
from tests.sighting_worker.chain_scenes import frame, late_pass, log_frames, passes, plate, rounds, table


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
        for module in (
            "sighting_worker.worker", "sighting_worker.camera_round", "sighting_worker.alert_hand_off",
            "sighting_worker.passes", "common.watchlist_cache",
        ):  # fmt: skip
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
    with caplog.at_level(logging.ERROR, logger="sighting_worker.camera_round"):
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

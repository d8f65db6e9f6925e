"""The sighting pool's idle limit and frozen transactions: a worker frozen inside a camera's transaction, a
round or a watch-list build longer than the idle limit, and a reload due inside a camera's transaction."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from alpr.wiring import build_sighting_stage
from common import defaults
from common.metrics import Metrics
from common.queues import connect_redis
from tests.sighting_worker.chain_scenes import frame, log_frames, passes, plate, rounds, table


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

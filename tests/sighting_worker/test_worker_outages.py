"""The sighting pool through outages: Redis taking connections and never answering, a hung round and its
heartbeat, Postgres gone and back, a session ended by Postgres mid-round or idle in a transaction, and a
read-only primary."""

from __future__ import annotations

import logging
import threading
import time

import psycopg

from alpr.cli import main
from alpr.wiring import build_sighting_stage
from common import defaults
from common.config import Settings
from common.db import open_pool
from common.metrics import Metrics
from common.queues import connect_redis
from tests.sighting_worker.chain_scenes import frame, log_frames, plate, rounds, table


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

"""Who holds a camera, on the real Postgres and a private Redis (the helpers and fixture of
tests/sighting_worker/chain_scenes.py): a session that is no sighting worker holding a camera's cursor row (a
DBA's transaction left open in psql) fails that camera's rounds at once, with an ERROR naming the session and
the failure counted, and the camera is grouped and alerted on as soon as it lets go; a camera another sighting
worker is grouping is left to it quietly, as before (sighting_worker/camera_claim.py)."""

from __future__ import annotations

import logging
import threading
import time

import psycopg

from alpr.wiring import build_sighting_stage
from common.db_rights import SIGHTING_WORKER_RIGHTS
from common.metrics import Metrics
from common.queues import connect_redis
from tests.helpers import role_with_rights
from tests.sighting_worker.chain_scenes import log_frames, passes, rounds, table

PLATES = ("7ABC284", "KPX4721", "GHT2093")
"""The plates of `passes`: never in a log line."""


def test_a_dba_session_holding_the_cursor_rows_fails_the_camera_naming_it_until_it_lets_go(
    chain, redis_url, postgres_url, monkeypatch, caplog
):
    """A psql session's `BEGIN; SELECT camera_id FROM sighting_cursors FOR UPDATE;` held 150 s: no sighting, no
    alert, not a log line, every round counted `grouped` (its row skipped as another worker's), and a session
    forgotten open would have silenced the camera for good (a review). Now each round fails the camera at once
    (the round is not held up), an ERROR names the session once a minute, and the next round after it lets go
    groups the camera and raises the alert. Run as a role with exactly the sighting worker's rights."""
    pool, settings = chain
    log_frames(pool, passes(time.time() - 30))  # the camera's cursor row is made with its reads
    with (
        role_with_rights(postgres_url, SIGHTING_WORKER_RIGHTS) as (_, url),
        psycopg.connect(f"{postgres_url}&application_name=dba-console") as dba,
        caplog.at_level(logging.INFO),
    ):
        monkeypatch.setenv("ALPR_DATABASE_URL", url)
        stage = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
        try:
            dba.execute("SELECT camera_id FROM sighting_cursors FOR UPDATE")  # its transaction left open
            dba_pid = dba.info.backend_pid
            for _ in range(3):
                started = time.monotonic()
                held = stage.poll()
                assert held.sightings == [] and held.alerts == []
                assert time.monotonic() - started < 1.5  # no wait on the lock: the round's other cameras go on
            assert rounds(stage) == {"grouped": 0, "camera_failed": 3, "watchlist_unavailable": 0}
            errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert len(errors) == 1, errors  # once a minute, not once a round
            assert "camera gate: its cursor row is locked by a session that is no sighting worker" in errors[0]
            assert f"pid {dba_pid}, user postgres, application 'dba-console'" in errors[0]
            assert table(pool, "SELECT 1 FROM sightings") == [] and table(pool, "SELECT 1 FROM alerts") == []
            dba.rollback()
            freed = stage.poll()
        finally:
            stage.pool.close()
    assert sorted(s.plate for s in freed.sightings) == sorted(PLATES)
    assert [(a.kind, a.plate) for a in freed.alerts] == [("read", "KPX4721")]
    assert rounds(stage) == {"grouped": 1, "camera_failed": 3, "watchlist_unavailable": 0}
    assert "camera gate: its cursor row is free again" in caplog.text
    assert not any(plate in caplog.text for plate in PLATES)


def test_a_camera_another_sighting_worker_is_grouping_is_left_to_it_quietly(chain, redis_url, caplog):
    """Two sighting workers: while one holds the camera (mid-transaction), the other's round leaves it, with
    no failure counted and no ERROR; the camera's cars are sighted and alerted on once."""
    pool, settings = chain
    busy = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    other = build_sighting_stage(settings, connect_redis(redis_url), Metrics())
    inside, go_on = threading.Event(), threading.Event()
    look_up = busy.camera_frame_interval

    def pausing(connection, camera_id):  # type: ignore[no-untyped-def]  # inside the camera's transaction
        inside.set()
        go_on.wait(10)
        return look_up(connection, camera_id)

    busy.camera_frame_interval = pausing  # type: ignore[method-assign]
    log_frames(pool, passes(time.time() - 30))
    results: list[object] = []
    busy_round = threading.Thread(target=lambda: results.append(busy.poll()), daemon=True)
    busy_round.start()
    try:
        assert inside.wait(10)
        with caplog.at_level(logging.WARNING):
            left = other.poll()
        assert left.sightings == [] and left.alerts == []
        assert rounds(other) == {"grouped": 1, "camera_failed": 0, "watchlist_unavailable": 0}
        assert caplog.records == []
    finally:
        go_on.set()
        busy_round.join(20)
    assert len(results) == 1 and rounds(busy) == {"grouped": 1, "camera_failed": 0, "watchlist_unavailable": 0}
    other.poll()
    assert sorted(table(pool, "SELECT plate FROM sightings")) == sorted((p,) for p in PLATES)
    assert table(pool, "SELECT kind, body->>'plate' FROM alerts") == [("read", "KPX4721")]

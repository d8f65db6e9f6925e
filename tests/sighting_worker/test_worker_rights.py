"""The sighting pool under its database role: the watch list read over the round's own connection under a
connection limit, reads waiting while no watch list can load, and a role with exactly its rights or lacking one."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import psycopg

from alpr.cli import main
from alpr.wiring import build_sighting_stage
from common.config import Settings
from common.metrics import Metrics
from common.queues import connect_redis, stage_queue
from tests.sighting_worker.chain_scenes import log_frames, passes, rounds, table


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

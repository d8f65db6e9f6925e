"""The deployment check against entries anyone with access to the queues' Redis may write (a review): a
member scored far in the future and an RQ registration with no TTL never lapsed, and one forged entry made
every role refuse to start, for good. Now a member counts only while it looks live as a real one does, and
where a job key is set only an entry signed with this role's own key refuses a start; a Postgres moved to
another server (the same database and schema) is warned of. Real roles on a private Redis and the real
Postgres (a private cluster for the moved one)."""

from __future__ import annotations

import json
import logging

import psycopg
import pytest

from alpr.cli import main
from alpr.deployment_check import own_deployment
from common.config import Settings
from common.metrics import Metrics
from common.queues import (
    QUEUE_NAMES,
    SETTINGS_SUFFIX,
    SIGHTING_WORKERS_KEY,
    beat_sighting_worker,
    connect_redis,
    stage_queue,
)
from common.role_settings import RoleSettings, role_settings
from common.worker import SETTINGS_FIELD, StageWorker
from common.worker_context import WorkerContext
from tests.common.recording_stage import Recorder
from tests.servers import PrivatePostgres

EXIT_ERROR = 2
"""What `alpr` exits with on a refusal (alpr/cli.py: an AlprError)."""

JOB_KEY = "a-job-key-both-deployments-share"
"""ALPR_JOB_KEY of the tests that set one."""

FORGED = json.dumps(
    {
        "fingerprint": "a" * 12,
        "settings": {},
        "deployment": {"server": "0" * 12, "database": "0" * 12, "schema": "0" * 12, "name": "x"},
    }
)
"""An entry of no deployment of ours, unsigned, as a client of Redis may write one."""

SETTINGS_KEY = SIGHTING_WORKERS_KEY + SETTINGS_SUFFIX


@pytest.fixture()
def upgraded(postgres_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    monkeypatch.setenv("ALPR_DATABASE_URL", postgres_url)
    return postgres_url


def other_schema(postgres_url: str, name: str) -> str:
    """`postgres_url` with another schema (made, and migrated): another deployment's."""
    base = postgres_url.split("?")[0]
    schema = f"{postgres_url.split('%3D')[1]}_{name}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    url = f"{base}?options=-csearch_path%3D{schema}"
    assert main(["db", "upgrade", "--database-url", url]) == 0
    return url


def drop_schema(url: str) -> None:
    with psycopg.connect(url.split("?")[0], autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA {url.split('%3D')[1]} CASCADE")


def published(database_url: str, redis_url: str, job_key: str | None, role: str = "sight") -> RoleSettings:
    """What a `role` member of the deployment logging to `database_url` publishes with its beats."""
    environ = {"ALPR_DATABASE_URL": database_url, "ALPR_REDIS_URL": redis_url} | (
        {"ALPR_JOB_KEY": job_key} if job_key else {}
    )
    settings = Settings.load(environ)
    return role_settings(settings, role, deployment=own_deployment(settings, role))


def entry_of(database_url: str, redis_url: str, job_key: str | None) -> str:
    """A sighting worker's entry (`published`)."""
    return published(database_url, redis_url, job_key).entry()


def test_a_member_scored_in_the_future_does_not_refuse_a_start(upgraded, redis_url, capsys):
    connection = connect_redis(redis_url)
    connection.zadd(SIGHTING_WORKERS_KEY, {"evil": 1e12})  # never lapses
    connection.hset(SETTINGS_KEY, "evil", FORGED)
    assert main(["worker", "sight", "--burst"]) == 0, capsys.readouterr().err[-600:]


def test_an_rq_registration_without_ttl_does_not_refuse_a_start(upgraded, redis_url, capsys):
    connection = connect_redis(redis_url)
    connection.sadd(f"rq:workers:{QUEUE_NAMES['ocr']}", "rq:worker:ghost")
    connection.sadd("rq:workers", "rq:worker:ghost")
    connection.hset("rq:worker:ghost", mapping={"birth": "2026-01-01T00:00:00.000000Z", SETTINGS_FIELD: FORGED})
    assert main(["worker", "sight", "--burst"]) == 0, capsys.readouterr().err[-600:]
    connection.expire("rq:worker:ghost", 90)  # a TTL as a live worker's, but no heartbeat
    assert main(["worker", "sight", "--burst"]) == 0, capsys.readouterr().err[-600:]


def test_a_live_rq_worker_of_another_deployment_with_the_same_key_refuses(upgraded, redis_url, monkeypatch, capsys):
    """A real worker's registration (RQ's own, with its TTL and heartbeat) counts as live."""
    monkeypatch.setenv("ALPR_JOB_KEY", JOB_KEY)
    other = other_schema(upgraded, "w")
    try:
        connection = connect_redis(redis_url)
        settings = published(other, redis_url, JOB_KEY, "ocr")
        worker = StageWorker(stage_queue(connection, "ocr"), WorkerContext(Recorder(), Metrics(), settings=settings))  # type: ignore[arg-type]
        worker.register_birth()
        capsys.readouterr()
        assert main(["worker", "sight", "--burst"]) == EXIT_ERROR
        said = capsys.readouterr().err
        assert f"the live ocr {worker.name} (in {worker.key};" in said and "schema differ" in said
        worker.register_death()
        assert main(["worker", "sight", "--burst"]) == 0
    finally:
        drop_schema(other)


def test_with_a_job_key_an_unsigned_live_entry_is_an_error_not_a_refusal(
    upgraded, redis_url, monkeypatch, caplog, capsys
):
    monkeypatch.setenv("ALPR_JOB_KEY", JOB_KEY)
    beat_sighting_worker(connect_redis(redis_url), "forged", FORGED)  # beaten as a live one is
    with caplog.at_level(logging.ERROR, logger="alpr.deployment_check"):
        assert main(["worker", "sight", "--burst"]) == 0, capsys.readouterr().err[-600:]
    (said,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "forged" in r.getMessage()]
    assert "not signed with this sight's job key" in said and SETTINGS_KEY in said


def test_a_live_entry_signed_with_this_roles_key_refuses_naming_its_redis_key(upgraded, redis_url, monkeypatch, capsys):
    """Two deployments sharing one job key: their jobs cross silently, so the start is refused."""
    monkeypatch.setenv("ALPR_JOB_KEY", JOB_KEY)
    other = other_schema(upgraded, "b")
    try:
        beat_sighting_worker(connect_redis(redis_url), "b-sight", entry_of(other, redis_url, JOB_KEY))
        capsys.readouterr()
        assert main(["worker", "sight", "--burst"]) == EXIT_ERROR
        said = capsys.readouterr().err
        assert "serves another deployment: this sight" in said and "schema differ" in said
        assert f"sight b-sight (in {SETTINGS_KEY}" in said
        # signed with another key: told at ERROR, the start goes on
        beat_sighting_worker(connect_redis(redis_url), "b-sight", entry_of(other, redis_url, "another-key-" + JOB_KEY))
        assert main(["worker", "sight", "--burst"]) == 0
    finally:
        drop_schema(other)


def test_a_postgres_moved_to_another_server_is_warned_of(
    upgraded, private_postgres: PrivatePostgres, redis_url, caplog, capsys
):
    """A dump/restore onto a new cluster: the same database name and schema, another server. The old
    pod still beats while the new ones start (a rolling restart)."""
    schema = upgraded.split("%3D")[1]
    with psycopg.connect(private_postgres.url, autocommit=True) as connection:
        connection.execute("CREATE DATABASE test")
    moved_base = private_postgres.url.rsplit("/", 1)[0] + "/test"
    with psycopg.connect(moved_base, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    moved = f"{moved_base}?options=-csearch_path%3D{schema}"
    assert main(["db", "upgrade", "--database-url", moved]) == 0
    beat_sighting_worker(connect_redis(redis_url), "old-pod", entry_of(upgraded, redis_url, None))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alpr.deployment_check"):
        assert main(["worker", "sight", "--burst", "--database-url", moved]) == 0, capsys.readouterr().err[-600:]
    (said,) = [r.getMessage() for r in caplog.records if "old-pod" in r.getMessage()]
    assert "Postgres server differ" in said and "schema differ" not in said

"""The chain keeps going when its servers or workers fall over, on private servers the tests stop
and start: a Postgres outage is waited out inside the job, the job of a worker killed mid-job runs
again on another worker, and a Redis restart is survived by the ingest node and every worker."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from rq import Worker
from rq.registry import FailedJobRegistry

from alpr.cli import main
from alpr.democlip import make_clip
from common.queues import STAGES, stage_queue
from tests.helpers import alpr_process, wait_for, write_cameras
from tests.servers import PrivatePostgres, PrivateRedis

PLATES = ("KPX4721", "7ABC284")
FRAMES = 40  # the clip: two cars x 4 s at 10 fps, sampled at 5 fps


@pytest.fixture()
def private_postgres() -> Iterator[PrivatePostgres]:
    try:
        server = PrivatePostgres()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    server.start()
    yield server
    server.remove()


def fault_env(redis_url: str, database_url: str, settings, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    env.update({
        "ALPR_REDIS_URL": redis_url, "ALPR_DATABASE_URL": database_url, "ALPR_MODEL_DIR": str(settings.model_dir),
        "ALPR_KEEP_DIR": str(tmp_path / "kept"), "ALPR_FRAMES_PER_JOB": "4", "PYTHONUNBUFFERED": "1", **extra,
    })  # fmt: skip
    return env


def one_camera(tmp_path: Path, **options: object) -> Path:
    clip = tmp_path / "cam.mp4"
    make_clip(clip, PLATES, seed=3)
    camera = {"id": "cam", "source": str(clip), "sample_fps": 5, "region": "us", **options}
    return write_cameras(tmp_path / "cameras.yaml", [camera])


def count(url: str, sql: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=3) as db:
            row = db.execute(sql).fetchone()
            return int(row[0]) if row else 0
    except psycopg.OperationalError:
        return -1


def workers_ready(connection: redis.Redis) -> int:
    return sum(len(Worker.all(queue=stage_queue(connection, stage))) for stage in STAGES)


def test_postgres_outage_is_waited_out_and_a_killed_workers_job_runs_again(
    redis_url, private_postgres, settings, tmp_path
):
    pg = private_postgres
    assert main(["db", "upgrade", "--database-url", pg.url]) == 0
    # a short job timeout, so the killed worker's job is found abandoned soon (RQ: timeout + 60 s)
    env = fault_env(redis_url, pg.url, settings, tmp_path, ALPR_JOB_TIMEOUT_S="10", ALPR_DB_PATIENCE_S="8")
    logs = {name: tmp_path / f"{name}.log" for name in ("detect", "ocr0", "ocr1", "redact", "ingest")}
    processes = {
        name: alpr_process(env, ["worker", name.rstrip("01")], logs[name])
        for name in ("detect", "ocr0", "ocr1", "redact")
    }
    connection = redis.Redis.from_url(redis_url)
    try:
        wait_for(lambda: workers_ready(connection) == 4, 120, "the workers to start (with Postgres up)")
        pg.stop()
        cameras = one_camera(tmp_path, realtime=False)
        processes["ingest"] = alpr_process(env, ["ingest", "--cameras", str(cameras)], logs["ingest"])
        waiting = lambda name: "Postgres unavailable" in logs[name].read_text()  # noqa: E731
        wait_for(lambda: waiting("ocr0") and waiting("ocr1"), 120, "both OCR workers to wait for Postgres")
        processes["ocr0"].send_signal(signal.SIGKILL)  # dies holding a job
        processes["ocr0"].wait(timeout=10)
        pg.start()  # within ALPR_DB_PATIENCE_S of ocr1's wait: its job goes on, nothing fails
        wait_for(lambda: count(pg.url, "SELECT count(*) FROM frames") >= FRAMES, 180, "every frame, killed job's too")
        with psycopg.connect(pg.url) as db:
            frames = db.execute(
                "SELECT count(*), count(DISTINCT frame_id) FROM frames WHERE outcome = 'done'"
            ).fetchone()
            reads = db.execute("SELECT plate_text, format_match, confidence FROM plate_reads").fetchall()
            repeated = db.execute(
                "SELECT count(*) FROM (SELECT 1 FROM plate_reads GROUP BY frame_id, plate_index HAVING count(*) > 1) r"
            ).fetchone()
        assert frames == (FRAMES, FRAMES)
        assert repeated == (0,)
        assert {text for text, matched, conf in reads if matched and conf >= 0.5} >= set(PLATES)
        for stage in STAGES:
            assert FailedJobRegistry(queue=stage_queue(connection, stage)).count == 0, stage
        assert all(processes[name].poll() is None for name in ("detect", "ocr1", "redact"))
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(timeout=30)


def test_redis_restart_is_survived_by_the_ingest_node_and_the_workers(
    redis_server: PrivateRedis, postgres_url, settings, tmp_path
):
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    env = fault_env(redis_server.url, postgres_url, settings, tmp_path)
    cameras = one_camera(tmp_path, loop=True)  # a live-paced camera that never ends
    logs = {name: tmp_path / f"{name}.log" for name in ("detect", "ocr", "redact", "ingest")}
    processes = {name: alpr_process(env, ["worker", name], logs[name]) for name in ("detect", "ocr", "redact")}
    processes["ingest"] = alpr_process(env, ["ingest", "--cameras", str(cameras)], logs["ingest"])
    frames_sql = "SELECT count(*) FROM frames"
    try:
        wait_for(lambda: count(postgres_url, frames_sql) >= 8, 120, "frames through the chain")
        redis_server.stop()  # everything in flight is lost: this Redis keeps nothing on disk
        time.sleep(3)
        redis_server.start()
        after_restart = count(postgres_url, frames_sql)
        wait_for(lambda: count(postgres_url, frames_sql) >= after_restart + 12, 120, "frames after the restart")
        assert all(p.poll() is None for p in processes.values()), {n: p.poll() for n, p in processes.items()}
        assert "Redis unavailable" in logs["ingest"].read_text()
        assert count(postgres_url, "SELECT count(*) - count(DISTINCT frame_id) FROM frames") == 0
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(timeout=30)

"""The chain keeps going when its servers or workers fall over, on private servers the tests stop
and start: a Postgres outage, or a primary made read-only, is waited out inside the job (and by the
ingest node's ledger), the job of a worker killed mid-job runs again on another worker within a minute,
and a Redis restart without
persistence is survived by the ingest node and every worker, which register again. Every test ends
with every sampled frame accounted for in the frames log and no read logged twice."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import psycopg
import redis
from rq import Worker
from rq.registry import FailedJobRegistry

from alpr.cli import main
from common import defaults
from common.queues import STAGES, stage_queue
from tests.helpers import alpr_process, short_recovery, wait_for, write_cameras, write_clip
from tests.servers import PrivateRedis

PLATES = ("KPX4721", "7ABC284")
FRAMES = 40  # the clip: two cars x 4 s at 10 fps, sampled at 5 fps


def fault_env(redis_url: str, database_url: str, settings, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    env.update({
        "ALPR_REDIS_URL": redis_url, "ALPR_DATABASE_URL": database_url, "ALPR_MODEL_DIR": str(settings.model_dir),
        "ALPR_KEEP_DIR": str(tmp_path / "kept"), "ALPR_FRAMES_PER_JOB": "4", "PYTHONUNBUFFERED": "1", **extra,
    })  # fmt: skip
    return env


def one_camera(tmp_path: Path, **options: object) -> Path:
    clip = tmp_path / "cam.mp4"
    write_clip(clip, PLATES, seed=3)
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


def sampled_by_ingest(log: Path) -> int:
    """Frames the ingest node sampled, queued or skipped, from its closing summary: less those it counted
    skipped but never sampled (no frame id, no row), as a camera standing in for a live one does while the
    packing waits Redis out. Counted in, they failed the Redis restart on a loaded machine (97 against 80)."""
    match = re.search(r"cam: (\d+) frames queued, (\d+) skipped(?: \((\d+) of them never sampled)?", log.read_text())
    assert match, log.read_text()
    return int(match[1]) + int(match[2]) - int(match[3] or 0)


def assert_all_accounted(url: str, sampled: int) -> dict[str, int]:
    """Every sampled frame has one final row; no read is logged twice. Returns the outcome counts."""
    with psycopg.connect(url) as db:
        outcomes = dict(db.execute("SELECT outcome, count(*) FROM frames GROUP BY outcome").fetchall())
        distinct = db.execute("SELECT count(DISTINCT frame_id) FROM frames").fetchone()
        repeated = db.execute(
            "SELECT count(*) FROM (SELECT 1 FROM plate_reads GROUP BY frame_id, plate_index HAVING count(*) > 1) r"
        ).fetchone()
    assert sum(outcomes.values()) == sampled and distinct == (sampled,), outcomes
    assert "pending" not in outcomes, outcomes
    assert repeated == (0,)
    return outcomes


def test_postgres_outage_is_waited_out_and_a_killed_workers_job_runs_again(
    redis_url, private_postgres, settings, tmp_path
):
    pg = private_postgres
    assert main(["db", "upgrade", "--database-url", pg.url]) == 0
    env = fault_env(redis_url, pg.url, settings, tmp_path)  # default job timeout: the lease brings the job back
    logs = {name: tmp_path / f"{name}.log" for name in ("detect", "ocr0", "ocr1", "redact", "ingest")}
    # the lease and registry cleaning in seconds here; those shipped bring a killed worker's job back within a minute
    assert defaults.JOB_LEASE_S + 2 * defaults.WORKER_MAINTENANCE_S <= 60
    recovery = short_recovery()
    processes = {
        name: alpr_process(env, ["worker", name.rstrip("01")], logs[name], timers=recovery)
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
        killed_at = time.monotonic()
        pg.start()  # within ALPR_DB_PATIENCE_S of ocr1's wait: its job goes on, nothing fails
        done_sql = "SELECT count(*) FROM frames WHERE outcome <> 'pending'"
        wait_for(lambda: count(pg.url, done_sql) >= FRAMES, 90, "every frame, the killed job's too")
        recovered_s = time.monotonic() - killed_at
        print(f"killed worker's job done again {recovered_s:.0f} s after the kill")
        assert recovered_s <= 75  # the lease + registry cleaning (15 s each by default) + the chain's own time
        processes["ingest"].wait(timeout=60)  # the file has ended: the node closes its ledger and exits
        assert_all_accounted(pg.url, sampled_by_ingest(logs["ingest"]))
        # the redactor does not wait for OCR: a frame is done before its reads are (the killed job's come after
        # its lease ran out, the others' after their wait for Postgres); a slow machine read them too early
        reads_pending = "SELECT count(*) FROM frames WHERE read_outcome = 'pending'"
        wait_for(lambda: count(pg.url, reads_pending) == 0, 120, "every frame's reads recorded")
        with psycopg.connect(pg.url) as db:
            frames = db.execute(
                "SELECT count(*), count(DISTINCT frame_id) FROM frames WHERE outcome = 'done'"
            ).fetchone()
            reads = db.execute("SELECT plate_text, format_match, confidence FROM plate_reads").fetchall()
            repeated = db.execute(
                "SELECT count(*) FROM (SELECT 1 FROM plate_reads GROUP BY frame_id, plate_index HAVING count(*) > 1) r"
            ).fetchone()
        assert frames == (FRAMES, FRAMES) and sampled_by_ingest(logs["ingest"]) == FRAMES
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


def test_a_read_only_primary_is_waited_out_inside_the_jobs(redis_url, private_postgres, settings, tmp_path):
    """A primary made read-only (a failover's demotion: `ALTER SYSTEM SET default_transaction_read_only`) failed
    every OCR and redaction job in hand three times back to back within milliseconds, into RQ's failed
    registry for good (79 + 115 jobs in 60 s, a review). Now each job waits it out as an outage, says so
    once, and every frame and read is logged once Postgres takes writes again."""
    pg = private_postgres
    assert main(["db", "upgrade", "--database-url", pg.url]) == 0
    env = fault_env(redis_url, pg.url, settings, tmp_path)
    logs = {name: tmp_path / f"{name}.log" for name in ("detect", "ocr", "redact", "ingest")}
    processes = {name: alpr_process(env, ["worker", name], logs[name]) for name in ("detect", "ocr", "redact")}
    connection = redis.Redis.from_url(redis_url)
    admin = psycopg.connect(pg.url, autocommit=True)
    failed = lambda: sum(FailedJobRegistry(queue=stage_queue(connection, s)).count for s in STAGES)  # noqa: E731
    read_only = lambda name: "Postgres read-only" in logs[name].read_text()  # noqa: E731
    try:
        wait_for(lambda: workers_ready(connection) == 3, 120, "the workers to start")
        admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        admin.execute("SELECT pg_reload_conf()")
        cameras = one_camera(tmp_path, realtime=False)
        processes["ingest"] = alpr_process(env, ["ingest", "--cameras", str(cameras)], logs["ingest"])
        wait_for(lambda: read_only("ocr") and read_only("redact") or failed() > 0, 120, "the jobs to meet it")
        time.sleep(5)  # the jobs in hand wait on
        assert failed() == 0
        admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
        admin.execute("SELECT pg_reload_conf()")
        processes["ingest"].wait(timeout=120)  # the file has ended: the node closes its ledger and exits
        reads_pending = "SELECT count(*) FROM frames WHERE outcome = 'pending' OR read_outcome = 'pending'"
        wait_for(lambda: count(pg.url, reads_pending) == 0, 120, "every frame and its reads recorded")
        outcomes = assert_all_accounted(pg.url, sampled_by_ingest(logs["ingest"]))
        assert outcomes == {"done": FRAMES} and failed() == 0
        with psycopg.connect(pg.url) as db:
            reads = db.execute("SELECT plate_text FROM plate_reads WHERE format_match").fetchall()
        assert {text for (text,) in reads} >= set(PLATES)
        for name in ("ocr", "redact"):
            text = logs[name].read_text()
            assert "Traceback" not in text and "ERROR" not in text, text[-3000:]
            assert text.count("Postgres read-only") == 1  # once a job, at WARNING (the rest at DEBUG)
    finally:
        admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
        admin.execute("SELECT pg_reload_conf()")
        admin.close()
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(timeout=30)


def test_redis_restart_without_persistence_loses_no_frame_in_silence(
    redis_server: PrivateRedis, postgres_url, settings, tmp_path
):
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    # short times, so frames lost with Redis are swept as lost within the test: TTL (the job timeout + the
    # recovery of short_recovery, 22 s) + job timeout = 52 s
    recovery = short_recovery()
    ttl_s = 15 + int(recovery["RECOVERY_S"])
    env = fault_env(redis_server.url, postgres_url, settings, tmp_path, ALPR_JOB_TIMEOUT_S="15",
                    ALPR_DB_PATIENCE_S="10", ALPR_FRAME_TTL_S=str(ttl_s), ALPR_MAX_FRAME_AGE_S="30")  # fmt: skip
    cameras = one_camera(tmp_path, loop=True)  # a live-paced camera that never ends
    logs = {name: tmp_path / f"{name}.log" for name in ("detect", "ocr", "redact", "ingest")}
    processes = {name: alpr_process(env, ["worker", name], logs[name], timers=recovery)
                 for name in ("detect", "ocr", "redact")}  # fmt: skip
    processes["ingest"] = alpr_process(env, ["ingest", "--cameras", str(cameras)], logs["ingest"], timers=recovery)
    connection = redis.Redis.from_url(redis_server.url)
    frames_sql = "SELECT count(*) FROM frames WHERE outcome = 'done'"
    try:
        wait_for(lambda: count(postgres_url, frames_sql) >= 8, 120, "frames through the chain")
        redis_server.stop()  # everything in flight is lost: this Redis keeps nothing on disk
        time.sleep(6)  # past the frames to pack filling (16, 3.2 s at 5 frames/s): the next are never sampled
        redis_server.start()
        after_restart = count(postgres_url, frames_sql)
        wait_for(lambda: count(postgres_url, frames_sql) >= after_restart + 12, 120, "frames after the restart")
        wait_for(lambda: workers_ready(connection) == 3, 40, "the workers to register again")
        assert all(p.poll() is None for p in processes.values()), {n: p.poll() for n, p in processes.items()}
        assert "Redis unavailable" in logs["ingest"].read_text()
        processes["ingest"].send_signal(signal.SIGTERM)
        processes["ingest"].wait(timeout=60)
        sampled = sampled_by_ingest(logs["ingest"])
        assert "never sampled" in logs["ingest"].read_text()  # the summary told them apart (3 s: only under load)
        pending_sql = "SELECT count(*) FROM frames WHERE outcome = 'pending'"
        wait_for(lambda: count(postgres_url, pending_sql) == 0, 180, "the sweep to account for every frame")
        outcomes = assert_all_accounted(postgres_url, sampled)
        print(f"after a Redis restart without persistence: {sampled} frames sampled, {outcomes}")
        assert outcomes["done"] >= after_restart + 12
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(timeout=30)


def test_an_ingest_node_stopped_while_redis_stalls_records_every_frame_within_its_grace(
    redis_server: PrivateRedis, postgres_url, settings, tmp_path
):
    """Redis that stops answering (a paused server, a full disk) held the batch being stored for the
    client's 30 s timeout: a SIGTERM then took 30 s, past a supervisor's grace (Docker's 10 s unless
    told), and the frames in hand went unrecorded when it killed the node. Ingest's commands now wait
    10 s at most and compose gives it 60 s: it ends well within, every sampled frame recorded."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    env = fault_env(redis_server.url, postgres_url, settings, tmp_path)
    log = tmp_path / "ingest.log"
    ingest = alpr_process(env, ["ingest", "--cameras", str(one_camera(tmp_path, loop=True))], log)
    assert redis_server.process is not None
    try:
        wait_for(lambda: count(postgres_url, "SELECT count(*) FROM frames") >= 8, 90, "frames queued")
        redis_server.process.send_signal(signal.SIGSTOP)  # it keeps its connections and answers nothing
        time.sleep(2.0)  # a batch is being stored
        ingest.send_signal(signal.SIGTERM)
        started = time.monotonic()
        ingest.wait(timeout=60)
        took_s = time.monotonic() - started
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
        if ingest.poll() is None:
            ingest.kill()
    assert took_s < 20, (took_s, log.read_text()[-2000:])  # 30 s and more before
    sampled = sampled_by_ingest(log)
    assert count(postgres_url, "SELECT count(*) FROM frames") == sampled
    assert count(postgres_url, "SELECT count(*) FROM frames WHERE detail = 'redis unavailable'") >= 1


def test_an_ingest_node_whose_terminal_hangs_up_stops_as_asked(redis_server: PrivateRedis, postgres_url, settings,
                                                               tmp_path):  # fmt: skip
    """A node started from an ssh session that drops gets SIGHUP, whose default killed it outright: the
    frames in hand never queued nor recorded, its camera's claim held until it lapsed (another node
    waited). It now stops as on SIGTERM: every sampled frame recorded, the claim released, exit 0."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    env = fault_env(redis_server.url, postgres_url, settings, tmp_path)
    log = tmp_path / "ingest.log"
    hangup = signal.signal(signal.SIGHUP, signal.SIG_DFL)  # under nohup (a CI's) the node would ignore it, rightly
    try:
        ingest = alpr_process(env, ["ingest", "--cameras", str(one_camera(tmp_path, loop=True))], log)
    finally:
        signal.signal(signal.SIGHUP, hangup)
    try:
        wait_for(lambda: count(postgres_url, "SELECT count(*) FROM frames") >= 8, 90, "frames queued")
        ingest.send_signal(signal.SIGHUP)
        assert ingest.wait(timeout=60) == 0, log.read_text()[-2000:]  # -1 (killed by SIGHUP) before
    finally:
        if ingest.poll() is None:
            ingest.kill()
    assert count(postgres_url, "SELECT count(*) FROM frames") == sampled_by_ingest(log)
    assert redis.Redis.from_url(redis_server.url).keys("alpr:camera-claim:*") == []

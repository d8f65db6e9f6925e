"""Each role of the chain against a private Redis and real Postgres, in this process: back-pressure at
the ingest node, malformed and expired jobs at a worker, `alpr status` (`alpr db upgrade` and `alpr
replay`: tests/common/test_schema_upgrade.py and test_replay.py)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time

import cv2
import numpy as np
import psycopg
import redis
from rq.registry import FailedJobRegistry

from alpr.cli import main
from alpr.status import workers_needed
from common import defaults
from common.frame_store import FrameStore, encode_jpeg, frame_key
from common.jobs import DetectedFrame, DetectJob, FrameRef, RedactJob
from common.queues import STAGE_JOB_FUNCTION, connect_redis, enqueue, stage_queue
from ingest.sources import open_source
from tests.helpers import alpr_command, alpr_process, mjpeg_camera, write_cameras, write_clip


def ref(frame_id: str, age_s: float = 0.0) -> FrameRef:
    return FrameRef(frame_id=frame_id, camera_id="cam", seq=0, frame_index=0, captured_at_s=time.time() - age_s,
                    source_time_s=0.0, key=frame_key(frame_id), region="us")  # fmt: skip


def test_backpressure_skips_frames_and_bounds_memory(redis_url, tmp_path, monkeypatch, capsys):
    clip = tmp_path / "one.mp4"
    write_clip(clip, ("KPX4721",))  # 40 frames at 10 fps
    cameras = write_cameras(tmp_path / "cameras.yaml", [{"id": "cam", "source": str(clip), "sample_fps": 10}])
    monkeypatch.setenv("ALPR_MAX_QUEUE_DEPTH", "2")
    monkeypatch.setenv("ALPR_FRAMES_PER_JOB", "2")
    assert main(["ingest", "--cameras", str(cameras), "--redis-url", redis_url]) == 0  # no worker is running
    out = capsys.readouterr().out
    match = re.search(r"cam: (\d+) frames queued, (\d+) skipped", out)
    assert match, out
    queued, skipped = int(match[1]), int(match[2])
    assert queued + skipped == 40
    assert 4 <= queued <= 6 and skipped >= 34, out
    connection = redis.Redis.from_url(redis_url)
    assert stage_queue(connection, "detect").count <= 3
    assert len(connection.keys("alpr:frame:*")) == queued  # only queued frames are stored, each with a TTL
    assert all(0 < connection.ttl(k) <= defaults.FRAME_TTL_S for k in connection.keys("alpr:frame:*"))


def test_malformed_and_expired_jobs_are_recorded_and_the_worker_goes_on(redis_url, settings, capsys):
    connection = connect_redis(redis_url)
    detect = stage_queue(connection, "detect")
    image = np.full((360, 640, 3), 100, np.uint8)
    FrameStore(connection, 60).put_many([(frame_key("cam:1:0"), encode_jpeg(image, 90))])
    bad = detect.enqueue_call(func=STAGE_JOB_FUNCTION, args=({"v": 2, "stage": "detect", "batch_id": "b"},))
    enqueue(detect, DetectJob(batch_id="expired", frames=[ref("cam:1:9")]), 60)
    enqueue(detect, DetectJob(batch_id="good", frames=[ref("cam:1:0")]), 60)
    code = main(["worker", "detect", "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)])
    assert code == 0
    failed = FailedJobRegistry(queue=detect)
    assert failed.get_job_ids() == [bad.id]
    assert "malformed detect job" in detect.fetch_job(bad.id).latest_result().exc_string
    redact = stage_queue(connection, "redact")
    assert redact.get_job_ids() == ["redact-expired", "redact-good"]  # the expired frame travels on, marked
    assert stage_queue(connection, "ocr").get_job_ids() == []  # no plate: nothing to read
    expired = redact.fetch_job("redact-expired").args[0]["frames"][0]
    assert (expired["outcome"], expired["detail"]) == ("expired", "before detection")

    assert main(["status", "--interval", "0.1", "--redis-url", redis_url]) == 0
    table = capsys.readouterr().out
    assert "queue    waiting running workers failed" in table
    assert table.splitlines()[1].split() == ["detect", "0", "0", "0", "1"]
    assert table.splitlines()[2].split()[:2] == ["ocr", "0"] and table.splitlines()[3].split()[:2] == ["redact", "2"]
    pools = table[table.index("pool ") :].splitlines()
    detect_pool = pools[1].split()  # the burst worker has left; it handled 2 frames (1 expired)
    assert detect_pool[0] == "detect" and detect_pool[1] == "0" and float(detect_pool[2]) > 0
    assert pools[2].split() == ["ocr", "0", "-", "-"]


def test_camera_names_and_states_from_redis_cannot_forge_status_rows_or_reach_the_terminal(redis_url, capsys):
    """A security audit: whoever writes to Redis forged a pool's row in the camera table with a line
    break in a camera's name, and sent escape codes to the operator's terminal through a state."""
    import json

    from common import queues

    connection = connect_redis(redis_url)
    connection.hset(queues.STATS_INGESTED_KEY, "cam\nredact 0 0 9 0\x1b]0;owned\x07", 3)
    connection.hset(queues.CAMERA_STATE_KEY, "gate", json.dumps({"state": "ok\x1b[31m", "since": 0, "errors": 0}))
    assert main(["status", "--interval", "0.1", "--redis-url", redis_url]) == 0
    out = capsys.readouterr().out
    assert (
        "\x1b" not in out
        and "\x07" not in out
        and not any(line.startswith("redact 0 0 9") for line in out.splitlines())
    )
    assert "cam\\nredact" in out and "ok\\x1b[31m" in out  # shown, written out
    row = next(line for line in out.splitlines() if line.startswith("cam\\nredact"))
    assert row.split()[-4] == "3"  # its count found under its own key


def test_pools_are_sized_by_their_work_per_frame_and_the_input_rate():
    assert workers_needed(busy_s=12.0, frames=100, in_fps=20.0) == 3  # 0.12 s/frame x 20 fps / 0.8 busy
    assert workers_needed(busy_s=12.0, frames=100, in_fps=0.0) == 0
    assert workers_needed(busy_s=0.0, frames=0, in_fps=20.0) is None
    assert workers_needed(busy_s=1e300, frames=1, in_fps=1e300) is None  # past a float's range: "-", no traceback


def test_the_ocr_pool_is_sized_per_frame_entering_the_chain_not_per_frame_it_reads(redis_url, capsys):
    """The OCR pool reads only the frames with plates: 20 of the 100 detected, 0.2 s each. At 50 frames/s
    offered it needs 50 x 4 s / 100 / 0.8 = 3 workers; sizing by its own frames asked for 13."""
    from alpr.status import print_pool_sizes
    from common.queues import STATS_BUSY_KEY, STATS_FRAMES_KEY, add_stats

    connection = connect_redis(redis_url)
    add_stats(connection, {STATS_FRAMES_KEY: {"detect": 100, "ocr": 20, "redact": 100}},
              {STATS_BUSY_KEY: {"detect": 5.0, "ocr": 4.0, "redact": 1.0}})  # fmt: skip
    print_pool_sizes(connection, 50.0, {"detect": 1, "ocr": 1, "redact": 1})
    rows = {line.split()[0]: line.split()[1:4] for line in capsys.readouterr().out.splitlines()[3:]}
    assert rows == {"detect": ["1", "0.050", "4"], "ocr": ["1", "0.040", "3"], "redact": ["1", "0.010", "1"]}


def test_pools_are_sized_by_their_last_hour_of_work_and_by_all_time_only_when_idle(redis_url, capsys):
    """A detector pool that ran at 0.5 s a frame for a month and at 0.05 s since its GPU came is sized
    by the GPU's cost; buckets older than the window count for nothing; a pool that finished no job in
    the hour (its workers died) is sized by its all-time totals, the OCR pool per frame detected in the
    same span as its own work; an OCR pool draining the hour after the detectors died counts what it read
    as the frames entering by all time's share with plates (per frame read, it was 5x the workers)."""
    from alpr.status import pool_work, print_pool_sizes
    from common import queues
    from common.queues import POOL_STATS_BUCKET_S, POOL_STATS_WINDOW_S, add_pool_stats

    connection = connect_redis(redis_url)
    queues.add_stats(connection, {queues.STATS_FRAMES_KEY: {"detect": 100_000, "ocr": 20_000}},
                     {queues.STATS_BUSY_KEY: {"detect": 50_000.0, "ocr": 2_000.0}})  # fmt: skip
    seconds, _ = connection.time()
    now = float(seconds)
    pipe = connection.pipeline()
    add_pool_stats(pipe, "detect", 5000.0, 10_000, now - POOL_STATS_WINDOW_S - 2 * POOL_STATS_BUCKET_S)  # too old
    add_pool_stats(pipe, "detect", 3.0, 60, now - POOL_STATS_WINDOW_S + POOL_STATS_BUCKET_S)
    add_pool_stats(pipe, "detect", 2.0, 40, now)
    pipe.execute()
    assert pool_work(connection, now) == {
        "detect": (5.0, 100, True),
        "ocr": (2_000.0, 100_000, False),  # 0.02 s per frame detected, over the same all time
        "redact": (0.0, 0, False),
    }
    print_pool_sizes(connection, 40.0, {"detect": 1, "ocr": 0, "redact": 0})
    rows = {line.split()[0]: line.split()[1:5] for line in capsys.readouterr().out.splitlines()[3:]}
    assert rows["detect"] == ["1", "0.050", "3", "the"] and rows["ocr"] == ["0", "0.020", "1", "all"]  # 40 x 0.05 / 0.8
    later = now + POOL_STATS_WINDOW_S + 2 * POOL_STATS_BUCKET_S
    assert pool_work(connection, later)["detect"] == (50_000.0, 100_000, False)
    pipe = connection.pipeline()  # the detectors died an hour ago; the OCR pool drained what they left
    add_pool_stats(pipe, "ocr", 30.0, 1_000, later)
    pipe.execute()
    assert pool_work(connection, later)["ocr"] == (30.0, 5_000, True)  # 1,000 read of 5,000 entering (1 in 5)
    ttl = connection.ttl(f"alpr:stats:pool:{int(now // POOL_STATS_BUCKET_S)}")
    assert POOL_STATS_WINDOW_S + POOL_STATS_BUCKET_S < ttl <= POOL_STATS_WINDOW_S + 2 * POOL_STATS_BUCKET_S


def test_a_dead_source_is_retried_while_the_other_cameras_go_on(redis_url, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG, logger="ingest.node")
    clip = tmp_path / "ok.mp4"
    write_clip(clip, ("KPX4721",))
    cameras = write_cameras(tmp_path / "cameras.yaml", [
        {"id": "ok", "source": str(clip), "sample_fps": 5, "realtime": False},
        {"id": "dead", "source": "rtsp://127.0.0.1:9/none", "sample_fps": 5},
        {"id": "off", "source": "/nonexistent.mp4", "enabled": False},
    ])  # fmt: skip
    assert main(["ingest", "--cameras", str(cameras), "--redis-url", redis_url, "--max-seconds", "4"]) == 0
    out = capsys.readouterr().out
    assert "ok: 20 frames queued, 0 skipped" in out and "dead: 0 frames queued" in out and "off:" not in out
    connection = redis.Redis.from_url(redis_url)
    assert stage_queue(connection, "detect").count >= 1
    dead = [r for r in caplog.records if r.getMessage().startswith("camera dead")]
    warnings = [r.getMessage() for r in dead if r.levelno >= logging.WARNING]
    assert warnings == ["camera dead: cannot connect to stream: rtsp://127.0.0.1:9/…; reconnecting with backoff"]
    retries = [r.getMessage() for r in dead if r.levelno == logging.DEBUG]  # one WARNING, then quiet retries
    waits = [int(found[1]) for r in retries if (found := re.search(r"next attempt in (\d+) s", r))]
    assert len(waits) >= 1 and 1 <= waits[0] <= 2, retries  # backoff doubles: 2 s, cut by up to half (jitter)


def test_every_frame_is_recorded_with_its_outcome(redis_url, postgres_url, tmp_path, monkeypatch):
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    connection = connect_redis(redis_url)
    image = np.full((360, 640, 3), 100, np.uint8)
    FrameStore(connection, 60).put_many([(frame_key("cam:1:0"), encode_jpeg(image, 90))])
    frames = [
        DetectedFrame(frame=ref("cam:1:0"), plates=[]),
        DetectedFrame(frame=ref("cam:1:1"), plates=[]),  # its raw frame has expired
        DetectedFrame(frame=ref("cam:1:2"), plates=[], outcome="expired", detail="before detection"),
    ]
    enqueue(stage_queue(connection, "redact"), RedactJob(batch_id="b", frames=frames), 60)
    args = ["worker", "redact", "--burst", "--redis-url", redis_url, "--database-url", postgres_url]
    monkeypatch.setenv("ALPR_KEEP_DIR", str(tmp_path / "kept"))
    monkeypatch.setenv("ALPR_KEEP_FRAMES", "all")  # this frame has no plate: kept only under `all`
    assert main(args) == 0
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT frame_id, outcome, detail, kept_path IS NOT NULL FROM frames ORDER BY 1").fetchall()
    assert rows == [
        ("cam:1:0", "done", None, True),
        ("cam:1:1", "expired", "before redaction", False),
        ("cam:1:2", "expired", "before detection", False),
    ]
    assert connection.keys("alpr:frame:*") == []


def test_a_live_http_camera_is_sampled_at_its_rate(redis_url, tmp_path, capsys):
    clip = tmp_path / "cam.mp4"
    write_clip(clip, ("KPX4721",))
    jpegs = [encode_jpeg(f.image, 80) for f in open_source(str(clip), 10).frames()]
    with mjpeg_camera(jpegs, fps=10) as url:
        cameras = write_cameras(tmp_path / "cameras.yaml", [{"id": "gate", "source": url, "sample_fps": 5}])
        assert main(["ingest", "--cameras", str(cameras), "--redis-url", redis_url, "--max-seconds", "4"]) == 0
    match = re.search(r"gate: (\d+) frames queued, 0 skipped", capsys.readouterr().out)
    assert match and 12 <= int(match[1]) <= 24, match  # ~5 a second for 4 s, not the camera's 10
    store = FrameStore(connect_redis(redis_url), 60)
    frames = store.get_many(store.redis.keys("alpr:frame:gate:*"))
    assert len(frames) == int(match[1]) and all(f.shape == (720, 1280, 3) for f in frames.values())


def test_a_camera_that_ends_every_stream_is_reopened_with_backoff_not_flat_out(redis_url, tmp_path, caplog):
    """A camera that closes each connection after a few frames (as snapshot URLs do) was reopened at once,
    as if its stream had been a file that ended: polled as fast as it answered, never shown failing."""
    clip = tmp_path / "cam.mp4"
    write_clip(clip, ("KPX4721",))
    jpegs = [encode_jpeg(f.image, 80) for f in open_source(str(clip), 10).frames()][:5]
    opened: list[float] = []
    with caplog.at_level(logging.DEBUG), mjpeg_camera(jpegs, fps=10, per_connection=3, connections=opened) as url:
        cameras = write_cameras(tmp_path / "cameras.yaml", [{"id": "snap", "source": url, "sample_fps": 5}])
        assert main(["ingest", "--cameras", str(cameras), "--redis-url", redis_url, "--max-seconds", "5"]) == 0
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("camera snap") and r.levelno >= logging.WARNING
    ]
    assert warnings == ["camera snap: the stream ended (closed by the camera, or no frame within the read timeout);"
                        " reconnecting with backoff"]  # fmt: skip
    assert 2 <= len(opened) <= 8, opened  # 1 s, 2 s, 4 s apart (FFmpeg may probe twice): not every 0.3 s


def test_an_image_keeps_its_frame_id_whatever_else_its_folder_gains_and_a_replaced_one_gets_a_new_one(
    redis_url, tmp_path
):
    folder = tmp_path / "images"
    folder.mkdir()
    shades = {"b.jpg": 60, "d.jpg": 90, "f.jpg": 120}
    for name, shade in shades.items():
        (folder / name).write_bytes(encode_jpeg(np.full((120, 160, 3), shade, np.uint8), 90))
    cameras = write_cameras(tmp_path / "cameras.yaml",
                            [{"id": "cam", "source": str(folder), "sample_fps": 5, "realtime": False}])  # fmt: skip
    connection = connect_redis(redis_url)
    detect = stage_queue(connection, "detect")

    def frame_ids() -> dict[str, str]:
        """Each queued frame's id, by the image it holds (told apart by its shade)."""
        assert main(["ingest", "--cameras", str(cameras), "--redis-url", redis_url]) == 0
        refs = [f for i in detect.get_job_ids() if (job := detect.fetch_job(i)) for f in job.args[0]["frames"]]
        detect.empty()
        store = FrameStore(connection, 60)
        by_shade = {int(store.get_many([f["key"]])[f["key"]].mean().round()): f["frame_id"] for f in refs}  # type: ignore[union-attr]
        return {name: by_shade[shade] for name, shade in shades.items() if shade in by_shade}

    first = frame_ids()
    (folder / "a.jpg").write_bytes(encode_jpeg(np.full((120, 160, 3), 30, np.uint8), 90))  # sorts first
    shades["a.jpg"] = 30
    second = frame_ids()
    assert {k: second[k] for k in first} == first  # the same images, the same ids: nothing logged twice
    time.sleep(0.01)
    (folder / "d.jpg").write_bytes(encode_jpeg(np.full((120, 160, 3), 200, np.uint8), 80))  # replaced in place
    shades["d.jpg"] = 200
    third = frame_ids()
    assert third["d.jpg"] not in second.values()  # a new image: a new id, its reads not dropped as a repeat
    assert third["b.jpg"] == first["b.jpg"] and third["f.jpg"] == first["f.jpg"]


def test_a_file_read_again_after_a_restart_gets_the_same_frame_ids(redis_url, postgres_url, tmp_path, capsys):
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    clip = tmp_path / "one.mp4"
    write_clip(clip, ("KPX4721",))  # 40 frames at 10 fps, sampled at 5: 20 frames
    cameras = write_cameras(tmp_path / "cameras.yaml",
                            [{"id": "cam", "source": str(clip), "sample_fps": 5, "realtime": False}])  # fmt: skip
    connection = connect_redis(redis_url)
    ids = []
    for _ in range(2):  # the node restarted: the file is read again from the start
        assert (
            main(["ingest", "--cameras", str(cameras), "--redis-url", redis_url, "--database-url", postgres_url]) == 0
        )
        jobs = [stage_queue(connection, "detect").fetch_job(i) for i in stage_queue(connection, "detect").get_job_ids()]
        ids.append({f["frame_id"] for job in jobs if job for f in job.args[0]["frames"]})
        stage_queue(connection, "detect").empty()
    assert len(ids[0]) == 20 and ids[0] == ids[1]  # recognised: the chain logs each read once (idempotent)
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT outcome, count(*) FROM frames GROUP BY outcome").fetchall()
    assert rows == [("pending", 20)]  # one row per frame, not two


def test_skipped_frames_are_recorded_with_their_reason(redis_url, postgres_url, tmp_path, monkeypatch, capsys):
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    clip = tmp_path / "one.mp4"
    write_clip(clip, ("KPX4721",))
    cameras = write_cameras(tmp_path / "cameras.yaml", [{"id": "cam", "source": str(clip), "sample_fps": 10}])
    monkeypatch.setenv("ALPR_MAX_QUEUE_DEPTH", "2")
    monkeypatch.setenv("ALPR_FRAMES_PER_JOB", "2")
    assert main(["ingest", "--cameras", str(cameras), "--redis-url", redis_url, "--database-url", postgres_url]) == 0
    match = re.search(r"cam: (\d+) frames queued, (\d+) skipped", capsys.readouterr().out)
    assert match
    with psycopg.connect(postgres_url) as db:
        rows = dict(db.execute("SELECT outcome || ':' || coalesce(detail, ''), count(*) FROM frames GROUP BY 1"))
    assert rows == {"pending:": int(match[1]), "skipped:backpressure": int(match[2])}
    assert int(match[1]) + int(match[2]) == 40
    capsys.readouterr()
    assert main(["status", "--interval", "0.1", "--redis-url", redis_url, "--database-url", postgres_url]) == 0
    out = capsys.readouterr().out
    camera_row = next(line for line in out.splitlines() if line.startswith("cam "))
    state, age, errors = camera_row.split()[1:4]
    assert state == "ended" and age.endswith("s") and errors == "0"  # state and since when, source errors
    # the frames log's row: a line naming the camera's last ingest node may hold "40" too (its pid, its start)
    accounting = next(line for line in out.splitlines() if line.strip().startswith("cam ") and "|" in line)
    frames, reads = accounting.split("|")
    assert frames.split()[:3] == ["cam", "40", "0"] and frames.split()[-1] == match[1]  # in the chain
    assert reads.split() == ["0"] * 6  # no frame's reads pending, expired, corrupt, lost, refused or skipped
    gone = "redis://:hunter2@127.0.0.1:1/0"  # the queues' Redis unreachable: the frames log is shown all the same
    assert main(["status", "--interval", "0.1", "--redis-url", gone, "--database-url", postgres_url]) == 2
    out, err = capsys.readouterr()
    assert "cannot reach Redis" in err and "hunter2" not in err + out
    assert any(line.split()[:2] == ["cam", "40"] and "|" in line for line in out.splitlines())

    # the accounting reads the last hour's frames (--hours), each camera's index range: the whole log's
    # counts read every row, billions in a city's 30 days, past the statements' 5 s (a soak review)
    with psycopg.connect(postgres_url) as db:
        db.execute("UPDATE frames SET captured_at = captured_at - interval '2 hours' WHERE frame_index % 2 = 0")
    for hours, sampled in (([], "20"), (["--hours", "3"], "40")):
        assert main(["status", "--interval", "0.1", "--redis-url", redis_url, "--database-url", postgres_url,
                     *hours]) == 0  # fmt: skip
        out = capsys.readouterr().out
        assert f"frames log: frames captured in the last {hours[1] if hours else '1'} h" in out
        (accounting,) = [line for line in out.splitlines() if line.strip().startswith("cam ") and "|" in line]
        assert accounting.split()[1] == sampled, accounting


def test_no_password_reaches_a_log_line_or_an_error(redis_url, tmp_path, settings):
    clip = tmp_path / "ok.mp4"
    write_clip(clip, ("KPX4721",))
    cameras = write_cameras(tmp_path / "cameras.yaml", [
        {"id": "ok", "source": str(clip), "sample_fps": 5, "realtime": False},
        {"id": "gate", "source": "rtsp://admin:hunter2@127.0.0.1:9/stream1", "sample_fps": 5},
    ])  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    env["ALPR_MODEL_DIR"] = str(settings.model_dir)
    log = tmp_path / "ingest.log"
    alpr_process(env, ["-v", "ingest", "--cameras", str(cameras), "--redis-url", redis_url, "--max-seconds", "4"],
                 log).wait(timeout=60)  # fmt: skip
    text = log.read_text()
    assert "camera gate: cannot connect to stream: rtsp://127.0.0.1:9/…;" in text  # no path: it may be a token
    assert "camera ok: connected" in text and "hunter2" not in text
    for args, shown in (
        (["status", "--redis-url", "redis://:hunter2@127.0.0.1:1/0"], "redis://:***@127.0.0.1:1/0"),
        (["db", "upgrade", "--database-url", "postgresql://alpr:hunter2@127.0.0.1:1/alpr?connect_timeout=1"],
         "postgresql://alpr:***@127.0.0.1:1/alpr"),
    ):  # fmt: skip
        # nothing listens on port 1: the error after a second of waiting for it, not the 10 s a server starting is given
        done = subprocess.run(alpr_command(args, {"DB_OPEN_WAIT_S": 1.0}), env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert done.returncode == 2 and "alpr: error: cannot " in done.stderr
        assert "hunter2" not in done.stderr + done.stdout and shown in done.stderr


def test_an_image_no_jpeg_can_hold_is_recorded_as_skipped(redis_url, postgres_url, tmp_path, capsys):
    """A folder image wider than JPEG allows (65,535 px) cannot be stored: a skipped record, and the next image
    goes on. Refused from its header as too large (a side past 65,500 px, as every frame's size is checked), it
    is no longer decoded first and then found unencodable."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    folder = tmp_path / "shots"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((2, 70_000, 3), np.uint8))
    cv2.imwrite(str(folder / "b.png"), np.full((120, 160, 3), 90, np.uint8))
    cameras = write_cameras(tmp_path / "cameras.yaml", [{"id": "cam", "source": str(folder)}])
    assert main(["ingest", "--cameras", str(cameras), "--redis-url", redis_url, "--database-url", postgres_url]) == 0
    with psycopg.connect(postgres_url) as db:
        rows = dict(db.execute("SELECT outcome || ':' || coalesce(detail, ''), count(*) FROM frames GROUP BY 1"))
    assert rows == {"pending:": 1, "skipped:too large": 1}


def test_status_reads_past_records_it_cannot_read_and_prints_no_escape_from_the_log(redis_url, postgres_url, capsys):
    """Whoever reaches the queues' Redis or may write the frames log chose how `alpr status` ended: a
    worker record RQ cannot read, or a queued id that is not UTF-8, ended it in a traceback, the frames
    log's accounting lost with it; a camera id in the log reached the terminal raw (a review)."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    forged = "gate\x1b[2J\nframes log: forged"
    with psycopg.connect(postgres_url) as db:
        db.execute("INSERT INTO frames (frame_id, camera_id, seq, frame_index, captured_at, plates, stage_ms, outcome)"
                   " VALUES ('f1', %s, 0, 0, now(), 0, '{}', 'done')", (forged,))  # fmt: skip
        db.execute("INSERT INTO sightings (sighting_id, camera_id, plate, confidence, first_seen, last_seen, reads,"
                   " best_frame_id, best_confidence, x1, y1, x2, y2, texts) VALUES ('s1', %s, 'KPX4721', 0.9, now(),"
                   " now(), 1, 'f1', 0.9, 1, 1, 2, 2, '[]')", (forged,))  # fmt: skip
    connection = redis.Redis.from_url(redis_url)
    connection.sadd("rq:workers:alpr-detect", "rq:worker:evil", b"\xff")
    connection.hset("rq:worker:evil", mapping={"birth": "not-a-date", "last_heartbeat": "x", "queues": "alpr-detect"})
    connection.rpush("rq:queue:alpr-detect", b"\xff\xfe")
    assert main(["status", "--interval", "0.1", "--redis-url", redis_url, "--database-url", postgres_url]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "gate\\x1b[2J\\nframes log: forged" in out
    assert sum(line.startswith("frames log:") for line in out.splitlines()) == 1
    assert "oldest waiting frame: unknown" in out


def test_status_ages_the_oldest_waiting_frame_as_the_detector_does(redis_url, capsys):
    """A review: by its capture date on the status host's clock, recorded footage (dated ahead by design)
    waiting in the queue showed `-5399.2 s ago`; the detector ages it by its time in the store."""
    connection = connect_redis(redis_url)
    connection.flushdb()
    now = time.time()
    ref = FrameRef(frame_id="cam:f1:0:12", camera_id="cam", seq=0, frame_index=12, captured_at_s=now + 5400,
                   source_time_s=5400, key=frame_key("cam:f1:0:12"), region="us", recorded=True)  # fmt: skip
    connection.set(ref.key, b"jpeg", px=590_000)  # stored 10 s ago, by its TTL of 600 s
    job = DetectJob(batch_id="n:0", frames=[ref], stored_at_s=now - 10, frame_ttl_s=600)
    enqueue(stage_queue(connection, "detect"), job, 120)
    assert main(["status", "--interval", "0.1", "--redis-url", redis_url]) == 0
    shown = re.search(r"oldest waiting frame: (-?[0-9.]+) s ago", capsys.readouterr().out)
    assert shown and 9.5 <= float(shown[1]) <= 20, shown

"""A job key differing between roles, on a private Redis with the real roles (`alpr ingest`, `alpr
worker`, `alpr replay`, `alpr status`): a review gave the detector a key file with a trailing space, and
it went unnoticed until every frame was lost (the ingest node said nothing, the detector refused each
job with a WARNING and a traceback, replay called them malformed). Now each role publishes its key's
fingerprint as it starts and says at ERROR which roles hold another; a worker tells its refusals once a
minute with their count; replay counts them refused; status shows the roles that disagree."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from alpr.cli import main
from common.frame_store import FrameStore, encode_jpeg, frame_key
from common.jobs import DetectJob, FrameRef
from common.queues import connect_redis, enqueue, stage_queue

INGEST_KEY = "ingest-key-0123456789abcdef"
DETECT_KEY = "detect-key-0123456789abcdef"


def key_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_key_differing_between_roles_is_told_at_start_once_a_minute_by_workers_and_by_replay_and_status(
    redis_url, settings, tmp_path, monkeypatch, caplog, capsys
):
    folder = tmp_path / "shots"
    folder.mkdir()
    for name in ("a", "b", "c"):
        cv2.imwrite(str(folder / f"{name}.jpg"), np.full((120, 160, 3), 90, np.uint8))
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(f"cameras:\n  - {{id: cam, source: {folder}, realtime: false}}\n")
    monkeypatch.setenv("ALPR_FRAMES_PER_JOB", "1")  # a job a frame: three jobs refused
    monkeypatch.setenv("ALPR_JOB_KEY", INGEST_KEY)
    assert main(["ingest", "--cameras", str(cameras), "--redis-url", redis_url, "--max-seconds", "5"]) == 0
    detect = stage_queue(connect_redis(redis_url), "detect")
    assert detect.count == 3

    monkeypatch.delenv("ALPR_JOB_KEY")
    monkeypatch.setenv("ALPR_JOB_KEY_FILE", key_file(tmp_path, "job_key", DETECT_KEY))
    caplog.clear()
    worker = ["worker", "detect", "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)]
    assert main(worker) == 0
    host = socket.gethostname()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    # at start; then the first refusal at once, the rest when the worker stops (or a minute on): not a line
    assert len(errors) == 3, errors  # and a traceback a job
    assert errors[0].startswith("the job key differs between roles: this detect has key ")
    from common.job_key import key_fingerprint  # here: an older tree fails on the lines above

    ingest = f"ingest on {host} (key {key_fingerprint(INGEST_KEY)}, "
    detect_print = key_fingerprint(DETECT_KEY)
    assert errors[0].startswith(f"the job key differs between roles: this detect has key {detect_print}")
    assert ingest in errors[0]
    refused = f"detect: jobs refused, not signed with this worker's job key (ALPR_JOB_KEY, key {detect_print})"
    assert errors[1].startswith(f"{refused}: 1 since the last such line")
    assert f"the key differs in {ingest}" in errors[1]
    assert errors[2].startswith(f"{refused}: 2 since the last such line")
    assert not [r for r in caplog.records if "refused" in r.getMessage() and r.levelno < logging.ERROR]

    capsys.readouterr()
    assert main(["replay", "--dry-run", "--stage", "detect", "--redis-url", redis_url]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "stage    would requeue  expired malformed refused",
        "detect               0        0         0       3",
    ]
    from rq.registry import FailedJobRegistry

    from common import defaults

    refused_ids = FailedJobRegistry(queue=detect).get_job_ids()
    assert len(refused_ids) == 3  # counted, and kept an hour for a look, not RQ's week: a node with another
    for job_id in refused_ids:  # key filled Redis with them (about 9 GB a day from a 50-camera node)
        assert 0 < connect_redis(redis_url).ttl(f"rq:job:{job_id}") <= defaults.LEFT_JOB_TTL_S < defaults.FAILURE_TTL_S
    assert main(["status", "--interval", "0.1", "--redis-url", redis_url]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("job keys differ")]
    assert ingest in line and f"detect on {host} (key {detect_print}, " in line


def test_a_key_files_trailing_spaces_and_line_end_are_no_part_of_the_key(redis_url, settings, tmp_path, monkeypatch):
    """The review's case: the same key, its file ending in a space. Passwords are read as they are."""
    from common.config import Settings

    connection = connect_redis(redis_url)
    FrameStore(connection, 60).put_many([(frame_key("cam:1:0"), encode_jpeg(np.full((36, 64, 3), 90, np.uint8), 90))])
    frame = FrameRef(frame_id="cam:1:0", camera_id="cam", seq=0, frame_index=0, captured_at_s=time.time(),
                     source_time_s=0.0, key=frame_key("cam:1:0"), region="us")  # fmt: skip
    enqueue(stage_queue(connection, "detect", INGEST_KEY), DetectJob(batch_id="b", frames=[frame]), 60)
    monkeypatch.setenv("ALPR_JOB_KEY_FILE", key_file(tmp_path, "job_key", INGEST_KEY + " \t\r\n"))
    worker = ["worker", "detect", "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)]
    assert main(worker) == 0
    assert stage_queue(connection, "redact").get_job_ids() == ["redact-b"]  # signed with the same key: run
    password = key_file(tmp_path, "pw", "pass word \n")
    assert Settings.load({"ALPR_REDIS_PASSWORD_FILE": password}).secret("redis_password") == "pass word "


def test_fingerprints_tell_keys_apart_and_never_show_the_key(redis_url):
    from common.job_key import FINGERPRINTS_KEY, NO_KEY, key_fingerprint, others_disagreeing, publish, published

    connection = redis.Redis.from_url(redis_url)
    assert publish(connection, "ingest", INGEST_KEY) == []  # the first: nothing to differ from
    assert [e.role for e in publish(connection, "ocr", None)] == ["ingest"]  # no key differs from a key too
    ingest, _ = publish(connection, "detect", DETECT_KEY)
    assert (ingest.role, ingest.fingerprint) == ("ingest", key_fingerprint(INGEST_KEY))
    assert ingest.host == socket.gethostname()
    assert [e.role for e in others_disagreeing(connection, INGEST_KEY)] == ["detect", "ocr"]
    assert [e.fingerprint for e in published(connection) if e.role == "ocr"] == [NO_KEY]
    # a role restarted on its host with its key fixed does not differ from its own earlier run
    assert [e.role for e in publish(connection, "detect", INGEST_KEY)] == ["ocr"]
    stored = b"".join(connection.hvals(FINGERPRINTS_KEY))
    for secret in (INGEST_KEY, DETECT_KEY, hashlib.sha256(INGEST_KEY.encode()).hexdigest()[:16]):
        assert secret.encode() not in stored
    connection.hset(FINGERPRINTS_KEY, "alert", "not json")  # forged entries are passed over
    connection.hset(FINGERPRINTS_KEY, "sight", json.dumps({"fingerprint": "x", "host": "h", "at": "x" * 2000}))
    connection.hset(FINGERPRINTS_KEY, "redact", json.dumps({"fingerprint": "\x1b[2J", "host": "a\nb", "at": 0}))
    forged = [e for e in published(connection) if e.role not in ("ingest", "detect", "ocr")]
    assert [(e.role, e.fingerprint, e.host) for e in forged] == [("redact", "\\x1b[2J", "a\\nb")]  # written out


@pytest.mark.parametrize(
    ("times", "reported"),
    [
        ([0, 1, 2], [1, 0, 0]),  # the first at once, then quiet
        ([0, 1, 2, 61], [1, 0, 0, 3]),  # then the count since, a minute on
        ([0, 61, 62, 200], [1, 1, 0, 2]),
    ],
)
def test_a_repeated_event_is_told_at_once_then_at_most_once_a_minute_with_its_count(times, reported):
    from common.log_throttle import Throttle

    clock = iter(times)
    throttle = Throttle(60, lambda: next(clock))
    assert [throttle.note() for _ in times] == reported

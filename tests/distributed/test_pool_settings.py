"""A pool whose members run with different settings that change results, on a private Redis with real
`alpr worker` processes and `alpr status`: sighting workers with a mixed ALPR_ALERT_REPEAT_S raised 1, 10
or 7 alerts for one scenario, and nothing told an operator the pool was mixed. Each member now publishes
the fingerprint of its role's settings (common/role_settings.py) with its heartbeat; status names the
members of each fingerprint and the settings that differ (text and `--json`), a warning (exit status 0);
each process exports `alpr_settings_info` (deploy/prometheus-rules.yml: AlprPoolSettingsMixed)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from alpr.cli import main
from common.config import Settings
from common.queues import SIGHTING_WORKERS_KEY, connect_redis
from tests.helpers import alpr_process, free_port, wait_for

SETTINGS_SUFFIX = ":settings"  # common/queues.py's (here: the first test fails on an older tree at its assertions)

DATABASE_SECRET = "db-secret-never-published-0123"


def status_json(capsys: pytest.CaptureFixture[str], redis_url: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["status", "--json", "--redis-url", redis_url]) == 0
    return dict(json.loads(capsys.readouterr().out))


def members(capsys: pytest.CaptureFixture[str], redis_url: str, pool: str) -> int:
    return int(status_json(capsys, redis_url).get("pools", {}).get(pool, {}).get("members", 0))


def pool_line(out: str, pool: str) -> str:
    """The pool's line in the text's settings section (its last)."""
    assert "settings that change results, per pool" in out, out
    section = out[out.index("settings that change results, per pool") :].splitlines()[1:]
    (line,) = [line for line in section if line.startswith(f"{pool} ")]
    return line


def sighting_workers(capsys: pytest.CaptureFixture[str], redis_url: str) -> int:
    """The live sighting workers `alpr status` counts (its text, as an older tree shows it too)."""
    capsys.readouterr()
    assert main(["status", "--interval", "0.1", "--redis-url", redis_url]) == 0
    counted = re.search(r"sighting workers \(no queue: they read the logs\): (\d+)", capsys.readouterr().out)
    return int(counted[1]) if counted else -1


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        process.wait(timeout=30)


def test_sighting_workers_with_a_different_alert_repeat_are_shown_as_a_mixed_pool(chain_env, redis_url, tmp_path,
                                                                                   capsys):  # fmt: skip
    env = chain_env | {"ALPR_DATABASE_PASSWORD": DATABASE_SECRET}  # trust auth: never asked for, never published
    connection = connect_redis(redis_url)
    repeats = ("10", "10", "60")
    workers = [alpr_process(env | {"ALPR_ALERT_REPEAT_S": repeat}, ["worker", "sight"], tmp_path / f"sight{i}.log")
               for i, repeat in enumerate(repeats)]  # fmt: skip
    try:
        wait_for(lambda: sighting_workers(capsys, redis_url) == 3, 60, "three sighting workers beating")
        assert main(["status", "--interval", "0.1", "--redis-url", redis_url]) == 0  # a warning: exit status 0
        shown = capsys.readouterr()
        line = pool_line(shown.out, "sight")
        assert line.startswith("sight    MIXED: 3 members, 2 settings: "), line
        assert line.endswith("; differing: ALPR_ALERT_REPEAT_S 10.0 | 60.0"), line  # the two first: held by most
        assert " x2 (" in line and " x1 (" in line
        assert "members of the sight pool run with different settings" in shown.err

        from common.role_settings import ROLE_SETTINGS, role_settings

        document = status_json(capsys, redis_url)
        sight = document["pools"]["sight"]
        assert document["mixed"] == ["sight"] and sight["agree"] is False and sight["members"] == 3
        assert sight["differing"] == ["ALPR_ALERT_REPEAT_S"]
        held = sorted((group["count"], group["settings"]["alert_repeat_s"]) for group in sight["fingerprints"].values())
        assert held == [(1, 60.0), (2, 10.0)]
        assert all(set(group["settings"]) == set(ROLE_SETTINGS["sight"]) for group in sight["fingerprints"].values())

        published = b"".join(connection.hvals(SIGHTING_WORKERS_KEY + SETTINGS_SUFFIX))
        for secret in (DATABASE_SECRET, env["ALPR_JOB_KEY"], env["ALPR_DATABASE_URL"], redis_url):
            assert secret.encode() not in published

        stop(workers[2:])  # the odd one out stops: it leaves, and the pool agrees again
        assert main(["status", "--interval", "0.1", "--redis-url", redis_url]) == 0
        shown = capsys.readouterr()
        line = pool_line(shown.out, "sight")
        fingerprint = role_settings(Settings.load({"ALPR_ALERT_REPEAT_S": "10"}), "sight").fingerprint
        assert line == f"sight    2 members agree: {fingerprint}"
        assert "warning" not in shown.err
    finally:
        stop(workers)
    assert connection.hlen(SIGHTING_WORKERS_KEY + SETTINGS_SUFFIX) == 0  # every one stopped: its entry gone


def test_rq_workers_publish_their_settings_in_their_registration_and_as_a_metric(chain_env, redis_url, tmp_path,
                                                                                  capsys):  # fmt: skip
    from common.worker import SETTINGS_FIELD

    port = free_port()
    workers = [
        alpr_process(chain_env | {"ALPR_KEEP_FRAMES": "plates", "ALPR_METRICS_ADDRESS": "127.0.0.1"},
                     ["worker", "redact"], tmp_path / "redact0.log", metrics_port=port),
        alpr_process(chain_env | {"ALPR_KEEP_FRAMES": "none"}, ["worker", "redact"], tmp_path / "redact1.log"),
    ]  # fmt: skip
    try:
        wait_for(lambda: members(capsys, redis_url, "redact") == 2, 60, "two redactor workers registered")
        document = status_json(capsys, redis_url)
        redact = document["pools"]["redact"]
        assert document["queues"]["redact"]["workers"] == 2 and document["mixed"] == ["redact"]
        assert redact["differing"] == ["ALPR_KEEP_FRAMES"]
        kept = {group["settings"]["keep_frames"]: fingerprint for fingerprint, group in redact["fingerprints"].items()}
        assert set(kept) == {"plates", "none"}
        connection = connect_redis(redis_url)
        names = [name for group in redact["fingerprints"].values() for name in group["members"]]
        assert all(connection.hexists(f"rq:worker:{name}", SETTINGS_FIELD) for name in names)
        assert main(["status", "--interval", "0.1", "--redis-url", redis_url]) == 0
        line = pool_line(capsys.readouterr().out, "redact")
        assert line.startswith("redact   MIXED: 2 members, 2 settings: ") and "ALPR_KEEP_FRAMES " in line, line
        assert {"plates | none", "none | plates"} & {line.rsplit("ALPR_KEEP_FRAMES ", 1)[1]}

        scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert f'alpr_settings_info{{fingerprint="{kept["plates"]}",pool="redact"}} 1.0' in scraped
    finally:
        stop(workers)


def test_ingest_nodes_publish_their_settings_with_their_claims(redis_url, capsys):
    from common.queues import INGEST_NODES_KEY
    from common.role_settings import role_settings
    from ingest.claims import CameraClaims

    connection = connect_redis(redis_url)
    nodes = []
    for node, fps in (("node-a", "5"), ("node-b", "2")):
        claims = CameraClaims(connection, node, [f"cam-{node}"],
                              role_settings(Settings.load({"ALPR_SAMPLE_FPS": fps}), "ingest").entry())  # fmt: skip
        claims.claim()  # a node's heartbeat: its claims, renewed while it runs
        nodes.append(claims)
    document = status_json(capsys, redis_url)
    ingest = document["pools"]["ingest"]
    assert document["mixed"] == ["ingest"] and ingest["differing"] == ["ALPR_SAMPLE_FPS"]
    assert sorted(name for group in ingest["fingerprints"].values() for name in group["members"]) == [
        "node-a",
        "node-b",
    ]
    nodes[1].release()
    document = status_json(capsys, redis_url)
    assert document["mixed"] == [] and document["pools"]["ingest"]["members"] == 1
    assert connection.hkeys(INGEST_NODES_KEY + SETTINGS_SUFFIX) == [b"node-a"]


def test_no_secret_nor_a_digest_of_one_is_published_and_a_secret_cannot_be_listed(monkeypatch):
    """Every role's published settings are the same whatever its secrets and URLs: none of them goes
    into an entry or its fingerprint. A secret or a URL added to a role's list fails at start."""
    from common.role_settings import ROLE_SETTINGS, check_role_settings, role_settings

    plain = Settings.load({})
    secret = Settings.load({
        "ALPR_JOB_KEY": "job-key-0123456789abcdef", "ALPR_REDIS_PASSWORD": "redis-pw", "ALPR_DATABASE_PASSWORD": "pw",
        "ALPR_DATABASE_URL": "postgresql://alpr:pw@db/alpr", "ALPR_REDIS_URL": "redis://:pw@queues:6379/0",
        "ALPR_FRAME_STORE_URL": "redis://:pw@frames:6379/0", "ALPR_ALERT_RECEIVERS": "/run/secrets/receivers.yaml",
    })  # fmt: skip
    for role in ROLE_SETTINGS:
        assert role_settings(plain, role) == role_settings(secret, role), role
        assert "pw" not in role_settings(secret, role).entry()
    for forbidden in ("job_key", "database_password", "redis_url", "alert_receivers", "keep_dir"):
        monkeypatch.setitem(ROLE_SETTINGS, "sight", (*ROLE_SETTINGS["sight"], forbidden))
        with pytest.raises(RuntimeError, match=forbidden):
            check_role_settings()
        monkeypatch.undo()


def test_forged_or_oversized_entries_are_left_unread_and_reach_no_terminal(redis_url, capsys):
    """Whoever writes to Redis: an entry that is no JSON, one too long, one whose fingerprint is no
    fingerprint, and one whose name and value hold escape codes."""
    from common.role_settings import role_settings

    connection = connect_redis(redis_url)
    now_s = float(connection.time()[0])
    named = ("junk", "long", "forged", "esc\x1b[31m", "ours")
    connection.zadd(SIGHTING_WORKERS_KEY, dict.fromkeys(named, now_s))
    entry = role_settings(Settings.load({}), "sight")
    forged = entry.values | {"alert_repeat_s": "\x1b[2J"}
    connection.hset(SIGHTING_WORKERS_KEY + SETTINGS_SUFFIX, mapping={
        "junk": "{not json", "long": json.dumps({"fingerprint": "a" * 12, "settings": {"x": "y" * 5000}}),
        "forged": json.dumps({"fingerprint": "\x1b]0;owned\x07", "settings": {}}),
        "esc\x1b[31m": json.dumps({"fingerprint": "abcdef012345", "settings": forged}),
        "ours": entry.entry(),
    })  # fmt: skip
    assert main(["status", "--interval", "0.1", "--redis-url", redis_url]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    line = pool_line(out, "sight")
    held = sorted([("abcdef012345", "esc\\x1b[31m", "\\x1b[2J"), (entry.fingerprint, "ours", "60.0")])  # ties: by print
    assert line == (
        f"sight    MIXED: 5 members, 2 settings: {held[0][0]} x1 ({held[0][1]}), {held[1][0]} x1 ({held[1][1]});"
        f" differing: ALPR_ALERT_REPEAT_S {held[0][2]} | {held[1][2]}; 3 publish no settings (an older version?)"
    ), line


def test_a_members_entry_goes_with_it_when_its_beats_stop(redis_url):
    from common import defaults, queues

    connection = redis.Redis.from_url(redis_url)
    ttl = defaults.SIGHTING_HEARTBEAT_TTL_S
    now = queues.redis_now(connection)
    connection.zadd(SIGHTING_WORKERS_KEY, {"silent": now - ttl - 5})
    connection.hset(SIGHTING_WORKERS_KEY + SETTINGS_SUFFIX, "silent", "{}")
    queues.beat_sighting_worker(connection, "beating", '{"fingerprint":"x","settings":{}}')
    assert connection.hkeys(SIGHTING_WORKERS_KEY + SETTINGS_SUFFIX) == [b"beating"]  # the silent one forgotten
    assert 0 < connection.ttl(SIGHTING_WORKERS_KEY + SETTINGS_SUFFIX) <= 2 * ttl
    queues.beat_sighting_worker(connection, "beating")  # no entry given: the last one kept
    assert connection.hget(SIGHTING_WORKERS_KEY + SETTINGS_SUFFIX, "beating") == b'{"fingerprint":"x","settings":{}}'


def test_each_role_publishes_the_settings_its_results_depend_on(tmp_path: Path):
    """The lists the brief asked for, read from the one typed config: a change of any of them is a new
    fingerprint; a change of a setting that only changes speed (threads, batch size) is not."""
    from common.role_settings import ROLE_SETTINGS, role_settings

    base = Settings.load({})
    for role in ROLE_SETTINGS:
        assert len(role_settings(base, role).fingerprint) == 12
    assert {"alert_repeat_s", "sighting_gap_s", "watch_max_distance", "watch_fuzzy_min_probability"} <= set(
        ROLE_SETTINGS["sight"]
    )
    assert {"detector_backend", "detector_weights", "detector_imgsz", "detector_confidence"} <= set(
        ROLE_SETTINGS["detect"]
    )
    assert {"ocr_engine", "ocr_model"} <= set(ROLE_SETTINGS["ocr"])
    assert {"sample_fps", "ocr_region"} <= set(ROLE_SETTINGS["ingest"])  # what a camera naming neither takes
    assert {"redact_method", "keep_frames"} <= set(ROLE_SETTINGS["redact"])
    changed = {"sight": {"ALPR_ALERT_REPEAT_S": "7"}, "detect": {"ALPR_DETECTOR_IMGSZ": "1280"},
               "ocr": {"ALPR_OCR_ENGINE": "tesseract"}, "redact": {"ALPR_REDACT_METHOD": "pixelate"},
               "ingest": {"ALPR_SAMPLE_FPS": "2"}, "alert": {"ALPR_ALERT_GIVE_UP_S": "60"}}  # fmt: skip
    speed = {"ALPR_DETECTOR_THREADS": "3", "ALPR_DETECTOR_BATCH_SIZE": "2", "ALPR_OCR_THREADS": "4"}
    for role, variables in changed.items():
        assert role_settings(Settings.load(variables), role).fingerprint != role_settings(base, role).fingerprint
        assert role_settings(Settings.load(speed), role) == role_settings(base, role)
    eu = Settings.load({"ALPR_OCR_REGION": "eu"})  # each frame carries its camera's region: the OCR and sighting
    for role in ("ocr", "sight"):  # pools read it whatever their own (listed, they showed MIXED for nothing)
        assert role_settings(eu, role) == role_settings(base, role)
    assert role_settings(eu, "ingest").fingerprint != role_settings(base, "ingest").fingerprint
    weights = Settings.load({"ALPR_DETECTOR_WEIGHTS": str(tmp_path / "plates.onnx")})
    assert role_settings(weights, "detect").values["detector_weights"] == "plates.onnx"  # not the host's folder


def test_detector_workers_loading_different_weights_of_one_name_are_a_mixed_pool(chain_env, redis_url, settings,
                                                                                  tmp_path, capsys):  # fmt: skip
    """Two hosts' model folders with a weights file of the same name but other contents (one replaced by
    hand, or made by `alpr setup --calibrate`): their settings agreed, so nothing told them apart."""
    from detector_worker.weights import INT8_WEIGHTS_NAME, ONNX_WEIGHTS_NAME, weights_digest

    folders = [tmp_path / "host0", tmp_path / "host1"]
    for folder, source in zip(folders, (ONNX_WEIGHTS_NAME, INT8_WEIGHTS_NAME), strict=True):
        folder.mkdir()
        (folder / ONNX_WEIGHTS_NAME).write_bytes((settings.model_dir / source).read_bytes())  # both load as onnx
    workers = [
        alpr_process(chain_env | {"ALPR_MODEL_DIR": str(folder), "ALPR_DETECTOR_THREADS": "1"}, ["worker", "detect"],
                     tmp_path / f"detect{index}.log")
        for index, folder in enumerate(folders)
    ]  # fmt: skip
    try:
        wait_for(lambda: members(capsys, redis_url, "detect") == 2, 90, "two detector workers registered")
        detect = status_json(capsys, redis_url)["pools"]["detect"]
        assert detect["differing"] == ["detector_weights_sha256"], detect
        published = {group["settings"]["detector_weights_sha256"] for group in detect["fingerprints"].values()}
        assert published == {weights_digest(folder / ONNX_WEIGHTS_NAME) for folder in folders}
    finally:
        stop(workers)

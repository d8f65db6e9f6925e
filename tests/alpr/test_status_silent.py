"""`alpr status` shows a camera its ingest node judges silent (alpr_camera_silent: AlprCameraSilent), in the table and
under `--json`'s `silent_cameras`: it showed nothing of it (a review). The node says so in the camera's state, which
its job packer writes with every depth refresh (ingest/job_packer.py, ingest/camera_silence.py), a camera whose
thread set no state yet too; status takes it only from a live camera a node holds, within the state's bound
(alpr/status_cameras.py): a hostile writer of the hash neither forges silence on a camera no node holds nor breaks
the table or the JSON. Real IngestNode, a real HTTP camera that answers nothing, a private Redis."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis

from alpr.cli import main
from common import defaults, queues
from common.config import Settings
from common.metrics import Metrics
from ingest.cameras import CameraConfig
from ingest.claims import CLAIM_PREFIX
from ingest.node import IngestNode
from tests.helpers import wait_for


def rows(out: str) -> dict[str, str]:
    """The lines of `alpr status`'s text by their first word."""
    return {line.split()[0]: line for line in out.splitlines() if line.split()}


def test_status_shows_a_camera_its_node_judges_silent(
    redis_url: str, stalled_camera: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A camera that answers nothing (its first open hangs: its thread has set no state yet) reads silent after
    CAMERA_SILENT_S (here 1 s); within a depth refresh (0.5 s) `alpr status` says so, and for how long."""
    monkeypatch.setattr(defaults, "CAMERA_SILENT_S", 1.0)
    connection, metrics = redis.Redis.from_url(redis_url), Metrics()
    camera = CameraConfig.model_validate({"id": "gate", "source": stalled_camera, "sample_fps": 5})
    node = IngestNode([camera], Settings.load({}, redis_url=redis_url), connection, connection, metrics, None)
    runner = threading.Thread(target=node.run, kwargs={"max_seconds": 60}, daemon=True)
    runner.start()
    try:
        silent = lambda: metrics.registry.get_sample_value("alpr_camera_silent", {"camera": "gate"}) == 1  # noqa: E731
        wait_for(silent, 10, "the camera read silent")
        time.sleep(1.0)  # two depth refreshes
        assert main(["status", "--interval", "0.1", "--redis-url", redis_url]) == 0
        out = capsys.readouterr().out
        assert rows(out)["gate"].split()[1] == "silent", out
        assert "silent: its ingest node holds it and has sampled nothing from it for 1 s, or 3 of its sample" in out
        assert main(["status", "--json", "--redis-url", redis_url]) == 0
        document = json.loads(capsys.readouterr().out)
        assert list(document["silent_cameras"]) == ["gate"], document["silent_cameras"]
        said = document["silent_cameras"]["gate"]
        assert said["state"] in ("connecting", "reconnecting") and 1.0 <= said["silent_for_s"] < 30, said
    finally:
        node.stop.set()
        runner.join(20)
    assert not runner.is_alive()


def test_status_takes_silence_only_from_a_live_camera_a_node_holds_within_the_state_bound(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any client of the queues' Redis may write the hash: silence said of a camera no node claims (its node gone),
    ended, of no usable time (text, a boolean, past status's largest time, negative, a year ahead), or in a state
    past MAX_STATE_BYTES is not shown; a name with control characters is written out. The state's bound stays 1 KiB."""
    from alpr.status_cameras import MAX_STATE_BYTES

    assert MAX_STATE_BYTES == 1024
    connection = redis.Redis.from_url(redis_url)
    now = time.time()

    def state(name: str = "connected", **fields: object) -> str:
        return json.dumps({"state": name, "since": now - 3600, "errors": 0, **fields})

    connection.hset(queues.CAMERA_STATE_KEY, mapping={
        "held": state(silent_since=now - 1500),
        "quiet": state(),
        "gone": state(silent_since=now - 1500),
        "ended": state("ended", silent_since=now - 1500),
        "text": state(silent_since="yesterday"),
        "huge": state(silent_since=1e300),
        "negative": state(silent_since=-5),
        "boolean": state(silent_since=True),  # (a review: JSON true read as 1 s past the epoch, `silent 499054h`)
        "future": state(silent_since=now + 365 * 86400),  # (a review: `silent 0s`)
        "padded": state(silent_since=now - 1500, pad="x" * MAX_STATE_BYTES),
        "esc\x1b[31m": state(silent_since=now - 60),
    })  # fmt: skip
    for camera in ("held", "quiet", "ended", "text", "huge", "negative", "boolean", "future", "padded", "esc\x1b[31m"):
        connection.set(CLAIM_PREFIX + camera, "node-1", ex=30)  # "gone"'s node was killed: its claim lapsed
    assert main(["status", "--interval", "0.1", "--redis-url", redis_url]) == 0
    out = capsys.readouterr().out
    table = rows(out)
    assert table["held"].split()[1:3] == ["silent", "25m"], out
    assert "node gone" in table["gone"] and "ended" in table["ended"], out
    for camera in ("quiet", "text", "huge", "negative", "boolean", "future"):
        assert table[camera].split()[1:3] == ["connected", "60m"], out
    assert "padded" not in table and "1 field passed over" in out, out
    assert "\x1b" not in out and "silent 60s" in out, out
    assert main(["status", "--json", "--redis-url", redis_url]) == 0
    silent = json.loads(capsys.readouterr().out)["silent_cameras"]
    assert sorted(silent) == ["esc\\x1b[31m", "held"], silent
    assert silent["held"]["state"] == "connected" and 1499 < silent["held"]["silent_for_s"] < 1510, silent

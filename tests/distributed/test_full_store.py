"""A frame store filled while detection is down, on real servers: an ingest node fills a private Redis of
its own (maxmemory, noeviction, as Compose runs it) with recorded footage while no detector runs, then the
detector pool comes back. The node filled the store to its maxmemory, the detector's plate crops were
refused, so no detect job finished, no redaction freed a frame, and the chain stood still until the frames
expired (a review: 0 of 77 frames processed). Now the node stops at the reserve kept for the crops."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest
from rq.registry import FailedJobRegistry

from alpr.cli import main
from common import defaults
from common.config import Settings
from common.db import open_pool
from common.frame_log import FrameLog
from common.metrics import Metrics
from common.queues import connect_redis, stage_queue
from ingest.cameras import CameraConfig
from ingest.ledger import FrameLedger
from ingest.node import IngestNode, NodeSummary
from tests.helpers import wait_for, write_clip
from tests.servers import PrivateRedis

RESERVE_BYTES = 400_000
"""The crops' reserve in this test's small store (FRAME_STORE_RESERVE_MIN_BYTES for it)."""

FRAMES_ROOM_BYTES = 800_000
"""Room for frames above the reserve: some 20 of the clip's 40 (about 35 kB each)."""


def test_the_detectors_crops_have_room_in_a_store_the_node_filled_while_they_were_down(
    redis_server, postgres_url, settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(defaults, "FRAME_STORE_RESERVE_MIN_BYTES", RESERVE_BYTES, raising=False)
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    clip = tmp_path / "footage.mp4"
    write_clip(clip, ("KPX4721",))  # 40 frames, a plate in each
    (tmp_path / "store").mkdir()
    store_server = PrivateRedis(tmp_path / "store", ["--maxmemory-policy", "noeviction"])
    store_server.start()
    try:
        store = connect_redis(store_server.url)
        store.config_set("maxmemory", str(int(store.info("memory")["used_memory"]) + RESERVE_BYTES + FRAMES_ROOM_BYTES))
        for name, value in {"ALPR_REDIS_URL": redis_server.url, "ALPR_FRAME_STORE_URL": store_server.url,
                            "ALPR_DATABASE_URL": postgres_url, "ALPR_MODEL_DIR": str(settings.model_dir),
                            "ALPR_KEEP_DIR": str(tmp_path / "kept"), "ALPR_DB_PATIENCE_S": "2"}.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        node_settings = Settings.load({}, redis_url=redis_server.url, frame_store_url=store_server.url,
                                      database_url=postgres_url, frames_per_job=1, max_queue_depth=256)  # fmt: skip
        metrics = Metrics()
        ledger = FrameLedger(lambda: FrameLog(open_pool(postgres_url, wait_s=3), patience_s=0), metrics, capacity=100)
        queues = connect_redis(redis_server.url)
        node = IngestNode([CameraConfig(id="footage", source=str(clip), sample_fps=10, realtime=False)],
                          node_settings, queues, store, metrics, ledger)  # fmt: skip
        result: list[NodeSummary] = []
        runner = threading.Thread(target=lambda: result.append(node.run(max_seconds=240)), daemon=True)
        runner.start()
        wait_for(lambda: node.packer.store_full or not runner.is_alive(), 60, "the frame store to fill")
        detect = stage_queue(queues, "detect")
        queued = detect.count
        assert runner.is_alive() and 5 <= queued < 40 and node.summary.skipped["footage"] == 0, node.summary

        assert main(["worker", "detect", "--burst"]) == 0  # the detector pool is back
        assert FailedJobRegistry(queue=detect).count == 0, "a detect job failed: its crops found no room"
        assert stage_queue(queues, "redact").count == queued and store.keys("alpr:frame:*:plate*")
        for _ in range(6):  # the chain goes on: redaction frees the frames, the node stores the rest
            assert main(["worker", "redact", "--burst"]) == 0
            if not runner.is_alive():
                break
            runner.join(3)
            assert main(["worker", "detect", "--burst"]) == 0
        runner.join(60)
        assert main(["worker", "detect", "--burst"]) == 0
        assert main(["worker", "redact", "--burst"]) == 0
    finally:
        store_server.stop()
    summary = result[0]
    assert summary.ingested["footage"] == 40 and summary.skipped["footage"] == 0, summary
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT outcome, count(*) FROM frames GROUP BY 1").fetchall()
    assert rows == [("done", 40)]

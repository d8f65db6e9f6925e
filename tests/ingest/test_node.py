"""The ingest node against a private Redis and the real Postgres: every sampled frame of an image
folder ends with a row in the frames log and a count in the metrics, the undecodable and the
oversized ones included, and a FIFO named like an image does not hold the camera."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np
import psycopg

from alpr.cli import main
from common import defaults
from common.config import Settings
from common.db import open_pool
from common.frame_log import FrameLog
from common.metrics import Metrics
from common.queues import connect_redis
from ingest.cameras import CameraConfig
from ingest.ledger import FrameLedger
from ingest.node import IngestNode, NodeSummary
from tests.ingest.helpers import release_fifo


def run_node(node: IngestNode, fifo: Path, timeout_s: float) -> NodeSummary:
    """Run the node in a thread; fail if its camera has not ended within `timeout_s`."""
    result: list[NodeSummary] = []
    thread = threading.Thread(target=lambda: result.append(node.run()), daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        node.stop.set()
        release_fifo(fifo)
        thread.join(10)
    assert result, f"the node did not end within {timeout_s:.0f} s"
    return result[0]


def test_every_sampled_image_is_recorded_and_counted(redis_url, postgres_url, tmp_path):
    """A good image is queued; a 0-byte file and a text file named *.jpg are recorded `corrupt`; a PNG of
    8000x4500 pixels (small on disk) is skipped as too large; a FIFO named *.jpg is not read."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    folder = tmp_path / "shots"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((120, 160, 3), 90, np.uint8))
    (folder / "b.jpg").write_bytes(b"")
    (folder / "c.jpg").write_text("not an image")
    cv2.imwrite(str(folder / "d.png"), np.zeros((4500, 8000), np.uint8))
    assert defaults.MAX_FRAME_PIXELS < 4500 * 8000 and (folder / "d.png").stat().st_size < 1_000_000
    os.mkfifo(folder / "e.jpg")
    settings = Settings.load({}, redis_url=redis_url, database_url=postgres_url)
    metrics = Metrics()
    ledger = FrameLedger(lambda: FrameLog(open_pool(postgres_url, wait_s=3), patience_s=0), metrics, capacity=100)
    connection = connect_redis(redis_url)
    camera = CameraConfig(id="cam", source=str(folder), realtime=False)
    node = IngestNode([camera], settings, connection, connection, metrics, ledger)

    summary = run_node(node, folder / "e.jpg", timeout_s=60)

    assert summary.ingested["cam"] == 1 and summary.skipped["cam"] == 3
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT frame_index, outcome, detail FROM frames ORDER BY frame_index").fetchall()
    assert rows == [
        (0, "pending", None),
        (1, "corrupt", "undecodable image"),
        (2, "corrupt", "undecodable image"),
        (3, "skipped", "too large"),
    ]
    sample = metrics.registry.get_sample_value
    assert sample("alpr_frames_ingested_total", {"camera": "cam"}) == 1
    assert sample("alpr_frames_corrupt_total", {"stage": "ingest"}) == 2
    assert sample("alpr_frames_skipped_total", {"camera": "cam", "reason": "too_large"}) == 1

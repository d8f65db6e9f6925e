"""An ingest node's start warns when its cameras' capture bounds together exceed the memory available to it
(its cgroup's limit, else the host's MemAvailable): the real node against a private Redis, the cgroup and
meminfo files it reads written here (the machine's own cannot be set by a test)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from common.config import Settings
from common.metrics import Metrics
from common.queues import connect_redis
from ingest import capture_budget
from ingest.cameras import CameraConfig
from ingest.node import IngestNode

GB_KB = 1024 * 1024
"""A gigabyte in /proc/meminfo's kB."""


@pytest.mark.parametrize(
    ("videos", "cgroup", "available_kb", "said"),
    [
        (3, str(2048 * 1024 * 1024), 64 * GB_KB, "3 cameras x 1024 MB (ALPR_CAPTURE_MEMORY_MB) = 3072 MB, more than the"
         " 2048 MB available to this node (this process's cgroup memory limit)"),
        (2, "max", GB_KB, "2 cameras x 1024 MB (ALPR_CAPTURE_MEMORY_MB) = 2048 MB, more than the 1024 MB available to"
         " this node (the host's MemAvailable)"),
        (2, "9223372036854771712", 3 * GB_KB // 2, "= 2048 MB, more than the 1536 MB available"),  # v1: no limit
        (2, "max", 2 * GB_KB, None),  # (just fits: no word)
        (16, "max", 64 * GB_KB, None),
    ],
)  # fmt: skip
def test_a_node_warns_at_its_start_when_its_cameras_capture_bounds_exceed_its_memory(
    redis_url, tmp_path, monkeypatch, caplog, videos, cgroup, available_kb, said
):
    """Each capture child was bounded alone (ALPR_CAPTURE_MEMORY_MB, 1024 by default): 6 cameras reached
    1,476 MB together at 256 each, and 16 at the default could ask for 16 GB at once, unwarned. An image
    folder has no capture child: it is not counted."""
    (tmp_path / "memory.max").write_text(cgroup + "\n")
    (tmp_path / "meminfo").write_text(f"MemTotal:       {128 * GB_KB} kB\nMemAvailable:   {available_kb} kB\n")
    monkeypatch.setattr(capture_budget, "CGROUP_LIMIT_FILES", (tmp_path / "memory.max",))
    monkeypatch.setattr(capture_budget, "MEMINFO_FILE", tmp_path / "meminfo")
    folder = tmp_path / "shots"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((120, 160, 3), 90, np.uint8))
    cameras = [CameraConfig(id=f"cam{i}", source=str(tmp_path / f"gone{i}.mp4")) for i in range(videos)]
    cameras.append(CameraConfig(id="shots", source=str(folder), realtime=False))
    connection = connect_redis(redis_url)
    settings = Settings.load({}, redis_url=redis_url)
    assert settings.capture_memory_mb == 1024
    caplog.set_level("INFO", logger="ingest.node")

    IngestNode(cameras, settings, connection, connection, Metrics(), None).run(max_seconds=0.5)

    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "capture memory" in r.getMessage()]
    if said is None:
        assert warned == []
    else:
        assert len(warned) == 1 and said in warned[0], warned
        assert "lower ALPR_CAPTURE_MEMORY_MB or run fewer cameras per node" in warned[0]


def test_the_memory_available_is_read_from_this_machine() -> None:
    """On this machine (no file written): some memory is found, and a cgroup's `max` is no limit."""
    found = capture_budget.available_memory()
    assert found is not None and found[0] > 0, found

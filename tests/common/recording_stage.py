"""A detect stage that records what it is handed, and a detect job of one frame: what the worker tests
on a private Redis run a real StageWorker with (test_stage_job, test_worker_control, test_worker_logs)."""

from __future__ import annotations

import time
from typing import Any

from common.frame_store import frame_key
from common.jobs import DetectJob, FrameRef
from common.worker_context import StageResult


class Recorder:
    """A detect stage that records the batches it was handed."""

    name = "detect"

    def __init__(self) -> None:
        self.batches: list[str] = []

    def handle(self, payload: Any) -> StageResult:
        self.batches.append(payload["batch_id"])
        return StageResult(frames=len(payload["frames"]))

    def maintain(self) -> None:
        pass


def detect_job(batch_id: str) -> DetectJob:
    frame = FrameRef(frame_id="cam:1:0", camera_id="cam", seq=0, frame_index=0, captured_at_s=time.time(),
                     source_time_s=0.0, key=frame_key("cam:1:0"), region="us")  # fmt: skip
    return DetectJob(batch_id=batch_id, frames=[frame])

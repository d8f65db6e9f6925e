"""The redactor pool's edge: takes a redact job, blurs every plate box in each frame, writes the
redacted frame to the keep folder (at the frame store's JPEG quality; a frame without plates as
stored), records every frame in Postgres (done, or why not: expired before detection or redaction),
and deletes the raw frame from the store (its TTL covers any frame a failure leaves behind)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from common.db import write_through_outage
from common.frame_store import FrameStore, decode_jpeg, encode_jpeg
from common.jobs import RedactJob, parse_job
from common.metrics import Metrics
from common.queues import STATS_DONE_KEY
from redactor_worker.core import redact

log = logging.getLogger(__name__)

INSERT_FRAME = """
INSERT INTO frames (frame_id, camera_id, seq, frame_index, captured_at, plates, stage_ms, kept_path, outcome)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (frame_id) DO NOTHING
"""


def _path_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def kept_path(keep_dir: Path, camera_id: str, frame_id: str, captured_at: float) -> Path:
    """keep_dir/<camera>/<UTC date>/<frame id>.jpg, with path-unsafe characters replaced."""
    day = datetime.fromtimestamp(captured_at, UTC).strftime("%Y-%m-%d")
    return keep_dir / _path_safe(camera_id) / day / f"{_path_safe(frame_id)}.jpg"


def insert_frames(connection: psycopg.Connection, rows: list[tuple[Any, ...]]) -> None:
    with connection.cursor() as cursor:
        cursor.executemany(INSERT_FRAME, rows)


class RedactStage:
    name = "redact"

    def __init__(
        self,
        store: FrameStore,
        pool: ConnectionPool,
        keep_dir: Path,
        method: Literal["blur", "pixelate"],
        metrics: Metrics,
        db_patience_s: float,
        quality: int,
    ) -> None:
        self.store, self.pool, self.keep_dir, self.method, self.metrics = store, pool, keep_dir, method, metrics
        self.db_patience_s, self.quality = db_patience_s, quality

    def handle(self, payload: Any) -> dict[str, Any]:
        job = parse_job(payload, self.name)
        assert isinstance(job, RedactJob)
        keys = [f.frame.key for f in job.frames]
        jpegs = self.store.get_jpegs(keys)
        rows = []
        for item in job.frames:
            ref, jpeg = item.frame, jpegs[item.frame.key]
            timings = {"detect": item.detect_ms}
            if ref.frame_id in job.ocr_ms:
                timings["ocr"] = job.ocr_ms[ref.frame_id]
            path: Path | None = None
            if item.missing:
                outcome = item.missing
            elif jpeg is None:
                outcome = "expired before redaction"
                self.metrics.frames_missing.labels(stage=self.name).inc()
            else:
                outcome = "done"
                start = time.perf_counter()
                if item.plates:  # a frame without plates is kept as stored: nothing to hide, nothing to decode
                    image = decode_jpeg(jpeg, ref.key)
                    with self.metrics.core_cpu(self.name):
                        jpeg = encode_jpeg(redact(image, [p.box_xyxy for p in item.plates], self.method), self.quality)
                path = kept_path(self.keep_dir, ref.camera_id, ref.frame_id, ref.captured_at)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(jpeg)
                timings["redact"] = 1000 * (time.perf_counter() - start)
            rows.append((
                ref.frame_id, ref.camera_id, ref.seq, ref.frame_index, datetime.fromtimestamp(ref.captured_at, UTC),
                len(item.plates), Jsonb(timings), str(path) if path else None, outcome,
            ))  # fmt: skip
        write_through_outage(self.pool, lambda connection: insert_frames(connection, rows), self.db_patience_s)
        self.store.delete_many(keys)
        done = Counter(row[1] for row in rows if row[-1] == "done")
        pipe = self.store.redis.pipeline(transaction=False)
        for camera_id, count in done.items():
            pipe.hincrby(STATS_DONE_KEY, camera_id, count)
        pipe.execute()
        self.metrics.frames_processed.labels(stage=self.name).inc(sum(done.values()))
        return {"frames": sum(done.values()), "missing": len(rows) - sum(done.values())}

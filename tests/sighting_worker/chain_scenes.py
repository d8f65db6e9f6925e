"""Scenes for the sighting pool's edge tests (tests/sighting_worker/test_worker*.py): frames and reads as the
chain logs them, cars passing side by side, a query helper, and the `chain` fixture (a migrated database with
KPX4721 on the watch list, a webhook receiver, the settings the roles load) that conftest.py hands to this
folder's tests."""

from __future__ import annotations

import time

import pytest

from alpr.cli import main
from common.config import Settings
from common.db import open_pool
from common.frame_log import FrameLog, FrameRecord
from common.frame_store import frame_key
from common.jobs import FrameRef
from common.plate_log import PostgresPlateLog
from common.types import PlateCandidate, PlateRead
from sighting_worker.worker import ROUND_OUTCOMES

SECRET = "hook-secret-0123456789abcdef"


def frame(index: int, at_s: float, camera: str = "gate") -> FrameRef:
    frame_id = f"{camera}:run1:{index}"
    return FrameRef(frame_id=frame_id, camera_id=camera, seq=index, frame_index=index, captured_at_s=at_s,
                    source_time_s=index / 5, key=frame_key(frame_id), region="us")  # fmt: skip


RUNNER_UP = {"KPX4727": "KPX4721"}
"""Texts whose reads name another as their runner-up, as a recogniser's candidates do for a character it
hesitates over (7 against 1): the lookalike's fuzzy match of the listed KPX4721 is borne out by its own
candidates, which a fuzzy match needs to alert (sighting_worker/match_evidence.py)."""


def plate(text: str, x: float, confidence: float = 0.95) -> PlateRead:
    runner_up = [PlateCandidate(RUNNER_UP[text], round((1 - confidence) / 2, 4), "us")] if text in RUNNER_UP else []
    return PlateRead((x, 400.0, x + 90.0, 440.0), 0.9, (PlateCandidate(text, confidence, "us"), *runner_up))


def passes(start_s: float) -> list[tuple[FrameRef, list[PlateRead]]]:
    """Two cars side by side for 2 s (5 frames/s), one misread frame each; then, 5 s later, a third."""
    frames = []
    for i in range(10):
        left = "7ABC204" if i == 4 else "7ABC284"
        right = "KPX4727" if i == 6 else "KPX4721"
        frames.append((frame(i, start_s + i * 0.2), [plate(left, 100 + 20 * i), plate(right, 600 + 20 * i)]))
    for i in range(10, 20):
        frames.append((frame(i, start_s + 5 + i * 0.2), [plate("GHT2093", 300 + 15 * i)]))
    return frames


@pytest.fixture()
def chain(postgres_url, redis_url, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    assert main(["watchlist", "add", "KPX4721", "--reason", "stolen", "--database-url", postgres_url]) == 0
    receivers = tmp_path / "receivers.yaml"
    (tmp_path / "hook.secret").write_text(SECRET)
    receivers.write_text(f"receivers:\n  ops:\n    type: webhook\n    url: http://127.0.0.1:9/x\n"
                         f"    secret_file: {tmp_path / 'hook.secret'}\n")  # fmt: skip
    monkeypatch.setenv("ALPR_ALERT_RECEIVERS", str(receivers))
    monkeypatch.setenv("ALPR_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    pool = open_pool(postgres_url)
    yield pool, Settings.load()
    pool.close()


def log_frames(pool, frames, settled: bool = True, in_capture_order: bool = False) -> None:  # type: ignore[no-untyped-def]
    """As the chain does: the ingest node's pending rows, the OCR pool's reads (last frame first, unless
    `in_capture_order`), then (when settled) the redactor's outcome and the OCR pool's read outcome."""
    frame_log = FrameLog(pool, 0)
    frame_log.record_sampled([FrameRecord(ref, "pending") for ref, _ in frames])
    PostgresPlateLog(pool).record_many(frames if in_capture_order else list(reversed(frames)))  # in any order
    if settled:
        frame_log.record_reads([(ref, "done") for ref, _ in frames])
        frame_log.record_final([FrameRecord(ref, "done", plates=len(reads)) for ref, reads in frames])


def table(pool, query: str) -> list[tuple]:  # type: ignore[no-untyped-def, type-arg]
    with pool.connection() as connection:
        return connection.execute(query).fetchall()


def rounds(stage) -> dict[str, float | None]:  # type: ignore[no-untyped-def]
    """The stage's sighting rounds so far, by outcome, as Prometheus reads them."""
    registry = stage.metrics.registry
    return {o: registry.get_sample_value("alpr_sighting_rounds_total", {"outcome": o}) for o in ROUND_OUTCOMES}


def live_car(index: int, text: str) -> list[tuple[FrameRef, list[PlateRead]]]:
    """A car read in one frame just now, at camera `gate` (the camera live: its rounds go on)."""
    return [(frame(index, time.time() - 1.5), [plate(text, 300)])]


def late_pass(first_index: int, start_s: float, text: str = "KPX4721") -> list[tuple[FrameRef, list[PlateRead]]]:
    """A car's pass at camera `gate` captured at `start_s`, long ago: five sure reads 0.2 s apart."""
    return [(frame(first_index + i, start_s + i * 0.2), [plate(text, 100 + 20 * i)]) for i in range(5)]

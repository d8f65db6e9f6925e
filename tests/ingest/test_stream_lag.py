"""A stream's frames dated by its own timestamps: the frames a stall held back, read in a burst after it,
were dated when read (seconds late). Judged first on timelines written out here, then on a real MPEG-TS
stream with timestamps, served over TCP with a 3 s stall, read by the ingest node."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from common.config import Settings
from common.metrics import Metrics
from common.queues import connect_redis
from ingest.cameras import CameraConfig
from ingest.node import IngestNode
from ingest.stream_lag import HELD_LAG_S, MIN_LAG_S, StreamLag


def lags(times: list[tuple[float, float | None]]) -> list[float]:
    lag = StreamLag()
    return [round(lag.lag_s(read_at_s, stamp_s), 3) for read_at_s, stamp_s in times]


def stalled(fps: float, seconds: float, stall_at_s: float, stall_s: float) -> list[tuple[float, float]]:
    """A stream of `fps` stamped at its capture, read 0.1 s later, but held back by a stall: every frame
    captured during it read at its end, 1 ms apart."""
    times = []
    for index in range(int(seconds * fps)):
        stamp_s = index / fps
        read_at_s = stamp_s + 0.1
        if stall_at_s <= stamp_s < stall_at_s + stall_s:
            read_at_s = stall_at_s + stall_s + 0.1 + 0.001 * (index - stall_at_s * fps)
        times.append((read_at_s, stamp_s))
    return times


def test_the_frames_a_stall_held_back_are_read_late_by_what_they_waited():
    timeline = stalled(fps=10, seconds=40, stall_at_s=20, stall_s=3)
    found = lags(timeline)
    held = [i for i, (read_at_s, stamp_s) in enumerate(timeline) if read_at_s - stamp_s > 0.2]
    assert len(held) == 30 and found[held[0]] == pytest.approx(3.0, abs=0.01)  # the oldest: the whole stall
    assert all(found[i] == pytest.approx(timeline[i][0] - timeline[i][1] - 0.1, abs=0.002) for i in held)
    assert all(lag == 0 for i, lag in enumerate(found) if i not in held)


def test_timestamps_are_not_trusted_before_they_have_kept_the_clocks_pace():
    early = lags(stalled(fps=10, seconds=10, stall_at_s=5, stall_s=3))  # within the first 10 s
    assert set(early) == {0.0}


def test_an_mjpeg_stream_numbered_at_25_frames_a_second_is_dated_as_read():
    """FFmpeg stamps an HTTP MJPEG stream's frames at a nominal 25 frames/s whatever the camera sends."""
    five_a_second = [(index / 5, index / 25) for index in range(300)]
    assert set(lags(five_a_second)) == {0.0}
    with_stall = [(read_at_s + (3.0 if read_at_s >= 30 else 0), stamp_s) for read_at_s, stamp_s in five_a_second]
    assert set(lags(with_stall)) == {0.0}


def test_timestamps_that_fall_behind_the_clocks_pace_lose_their_trust():
    """An MJPEG camera sending 25 frames/s passes for stamped at its pace (FFmpeg numbers its frames at
    a nominal 25); fallen to 12 frames/s, its lag grew for good: trust was kept (it was judged only on
    frames that did not lag), frames were dated up to 5 s early, most samples lost (a review)."""
    fast = [(index / 25, index / 25) for index in range(25 * 15)]
    slow = [(15 + index / 12, 15 + index / 25) for index in range(12 * 60)]
    found = lags(fast + slow)
    assert max(found[len(fast) + 12 * 10 :]) == 0.0  # lagging at most until its first reset, then never trusted


def test_a_camera_clock_running_slow_or_a_delay_that_holds_is_the_new_normal():
    slow = [(index / 10 * (1 + 200e-6) + 0.1, index / 10) for index in range(10 * 3600)]  # 200 ppm for an hour
    assert max(lags(slow)) < 2 * MIN_LAG_S  # 0.72 s behind by the end, never taken for a backlog
    moved = [(index / 10 + (0.1 if index < 300 else 2.1), index / 10) for index in range(600)]  # 2 s more from 30 s
    found = lags(moved)
    assert found[300] == pytest.approx(2.0) and max(found[300 + int(HELD_LAG_S * 10) :]) == 0.0


def test_a_stream_whose_time_goes_back_or_has_no_stamps_starts_afresh():
    timeline = stalled(fps=10, seconds=30, stall_at_s=25, stall_s=2)
    restarted = [(read_at_s + 30, stamp_s) for read_at_s, stamp_s in stalled(10, 30, 5, 2)]  # a new time base
    found = lags(timeline + restarted)
    assert max(found[: len(timeline)]) == 2.0 and set(found[len(timeline) :]) == {0.0}  # not yet paced again
    assert set(lags([(index / 10, None) for index in range(300)])) == {0.0}


STREAM_FPS, STALL_AT_FRAME, STALL_S = 10, 150, 3.0


def frame_ends(data: bytes) -> list[int]:
    """Where each frame of an MPEG-TS file ends: the offsets of the 188-byte packets that start the next
    frame's PES on the video stream (the stream that has the most packets), then the file's end."""
    packets = [(offset, bool(data[offset + 1] & 0x40), (data[offset + 1] & 0x1F) << 8 | data[offset + 2])
               for offset in range(0, len(data), 188)]  # fmt: skip
    video = Counter(pid for _, _, pid in packets).most_common(1)[0][0]
    starts = [offset for offset, starts_unit, pid in packets if starts_unit and pid == video]
    return [*starts[1:], len(data)]


def stalling_stream(clip: Path, sent: threading.Event) -> str:
    """Serve the MPEG-TS file over TCP frame by frame, at its pace by the clock as a camera does, holding
    back the frames of STALL_S from frame STALL_AT_FRAME and sending them at once at the stall's end.
    Paced by sleeps one after another, the server fell behind its clock by what each sleep overran (2.5 ms
    a second here, more on a busy machine, with the node's thread holding the GIL): a delay that grew and
    held for HELD_LAG_S was rightly taken for the stream's new normal, its timestamps trusted again only
    10 s later, too late for the stall in 4 of 12 runs. Sent in equal shares of bytes, frames arrived two
    at once now and then, and sampled by read time before the timestamps were trusted, 3 in a row were
    passed over on a busy machine. `sent` is set once the last frame is sent and the connection closed."""
    data = clip.read_bytes()
    ends = frame_ends(data)
    assert len(ends) == STREAM_FPS * 25
    server = socket.create_server(("127.0.0.1", 0))
    stall_end = STALL_AT_FRAME + int(STALL_S * STREAM_FPS)

    def serve() -> None:
        connection, _ = server.accept()
        started = time.monotonic()
        try:
            for index, end in enumerate(ends):
                due = stall_end if STALL_AT_FRAME <= index < stall_end else index + 1
                time.sleep(max(0.0, started + due / STREAM_FPS - time.monotonic()))
                connection.sendall(data[ends[index - 1] if index else 0 : end])
        except OSError:
            pass
        finally:
            connection.close()
            server.close()
            sent.set()

    threading.Thread(target=serve, daemon=True).start()
    return f"tcp://127.0.0.1:{server.getsockname()[1]}"


def stalled_stream_problems(redis_url: str, clip: Path) -> list[str]:
    """Sample the stalling stream of `clip` for one run of an ingest node; what is wrong with what it queued."""
    from rq.serializers import JSONSerializer

    from common.jobs import DetectJob, parse_job
    from common.queues import StageJob, stage_queue

    connection = connect_redis(redis_url)
    connection.flushall()
    sent = threading.Event()
    camera = CameraConfig(id="cam", source=stalling_stream(clip, sent), sample_fps=5)
    node = IngestNode([camera], Settings.load({}, redis_url=redis_url), connection, connection, Metrics(), None)

    def stop_once_read() -> None:
        """The stream is live: its end is a drop, reopened with backoff until the node stops (40 s, 15 s after
        the stream's 25 s). Stopped once every frame was sent and the camera found the stream ended: its
        frames all handed on by then (the packer queues what it holds on a stop)."""
        while not node.stop.wait(0.2):
            if sent.is_set() and '"reconnecting"' in node.states.get("cam", ""):
                node.stop.set()

    threading.Thread(target=stop_once_read, daemon=True).start()
    node.run(max_seconds=40)
    frames = sorted(
        (frame for job in stage_queue(connection, "detect").get_jobs()
         for frame in parse_job(StageJob.fetch(job.id, connection=connection, serializer=JSONSerializer).args[0],
                                DetectJob).frames),
        key=lambda frame: frame.seq,
    )  # fmt: skip
    indexes = [frame.frame_index for frame in frames]
    gaps = [later.captured_at_s - earlier.captured_at_s for earlier, later in zip(frames, frames[1:], strict=False)]
    stall = [f.frame_index for f in frames if STALL_AT_FRAME <= f.frame_index < STALL_AT_FRAME + STALL_S * STREAM_FPS]
    checks = {
        f"{node.summary.skipped['cam']} frames skipped": node.summary.skipped["cam"] == 0,
        f"{len(frames)} frames sampled of 25 s at 5 frames/s": len(frames) >= 5 * 24,
        f"frames passed over: {indexes}": all(b - a <= 3 for a, b in zip(indexes, indexes[1:], strict=False)),
        f"a hole of {max(gaps, default=0):.2f} s": max(gaps, default=0) < 0.5,  # no hole of 3 s
        f"{len(stall)} frames of the stall sampled": len(stall) >= 13,  # what it held back (15 at 5 frames/s)
    }
    return [problem for problem, held in checks.items() if not held]


def test_a_streams_frames_read_after_a_stall_are_dated_and_sampled_by_capture_time(redis_url, tmp_path):
    """25 s of a 10 frames/s stream sampled at 5, stalled 3 s at 15 s: the first frame read after the stall
    was dated when read, 3 s after the one before it, and the rest of the burst passed over (3 s of
    footage unsampled). Dated and sampled by the stream's own clock, every 0.2 s of it is a frame."""
    clip = tmp_path / "stream.ts"
    writer = cv2.VideoWriter(str(clip), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"), STREAM_FPS, (160, 120))
    for index in range(STREAM_FPS * 25):
        writer.write(np.full((120, 160, 3), index % 250, np.uint8))
    writer.release()
    assert not (problems := stalled_stream_problems(redis_url, clip)), problems

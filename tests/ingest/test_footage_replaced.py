"""A video file replaced in place while its pass was cut short is other footage, read from its start
(ingest/reconnect.SourceKeeper.read_on): its footage key holds the file's own fingerprint (path, size,
modification time: ingest/frame_source.file_tag). A review found a file replaced by footage of the same length
whose first frame was the same (a re-encode, or a clip that starts black, as cameras' clips often do)
taken for the same footage: read on from the frame reached, the new file's earlier frames never read.
And the first frame's digest copied the frame (`tobytes()`) to hash it. Real parts: real AVI files, real
capture processes killed by SIGKILL, real Redis."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

from common.backoff import Backoff
from ingest.frame_source import FrameSource
from ingest.reconnect import SourceKeeper
from ingest.video_source import VideoSource
from tests.ingest.test_footage_cut_short import kill_reader, node_reading_two_seconds


def level_a(index: int) -> int:
    """Footage A's frame `index`: black first, as a camera's clip often starts."""
    return (5 * index) % 250


def level_b(index: int) -> int:
    """Footage B's frame `index`: black first too, other frames after."""
    return 0 if index == 0 else (7 * index + 100) % 250


def clip_of(path: Path, frames: int, level: object) -> Path:
    """An AVI of `frames` flat grey frames, frame i of grey `level(i)`, 10 frames/s."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (64, 48))
    for index in range(frames):
        writer.write(np.full((48, 64, 3), level(index), np.uint8))  # type: ignore[operator]
    writer.release()
    return path


def replace_with(clip: Path, other: Path) -> None:
    """`other`'s footage put in `clip`'s place (os.replace: as a recorder rotating a clip does)."""
    os.replace(other, clip)


def test_a_file_replaced_by_other_footage_with_the_same_first_frame_is_read_from_its_start(tmp_path):
    clip = clip_of(tmp_path / "clip.avi", 60, level_a)
    other = clip_of(tmp_path / "other.avi", 60, level_b)
    first, second = VideoSource(str(clip), 10.0), VideoSource(str(other), 10.0)
    try:  # (what the old key held: the same count, first frame's timestamp and pixels)
        assert first.footage_key()[:3] == second.footage_key()[:3]  # type: ignore[index]
    finally:
        first.capture.release()
        second.capture.release()
    passes: list[list[tuple[int, int]]] = []

    def read_pass(source: FrameSource) -> None:
        passes.append([])
        for frame in source.frames():
            passes[-1].append((frame.index, int(frame.image[0, 0, 0])))
            if len(passes) == 1 and frame.index == 20:  # replaced in place, then its reader killed
                replace_with(clip, other)
                kill_reader(source)

    keeper = SourceKeeper(str(clip), 10.0, "rec", threading.Event(), backoff=Backoff(0.01, 1.0))
    assert keeper.run(read_pass) == "ended"
    assert len(passes) == 2 and [index for index, _ in passes[0]] == list(range(21)), passes
    assert [index for index, _ in passes[1]] == list(range(60)), passes[1]  # (the old code: 21 to 59 alone)
    assert all(abs(level - level_b(index)) <= 3 for index, level in passes[1]), passes[1]  # B's frames
    assert keeper.passes == 1  # a new pass: new frame ids


def test_the_footage_key_tells_a_touched_file_from_the_same_file_reopened(tmp_path):
    clip = clip_of(tmp_path / "clip.avi", 10, level_a)
    keys = []
    for change in (None, "same", "touched"):
        if change == "touched":  # the same bytes, another modification time: taken for other footage
            status = clip.stat()
            os.utime(clip, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000))
        source = VideoSource(str(clip), 10.0)
        try:
            keys.append(source.footage_key())
        finally:
            source.capture.release()
    assert keys[0] == keys[1] and keys[2] != keys[0] and keys[2][:3] == keys[0][:3], keys  # type: ignore[index]


def test_the_first_frames_digest_hashes_its_pixels_where_they_lie(tmp_path):
    """A 1080p first frame (6 MB): the key's digest copied it whole (`tobytes()`): 12 MB at its peak,
    the frame and its copy; hashed where it lies, the frame's own 6 MB. The digest is as it was."""
    path = tmp_path / "hd.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (1920, 1080))
    noise = np.random.default_rng(7).integers(0, 255, (1080, 1920, 3), np.uint8)
    for _ in range(2):
        writer.write(noise)
    writer.release()
    source = VideoSource(str(path), 10.0)
    try:
        tracemalloc.start()
        try:
            key = source.footage_key()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        frame = next(source.frames()).image  # (the first frame, grabbed ahead for the key)
    finally:
        source.capture.release()
    assert key is not None and key[2] == hashlib.sha1(frame.tobytes()).hexdigest() + str(frame.shape)
    assert peak < 1.5 * frame.nbytes, (peak, frame.nbytes)


def test_a_nodes_file_replaced_while_its_reader_was_killed_queues_the_new_files_every_frame(redis_url, tmp_path):
    """The node's camera: a file played in real time, replaced in place by other footage of the same length
    and first frame, its reader then killed. The new file's frames are queued from its first, under new
    frame ids (the old code queued its frames from where the reader was killed: the rest never read)."""
    from common.config import Settings
    from common.metrics import Metrics
    from common.queues import connect_redis
    from ingest.cameras import CameraConfig
    from ingest.node import IngestNode
    from tests.ingest.helpers import queued_frames

    clip = clip_of(tmp_path / "clip.avi", 40, level_a)  # 4 s at 10 frames/s
    other = clip_of(tmp_path / "other.avi", 40, level_b)
    connection = connect_redis(redis_url)
    camera = CameraConfig(id="rec", source=str(clip), sample_fps=10)
    node = IngestNode([camera], Settings.load({}, redis_url=redis_url), connection, connection, Metrics(), None)
    runner, reader = node_reading_two_seconds(node)
    try:
        replace_with(clip, other)
        os.kill(reader, signal.SIGKILL)
        runner.join(30)
    finally:
        node.stop.set()
        runner.join(30)
    assert not runner.is_alive(), "the node did not end"
    frames = queued_frames(connection)
    indexes = [frame.frame_index for frame in frames]
    reached = len(indexes) - 40
    assert 0 < reached < 40 and indexes == list(range(reached)) + list(range(40)), indexes
    assert len({frame.frame_id for frame in frames}) == len(frames), [frame.frame_id for frame in frames]


def test_a_file_replaced_between_its_fingerprint_and_its_first_frame_matches_no_pass(tmp_path):
    """The fingerprint is taken before the reader opens the file, the first frame after: a clip rotated in
    between (same length, same black first frame) gave a key of the old file's fingerprint and the new file's
    frames, taken for the pass cut short and read on from the frame reached (a review). The fingerprint is
    taken again after the first frame: one that changed matches no pass, and the file is read from its start."""
    clip = clip_of(tmp_path / "clip.avi", 30, level_a)
    cut_short = VideoSource(str(clip), 10.0)  # the pass cut short, on A
    reopened = VideoSource(str(clip), 10.0)  # reopened: its fingerprint taken (A's) ...
    try:
        before = cut_short.footage_key()
        replace_with(clip, clip_of(tmp_path / "other.avi", 30, level_b))  # ... then B rotated into its place
        after = reopened.footage_key()
        assert before is not None and after is not None
        assert after[:3] == before[:3]  # the same length and first frame: only the fingerprint tells them apart
        assert after[3] != before[3] and after[3].startswith(before[3] + ">")
    finally:
        cut_short.capture.release()
        reopened.capture.release()

"""Frame sources and their start-up check: sampling, bad files and folders, malformed URLs, masked
credentials in every message."""

import os
import struct
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from common.credentials import mask_url
from common.errors import InputError
from ingest.capture_process import IsolatedCapture
from ingest.frame_source import SampledFrame, UnreadFrame
from ingest.source_checks import check_source
from ingest.sources import ImageFolderSource, open_source
from ingest.video_source import VideoSource
from tests.helpers import served_video
from tests.ingest.mkv import write_mjpeg_mkv


def test_video_is_sampled_at_the_set_rate(demo_clip):
    path, truth = demo_clip
    source = open_source(str(path), sample_fps=5.0)
    assert isinstance(source, VideoSource)
    frames = list(source.frames())
    total = len(truth["boxes"])
    assert len(frames) == source.expected_frames == total // 2  # a 10 fps clip sampled at 5 fps
    assert [f.index for f in frames[:3]] == [0, 2, 4]
    assert frames[1].source_time_s == pytest.approx(0.2)
    assert source.failures == []


@pytest.mark.parametrize("seconds_per_frame", [0.0, 0.05])
def test_a_video_served_over_http_is_footage_sampled_and_dated_by_its_timestamps(demo_clip, seconds_per_frame):
    """A URL stating its frame count (a recording served over http://, an NVR's export) was taken for a
    live stream: sampled and dated by how fast it was read (a review: 1 frame of a 12 s clip read at
    once, 120 frames dated over 36 s read at 0.3 s a frame). It is footage: the same frames as the file,
    at the same times, however fast it is read."""
    path, _ = demo_clip
    on_disk = [(f.index, round(f.source_time_s, 3)) for f in open_source(str(path), sample_fps=5.0).frames()]
    with served_video(path) as (url, _):
        source = open_source(url, sample_fps=5.0)
        assert isinstance(source, VideoSource) and source.is_stream and not source.is_live
        assert source.expected_frames == len(on_disk) == 60 and not source.dates_back
        served = []
        for frame in source.frames():
            served.append((frame.index, round(frame.source_time_s, 3)))
            time.sleep(seconds_per_frame)  # a pipeline this slow a frame
    assert served == on_disk and source.failures == []


def test_image_folder_reports_unreadable_images(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((20, 30, 3), np.uint8))
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(tmp_path / "c.png"), np.zeros((20, 30, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    source = open_source(str(tmp_path), sample_fps=2.0)
    assert isinstance(source, ImageFolderSource)
    frames = list(source.frames())
    assert [f.index for f in frames] == [0, 2] and frames[1].source_time_s == 1.0
    assert len(source.failures) == 1 and "b.jpg" in source.failures[0]


def test_an_image_folders_entries_named_as_images_that_are_not_read_are_named_in_a_warning(tmp_path, caplog):
    """A FIFO or a folder named *.jpg is no image of the folder (reading a FIFO would block the camera): it was
    left out without a word (a review). The camera's log names them."""
    import logging

    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((20, 30, 3), np.uint8))
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "upload.png").mkdir()
    (tmp_path / "notes.txt").write_text("not named as an image: passed over unsaid")
    with caplog.at_level(logging.WARNING, logger="ingest.sources"):
        source = open_source(str(tmp_path), sample_fps=2.0)
    assert [frame.index for frame in source.frames()] == [0]
    (said,) = [record.getMessage() for record in caplog.records]
    assert "2 entries named as images" in said and "'pipe.jpg'" in said and "'upload.png'" in said
    assert "notes.txt" not in said


def test_two_links_to_one_image_are_two_frames_and_a_plain_file_keeps_its_frame_id(tmp_path):
    """Frame ids come from the file's fingerprint; links to one image once shared it (one went unrecorded)."""
    import hashlib

    from ingest.frame_source import file_tag

    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.zeros((20, 30, 3), np.uint8))
    (tmp_path / "b.jpg").symlink_to(image)
    (tmp_path / "c.jpg").symlink_to("a.jpg")
    tags = [f.file_tag for f in open_source(str(tmp_path), sample_fps=2.0).frames()]
    assert len(tags) == len(set(tags)) == 3
    status = image.stat()  # a plain file's id as before: the folders it was read from are not read again
    identity = f"{image.resolve()}|{status.st_size}|{status.st_mtime_ns}"
    assert file_tag(image) == hashlib.sha1(identity.encode()).hexdigest()[:12]
    (tmp_path.parent / f"{tmp_path.name}-via").symlink_to(tmp_path)  # the folder reached through a link
    assert file_tag(tmp_path.parent / f"{tmp_path.name}-via" / "a.jpg") == file_tag(image)


def test_truncated_video_ends_early_with_a_warning(tmp_path):
    whole, cut = tmp_path / "whole.avi", tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(20):
        writer.write(np.full((240, 320, 3), i * 10, np.uint8))
    writer.release()
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    source = open_source(str(cut), sample_fps=10.0)
    frames = list(source.frames())
    assert 0 < len(frames) < 20
    assert len(source.failures) == 1 and "ended early" in source.failures[0]


def make_bad(tmp_path, kind):
    if kind == "missing":
        return str(tmp_path / "nope.mp4")
    if kind == "empty-file":
        (tmp_path / "empty.mp4").write_bytes(b"")
        return str(tmp_path / "empty.mp4")
    if kind == "corrupt":
        (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
        return str(tmp_path / "corrupt.mp4")
    if kind == "empty-folder":
        (tmp_path / "frames").mkdir()
        return str(tmp_path / "frames")
    return "rtsp://127.0.0.1:9/unreachable"


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "does not exist"),
        ("empty-file", "is empty"),
        ("corrupt", "cannot open video|no frame could be decoded"),
        ("empty-folder", "holds no images"),
        ("unreachable", "cannot connect to stream"),
    ],
)
def test_bad_sources_are_input_errors(tmp_path, kind, message):
    with pytest.raises(InputError, match=message):
        source = open_source(make_bad(tmp_path, kind), sample_fps=5.0)
        list(source.frames())


def test_sample_rate_must_be_positive(demo_clip):
    with pytest.raises(InputError, match="sample rate must be positive"):
        open_source(str(demo_clip[0]), sample_fps=0)


def write_video(path: Path, fourcc: str, frames: int = 20) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), 10, (160, 120))
    for i in range(frames):
        writer.write(np.full((120, 160, 3), (i * 6) % 256, np.uint8))
    writer.release()
    return path


def garble_mjpeg_frames(path: Path) -> None:
    """Zero every JPEG payload of an MJPG AVI, keeping its headers and index: it opens, no frame decodes."""
    data = bytearray(path.read_bytes())
    start = 0
    while (chunk := data.find(b"00dc", start)) != -1:
        size = int.from_bytes(data[chunk + 4 : chunk + 8], "little")
        if data[chunk + 8 : chunk + 10] == b"\xff\xd8":
            data[chunk + 8 : chunk + 8 + size] = bytes(size)
        start = chunk + 4
    path.write_bytes(bytes(data))


def make_unusable(tmp_path: Path, kind: str) -> str:
    """A source of the given kind that can never give a frame."""
    if kind == "missing":
        return str(tmp_path / "nope.mp4")
    if kind == "zero-bytes":
        (tmp_path / "empty.mp4").write_bytes(b"")
        return str(tmp_path / "empty.mp4")
    if kind in ("truncated-mp4", "truncated-avi"):
        suffix, fourcc = ("mp4", "mp4v") if kind == "truncated-mp4" else ("avi", "MJPG")
        whole = write_video(tmp_path / f"whole.{suffix}", fourcc)
        cut = tmp_path / f"cut.{suffix}"
        cut.write_bytes(whole.read_bytes()[:2048])
        return str(cut)
    if kind == "frames-undecodable":
        garble_mjpeg_frames(video := write_video(tmp_path / "garbled.avi", "MJPG"))
        return str(video)
    if kind == "random-bytes":
        (tmp_path / "random.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
        return str(tmp_path / "random.mp4")
    if kind == "text-file":
        (tmp_path / "notes.mp4").write_text("not a video\n")
        return str(tmp_path / "notes.mp4")
    if kind in ("empty-folder", "folder-without-images"):
        (folder := tmp_path / "frames").mkdir()
        if kind == "folder-without-images":
            (folder / "notes.txt").write_text("no images here")
            (folder / "sub.jpg").mkdir()
        return str(folder)
    if kind == "fifo":
        os.mkfifo(tmp_path / "pipe")
        return str(tmp_path / "pipe")
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "source .*nope.mp4 does not exist"),
        ("zero-bytes", r"video .*empty.mp4 is empty \(0 bytes\)"),
        ("truncated-mp4", "cannot open video .*cut.mp4"),
        ("truncated-avi", "cannot open video .*cut.avi"),
        ("frames-undecodable", r"no frame could be decoded from .*garbled.avi \(truncated or corrupt video\)"),
        ("random-bytes", "cannot open video"),
        ("text-file", "cannot open video"),
        ("empty-folder", "image folder .*frames holds no images"),
        ("folder-without-images", "image folder .*frames holds no images"),
        ("fifo", "is neither a regular file nor a folder"),
    ],
)
def test_check_source_refuses_files_that_can_never_work(tmp_path, kind, message):
    with pytest.raises(InputError, match=message) as refused:
        check_source(make_unusable(tmp_path, kind))
    assert "\n" not in str(refused.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_check_source_refuses_unreadable_files_and_folders(tmp_path, demo_clip):
    video = tmp_path / "clip.mp4"
    video.write_bytes(demo_clip[0].read_bytes())
    video.chmod(0)
    with pytest.raises(InputError, match="video .*clip.mp4 cannot be read: Permission denied"):
        check_source(str(video))
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.zeros((20, 30, 3), np.uint8))
    folder.chmod(0)
    try:
        with pytest.raises(InputError, match="image folder .*frames cannot be listed: Permission denied"):
            check_source(str(folder))
    finally:
        folder.chmod(0o755)


def test_check_source_accepts_what_can_work(tmp_path, demo_clip):
    check_source(str(demo_clip[0]))
    check_source(str(write_video(tmp_path / "clip.avi", "MJPG")))
    whole = write_video(tmp_path / "long.avi", "MJPG", frames=40)
    (tmp_path / "cut.avi").write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    check_source(str(tmp_path / "cut.avi"))  # truncated late: its first frames decode; sampling reports the end
    (folder := tmp_path / "frames").mkdir()
    cv2.imwrite(str(folder / "a.PNG"), np.zeros((20, 30, 3), np.uint8))
    check_source(str(folder))


@pytest.mark.parametrize(
    "uri",
    ["rtsp://admin:hunter2@127.0.0.1:9/unreachable", "http://10.255.255.1/mjpeg", "udp://@:1234", "RTSPS://cam/s"],
)
def test_check_source_does_not_open_streams(uri):
    check_source(uri)  # a live camera may be down at start: only the form is checked


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("rtsp//admin:hunter2@10.0.0.5/s1", r"source rtsp//admin:\*\*\*@10.0.0.5/s1 looks like a malformed rtsp URL"),
        ("rtsp:/admin:hunter2@10.0.0.5/s1", r"source rtsp:/admin:\*\*\*@10.0.0.5/s1 looks like a malformed rtsp URL"),
        ("http:admin:hunter2@cam/mjpeg", "looks like a malformed http URL"),
        # a typo away from the broken forms mask_url parses (a fuzz test's find: shown whole)
        ("rtsp:!//admin:hunter2@10.0.0.5/s1", r"source rtsp:!//admin:\*\*\*@10.0.0.5/s1 looks like a malformed"),
        ("rtsp//x:y:hunter2@a@10.0.0.5/s1", r"source rtsp//x:\*\*\*@10.0.0.5/s1 looks like a malformed"),
        # typos that are no URL at all: taken for files that do not exist, and shown masked
        ("rtsp!://admin:hunter2@10.0.0.5/s1", r"source rtsp!://admin:\*\*\*@10.0.0.5/s1 does not exist"),
        ("xrtsp//admin:hunter2@10.0.0.5/s1", r"source xrtsp//admin:\*\*\*@10.0.0.5/s1 does not exist"),
        ("ftp://admin:hunter2@10.0.0.5/clip.mp4", r"ftp://admin:\*\*\*@10.0.0.5/clip.mp4: unsupported URL scheme"),
        ("rtsp://admin:hunter2@/s1", r"rtsp://admin:\*\*\*@/s1 has no host"),
        ("rtsp://admin:hunter2@cam:70000/s1", "not a valid URL"),
        ("", "source is empty"),
        ("clip.mp4 ", "leading or trailing whitespace"),
        ("clip\x00.mp4", "contains control characters"),
        ("rtsp://admin:hunter2 x@cam/s1", "stream URL source contains whitespace"),  # its password unmaskable
        ("rtsp:/admin:hunter2 x@cam/s1", "stream URL source contains whitespace"),
        ("rtsp://admin:hunter2 x@cam/s1 ", "stream URL source contains whitespace"),  # before the checks that quote it
        ("rtsp://admin:hunter2\tx@cam/s1", "stream URL source contains whitespace"),
    ],
)
def test_check_source_refuses_malformed_urls_with_the_password_masked(uri, message):
    with pytest.raises(InputError, match=message) as refused:
        check_source(uri)
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/s1", "rtsp://admin:***@10.0.0.5:554/s1"),
        ("rtsp://admin:hun/ter2@10.0.0.5/s1", "rtsp://admin:***@10.0.0.5/s1"),
        ("rtsp://admin:hun@ter2@10.0.0.5/s1", "rtsp://admin:***@10.0.0.5/s1"),
        ("rtsp://admin@site:hunter2@10.0.0.5/s1", "rtsp://admin@site:***@10.0.0.5/s1"),  # a raw @ in the user
        ("http://cam/snap.cgi?user=admin&pwd=hunter2", "http://cam/snap.cgi?user=admin&pwd=***"),
        ("http://cam/video?token=hunter2&ch=1", "http://cam/video?token=***&ch=1"),
        ("rtsp:/admin:hunter2@10.0.0.5/s1", "rtsp:/admin:***@10.0.0.5/s1"),
        ("rtsp//admin:hunter2@10.0.0.5/s1", "rtsp//admin:***@10.0.0.5/s1"),
        ("http:admin:hunter2@cam/mjpeg", "http:admin:***@cam/mjpeg"),
        ("rtsp://10.0.0.5/s1", "rtsp://10.0.0.5/s1"),
        ("/videos/gate@night.mp4", "/videos/gate@night.mp4"),
        ("gate:2024@night.mp4", "gate:2024@night.mp4"),
    ],
)
def test_sources_are_shown_with_passwords_masked_even_when_malformed(uri, shown):
    assert mask_url(uri) == shown == mask_url(shown)


def test_open_source_refuses_a_malformed_url_without_showing_it():
    with pytest.raises(InputError, match="contains whitespace") as refused:
        open_source("rtsp://admin:hunter2 x@127.0.0.1:9/s1", sample_fps=5.0)
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    "uri",
    [
        "rtsp://admin:hunter2@127.0.0.1:9/s1",
        "rtsps://127.0.0.1:9/hunter2UniFiToken?enableSrtp",  # a UniFi Protect camera: its path is its token
        "rtsp://127.0.0.1:9/cam/realmonitor?channel=1&authbasic=aHVudGVyMg==hunter2",  # Dahua
        "rtmp://127.0.0.1:9/live/hunter2StreamKey",  # an RTMP path's stream key
        "http://127.0.0.1:9/video.mjpg?wmsAuthSign=hunter2",  # Wowza
    ],
)
def test_an_unreachable_stream_is_shown_by_its_host_and_port_only(uri):
    """Masking knew user:password and the query's usual names only: a token in the path, or in a query
    parameter of a name it did not know, was shown in the error, and logged at every reconnection (a
    review). A stream is now shown by its scheme, host and port."""
    with pytest.raises(InputError) as refused:
        open_source(uri, sample_fps=5.0)
    scheme = uri.split(":", 1)[0]
    assert str(refused.value) == f"cannot connect to stream: {scheme}://127.0.0.1:9/…"
    assert "hunter2" not in str(refused.value) and "admin" not in str(refused.value)


def test_check_source_reports_a_read_refused_by_the_system(tmp_path, demo_clip, monkeypatch):
    """The same refusals as for a file or folder without permission, where the tests run as root."""
    video = tmp_path / "clip.mp4"
    video.write_bytes(demo_clip[0].read_bytes())
    folder = tmp_path / "frames"
    folder.mkdir()

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    monkeypatch.setattr(Path, "iterdir", refuse)
    with pytest.raises(InputError, match="video .*clip.mp4 cannot be read: Permission denied"):
        check_source(str(video))
    with pytest.raises(InputError, match="image folder .*frames cannot be listed: Permission denied"):
        check_source(str(folder))


def test_an_entry_that_cannot_be_looked_at_is_an_unread_frame_not_a_failed_camera(tmp_path):
    """A link whose target cannot be looked at (its name too long here; a folder the node may not enter,
    for a non-root node) made the folder's listing raise: the camera failed, every image unread."""
    folder = make_folder(tmp_path, 0)
    (folder / "000.jpg").symlink_to("a" * 300)  # stat: File name too long, as root too
    check_source(str(folder))
    samples = list(ImageFolderSource(str(folder), 5.0).samples())
    assert [type(s) for s in samples] == [UnreadFrame, SampledFrame]
    assert isinstance(samples[0], UnreadFrame) and "File name too long" in samples[0].detail


def test_a_source_keeps_a_bounded_list_of_failures_and_counts_them_all(tmp_path):
    from ingest.frame_source import MAX_FAILURES_KEPT

    source = ImageFolderSource(str(make_folder(tmp_path, MAX_FAILURES_KEPT + 5)), 5.0)
    assert list(source.frames())[0].index == MAX_FAILURES_KEPT + 5  # the unreadable ones skipped
    assert len(source.failures) == MAX_FAILURES_KEPT and source.failure_count == MAX_FAILURES_KEPT + 5


def make_folder(tmp_path: Path, broken: int) -> Path:
    folder = tmp_path / "shots"
    folder.mkdir()
    for index in range(broken):
        (folder / f"{index:03d}.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(folder / "999.jpg"), np.full((40, 60, 3), 120, np.uint8))
    return folder


def test_a_video_stating_frames_over_the_pixel_limit_is_refused_before_any_frame_is_decoded(demo_clip):
    """Its width and height are known once it is opened: a 3 MB video of 16000 x 16000 frames took
    1.9 GB a frame to find each one too large (three cameras on it: an ingest node past 5 GB)."""
    from ingest.source_checks import check_video_file

    limit = 1280 * 720 - 1
    expected = "has frames of 1280x720 pixels, more than the limit of 921599"
    with pytest.raises(InputError, match=expected):
        open_source(str(demo_clip[0]), sample_fps=5.0, max_pixels=limit)
    with pytest.raises(InputError, match=expected):
        check_video_file(demo_clip[0], "clip.mp4", max_pixels=limit)
    check_video_file(demo_clip[0], "clip.mp4", max_pixels=limit + 1)


def test_video_frames_larger_than_the_video_stated_are_unread_and_noted(demo_clip):
    """A frame decoded over the limit although the video stated frames within it when opened (here the
    limit lowered after opening): each sampled one is yielded as too large, none as a frame."""
    source = open_source(str(demo_clip[0]), sample_fps=5.0)
    source.max_pixels = 1280 * 720 - 1
    samples = list(source.samples())
    assert len(samples) == source.expected_frames and samples[1].index == 2
    assert {(s.problem, s.detail) for s in samples} == {("too_large", "1280x720 pixels, more than the limit of 921599")}
    assert source.failure_count == len(samples) and "frame 0 of " in source.failures[0]


def slow_header_video(path: Path, seconds_per_frame: int, frames: int = 5) -> Path:
    """A real MJPEG AVI whose stream header states one frame per `seconds_per_frame` (dwScale/dwRate)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for index in range(frames):
        writer.write(np.full((48, 64, 3), 40 * index, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    header = data.index(b"strh") + 8
    struct.pack_into("<II", data, header + 20, seconds_per_frame, 1)  # dwScale, dwRate: rate = 1 / scale
    main_header = data.index(b"avih") + 8
    struct.pack_into("<I", data, main_header, 0xFFFFFFFF)  # dwMicroSecPerFrame: no rate there either
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(("seconds_per_frame", "usable"), [(1_000_000_000, False), (7200, False), (600, True)])
def test_a_video_stating_under_a_frame_an_hour_states_no_usable_rate(tmp_path, seconds_per_frame, usable):
    """A header stating 1e-9 frames/s dated the second frame 31 years on: a camera played in real time
    waited for it, and recorded footage was dated past the year 9999 (its camera failed with a frame
    unrecorded). Under a frame an hour the frames are timed at the sample rate, as for no rate at all."""
    video = slow_header_video(tmp_path / "slow.avi", seconds_per_frame)
    source = open_source(str(video), sample_fps=5.0)
    assert source.source_fps == pytest.approx(1 / seconds_per_frame if usable else 0.0)
    times = [frame.source_time_s for frame in source.samples()]
    assert times == pytest.approx([index * (seconds_per_frame if usable else 0.2) for index in range(5)])


class FailingRetrieve:
    """The real capture of a real video, except that decoding the chosen frames fails after their
    packets were grabbed: FFmpeg skips a corrupt packet inside grab(), so no file reaches this path,
    which a decoder running out of memory or a hardware decoder's fault takes."""

    def __init__(self, capture: IsolatedCapture, failing: set[int]) -> None:
        self.capture, self.failing, self.grabbed = capture, failing, -1

    @property
    def ended_because(self) -> str | None:
        return self.capture.ended_because

    def grab(self) -> bool:
        self.grabbed += 1
        return self.capture.grab()

    def get(self, prop: int) -> float:
        return float(self.capture.get(prop))

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        ok, image = self.capture.retrieve()
        return (False, None) if self.grabbed in self.failing else (ok, image)

    def release(self) -> None:
        self.capture.release()


def test_a_video_frame_that_does_not_decode_is_unread_and_noted_and_sampling_goes_on(demo_clip):
    source = open_source(str(demo_clip[0]), sample_fps=5.0)
    assert isinstance(source, VideoSource)
    source.capture = FailingRetrieve(source.capture, {2, 3, 6})  # 3 is not sampled: its failure is never seen
    samples = list(source.samples())
    assert len(samples) == source.expected_frames and [s.index for s in samples[:5]] == [0, 2, 4, 6, 8]
    unread = [s for s in samples if isinstance(s, UnreadFrame)]
    assert unread == [UnreadFrame(2, pytest.approx(0.2), "undecodable", "undecodable video frame"),
                      UnreadFrame(6, pytest.approx(0.6), "undecodable", "undecodable video frame")]  # fmt: skip
    assert all(isinstance(s, SampledFrame) and s.image.shape == (720, 1280, 3) for s in samples if s not in unread)
    assert source.failure_count == 2 and "frame 2 of " in source.failures[0] and "undecodable" in source.failures[0]


def test_a_video_whose_every_frame_fails_to_decode_is_an_input_error(demo_clip):
    source = open_source(str(demo_clip[0]), sample_fps=5.0)
    source.capture = FailingRetrieve(source.capture, set(range(10_000)))
    with pytest.raises(InputError, match=r"no frame could be decoded from .* \(corrupt or empty video\)"):
        list(source.samples())


def test_a_video_file_stating_no_usable_frame_rate_is_sampled_whole_not_by_the_wall_clock(tmp_path, caplog):
    """Its header says 100,000 frames/s (or 0): its frames were timed by the wall clock while decoding,
    so how many were sampled depended on the machine's speed (1 of 30 here), and sightings' times were
    wrong. Now every frame is sampled, timed at the sample rate, with a warning."""
    path = tmp_path / "odd.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (160, 120))
    for i in range(30):
        writer.write(np.full((120, 160, 3), i * 8, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())  # the stream header's rate (after fccType, handler, flags,
    rate = data.find(b"strh") + 8 + 24  # priority, language, initial frames, scale): 10 -> 100,000
    assert struct.unpack("<I", data[rate : rate + 4]) == (10,)
    data[rate : rate + 4] = struct.pack("<I", 100_000)
    path.write_bytes(bytes(data))
    assert cv2.VideoCapture(str(path), cv2.CAP_FFMPEG).get(cv2.CAP_PROP_FPS) == 100_000
    source = open_source(str(path), sample_fps=5.0)
    samples = list(source.samples())
    assert [s.index for s in samples] == list(range(30)) and samples[-1].source_time_s == 29 / 5.0
    assert "states no usable frame rate" in caplog.text and source.failure_count == 0  # warned, not an unread frame


class StallingStream:
    """A capture of a 25 fps stream that stalls for a second after frame 10, then hands over the frames
    it buffered meanwhile all at once, and goes on."""

    def __init__(self) -> None:
        self.arrivals = iter([i * 0.04 for i in range(11)] + [1.4] * 25 + [1.4 + i * 0.04 for i in range(1, 26)])
        self.now = 0.0  # the clock the source reads (`monotonic`), however often: each grab moves it to its arrival
        self.ended_because = None

    def monotonic(self) -> float:
        return self.now

    def grab(self) -> bool:
        arrival = next(self.arrivals, None)
        if arrival is None:
            return False
        self.now = arrival
        return True

    def retrieve(self) -> tuple[bool, np.ndarray]:
        return True, np.zeros((8, 8, 3), np.uint8)

    def get(self, _: int) -> float:
        return -1.0  # no timestamps (as an HTTP MJPEG stream's cannot be trusted): sampled as it arrives

    def release(self) -> None:
        pass


def test_a_stream_that_stalls_is_not_sampled_twice_at_once_after_it(tmp_path, monkeypatch):
    """After a stall the next sample came at the stall's end, and the burst that followed gave the next
    frame at once: two samples 0 ms apart, the second a second late. At most one frame per half interval."""
    from types import SimpleNamespace

    stream = StallingStream()
    source = VideoSource(str(write_video(tmp_path / "any.avi", "MJPG")), sample_fps=5)
    source.capture.release()
    source.capture, source.is_stream, source.is_live = stream, True, True  # type: ignore[assignment]
    monkeypatch.setattr("ingest.video_source.time", SimpleNamespace(monotonic=stream.monotonic))
    times = [frame.source_time_s for frame in source.samples()]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.1 - 1e-9, times
    assert 1.4 in times and len(times) == 3 + 1 + 5  # 0, 0.2, 0.4; the burst once; then every 0.2 s


@pytest.mark.parametrize("sample_fps", [3.0, 7.0, 10.0, 100.0])
def test_a_videos_positions_hold_the_frames_it_samples_and_those_passed_over_are_not_decoded(demo_clip, sample_fps):
    """A restarted node asks the frames log about each frame a file may give (`positions`: every frame,
    as which are sampled hangs on their timestamps), and passes over those finished before: a frame
    passed over is neither yielded nor decoded, its time is kept (`passed`); the rest are sampled as
    before."""
    positions = list(open_source(str(demo_clip[0]), sample_fps).positions())
    sampled = list(open_source(str(demo_clip[0]), sample_fps).samples())
    assert [index for index, _ in positions] == list(range(len(positions))) and len(positions) == 120  # 12 s at 10
    assert {f.index for f in sampled} <= {index for index, _ in positions}
    source = open_source(str(demo_clip[0]), sample_fps)
    source.passed_over = lambda index, tag: index % 2 == 0
    decoded = []
    real_retrieve = source.retrieve
    source.retrieve = lambda index, time_s: decoded.append(index) or real_retrieve(index, time_s)  # type: ignore[method-assign]
    assert [f.index for f in source.samples()] == decoded == [f.index for f in sampled if f.index % 2]
    assert source.passed == {(f.index, None): f.source_time_s for f in sampled if f.index % 2 == 0}


def test_a_video_stating_more_frames_than_a_day_of_footage_is_not_resumed(demo_clip):
    """A header stating 400 million frames made the positions a restarted node asks about take minutes
    and gigabytes at every start (a review): past a day of footage it is read again whole instead."""
    source = open_source(str(demo_clip[0]), 5.0)
    source.frame_count = 400_000_000  # type: ignore[attr-defined]
    assert list(source.positions()) == []
    source.source_fps, source.frame_count = 1000.0, 2_600_001  # type: ignore[attr-defined]  # 43 min at 1000/s
    assert list(source.positions()) == []  # every frame asked about: over a day's at 30 frames/s


@pytest.mark.parametrize(
    ("times", "dated"),
    [  # a 10-minute gap kept; the rate halved after 1 s; two recordings joined (back to 0); a broken stamp
        (
            [0.1 * i for i in range(5)] + [600 + 0.1 * i for i in range(5)],
            [0, 0.2, 0.4, 600, 600.1, 600.3],
        ),  # half an interval on after a hole
        (
            [0.1 * i for i in range(10)] + [1 + 0.2 * i for i in range(5)],
            [0, 0.2, 0.4, 0.6, 0.8, 1, 1.2, 1.4, 1.6, 1.8],
        ),
        ([0.1 * i for i in range(6)] * 2, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        ([0, 0.1, 0.2, 1e6, 1e6 + 0.1, 1e6 + 0.2], [0, 0.2, 0.4]),  # 11 days on: no recording's gap
        ([5e6 + 0.1 * i for i in range(6)], [0, 0.2, 0.4]),  # the first frame stamped 2 months in: from 0
    ],
)
def test_a_video_files_frames_are_dated_and_sampled_by_their_own_timestamps(tmp_path, times, dated):
    """At 5 frames/s from an MKV stating 10: a gap, a change of rate, timestamps going back where two
    recordings were joined (dated on a frame's time after the last, and on from there), and a jump of
    11 days (a broken stamp: dated a frame's time on). After a hole the next frame is sampled half an
    interval on, as after a stream's stall."""
    frames = [np.full((48, 64, 3), 20 * (i % 12), np.uint8) for i in range(len(times))]
    video = write_mjpeg_mkv(tmp_path / "recorded.mkv", frames, times, fps=10)
    source = open_source(str(video), 5.0)
    assert [f.source_time_s for f in source.samples()] == pytest.approx(dated, abs=1e-3)
    whole = max(times) < 1000  # ends at its stated end (an MKV states duration x rate frames): no "ended early"
    assert (source.failures == []) is whole, source.failures


def test_what_is_sampled_plays_at_the_slower_of_the_two_rates(demo_clip, tmp_path):
    """`alpr run` wrote a 10 frames/s clip sampled at --fps 25 as a 25 frames/s video: it played 2.5 times
    too fast (a review)."""
    path, truth = demo_clip
    assert open_source(str(path), sample_fps=25.0).sampled_fps == truth["fps"] == 10
    assert open_source(str(path), sample_fps=5.0).sampled_fps == 5.0
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((20, 30, 3), np.uint8))
    assert open_source(str(tmp_path), sample_fps=2.0).sampled_fps == 2.0


@pytest.mark.parametrize(
    ("status", "location", "said"),
    [
        (302, "http://user:Zq9pw@127.0.0.1:9/snap.jpg?token=Zq9tok", "redirects to http://127.0.0.1:9: put the URL"),
        (301, "https://other.example:8443/mjpeg", "redirects to https://other.example:8443: put the URL"),
        (307, "/moved/snap.jpg?token=Zq9tok", "redirects to http://127.0.0.1:{port}: put the URL"),  # its own host
        (404, None, "cannot connect to stream: http://127.0.0.1:{port}/…"),
    ],
)
def test_a_camera_answering_a_redirect_is_said_so_by_where_it_points(status, location, said):
    """FFmpeg follows no redirect (max_redirects 0) and says nothing of one: such a camera was reported only
    as "cannot connect to stream" (a review). Now one request that follows nothing asks it, and its answer
    is said by the origin it points to, without the credentials, path or query the Location carries."""
    import http.server

    from tests.helpers import http_server

    class Camera(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Camera) as base, pytest.raises(InputError) as refused:
        open_source(f"{base.replace('://', '://admin:Zq9own@')}/snap.jpg", sample_fps=5.0)
    message, port = str(refused.value), base.rsplit(":", 1)[1]
    assert said.format(port=port) in message, message
    if location:
        assert message.startswith(f"the camera http://127.0.0.1:{port}/… redirects to ")
        assert message.endswith("in the cameras file (redirects are not followed)")
    assert "Zq9" not in message and "user" not in message and "admin" not in message

"""Frame sources: a video file, a folder of images or a stream URL, opened with OpenCV and sampled
at a set rate (`open_source`); a folder of images is ImageFolderSource, below, a video file or stream
ingest/video_source.py, what every source is ingest/frame_source.py.
What can be told of a source before it is sampled (its URI's form, the
start-up check `check_source`) is ingest/source_checks.py. Bad input (missing path, corrupt video,
empty folder, malformed or unreachable URL) raises InputError with a one-line message in which a
URL's credentials are masked. A sampled frame that cannot be had (an undecodable image or video frame,
one over the pixel limit) is yielded as an UnreadFrame by `samples()`, so that it is recorded, and
noted in the source's failures: not fatal."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from common import defaults
from common.credentials import mask_url
from common.errors import InputError
from common.text_files import shown_path
from ingest.frame_source import FrameSource, SampledFrame, UnreadFrame, file_tag
from ingest.image_files import UnreadableFrameError, read_image
from ingest.source_checks import IMAGE_SUFFIXES, is_image_entry, is_stream_uri, uri_syntax_problem
from ingest.video_source import VideoSource

log = logging.getLogger(__name__)


EntryKey = tuple[str, int, int, int]
"""An image folder's entry as a WARNING named it (`entry_key`): its name, device, inode and type."""


def entry_key(path: Path) -> EntryKey:
    """What tells an entry from the one named before it: its name and the file it is (replaced, or a FIFO
    made a folder, it is another); one that cannot be looked at, by its name alone."""
    try:
        status = path.lstat()
    except OSError:
        return (path.name, -1, -1, -1)
    return (path.name, status.st_dev, status.st_ino, stat.S_IFMT(status.st_mode))


class ImageFolderSource(FrameSource):
    """Every image of a folder (regular files named by IMAGE_SUFFIXES), in name order, as consecutive
    samples; each is read without blocking and sized from its header before it is decoded. Entries named
    as images that are not read (a FIFO, a folder) are named in a WARNING once: `said`, handed on from
    one opening to the next (a looping camera's, SourceKeeper's), holds those named already, and an entry
    is named again only once it changed (another file under its name) or came back after it went (each
    pass of a looped folder repeated the WARNING: a review)."""

    def __init__(
        self, uri: str, sample_fps: float, max_pixels: int = defaults.MAX_FRAME_PIXELS,
        said: set[EntryKey] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(uri, sample_fps, max_pixels)
        named = [p for p in Path(uri).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        readable = {p: is_image_entry(p) for p in named}
        self.paths = sorted(p for p, read in readable.items() if read)
        passed = {entry_key(p) for p, read in readable.items() if not read}
        said = set() if said is None else said
        if unsaid := sorted(key[0] for key in passed - said):
            # named as images, neither files nor links (a FIFO, a folder): not read, nor left out without a word
            log.warning("image folder %s: %d entries named as images are neither files nor links, not read: %s",
                        mask_url(uri), len(unsaid), ", ".join(repr(name) for name in unsaid[:5]))  # fmt: skip
        said.clear()  # one gone is named again should it come back
        said.update(passed)
        if not self.paths:
            raise InputError(f"image folder {mask_url(uri)} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")

    @property
    def expected_frames(self) -> int:
        return len(self.paths)

    def positions(self) -> Iterator[tuple[int, str | None]]:
        return ((index, file_tag(path)) for index, path in enumerate(self.paths))

    def samples(self) -> Iterator[SampledFrame | UnreadFrame]:
        for index, path in enumerate(self.paths):
            time_s, tag = self.time_of(index), file_tag(path)
            if self.pass_over(index, tag, time_s):
                continue
            try:
                yield SampledFrame(index, time_s, read_image(path, self.max_pixels), tag)
            except UnreadableFrameError as error:
                yield replace(self.unread(index, time_s, error, f"image {mask_url(shown_path(path))}"), file_tag=tag)


def open_source(
    uri: str, sample_fps: float = defaults.SAMPLE_FPS, max_pixels: int = defaults.MAX_FRAME_PIXELS,
    memory_mb: int = defaults.CAPTURE_MEMORY_MB, rtsp_transport: str = "tcp", label: str | None = None,
    said: set[EntryKey] | None = None,
) -> FrameSource:  # fmt: skip
    """The right source for `uri`: a stream URL, an image folder or a video file; frames with more than
    `max_pixels` are not sampled (unread, `too_large`); a video's or stream's decoding holds at most
    `memory_mb`; an RTSP camera is read over its RTSP connection, or as RTP over UDP where `rtsp_transport`
    is "udp" (ingest/ffmpeg_open.py); what its decoder prints reaches stderr under `label` (the camera's id),
    where given; an image folder's entries not read are named in a WARNING but those in `said` (ImageFolderSource).
    A malformed URL is refused (InputError)."""
    if problem := uri_syntax_problem(uri):
        raise InputError(problem)
    if is_stream_uri(uri):
        return VideoSource(uri, sample_fps, max_pixels=max_pixels, memory_mb=memory_mb, rtsp_transport=rtsp_transport,
                           label=label)  # fmt: skip
    path = Path(uri)
    if not path.exists():
        raise InputError(f"source {mask_url(uri)} does not exist")
    if path.is_dir():
        return ImageFolderSource(uri, sample_fps, max_pixels, said)
    if not path.is_file():  # a FIFO or /dev/stdin was "empty"
        raise InputError(f"source {mask_url(uri)} is neither a regular file nor a folder")
    if path.stat().st_size == 0:
        raise InputError(f"video {mask_url(uri)} is empty")
    return VideoSource(uri, sample_fps, max_pixels=max_pixels, memory_mb=memory_mb, label=label)

"""What `alpr run` writes in its --out folder, each file private: the redacted video (checked whole
once released) or numbered frames (`RedactedWriter`), the snapshot of each sighting's best frame
(`Snapshots`), and the refusal of a run whose output would overwrite its own source (`written_over`)."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import cv2
import numpy as np

from common.errors import InputError, OutputError
from common.frame_store import encode_jpeg
from common.private_files import create_private, make_private_folders, refuse_link, unmade_because, write_private
from common.shared_folders import refuse_shared_folder
from common.types import Sighting
from ingest.frame_source import SampledFrame

OUTPUT_JPEG_QUALITY = 95
"""JPEG quality of the redacted frames and snapshots `alpr run` writes (OpenCV's default, as before)."""


class Snapshots:
    """The redacted frames holding the best read of an open sighting, written as the sighting's snapshot
    when it closes (`out/sightings/<sighting id>.jpg`); the others are let go at once."""

    def __init__(self, out_dir: Path | None) -> None:
        self.folder = out_dir / "sightings" if out_dir else None
        if self.folder is not None:  # a link planted there took the snapshots into a folder not made private
            refuse_link(self.folder)
        self.frames: dict[str, np.ndarray] = {}
        self.failures: list[str] = []
        """Snapshots that could not be written (their sightings are logged without one)."""

    def keep(self, frame_id: str, redacted: np.ndarray, wanted: set[str]) -> None:
        if self.folder is not None and frame_id in wanted:
            self.frames[frame_id] = redacted
        for stale in set(self.frames) - wanted:
            del self.frames[stale]

    def write(self, sighting: Sighting) -> str | None:
        image = self.frames.get(sighting.best_frame_id)
        if self.folder is None or image is None:
            return None
        path = self.folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', sighting.sighting_id)}.jpg"
        try:
            make_private_folders(self.folder)
            write_private(path, encode_jpeg(image, OUTPUT_JPEG_QUALITY))
        except OSError as error:  # a full disk lost the sightings themselves, not just their snapshots (a review)
            self.failures.append(f"the snapshot {path} of a sighting was not written: {error.strerror or error}")
            return None
        return str(path.absolute())  # `--out out` logged out/sightings/…: nothing, exported from elsewhere


OUTPUT_NAMES = ("redacted.mp4", "redacted_frames", "sightings")
"""What `alpr run` writes in its --out folder: the redacted video or frames, the sightings' snapshots."""


def written_over(source: Path, out_dir: Path) -> Path | None:
    """The output of a run into `out_dir` that is the file or folder `source` (by its path, a link or a
    hard link) or holds it, if any: `alpr run out/redacted.mp4` replaced its own source with a video of
    its first two frames (a review)."""
    try:
        real = source.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    for name in OUTPUT_NAMES:
        made = out_dir / name
        with contextlib.suppress(OSError):
            if os.path.samefile(made, real) or made.resolve() in real.parents:
                return made
    return None


def make_out_folder(out_dir: Path, what: str, warn: bool = True, made: list[Path] | None = None) -> None:
    """The --out folder made private, where it and every folder above it are this user's or root's and no one
    else may write in them (refuse_shared_folder, which `warn`s of a group it cannot tell), checked again once
    made; OutputError where it cannot be. The folders made are put in `made`, where given (make_private_folders)."""
    refuse_shared_folder(out_dir, what, warn=warn)
    try:
        make_private_folders(out_dir, made)  # redacted frames still show cars, faces and places
    except OSError as error:  # `--out /proc/x`: a bare `FileNotFoundError: [Errno 2] ...` (a review)
        raise OutputError(
            f"--out {out_dir} cannot be made: {unmade_because(error, out_dir)}: name another folder"
        ) from None
    refuse_shared_folder(out_dir, what, warn=False)  # made meanwhile by another user? (a review)


class RedactedWriter:
    """Writes redacted frames: an mp4 for a video source, numbered JPEGs for an image folder."""

    def __init__(self, out_dir: Path, as_frames: bool, fps: float) -> None:
        make_out_folder(out_dir, "the redacted frames", warn=False)  # made before the logs: alpr/run_start.py
        self.out_dir, self.as_frames, self.fps = out_dir, as_frames, fps
        self.video: cv2.VideoWriter | None = None
        self.size_wh = (0, 0)
        self.path = out_dir / ("redacted_frames" if as_frames else "redacted.mp4")
        refuse_link(self.path)  # a folder linked elsewhere took the frames where no one made it private
        self.frames_written = 0

    def write(self, frame: SampledFrame, image: np.ndarray) -> None:
        if self.as_frames:
            make_private_folders(self.path)
            write_private(self.path / f"{frame.index:06d}.jpg", encode_jpeg(image, OUTPUT_JPEG_QUALITY))
            self.frames_written += 1
            return
        size_wh = (image.shape[1], image.shape[0])
        if self.video is None:
            self.size_wh = size_wh
            create_private(self.path)  # the encoder opens it by name: private first, and never through a link
            self.video = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, size_wh)
            if not self.video.isOpened():  # it wrote nothing, and the run said where its output was
                raise InputError(f"the video encoder refused {size_wh[0]}x{size_wh[1]} frames: {self.path} not written")
        self.video.write(image if size_wh == self.size_wh else cv2.resize(image, self.size_wh))
        self.frames_written += 1

    def close(self) -> None:
        """Release the encoder: an mp4's index is written now (a video never released does not play)."""
        if self.video is not None:
            self.video.release()
            self.video = None

    def finish(self) -> Path | None:
        """Close, and the output's path once the video is checked whole; None when no frame was written
        (nothing was made). OpenCV only warns "Failed to write frame": a full disk ended the run with
        exit 0, naming a video that does not play as its output. A video holding fewer frames than were
        written, or whose last frame does not decode, is deleted and an OutputError."""
        self.close()
        if not self.frames_written:
            return None
        if not self.as_frames:
            self.check_video()
        return self.path

    def check_video(self) -> None:
        """OutputError, the file deleted, unless the video reopens with every frame written, the last decoding."""
        capture = cv2.VideoCapture(str(self.path))
        try:
            held = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
            last_decodes = held > 0 and capture.set(cv2.CAP_PROP_POS_FRAMES, held - 1) and capture.read()[0]
        finally:
            capture.release()
        if held == self.frames_written and last_decodes:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if held <= 0:
            found = "does not play"
        elif held != self.frames_written:
            found = f"holds {held} of the {self.frames_written} frames written"
        else:
            found = "does not decode to its last frame"
        raise OutputError(f"the redacted video {self.path} {found} (a full disk?); the partial file was deleted")

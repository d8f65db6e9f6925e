"""`alpr run`: the standalone pipeline on one source (a video, an image folder, a stream URL). The source
named by SOURCE or --source-file, checked before anything opens (its syntax, the RTSP transport, the --out
folder, the SQLite log's: alpr/run_start.py), its camera id (--camera-id, or one made of the
source with no credential in it), then the cores, the logs and the frames; what the run did is printed
with the sightings it saw. alpr/cli.py finds `run` in alpr/commands.py, which imports it from here."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from common.config import Settings
from common.credentials import escape_controls, mask_url, path_digest, shown_source
from common.errors import InputError
from common.file_writers import refuse_if_others_may_change
from common.private_files import unmade_folder
from common.text_files import shown_path

if TYPE_CHECKING:
    from alpr.standalone import RunSummary
    from ingest.frame_source import FrameSource

CAMERA_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
"""A camera id, as the chain's frames carry it."""


def safe_camera_id(name: str) -> str:
    """A camera id made of a file name: other characters become `_` (`my clip` -> `my_clip`)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64].lstrip(".-")
    return cleaned or "camera"


def default_camera_id(source: str) -> str:
    """The camera id `alpr run` gives a source without --camera-id: a file's or folder's name, or a
    stream's host and port, its path and query named by a short digest of them with their credentials
    masked (rtsp://admin:pw@10.0.0.5:554/live/main -> 10.0.0.5_554_p3f9a1c): never the URL's user or
    password, nor a path that holds one (a review: DVRs put `/user=admin&password=…` in the path, UniFi's
    path is its token; copied into the id, they reached the records, a log line and snapshot names).
    Two channels of one recorder (`/ch1`, `/ch2`; `?channel=1`, `?channel=2`) are two cameras."""
    from ingest.source_checks import is_stream_uri

    if not is_stream_uri(source):
        return safe_camera_id(Path(source.rstrip("/")).stem)
    try:
        parts = urlsplit(source)
    except ValueError:  # `rtsp://admin:pw@[::1/live`: a traceback, the password in it, before the source was checked
        raise InputError(f"source {mask_url(source)} is not a valid URL (its host cannot be parsed)") from None
    try:
        port = str(parts.port or "")
    except ValueError:
        port = ""
    name = safe_camera_id("_".join(p for p in (parts.hostname or "", port) if p))
    return f"{name[:56]}_p{digest}" if (digest := path_digest(source)) else name


MAX_SOURCE_FILE_BYTES = 64 * 1024
"""The most a --source-file may hold (a URL is far shorter: the bound keeps a device or a log out)."""


def run_source(source: str | None, source_file: Path | None) -> str:
    """The source `alpr run` reads: SOURCE, or the one line of --source-file (line ends and a byte-order
    mark left out, as the secret files are read), one of the two; InputError otherwise. A file other users
    may read holding a URL with its password is a WARNING (common/readable_urls)."""
    from common.readable_urls import holds_credentials, warn_if_others_may_read_credentials
    from common.text_files import read_text_file

    if (source is None) == (source_file is None):
        raise InputError(
            "name the source to read: SOURCE or --source-file FILE (a URL with a password), one of the two"
        )
    if source_file is None:
        return str(source)
    label = f"--source-file {shown_path(source_file)}"
    text = read_text_file(source_file, MAX_SOURCE_FILE_BYTES, InputError, label)
    refuse_if_others_may_change(source_file, label, "they choose the source read (a camera of theirs)", InputError)
    given = [line.strip() for line in text.splitlines() if line.strip()]
    if len(given) != 1:
        raise InputError(f"--source-file {source_file}: holds {len(given)} lines, expected one: the source")
    if holds_credentials(given[0]):
        warn_if_others_may_read_credentials(source_file, label)
    return given[0]


def run(args: argparse.Namespace, settings: Settings) -> int:
    from alpr.run_start import check_sqlite_log, sqlite_named
    from ingest.ffmpeg_open import rtsp_transport_problem
    from ingest.source_checks import uri_syntax_problem
    from ingest.sources import open_source

    args.source = run_source(args.source, args.source_file)
    if problem := uri_syntax_problem(args.source):  # before a camera id is made of it
        raise InputError(problem)
    if problem := rtsp_transport_problem(args.source, args.rtsp_transport):
        raise InputError(f"--{problem.replace('_', '-', 1)}")
    if args.out is not None and (problem := out_problem(args.source, args.out)):
        raise InputError(problem)
    if not settings.database_url:
        check_sqlite_log(settings.sqlite_path, sqlite_named(args))
    camera_id = args.camera_id or default_camera_id(args.source)
    if not CAMERA_ID.fullmatch(camera_id):
        raise InputError(f"--camera-id must be 1-64 letters, digits and _ . - (not first), got {camera_id[:80]!r}")
    source = open_source(
        args.source, settings.sample_fps, memory_mb=settings.capture_memory_mb, rtsp_transport=args.rtsp_transport,
        label=camera_id,
    )  # fmt: skip
    try:
        return run_opened(args, settings, source, camera_id)
    finally:  # refused after the open (a device, --out, a log): its reader ended (a caller kept it: a review)
        source.close()


def run_opened(args: argparse.Namespace, settings: Settings, source: FrameSource, camera_id: str) -> int:
    """`alpr run` once its source is opened (`run` releases it): cores, --out, the logs, the frames, the summary."""
    from tqdm import tqdm

    from alpr.run_start import made_out_folder, opened_logs, sqlite_named
    from alpr.source_passes import StopSignals
    from alpr.wiring import build_detector, build_pipeline, build_reader

    cores = build_detector(settings), build_reader(settings)  # a device refused: before anything is made
    out_made = made_out_folder(args.out)  # refused, or made before the log (alpr/run_start.py)
    bar = tqdm(
        total=source.expected_frames, unit="frame", disable=True if args.no_progress else None, dynamic_ncols=True
    )

    def on_frame(summary: RunSummary) -> None:
        bar.update(1)
        bar.set_postfix(plates=summary.plates_detected, fps=f"{summary.frames_per_second:.1f}")

    try:
        with opened_logs(settings, out_made, sqlite_named(args)) as (plate_log, sighting_log), StopSignals() as stop:
            pipeline = build_pipeline(settings, cores, plate_log, sighting_log, args.roi)
            summary = pipeline.run(source, camera_id, args.out, on_frame, stop)  # SIGTERM, SIGINT: finished, exit 0
    finally:
        bar.close()
    print_run(summary, settings)
    if not summary.frames and not summary.stopped_by:  # every image unreadable: it said 0 frames and exit 0
        unreadable = summary.failure_count
        raise InputError(f"no frame of {shown_source(args.source)} could be processed ({unreadable} unreadable)")
    print_sightings(summary, settings.ocr_min_confidence)
    if source.is_live and not summary.stopped_by:  # a drop is reconnected (ingest/reconnect.py): only an
        raise InputError(  # error no retry mends ends it so, logged above (it ended with exit 0, no word)
            f"the stream {shown_source(args.source)} ended after {summary.frames} frames and was not reopened (an"
            " error no retry mends is logged above); what was read is logged and written: run it again to go on"
        )
    if not source.is_live and not summary.stopped_by and source.ended_because:  # its reader stopped: the rest
        raise InputError(  # of the file went unread (it warned and exited 0: taken for read whole)
            f"the video {shown_source(args.source)} was not read to its end: {source.ended_because} at frame"
            f" {source.reached}; the {summary.frames} frames sampled before are logged and written"
        )  # one that `ended_early` stays a warning, exit 0: an MKV's, TS's or WebM's frame count is its duration x
    # rate, and a whole file with a longer audio track or a segment's start time reads as cut short (a review)
    return 0


def out_problem(source: str, out: Path) -> str | None:
    """What is wrong with `alpr run`'s --out folder for `source`, before anything is opened: a name that is
    not UTF-8 (the log keeps snapshots' paths as text), a file there (a bare FileExistsError after the
    run), an output that is the source itself (written over)."""
    from alpr.standalone_output import written_over
    from ingest.source_checks import is_utf8

    if not is_utf8(str(out)):
        return f"--out {ascii(str(out))[1:-1][:300]} is not valid UTF-8: name another folder"
    if out.exists() and not out.is_dir():
        return f"--out {out} is a file: name a folder for the redacted output"
    if problem := unmade_folder(out):
        return f"--out {out} cannot be made: {problem}: name another folder"
    if clash := written_over(Path(source), out):
        return f"the source {source} is {clash}, which the run writes: name another --out folder"
    return None


def print_run(summary: RunSummary, settings: Settings) -> None:
    """What the run did and where it went, why it stopped early, and what could not be read. Printed,
    not logged, so no log masking writes out control characters: names from the source (a file in an
    image folder) are escaped here; one named with a line break forged a "0 plates" summary line."""

    where = settings.database_url and "Postgres" or str(settings.sqlite_path)
    if summary.stopped_by:
        print(f"stopped by {summary.stopped_by}: the frames in hand finished, every open sighting logged")
    outside = f" ({summary.plates_outside_roi} outside the ROI, not read)" if summary.plates_outside_roi else ""
    print(
        f"{summary.frames} frames in {summary.seconds:.1f} s ({summary.frames_per_second:.1f} frames/s); "
        f"{summary.plates_detected} plates detected{outside}, {summary.reads_logged} reads logged to {where}"
    )
    if summary.output:  # only what was made: a folder where no frame was written was named before
        print(f"redacted output: {shown_path(summary.output)}")
    if summary.source_errors:  # logged as they came: an outage's first at WARNING, its end at INFO (-v)
        print(f"warning: {summary.source_errors} source errors: the stream dropped, or a reopening failed"
              " (each retried with backoff)")  # fmt: skip
    for failure in summary.failures:
        print(f"warning: {escape_controls(failure)}")
    if more := summary.failure_count - len(summary.failures):
        print(f"warning: ... and {more} more that could not be read")


def print_sightings(summary: RunSummary, min_confidence: float) -> None:
    """The run's vehicle passes with a trusted plate; how many others are in the log."""
    sightings, trusted = summary.sightings, summary.trusted_sightings(min_confidence)
    if trusted:
        start_s = min(s.first_seen_s for s in sightings)
        print(f"\n{len(trusted)} sightings:")
        print(f"{'plate':<10} {'reads':>5} {'confidence':>10} {'first s':>8} {'last s':>7}")
        for s in trusted:
            first_s, last_s = s.first_seen_s - start_s, s.last_seen_s - start_s
            print(f"{s.plate:<10} {s.reads:>5} {s.confidence:>10.3f} {first_s:>8.1f} {last_s:>7.1f}")
    else:
        print("no sighting with a trusted plate")
    if others := len(sightings) - len(trusted):
        print(f"({others} sightings whose plate is below the confidence threshold are in the log, not shown)")

"""What each `alpr` subcommand does, given its parsed arguments and the validated Settings."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar
from urllib.parse import urlsplit

from pydantic import ValidationError

from common.audit import login_name, refused_flag
from common.config import Settings
from common.credentials import escape_controls, mask_url, path_digest, shown_source
from common.errors import ConfigError, InputError
from common.export_record import PlateExport, record_export
from common.file_writers import refuse_if_others_may_change
from common.plate_log import PlateLog, export_csv, open_plate_log
from common.private_files import (
    refuse_link,
    replaced_privately,
    sqlite_side_files,
    unmade_folder,
    write_private,
)
from common.sighting_log import SightingLog, export_sightings_csv, open_sighting_log
from common.sqlite_log import check_run_log
from common.text_files import shown_path

if TYPE_CHECKING:
    from alpr.standalone import RunSummary
    from ingest.frame_source import FrameSource
    from ocr_worker.core import PlateReader


def setup(args: argparse.Namespace, settings: Settings) -> int:
    from alpr.democlip import calibration_frames
    from detector_worker.quantize import RANGES_KEY, recipe_of
    from detector_worker.weights import install_int8, install_models

    torch_path, onnx_path = install_models(settings.model_dir)
    int8_path = install_int8(settings.model_dir, calibration_frames, args.calibrate)  # 20 s if calibrated
    print(f"detector weights: {torch_path}\nONNX export:      {onnx_path}\nint8 model:       {int8_path}"
          f" ({recipe_of(int8_path, RANGES_KEY) or 'calibrated'} ranges)")  # fmt: skip
    return 0


def demo_clip(args: argparse.Namespace, settings: Settings) -> int:
    from alpr.democlip import make_clip

    truth = make_clip(args.output)
    print(f"wrote {args.output} with plates {', '.join(truth['plates'])}")  # type: ignore[arg-type]
    return 0


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


def eval(args: argparse.Namespace, settings: Settings) -> int:  # noqa: A001 - the subcommand's name
    from alpr.eval_report import no_figures, print_unreadable, summary, write_errors
    from alpr.eval_scoring import Outcome
    from alpr.evaluation import evaluate
    from alpr.folds import fold
    from alpr.ground_truth import Sample, named_region
    from alpr.wiring import build_detector, build_reader

    def reader(s: Settings, region: str) -> PlateReader:
        return build_reader(s, region, format_weight=args.format_weight)

    def in_folds(sample: Sample) -> bool:
        return args.folds is None or fold(sample.image.name) in args.folds

    for path in filter(None, (args.json_path, args.errors_path)):  # before the work, not after it
        refuse_link(path)
        if path.is_dir() or not path.parent.is_dir():
            raise ConfigError(f"{path}: name a file in a folder that exists")
        if path.resolve().is_relative_to(args.dataset.resolve()):  # it replaced groundtruth.csv, or a photo
            raise ConfigError(f"{path}: inside the dataset {args.dataset}; write it elsewhere")
    outcomes: dict[str, list[Outcome]] = {}
    unreadable: list[str] = []
    results = evaluate(args.dataset, settings, build_detector, reader, outcomes, in_folds, args.scale, unreadable)
    if not results:  # no image read, or none of the folds asked for: figures of 0.000, as if every read were wrong
        raise no_figures(args.dataset, args.folds, unreadable)
    threshold = settings.ocr_min_confidence
    scaled = f", images scaled by {args.scale:g}" if args.scale != 1 else ""
    print(f"engine {settings.ocr_engine}, detector {settings.detector_backend} imgsz {settings.detector_imgsz}, "
          f"confidence threshold {threshold:g}{scaled}")  # fmt: skip
    width = max(16, *map(len, results))  # a set below another folder is named by its path: openalpr-endtoend/us
    print(f"{'set':<{width}} {'region':<6} {'n':>4} {'det@.5':>7} {'det@.3':>7} {'top1':>6} {'topN':>6} "
          f"{'wrong>thr':>9} {'coverage':>8} {'wrong/acc':>9} {'ms/img':>7}")  # fmt: skip
    for name, r in results.items():
        det50 = "-" if r["detection_recall_iou50"] is None else f"{r['detection_recall_iou50']:.3f}"
        det30 = "-" if r["detection_recall_iou30"] is None else f"{r['detection_recall_iou30']:.3f}"
        wrong = "-" if r["wrong_among_accepted"] is None else f"{r['wrong_among_accepted']:.3f}"
        print(
            f"{name:<{width}} {r['region']:<6} {r['n']:>4} {det50:>7} {det30:>7} {r['exact_top1']:>6.3f} "
            f"{r['exact_topn']:>6.3f} {r['wrong_above_threshold']:>9.3f} {r['coverage']:>8.3f} {wrong:>9} "
            f"{r['ms_per_image']:>7.1f}"
        )
    print("\nreliability (best read's confidence: reads, share exactly right), all sets together:")
    for index, row in enumerate(next(iter(results.values()))["reliability"]):
        reads = sum(r["reliability"][index]["reads"] for r in results.values())
        right = sum(r["reliability"][index]["right"] for r in results.values())
        print(
            f"  {row['confidence']}: {reads:>4} reads, {right / reads:.3f} right"
            if reads
            else f"  {row['confidence']}:    0 reads"
        )
    if any(r["region"] != named_region(Path(name).name) for name, r in results.items()):
        print("\n(a set not named after a region (us, eu, br, any) is read with --region's or ALPR_OCR_REGION's"
              " formats where given, else with those of a region a word of its name names, else us's where its"
              " groundtruth.csv names US states, else with no country's: any)")  # fmt: skip
    print("\ncauses: " + "; ".join(f"{name}: " + ", ".join(f"{k} {v}" for k, v in r["causes"].items())
                                   for name, r in results.items()))  # fmt: skip
    print_unreadable(unreadable)  # passed over, not the end of the run: one truncated JPEG left no figures at all
    if args.json_path:
        report = {"engine": settings.ocr_engine, **summary(results), "unreadable": len(unreadable)}
        write_private(args.json_path, json.dumps(report, indent=2).encode())
    if args.errors_path:
        write_errors(args.errors_path, outcomes)
    return 1 if unreadable else 0


def calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from alpr.calibrate import ALL_IMAGES
    from alpr.calibrate import calibrate as fit
    from alpr.wiring import ocr_settings
    from ocr_worker.calibration import calibration_path
    from ocr_worker.engines import ENGINES

    out = args.out or calibration_path()
    if ENGINES[settings.ocr_engine].trained_on_benchmark(settings.ocr_model) and not args.unseen_reads:
        print(
            "note: the plate recogniser trained on most of the benchmark's images, so a fit on all of them "
            "is overconfident on a camera's; the shipped fit uses --unseen-reads (README, Confidence)",
            file=sys.stderr,
        )
    model = fit(args.datasets, settings, out, args.unseen_reads or ALL_IMAGES, args.scales)
    print(f"{ocr_settings(settings).engine_key}: fitted on {model['images']} reads; weights {model['weights']}, "
          f"bias {model['bias']}, format weight {model['format_weight']} (exact reads by weight: "
          f"{model['exact_reads_by_format_weight']}) -> {out}")  # fmt: skip
    print("cross-validated (5 folds by image): share of reads accepted, and wrong among them")
    for threshold, rows in model["cross_validation"].items():
        print(f"  at {threshold:<5} " + "  ".join(
            f"{name} {r['coverage_of_reads']:.2f}/{r['wrong_among_accepted']:.3f}" for name, r in rows.items()
        ))  # fmt: skip
    return 0


def train_ocr(args: argparse.Namespace, settings: Settings) -> int:
    from alpr.train_ocr import train
    from ocr_worker.ppocr_engine import bundled_model_path

    datasets = settings.datasets_dir
    if not (datasets / "openalpr-endtoend").is_dir():
        raise InputError(f"no training photographs at {datasets} (set ALPR_DATASETS_DIR)")
    out = args.out or bundled_model_path("plate")
    card = train(
        datasets, out, args.epochs, args.seed, args.synthetic_share, args.keep, args.float_out, args.folds,
        args.device, args.workers,
    )  # fmt: skip
    print(
        f"wrote {out} (epoch {card['chosen_epoch']} of {args.epochs}, {card['training']['minutes']} min) and its card"
    )
    return 0


def export(args: argparse.Namespace, settings: Settings) -> int:
    """Every logged read (or sighting) as a private CSV file, which replaces the file at --csv only once
    the whole of it is written: an export that fails leaves that file as it was, and one killed leaves no
    copy of the rows beside it (replaced_privately). The export is recorded (common/export_record.py)
    before a row is read; one whose record cannot be written exports nothing."""
    planned = planned_export(args)
    if not settings.database_url:
        check_export_paths(settings.sqlite_path, args.csv_path)
    password = settings.secret("database_password")
    where = (settings.database_url, settings.sqlite_path, password)
    with replaced_privately(args.csv_path) as csv_file:  # the target checked before the export is recorded
        record_export(*where, planned)
        if args.sightings:
            count = write_and_close(open_sighting_log(*where), export_sightings_csv, csv_file)
        else:
            count = write_and_close(open_plate_log(*where), export_csv, csv_file)
    print(f"wrote {count} {planned.exported} to {args.csv_path} (export recorded)")
    return 0


def planned_export(args: argparse.Namespace) -> PlateExport:
    """The export's record as the flags ask it (InputError naming the flag where one is refused, `--csv -`
    among them: an export is a private file, never stdout); the file is named by its absolute path, links
    resolved: where the data went. The reason may come from
    --reason-file (alpr/private_values.py)."""
    from alpr.private_values import take_private_values

    if str(args.csv_path) == "-":  # a file named `-` was written, "wrote 20 reads to -": not standard output
        raise InputError("--csv: `-` is no file: an export is a file its owner alone may read (mode 0600), never"
                         " standard output, which would hand the plates to whatever reads it; name a file")  # fmt: skip
    take_private_values(args)
    try:
        return PlateExport(
            reason=args.reason, exported_by=args.exported_by or login_name(),
            exported="sightings" if args.sightings else "reads", csv_path=os.path.realpath(args.csv_path),
        )  # fmt: skip
    except ValidationError as error:
        raise refused_flag(error) from None


def check_export_paths(sqlite_path: Path, csv_path: Path) -> None:
    """InputError or ConfigError, before anything is opened or changed, where the SQLite log to export
    is missing, is not an SQLite file (a folder, a video: their modes were changed to 0600 before SQLite
    refused them), or is the very file the CSV would replace (`--csv reads.sqlite --sqlite reads.sqlite`
    truncated the log before reading a row), or one of the files SQLite keeps beside it (`-wal`, `-shm`,
    `-journal`: a CSV written over the write-ahead log was deleted at the log's next close, its export
    recorded as made, a review)."""
    if not sqlite_path.exists():
        raise InputError(f"no reads to export: {sqlite_path} does not exist")
    check_run_log(sqlite_path)
    if csv_path.exists() and os.path.samefile(csv_path, sqlite_path):
        raise InputError(f"--csv {csv_path} is the SQLite log itself: name another file for the CSV")
    real_csv = Path(os.path.realpath(csv_path))
    for side in sqlite_side_files(Path(os.path.realpath(sqlite_path))):  # there or not: SQLite makes them
        if real_csv == side or (csv_path.exists() and side.exists() and os.path.samefile(csv_path, side)):
            raise InputError(
                f"--csv {csv_path} is {side.name}, a file SQLite keeps beside the log (its write-ahead log, its"
                " index or its journal): the CSV would replace it, and SQLite delete it; name another file for the CSV"
            )


AnyLog = TypeVar("AnyLog", PlateLog, SightingLog)


def write_and_close(log: AnyLog, write: Callable[[AnyLog, TextIO], int], handle: TextIO) -> int:
    """Export a log with its writer, and close it."""
    try:
        return write(log, handle)
    finally:
        log.close()

"""What each `alpr` subcommand does, given its parsed arguments and the validated Settings: those of the
distributed chain are in the modules alpr/cli.py's CHAIN_COMMANDS names, `alpr run` in alpr/run_command.py
(imported here, where alpr/cli.py finds it), the rest here: setup, demo-clip, eval, calibrate, train-ocr
and export."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

from pydantic import ValidationError

from alpr.run_command import run as run  # alpr/cli.py runs each subcommand not of the chain from this module
from common.audit import login_name, refused_flag
from common.config import Settings
from common.errors import ConfigError, InputError
from common.export_record import PlateExport, record_export
from common.plate_log import PlateLog, export_csv, open_plate_log
from common.private_files import refuse_link, replaced_privately, sqlite_side_files, write_private
from common.sighting_log import SightingLog, export_sightings_csv, open_sighting_log
from common.sqlite_log import check_run_log

if TYPE_CHECKING:
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

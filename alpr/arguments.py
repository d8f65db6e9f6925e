"""The `alpr` command line: each subcommand and its flags (`build_parser`, a table of contents of one
builder a subcommand; `alpr watchlist` and `alpr search` build theirs in their own modules), each flag
with its argument type, which checks a value as it is read (alpr/argument_types.py), so a bad one ends in
a usage line naming the flag, never a traceback. Its error messages have URL credentials masked
(MaskingParser). alpr/cli.py runs what it parsed."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from alpr.argument_types import (
    MAX_REPLAY_AGE_H,
    MAX_STATUS_HOURS,
    MAX_STATUS_INTERVAL_S,
    YEAR_S,
    batch_workers,
    fold_numbers,
    folder,
    new_file,
    non_negative_at_most,
    parse_roi,
    positive_at_most,
    positive_int,
    scale_factor,
    scale_factors,
    share_below_one,
    torch_device,
    unseen_reads,
)
from alpr.private_values import add_reason_flags
from alpr.search_command import add_search_parser
from alpr.watchlist_command import add_watchlist_parser
from common import defaults
from common.credentials import mask_url
from common.setting_choices import DETECTOR_BACKENDS, OCR_ENGINES, OCR_MODELS

DEMO_CLIP = Path("demo/clip.mp4")
"""Where `alpr demo-clip` writes by default."""


class MaskingParser(argparse.ArgumentParser):
    """argparse's parser whose error messages (which quote the offending argument: perhaps a
    --database-url with its password) have URL credentials masked; its subparsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        super().error(mask_url(message))

    def parse_args(  # type: ignore[override]  # (typeshed's overloads; the namespace is always argparse's)
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """argparse's, but an argument no parser knows is refused by the subcommand's own parser, with its
        usage: `alpr db prune --grant x` printed the top-level usage, which names no flag of the prune's."""
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            self.chosen(parsed).error(f"unrecognized arguments: {' '.join(unknown)}")
        return parsed

    def chosen(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        """The innermost subcommand's parser that `parsed` went through (`alpr db prune`'s), else this one."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and (name := getattr(parsed, action.dest, None)):
                sub = action.choices[name]
                return sub.chosen(parsed) if isinstance(sub, MaskingParser) else sub
        return self


def build_parser() -> argparse.ArgumentParser:
    """The `alpr` parser: its own flags, then each subcommand's, in the order `alpr --help` lists them."""
    parser = MaskingParser(prog="alpr", description="Licence-plate recognition: detect, read, redact, log.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_setup_parser(sub)
    _add_demo_clip_parser(sub)
    _add_run_parser(sub)
    _add_eval_parser(sub)
    _add_ingest_parser(sub)
    _add_worker_parser(sub)
    _add_db_parser(sub)
    _add_status_parser(sub)
    _add_replay_parser(sub)
    _add_calibrate_parser(sub)
    _add_train_ocr_parser(sub)
    add_watchlist_parser(sub)
    add_search_parser(sub)
    _add_export_parser(sub)
    return parser


def _add_setup_parser(sub: argparse._SubParsersAction) -> None:
    """`alpr setup`."""
    setup = sub.add_parser("setup", help="put the detector weights in place and export them to ONNX")
    setup.add_argument("--model-dir", type=Path)
    setup.add_argument("--calibrate", action="store_true",
                       help="make the int8 detector again, calibrated on this host's decoding of the demo clip"
                            " rather than with the shipped ranges (written beside it)")  # fmt: skip


def _add_demo_clip_parser(sub: argparse._SubParsersAction) -> None:
    """`alpr demo-clip [OUTPUT]`."""
    clip = sub.add_parser("demo-clip", help="write a synthetic traffic clip with known plates")
    clip.add_argument("output", nargs="?", type=Path, default=DEMO_CLIP)


def _add_run_parser(sub: argparse._SubParsersAction) -> None:
    """`alpr run SOURCE`: the standalone pipeline."""
    run = sub.add_parser("run", help="detect, read and redact plates in a video, image folder or stream URL")
    run.add_argument("source", nargs="?", help="video file, image folder or rtsp/http URL")
    run.add_argument(
        "--source-file", type=Path, help="a file whose one line is the source: a URL with a password, kept off the"
        " command line, which every user of the host can read (ps)",
    )  # fmt: skip
    run.add_argument("--camera-id", help="camera id logged with each read (default: the source's name)")
    run.add_argument("--out", type=folder, default=Path("out"), help="folder for the redacted video or frames")
    run.add_argument("--fps", type=float, dest="sample_fps", help="frames sampled per second")
    run.add_argument("--roi", type=parse_roi, help="region of interest polygon: 'x,y x,y x,y ...'")
    run.add_argument(
        "--rtsp-transport", choices=("tcp", "udp"), default="tcp", help="how an rtsp:// camera's packets come:"
        " over its RTSP connection (default), or as RTP over UDP (a camera that refuses TCP; packets from"
        " other addresses than the one it names are dropped)",
    )  # fmt: skip
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_engine_flags(run)
    _add_log_flags(run)


def _add_eval_parser(sub: argparse._SubParsersAction) -> None:
    """`alpr eval DATASET`."""
    evaluate = sub.add_parser("eval", help="accuracy and speed on photographs with ground truth")
    evaluate.add_argument(
        "dataset", type=Path, help="folder in OpenALPR benchmark layout, or above such folders (each below is read)"
    )
    evaluate.add_argument("--json", type=Path, dest="json_path", help="also write the metrics to this file")
    evaluate.add_argument(
        "--errors", type=Path, dest="errors_path", help="one CSV row per image: read, cause of a miss"
    )
    evaluate.add_argument(
        "--format-weight", type=float, help="weigh the region's templates so (0-1), not as fitted for the recogniser"
    )
    evaluate.add_argument(
        "--folds",
        type=fold_numbers,
        help="only the images of these fifths (0: the one the plate model never trained on)",
    )
    evaluate.add_argument(
        "--scale", type=scale_factor, default=1.0,
        help="read each image shrunk by this factor (0-1]: as a camera of less resolution, or farther, sees it",
    )  # fmt: skip
    _add_engine_flags(evaluate)


def _add_ingest_parser(sub: argparse._SubParsersAction) -> None:
    """`alpr ingest --cameras FILE`: an ingest node of the chain."""
    ingest = sub.add_parser("ingest", help="an ingest node: sample the cameras' frames into Redis and the detect queue")
    ingest.add_argument("--cameras", type=Path, required=True, help="cameras.yaml")
    ingest.add_argument(  # at most a year: 1e300 overflowed the wait (a traceback)
        "--max-seconds", type=positive_at_most(YEAR_S), help="stop after this long (default: until every file ends)"
    )
    ingest.add_argument(
        "--linger", type=non_negative_at_most(YEAR_S), default=0, help="keep serving metrics this long after the end"
    )
    _add_chain_flags(ingest)
    ingest.add_argument("--database-url", help="postgresql://... (the frames log: every sampled frame recorded)")


def _add_worker_parser(sub: argparse._SubParsersAction) -> None:
    """`alpr worker STAGE`: a worker of the chain."""
    worker = sub.add_parser("worker", help="a worker of one stage's pool (RQ, model loaded once)")
    worker.add_argument("stage", choices=("detect", "ocr", "redact", "sight", "alert"))
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument("--max-jobs", type=positive_int, help="exit after this many jobs")
    _add_engine_flags(worker)
    _add_chain_flags(worker)
    worker.add_argument("--database-url", help="postgresql://... (every worker but the detector's)")


def _add_status_parser(sub: argparse._SubParsersAction) -> None:
    """`alpr status`."""
    status = sub.add_parser("status", help="queues, workers, failures and per-camera frames/s")
    status.add_argument(
        "--interval", type=positive_at_most(MAX_STATUS_INTERVAL_S), default=2.0,
        help="seconds between the two samples of the rates (at most a day)",
    )  # fmt: skip
    status.add_argument("--redis-url")
    status.add_argument("--database-url", help="postgresql://... (adds the frames log's accounting per camera)")
    status.add_argument(
        "--hours", type=positive_at_most(MAX_STATUS_HOURS), default=1.0,
        help="the accounting's window: frames captured, sightings begun and alerts raised in the last H hours"
             " (deliveries pending: all); the log's whole history is read by no statement (default 1)",
    )  # fmt: skip
    status.add_argument(
        "--json", action="store_true",
        help="the queues, workers and each pool's settings that change results as JSON (no rates nor the cameras'"
        " states); with a database, the frames log's accounting per camera and the frames in no job too",
    )  # fmt: skip


def _add_replay_parser(sub: argparse._SubParsersAction) -> None:
    """`alpr replay`."""
    replay = sub.add_parser("replay", help="put failed jobs whose frames are still stored back on their queues")
    replay.add_argument(
        "--stage", choices=("detect", "ocr", "redact", "alert"),
        help="one stage (default: detect, ocr and redact; alert deliveries only with --stage alert)",
    )  # fmt: skip
    replay.add_argument("--dry-run", action="store_true", help="count, do not requeue")
    replay.add_argument(
        "--orphans", action="store_true",
        help="instead: queue again the frames in the chain no job holds (`alpr status`'s `in no job`) while their"
        " frames are stored (needs --database-url)",
    )  # fmt: skip
    replay.add_argument(
        "--max-age-h", type=positive_at_most(MAX_REPLAY_AGE_H),
        help="--stage alert: only those given up this recently, at most ten years (default: ALPR_ALERT_GIVE_UP_S)",
    )  # fmt: skip
    replay.add_argument("--redis-url")
    replay.add_argument(
        "--database-url", help="postgresql://... (alerts: failed deliveries are kept there; --orphans: the frames log)"
    )


def _add_calibrate_parser(sub: argparse._SubParsersAction) -> None:
    """`alpr calibrate DATASET...`."""
    calibrate = sub.add_parser("calibrate", help="fit the OCR confidence to photographs with ground truth")
    calibrate.add_argument("datasets", type=Path, nargs="+", help="folders in the layouts `alpr eval` reads")
    calibrate.add_argument("--out", type=Path, help="calibration file (default: the package's)")
    calibrate.add_argument(
        "--unseen-reads", type=unseen_reads, action="append", metavar="FILE:FOLDS",
        help="fit on reads of images a recogniser never trained on: its ONNX file and those folds "
        "(e.g. a model from `alpr train-ocr --folds 2,3,4`:0,1), or default:0 for the configured one; repeatable",
    )  # fmt: skip
    calibrate.add_argument(
        "--scales", type=scale_factors, default=(1.0,),
        help="also read each image shrunk by these factors (e.g. 1,0.5,0.35; 1 must be among them), so the fit"
        " learns how sure a reader may be of smaller plates (the shipped fit's: README, Confidence)",
    )  # fmt: skip
    _add_engine_flags(calibrate)


def _add_train_ocr_parser(sub: argparse._SubParsersAction) -> None:
    """`alpr train-ocr`."""
    train_ocr = sub.add_parser("train-ocr", help="fine-tune the plate recogniser (needs the `train` extra)")
    train_ocr.add_argument(
        "--epochs", type=positive_int, default=25, help="25: the shipped model (about 16 min on 2 cores)"
    )
    train_ocr.add_argument("--seed", type=int, default=1, help="1: the shipped model (its card says why not 0)")
    train_ocr.add_argument(
        "--synthetic-share", type=share_below_one, default=0.5, help="share of synthetic plates per epoch, 0 to below 1"
    )
    train_ocr.add_argument("--out", type=new_file, help="ONNX file to write (default: the package's plate model)")
    train_ocr.add_argument("--float-out", type=new_file, help="also write the float model here (before int8)")
    train_ocr.add_argument(
        "--keep", choices=("best", "last"), default="last", help="epoch to write: last (lr annealed), or best held-out"
    )
    train_ocr.add_argument(
        "--folds", type=fold_numbers, default="1,2,3,4",
        help="the fifths of the real images to train on, 0-4 (default 1,2,3,4; fold 0 is measured each epoch)",
    )  # fmt: skip
    train_ocr.add_argument(
        "--device", type=torch_device, default="cpu", help="cpu (the shipped model's), cuda or cuda:N"
    )
    train_ocr.add_argument(
        "--workers", type=batch_workers, default=0,
        help="processes preparing batches (default 0: in this one, the shipped model's random stream)",
    )  # fmt: skip


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    """`alpr export --csv FILE`."""
    export = sub.add_parser("export", help="write the logged reads (or sightings) to CSV (recorded)")
    export.add_argument("--csv", type=Path, required=True, dest="csv_path")
    export.add_argument("--sightings", action="store_true", help="one row per vehicle pass instead of per read")
    add_reason_flags(export, "why the log leaves (a case number, a hand-over): recorded")
    export.add_argument("--by", dest="exported_by", help="who exports (default: the login name)")
    _add_log_flags(export)


def _add_db_parser(sub: argparse._SubParsersAction) -> None:
    """`alpr db upgrade` and `alpr db prune`, each with its own flags: they shared one set, and a flag of
    the other action was accepted and ignored (`alpr db upgrade --dry-run` applied every migration: a
    review)."""
    database = sub.add_parser("db", help="the Postgres schema; prune: delete plate data past its retention")
    actions = database.add_subparsers(dest="action", required=True)
    upgrade = actions.add_parser("upgrade", help="create or migrate the schema, then grant roles their rights")
    upgrade.add_argument("--database-url", help="postgresql://...")
    upgrade.add_argument(
        "--dry-run", action="store_true",
        help="list the migrations not yet applied and the tables each locks, and the audit retention it would"
        " write beside the database's; apply, write and grant nothing",
    )  # fmt: skip
    upgrade.add_argument(
        "--lock-wait", type=non_negative_at_most(YEAR_S), dest="lock_wait_s", metavar="SECONDS",
        help="wait this long at most for the upgrade's turn (a Postgres advisory lock another session holds) and,"
        " a dry run too, for the schema's record (schema_migrations) another session has locked, naming who holds"
        f" it, then give up (default {defaults.UPGRADE_TURN_WAIT_S:g}; 0: no limit)",
    )  # fmt: skip
    upgrade.add_argument(
        "--grant",
        metavar="ROLE",
        help="then let this role (the workers' login) read and write rows, nothing more",
    )
    upgrade.add_argument(
        "--grant-pruner",
        metavar="ROLE",
        help="then let this role (alpr db prune's login) read what a prune reads, delete what it deletes, nothing more",
    )
    prune = actions.add_parser(
        "prune", help="delete the reads, sightings, frame records, alerts and audit records past their retentions"
    )
    prune.add_argument("--database-url", help="postgresql://...")
    prune.add_argument(
        "--older-than-days", type=non_negative_at_most(defaults.MAX_RETENTION_DAYS), dest="retention_days",
        help="reads, sightings, frame records captured this many days ago or more (default ALPR_RETENTION_DAYS, 30;"
        " 0: kept, none pruned; alerts and audit records go by ALPR_ALERT_/ALPR_AUDIT_RETENTION_DAYS)",
    )  # fmt: skip
    prune.add_argument(
        "--dry-run", action="store_true", help="count the rows, delete nothing (its rights checked alike)"
    )
    prune.add_argument("--every-h", type=float, help="again every this many hours, until stopped")
    prune.add_argument(
        "--sqlite", dest="sqlite_path", type=Path, help="`alpr run`'s SQLite log (its reads, sightings, audit records)"
    )


def _add_engine_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", dest="ocr_engine", choices=OCR_ENGINES)
    parser.add_argument(
        "--ocr-model",
        dest="ocr_model",
        choices=OCR_MODELS,
        help="recogniser: PP-OCRv4, v6, or plate-trained",
    )
    parser.add_argument("--region", dest="ocr_region", help="plate formats: us, eu, br, any (none)")
    parser.add_argument("--backend", dest="detector_backend", choices=DETECTOR_BACKENDS)
    parser.add_argument("--device", dest="detector_device", help="cpu or cuda:N")
    parser.add_argument(
        "--half", dest="detector_half", action="store_const", const=True, help="FP16 (torch backend on cuda)"
    )
    parser.add_argument("--imgsz", dest="detector_imgsz", type=int)
    parser.add_argument("--weights", dest="detector_weights", type=Path, help="your own YOLO weights")
    parser.add_argument("--model-dir", type=Path)


def _add_chain_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="redis://host:port/db of the queues and frame store")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")


def _add_log_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", help="postgresql://... (default: ALPR_DATABASE_URL when set, else the SQLite file)"
    )
    parser.add_argument("--sqlite", dest="sqlite_path", type=Path, help="SQLite file of the reads (no database URL)")

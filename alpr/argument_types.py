"""The `alpr` command line's argument types (alpr/arguments.py gives each flag its own): each checks a value
as argparse reads it, so a bad one ends in a usage line naming the flag, never a traceback (nor a huge
sleep, a division by zero, thousands of processes), the value quoted with URL credentials masked; and
the bounds they check."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from alpr.folds import parse_folds
from common.config import rounds_to_zero
from common.credentials import mask_url
from common.jobs import MAX_COORDINATE

if TYPE_CHECKING:
    from alpr.calibrate import UnseenReads


def fold_numbers(text: str) -> frozenset[int]:
    """`--folds 2,3,4`: a set of fold numbers."""
    try:
        return parse_folds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def scale_factor(text: str) -> float:
    """`--scale 0.5`: a factor in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must lie in (0, 1] (a camera of less resolution), got {text}")
    return value


def scale_factors(text: str) -> tuple[float, ...]:
    """`--scales 1,0.5,0.35`: factors in (0, 1], 1 among them."""
    scales = tuple(scale_factor(part) for part in text.split(","))
    if 1.0 not in scales:
        raise argparse.ArgumentTypeError(f"the scales must include 1 (the images at their own size), got {text}")
    return tuple(sorted(set(scales), reverse=True))


MAX_STATUS_INTERVAL_S = 24 * 3600.0
"""`alpr status --interval`: at most a day (1e300 overflowed time.sleep: a traceback)."""

MAX_STATUS_HOURS = 24.0 * 366
"""`alpr status --hours`: at most a year (the frames log keeps ALPR_RETENTION_DAYS, 30 by default)."""

MAX_REPLAY_AGE_H = 10 * 365.25 * 24
"""`alpr replay --max-age-h`: at most ten years (1e8 hours overflowed Postgres's interval: a traceback)."""


def positive_at_most(maximum: float, zero: bool = False) -> Callable[[str], float]:
    """An argparse type: a number above 0 (or 0 itself, with `zero`) and at most `maximum` (`--interval
    0` divided by zero, a negative one asked to sleep back, a huge one overflowed a sleep or a database
    interval)."""

    def positive(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {mask_url(text)[:40]!r}") from None
        if rounds_to_zero(text):  # `--older-than-days 1e-400` was 0, kept without limit; 0.000001 refused
            raise argparse.ArgumentTypeError(f"{mask_url(text)[:40]!r} is not 0, yet too small to tell from it")
        if zero and value == 0:
            return 0.0
        if not (value > 0 and math.isfinite(value)):
            either = "0 or " if zero else ""
            raise argparse.ArgumentTypeError(f"must be {either}a number above 0, got {mask_url(text)[:40]!r}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}, got {mask_url(text)[:40]!r}")
        return value

    return positive


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more (`--max-jobs 0` ran one job a worker, endlessly
    starting a new worker after each; a negative one ran one job)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {mask_url(text)[:40]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {mask_url(text)[:40]!r}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number of 0 or more."""
    return 0 if text.strip() == "0" else positive_int(text)


MAX_BATCH_WORKERS = 64
"""Most processes `alpr train-ocr --workers` may prepare batches in (each a Python process holding the data
set: unbounded, a slip of the finger forked thousands)."""


def batch_workers(text: str) -> int:
    """`--workers N` (alpr train-ocr): 0 to MAX_BATCH_WORKERS."""
    value = non_negative_int(text)
    if value > MAX_BATCH_WORKERS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BATCH_WORKERS}, got {value}")
    return value


def share_below_one(text: str) -> float:
    """`--synthetic-share` (alpr train-ocr): a number in [0, 1) (1 left no real image in a batch: a
    ZeroDivisionError after the model loaded; nan, 2 or -1 started a run that could not be right)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {mask_url(text)[:40]!r}") from None
    if not 0 <= value < 1:  # nan too
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {mask_url(text)[:40]!r}")
    return value


def new_file(text: str) -> Path:
    """An argparse type: a file to write, in a folder that exists (`alpr train-ocr --out`): a folder, or a
    file in a missing one, failed once the training was done."""
    path = Path(text)
    if text == "" or path.is_dir():
        raise argparse.ArgumentTypeError(f"{mask_url(text)[:80]!r} is a folder, not a file to write")
    if not path.absolute().parent.is_dir():
        raise argparse.ArgumentTypeError(f"no folder {mask_url(str(path.parent))[:80]!r} to write {path.name!r} in")
    return path


def folder(text: str) -> Path:
    """An argparse type: a folder's name, never empty (`alpr run --out ''` wrote into the working folder)."""
    if not text:
        raise argparse.ArgumentTypeError("empty: name a folder (`.` for this one)")
    return Path(text)


def torch_device(text: str) -> str:
    """`--device cpu|cuda|cuda:N` (alpr train-ocr)."""
    if not re.fullmatch(r"cpu|cuda(:\d{1,2})?", text):
        raise argparse.ArgumentTypeError(f"cpu, cuda or cuda:N, not {mask_url(text)[:40]!r}")
    return text


YEAR_S = 365.25 * 24 * 3600
"""The longest `alpr ingest --max-seconds` or `--linger` (a larger wait overflowed the thread's wait)."""


def non_negative_at_most(maximum: float) -> Callable[[str], float]:
    """An argparse type: 0, or a number above 0 and at most `maximum`."""
    return positive_at_most(maximum, zero=True)


def unseen_reads(text: str) -> UnseenReads:
    """`--unseen-reads FILE:FOLDS` (alpr.calibrate.UnseenReads)."""
    from alpr.calibrate import UnseenReads

    try:
        return UnseenReads.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_roi(text: str) -> list[tuple[float, float]]:
    """'x,y x,y x,y ...' (at least three points) to a polygon."""
    try:
        points = [tuple(float(v) for v in pair.split(",")) for pair in text.split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"region of interest must be 'x,y x,y x,y ...', got {text!r}") from None
    if len(points) < 3 or any(len(p) != 2 for p in points):
        raise argparse.ArgumentTypeError(f"region of interest needs at least three x,y points, got {text!r}")
    if not all(math.isfinite(v) and abs(v) <= MAX_COORDINATE for p in points for v in p):
        raise argparse.ArgumentTypeError(f"region of interest points are pixels, at most {MAX_COORDINATE:g} each")
    return [(p[0], p[1]) for p in points]

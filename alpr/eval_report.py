"""What `alpr eval` writes: the figures over every set together (`--json`) and one row per image
with the cause of each miss (`--errors`, written privately: its rows are plates), and what it says of
the images it could not read."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alpr.eval_scoring import Outcome
from common.csv_files import spreadsheet_safe
from common.errors import InputError
from common.private_files import replaced_privately

ERROR_COLUMNS = ("set", "image", "truth", "best_read", "confidence", "top_n", "cause")
"""Columns of `alpr eval --errors FILE`, one row per image."""


def write_errors(path: Path, outcomes: dict[str, list[Outcome]]) -> None:
    """One CSV row per image: truth, best read, its confidence, the top-N candidates, the cause; written
    as the exports are (replaced_privately: 0600, no link followed), as the rows are plates."""
    with replaced_privately(path) as handle:
        writer = csv.writer(handle)
        writer.writerow(ERROR_COLUMNS)
        for name, rows in outcomes.items():
            for o in rows:
                candidates = "|".join(c.text for c in o.best.candidates) if o.best else ""
                writer.writerow([spreadsheet_safe(cell) for cell in (  # names and truths are the dataset's own
                    name, o.sample.image.name, o.sample.plate, o.best.text if o.best else "",
                    f"{o.best.confidence:.4f}" if o.best else "", candidates, o.cause,
                )])  # fmt: skip


UNREADABLE_NAMED = 5
"""Images that could not be read named in `alpr eval`'s report (all are counted)."""


def print_unreadable(unreadable: list[str]) -> None:
    """The report's line on the images that could not be read ("path: why" each), the first few named; none
    when every image was read."""
    if unreadable:
        named = "; ".join(unreadable[:UNREADABLE_NAMED])
        more = f"; and {len(unreadable) - UNREADABLE_NAMED} more" if len(unreadable) > UNREADABLE_NAMED else ""
        print(f"\nunreadable: {len(unreadable)} images, left out of the figures: {named}{more}")


def no_figures(dataset: Path, folds: Iterable[int] | None, unreadable: list[str]) -> InputError:
    """Why `alpr eval` has no figure to give: no image could be read, or none is of the folds asked for."""
    if unreadable:
        more = f" (and {len(unreadable) - 1} more images)" if len(unreadable) > 1 else ""
        return InputError(f"cannot read image {unreadable[0]}{more}: no figures")
    return InputError(f"{dataset}: no image of folds {sorted(folds or ())} in it")


def summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One object with the metrics over every folder (weighted by n) and each folder's own."""

    def weighted(values: list[tuple[float | None, int]]) -> float | None:
        present = [(v, n) for v, n in values if v is not None]
        total = sum(n for _, n in present)
        return round(sum(v * n for v, n in present) / total, 4) if total else None

    keys = [
        "detection_recall_iou50",
        "detection_recall_iou30",
        "exact_top1",
        "exact_topn",
        "wrong_above_threshold",
        "coverage",
        "ms_per_image",
    ]
    out: dict[str, Any] = {"n": sum(r["n"] for r in results.values())}
    out.update({k: weighted([(r[k], r["n"]) for r in results.values()]) for k in keys})
    accepted = sum(r["accepted"] for r in results.values())
    wrong = sum(r["wrong_accepted"] for r in results.values())
    out["wrong_among_accepted"] = round(wrong / accepted, 4) if accepted else None
    out["ms_per_stage"] = {
        stage: weighted([(r["ms_per_stage"][stage], r["n"]) for r in results.values()])
        for stage in ("load", "detect", "ocr")
    }
    out["subsets"] = results
    return out

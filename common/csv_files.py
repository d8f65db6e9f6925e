"""CSV files written for a person to open (`alpr export`'s reads and sightings, `alpr eval`'s errors):
created readable by their owner only (the reads are plates, times and places), and no text cell a
spreadsheet would run as a formula (`spreadsheet_safe`)."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from common.private_files import open_private

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet takes a cell's text for a formula by, when it begins it."""


FORMULA_AFTER_SPLIT = re.compile(r'([;\t\r\n])(?=[ "]*[=+\-@\t\r])')
"""A formula's start (past spaces and quotes) after a character a spreadsheet may begin a cell of its own
at, inside one of ours: `;`, the list separator of Excel in most of Europe (it splits a CSV file there,
and at every line break, quoted or not, unless a field begins with a quote), and the tab (a TSV reading)."""


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, made text by a leading quote (OWASP's rule):
    the chain writes none, but a login with the workers' rights can (a camera named `=HYPERLINK(...)`
    sent the export's other cells to a web address when the CSV was opened). So is each part a
    spreadsheet may cut it into (FORMULA_AFTER_SPLIT: a quote after the `;` or line break): a camera named
    `cam;=HYPERLINK(...)` was a formula cell of its own in Excel with `;` as the separator (a review).
    Numbers are left alone."""
    if not isinstance(value, str):
        return value
    value = FORMULA_AFTER_SPLIT.sub(r"\1'", value)
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def write_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str], target: Path | TextIO) -> int:
    """Write rows (column -> value) with a header to a CSV file, created readable by its owner only (the
    reads are plates, times and places), or to a private file open as text (`replaced_privately`'s), no
    text cell a formula; returns the number of rows."""
    if isinstance(target, Path):
        with open(open_private(target), "w", newline="") as handle:  # plates: for its owner only
            return write_csv(rows, columns, handle)
    count = 0
    writer = csv.DictWriter(target, fieldnames=list(columns))
    writer.writeheader()
    for row in rows:
        writer.writerow({name: spreadsheet_safe(value) for name, value in row.items()})
        count += 1
    return count

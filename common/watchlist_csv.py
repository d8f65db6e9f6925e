"""The watch-list import file: CSV in UTF-8, header `plate,reason[,expires_at][,list]` (any order),
one entry a row. `read_csv` checks the whole file before anything is imported and names the first bad
line: a missing or extra column, a bad plate, reason, list name or date, bytes that are not UTF-8, an
empty file, more than MAX_CSV_ROWS entries or more than MAX_CSV_BYTES (1 KiB a row of that cap)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

from common.errors import InputError
from common.file_writers import refuse_if_others_may_change
from common.text_files import read_text_file, shown_path
from common.watchlist_entry import WatchEntry

MAX_CSV_ROWS = 100_000
"""Most entries one CSV import takes."""
MAX_CSV_ROW_BYTES = 1024
"""Bytes a row may take on average within MAX_CSV_BYTES: a row's longest plate, reason (200 characters of up to
4 bytes), expiry and list name, quoted, fit."""
MAX_CSV_BYTES = MAX_CSV_ROWS * MAX_CSV_ROW_BYTES
"""Largest CSV file one import reads: 100,000 KiB (97.7 MiB), tied to the row cap. It was 10 MiB, unsaid,
and refused a list of 100,000 rows with reasons of about 100 characters (14.6 MB) the row cap let in."""
TOO_LARGE = f" ({MAX_CSV_ROW_BYTES // 1024} KiB a row for the {MAX_CSV_ROWS:,} rows one import takes at most)"
"""Said after `larger than ...` of a file over MAX_CSV_BYTES."""
CSV_COLUMNS = ("plate", "reason", "expires_at", "list")
"""Columns of an import file; plate and reason are required, in any order."""


def read_csv(path: Path) -> list[WatchEntry]:
    """The entries of an import file, all checked; InputError names the file and the first bad line. A file
    other users of this host may write is refused (common/file_writers.refuse_if_others_may_change)."""
    text = io.StringIO(read_text_file(path, MAX_CSV_BYTES, InputError, too_large=TOO_LARGE), newline="")
    harm = "they choose the plates watched for (a plate taken off a list raises no alert)"
    refuse_if_others_may_change(path, f"the watch-list file {shown_path(path)}", harm, InputError)
    reader = csv.reader(text, strict=True)
    line = 1  # where the row being read starts (a quoted cell may span lines)
    try:
        header: list[str] = []
        for first in reader:  # blank lines before the header are passed over, as after it
            line = reader.line_num
            if any(cell.strip() for cell in first):
                header = [name.strip().lower() for name in first]
                break
        if not header:
            raise InputError("line 1: empty file, expected the header plate,reason[,expires_at][,list]")
        if problem := header_problem(header):  # never the line itself: the wrong file's first line was a secret
            raise InputError(f"line {line}: the header must be plate,reason[,expires_at][,list]: {problem}")
        entries: list[WatchEntry] = []
        line = reader.line_num + 1
        for row in reader:
            if any(cell.strip() for cell in row):  # blank lines are skipped
                if len(entries) == MAX_CSV_ROWS:
                    raise InputError(f"line {line}: more than {MAX_CSV_ROWS} entries")
                entries.append(_entry(header, row, line))
            line = reader.line_num + 1
    except csv.Error as error:
        raise InputError(f"{shown_path(path)}, line {line}: not CSV: {error}") from None
    except InputError as error:
        raise InputError(f"{shown_path(path)}, {error}") from None
    return entries


def header_problem(header: list[str]) -> str | None:
    """What is wrong with an import file's header: by the columns' places, never the text of one that is
    not a known column (the wrong file's first line may be a secret)."""
    unknown = [str(place) for place, name in enumerate(header, start=1) if name not in CSV_COLUMNS]
    if unknown:
        places = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
        return f"column {places}: not one of {', '.join(CSV_COLUMNS)}"
    if twice := sorted(name for name, count in Counter(header).items() if count > 1):  # count(): quadratic
        return "named twice: " + ", ".join(twice)
    if missing := [name for name in ("plate", "reason") if name not in header]:
        return "no column " + " and no column ".join(missing)
    return None


def _entry(header: list[str], row: list[str], line: int) -> WatchEntry:
    if len(row) != len(header):
        raise InputError(f"line {line}: {len(row)} columns, the header has {len(header)}")
    cells = dict(zip(header, row, strict=True))
    try:
        return WatchEntry.parse(cells["plate"], cells["reason"], cells.get("expires_at", ""), cells.get("list", ""))
    except InputError as error:
        raise InputError(f"line {line}: {error}") from None

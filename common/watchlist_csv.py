"""The watch-list import file: CSV in UTF-8, header `plate,reason[,expires_at][,list]` (any order),
one entry a row. `read_csv` checks the whole file before anything is imported and names the first bad
line: a missing or extra column, a bad plate, reason, list name or date, bytes that are not UTF-8, an
empty file, more than MAX_CSV_ROWS entries or more than MAX_CSV_BYTES."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from common.errors import InputError
from common.text_files import read_text_file
from common.watchlist import WatchEntry

MAX_CSV_ROWS = 100_000
"""Most entries one CSV import takes."""
MAX_CSV_BYTES = 10 * 1024 * 1024
"""Largest CSV file one import reads: 10 MiB."""
CSV_COLUMNS = ("plate", "reason", "expires_at", "list")
"""Columns of an import file; plate and reason are required, in any order."""


def read_csv(path: Path) -> list[WatchEntry]:
    """The entries of an import file, all checked; InputError names the file and the first bad line."""
    reader = csv.reader(io.StringIO(read_text_file(path, MAX_CSV_BYTES, InputError), newline=""), strict=True)
    line = 1  # where the row being read starts (a quoted cell may span lines)
    try:
        header = [name.strip().lower() for name in next(reader, [])]
        if not header:
            raise InputError("line 1: empty file, expected the header plate,reason[,expires_at][,list]")
        if "plate" not in header or "reason" not in header or not set(header) <= set(CSV_COLUMNS):
            raise InputError(f"line 1: the header must be plate,reason[,expires_at][,list], got {header}")
        if len(set(header)) != len(header):
            raise InputError(f"line 1: a column is named twice: {header}")
        entries: list[WatchEntry] = []
        line = reader.line_num + 1
        for row in reader:
            if any(cell.strip() for cell in row):  # blank lines are skipped
                if len(entries) == MAX_CSV_ROWS:
                    raise InputError(f"line {line}: more than {MAX_CSV_ROWS} entries")
                entries.append(_entry(header, row, line))
            line = reader.line_num + 1
    except csv.Error as error:
        raise InputError(f"{path}, line {line}: not CSV: {error}") from None
    except InputError as error:
        raise InputError(f"{path}, {error}") from None
    return entries


def _entry(header: list[str], row: list[str], line: int) -> WatchEntry:
    if len(row) != len(header):
        raise InputError(f"line {line}: {len(row)} columns, the header has {len(header)}")
    cells = dict(zip(header, row, strict=True))
    try:
        return WatchEntry.parse(cells["plate"], cells["reason"], cells.get("expires_at", ""), cells.get("list", ""))
    except InputError as error:
        raise InputError(f"line {line}: {error}") from None

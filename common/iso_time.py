"""Reading the ISO-8601 dates and times operators type (`alpr watchlist --expires`, a watch-list CSV's
expiry, `alpr search --since/--until`): Python's `datetime.fromisoformat`, less one trap."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

DATE_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}|\d{4}-W\d{2}-\d|\d{4}W\d{3}|\d{4}-W\d{2}|\d{4}W\d{2}|\d{8}")
"""The date forms fromisoformat reads, longest first: 2030-07-01, 2030-W27-1, 2030W271, 2030-W27,
2030W27, 20300701."""


def from_iso(text: str) -> datetime:
    """The date or date and time `text` names (naive when it names no zone); ValueError when it names
    none, or when its date is followed by anything but 'T' or a space. fromisoformat takes any one
    character there: 2030-07-01-05:00 (a date in UTC-5, as Excel and XML write it) was read as 1 July
    05:00 UTC, and 2030-07-01+02:00 as 02:00, without a word."""
    date_part = DATE_PREFIX.match(text)
    if date_part and text[date_part.end() : date_part.end() + 1] not in ("", "T", "t", " "):
        raise ValueError(f"a date and a time are joined by 'T' or a space, not {text[date_part.end()]!r}")
    return datetime.fromisoformat(text)


WEEK_ONLY = re.compile(r"\d{4}-?W\d{2}")
"""An ISO week alone (2030-W27): the whole week, Monday to Sunday."""


def period(text: str) -> timedelta:
    """How long what `text` names lasts: a day (a calendar or week date: 2030-07-01, 2030-W27-1), a
    week (2030-W27), nothing (a date and time). What an operator means by "until 2 November" or "expires
    2030-W27" ends when that period does, not as it begins."""
    try:
        date.fromisoformat(text)
    except ValueError:
        return timedelta(0)
    return timedelta(days=7 if WEEK_ONLY.fullmatch(text) else 1)

"""`alpr search PLATE --reason R`: where a plate was seen (common/plate_search.py), in the chain's
Postgres or `alpr run`'s SQLite file; every search is recorded with who made it and why before its
results are printed. Plates are printed here (the operator's question), never logged; the plate and
reason may be given off the command line (alpr/private_values.py)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from alpr.private_values import PLATE_HELP, add_reason_flags, take_private_values
from common.audit import login_name, refused_flag
from common.config import Settings
from common.credentials import escape_controls
from common.csv_files import spreadsheet_safe
from common.errors import InputError
from common.iso_time import from_iso, period


def add_search_parser(sub: Any) -> None:
    """The `search` subcommand, on the `alpr` parser's subparsers."""
    search = sub.add_parser("search", help="where a plate was seen: its sightings, newest first (recorded)")
    search.add_argument("plate", help=PLATE_HELP)
    add_reason_flags(search, "why it is looked up (a case number): recorded")
    search.add_argument(
        "--within", type=float, default=1.0,
        help="edits a sighting may differ by (a look-alike such as O/0 counts half; 0-3, default 1)",
    )  # fmt: skip
    search.add_argument("--since", type=_moment, help="ISO-8601 date or time (UTC unless given)")
    search.add_argument(
        "--until", type=_end_moment, help="ISO-8601 date or time (UTC unless given); a date alone: through that day",
    )  # fmt: skip
    search.add_argument("--camera", dest="camera_id", help="one camera's sightings only")
    search.add_argument("--limit", type=int, default=100, help="at most this many sightings (default 100)")
    search.add_argument("--by", dest="searched_by", help="who searches (default: the login name)")
    search.add_argument("--database-url", help="postgresql://... (default: ALPR_DATABASE_URL when set, else SQLite)")
    search.add_argument("--sqlite", dest="sqlite_path", type=Path, help="alpr run's SQLite file (no database URL)")


def _moment(text: str) -> datetime:
    """An ISO-8601 date or time (common/iso_time.py), within what UTC can hold (0001-01-01T00:00+01:00
    overflowed turning into UTC: a traceback)."""
    try:
        moment = from_iso(text)
        return moment if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date or time within 0001-9999 UTC: {text[:40]!r}") from None


def _end_moment(text: str) -> datetime:
    """The end of what `text` names: a date alone is the whole of that (UTC) day, a week all of it (`--until
    2026-11-02` ended as the day began: a car seen that afternoon was not found, and the search recorded
    so)."""
    moment, lasts = _moment(text), period(text.strip())
    try:
        return moment + lasts - timedelta(microseconds=1) if lasts else moment
    except OverflowError:  # 9999-12-31 and a day, or 9999's last week: the end of what a datetime holds
        return datetime.max.replace(tzinfo=moment.tzinfo)


def search(args: argparse.Namespace, settings: Settings) -> int:
    from common.plate_search import PlateSearch

    take_private_values(args)  # PLATE -, --reason-file: kept off the command line
    try:
        query = PlateSearch(
            plate=args.plate, reason=args.reason, searched_by=args.searched_by or login_name(), within=args.within,
            since=args.since, until=args.until, camera_id=args.camera_id, limit=args.limit,
        )  # fmt: skip
    except ValidationError as error:
        raise refused_flag(error) from None
    found = _run(query, settings)
    _print(found)
    more = f", the newest {query.limit}: older ones may match too (--limit)" if len(found) >= query.limit else ""
    # no plate on stderr, which a supervisor (cron, systemd's journal) keeps: the plate was kept off the command line
    print(f"{len(found)} sightings within {query.within:g} of the plate searched{more} (search recorded)",
          file=sys.stderr)  # fmt: skip
    return 0


def _run(query: Any, settings: Settings) -> list[dict[str, Any]]:
    from common.plate_search import search_postgres, search_sqlite

    if settings.database_url:
        from alpr.connections import database_pool

        pool = database_pool(settings, "search")
        try:
            return search_postgres(pool, query)
        finally:
            pool.close()
    from common.sqlite_log import check_run_log, connect_log

    if not settings.sqlite_path.exists():
        raise InputError(f"no sightings to search: {settings.sqlite_path} does not exist")
    check_run_log(settings.sqlite_path)  # an empty file or another database: refused, unchanged
    connection = connect_log(settings.sqlite_path)  # private, in WAL mode: a running `alpr run` writes on
    try:
        return search_sqlite(connection, query)
    finally:
        connection.close()


def _print(found: list[dict[str, Any]]) -> None:
    from common.plate_search import RESULT_COLUMNS

    print("\t".join(RESULT_COLUMNS))
    for row in found:
        print("\t".join(cell(row[name]) for name in RESULT_COLUMNS))


def cell(value: object) -> str:
    """A column of an answer's row as printed: its control characters, tabs too, written out. A row the
    workers' role can write (a camera id, a snapshot path) reached the operator's terminal raw: escape
    codes, a line break forging a row (a review). Its text is no formula where the printed columns are
    opened in a spreadsheet (`alpr search ... > hits.tsv`; common/csv_files.spreadsheet_safe, as an export's
    cells): a camera named `=HYPERLINK(...)` was one. Numbers are printed as they are."""
    if value is None:
        return ""
    text = escape_controls(str(value)).replace("\t", "\\t")
    return spreadsheet_safe(text) if isinstance(value, str) else text

"""`alpr watchlist add|remove|list|import`: the operator's watch-lists in Postgres (common/watchlist.py).
Plates are printed on stdout (the operator's own list: what the command is for, sent where its caller
says), never on stderr, which a supervisor keeps (cron's mail, systemd's journal), nor logged; `add` and
`remove` take the plate and reason off the command line too (alpr/private_values.py), and a plate given so
is not printed back (cron mails stdout too). List names are the operator's labels, not plates: said on
either."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from alpr.private_values import PLATE_HELP, STDIN, add_reason_flags, take_private_values
from common.audit import Operator, login_name, refused_flag
from common.config import Settings
from common.errors import ConfigError, InputError

if TYPE_CHECKING:
    from common.watchlist import ImportResult, WatchList


def _list_name(text: str) -> str:
    """`--list NAME`: a name given is not blank (`--list ''` put the plate on the list `default`, unsaid)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("a list's name cannot be empty (leave --list out for the list 'default')")
    return text


def add_watchlist_parser(sub: Any) -> None:
    """The `watchlist` subcommand and its actions, on the `alpr` parser's subparsers."""
    watch = sub.add_parser("watchlist", help="plates to alert on: add, remove, list, import a CSV")
    actions = watch.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a plate, or change its reason and expiry")
    add.add_argument("plate", help=PLATE_HELP)
    add_reason_flags(add, "why it is listed (at most 200 characters)")
    add.add_argument("--expires", default="", help="ISO-8601 date or time the listing ends (UTC unless given)")
    add.add_argument("--list", dest="list_name", type=_list_name, help="list name (default: default)")
    remove = actions.add_parser("remove", help="remove a plate from a list")
    remove.add_argument("plate", help=PLATE_HELP)
    remove.add_argument("--list", dest="list_name", type=_list_name, help="list name (default: default)")
    listing = actions.add_parser("list", help="print the entries: plate, list, expiry, reason")
    listing.add_argument("--all", action="store_true", dest="include_expired", help="expired entries too")
    imports = actions.add_parser("import", help="add or update every entry of a CSV file, all or none")
    imports.add_argument("csv_path", type=Path, metavar="CSV", help="header plate,reason[,expires_at][,list]")
    imports.add_argument(
        "--replace", action="store_true",
        help="each list the file names then holds exactly the file's entries: its others are removed (one transaction)",
    )  # fmt: skip
    for parser in (add, remove, listing, imports):
        parser.add_argument("--database-url", help="postgresql://... (default: ALPR_DATABASE_URL)")
    for parser in (add, remove, imports):
        parser.add_argument("--by", dest="changed_by", help="who changes the list (default: the login name): recorded")


class Operated(BaseModel):
    """Who changes a watch-list, checked as the other records' operators are (one printable line)."""

    changed_by: Operator


def watchlist(args: argparse.Namespace, settings: Settings) -> int:
    from alpr.connections import database_pool
    from common.watchlist import WatchList

    if not settings.database_url:
        raise ConfigError("set ALPR_DATABASE_URL (or --database-url) to the Postgres that holds the watch-lists")
    args.plate_hidden = getattr(args, "plate", None) == STDIN  # not printed back: cron mails stdout
    take_private_values(args)  # PLATE -, --reason-file: kept off the command line
    changed_by = getattr(args, "changed_by", None) or login_name()
    try:
        Operated(changed_by=changed_by)
    except ValidationError as error:
        raise refused_flag(error) from None
    pool = database_pool(settings, "watch-list command")
    try:
        return _run(args, WatchList(pool, changed_by))
    finally:
        pool.close()


def _run(args: argparse.Namespace, watch: WatchList) -> int:
    from common.watchlist_csv import read_csv
    from common.watchlist_entry import DEFAULT_LIST, LIST_NAME_RE, WatchEntry, normalise_plate, shown

    if args.action == "add":
        entry = WatchEntry.parse(args.plate, args.reason, args.expires, args.list_name or "")
        watch.add(entry)
        print(f"{'the plate given' if args.plate_hidden else entry.plate} is on the list {entry.list_name}")
        if entry.expired(time.time()):  # kept (list --all shows it), matching nothing: likely a typo
            print("alpr: note: that expiry has passed; the entry matches nothing until it is changed",
                  file=sys.stderr)  # fmt: skip
    elif args.action == "remove":
        plate, list_name = normalise_plate(args.plate), (args.list_name or "").strip() or DEFAULT_LIST
        if not LIST_NAME_RE.fullmatch(list_name):  # as `add` names it: " hot " was added as hot, not removed
            raise InputError(f"no list is named {shown(list_name)}: 1-64 letters, digits, '_', '.', '-'")
        if not watch.remove(plate, list_name):
            elsewhere = _elsewhere(watch.lists_of(plate))
            print(f"alpr: that plate is not on the list {list_name}{elsewhere}", file=sys.stderr)
            return 1
        print(f"{'the plate given was' if args.plate_hidden else plate} removed from the list {list_name}")
    elif args.action == "list":
        entries = watch.entries(include_expired=args.include_expired)
        print(f"{'plate':<16} {'list':<16} {'expires':<25} reason")
        for entry in entries:
            expires = entry.expires_at.astimezone(UTC).isoformat(timespec="seconds") if entry.expires_at else "never"
            print(f"{entry.plate:<16} {entry.list_name:<16} {expires:<25} {entry.reason}")
    else:
        entries = read_csv(args.csv_path)
        if args.replace and not entries:  # it names no list: nothing to make it the file's
            raise InputError("--replace: the file holds no entry, so it names no list to replace (nothing"
                             " imported; `alpr watchlist remove` takes a list's last plates)")  # fmt: skip
        result, rows = watch.import_rows(entries, replace=args.replace), len(entries)
        again = f" ({rows - result.written} rows named a plate of their list again: the last of them counts)"
        print(f"imported {result.written} entries{again if rows > result.written else ''}")
        _say_not_in_file(result)
        if expired := [entry for entry in entries if entry.expired(time.time())]:  # as `add` says: likely a typo
            print(f"alpr: note: {len(expired)} of them expired already: they match nothing until changed (`alpr"
                  " watchlist list --all` shows them)", file=sys.stderr)  # fmt: skip
    return 0


def _elsewhere(lists: list[str]) -> str:
    """Where else a plate not on the list given is, by list names (never the plate): `remove` said only "not
    on the list default" of a plate on `stolen`, and the operator could not tell a typo from the wrong list."""
    if not lists:
        return ""
    shown_lists = ", ".join(lists[:5]) + (f" and {len(lists) - 5} more" if len(lists) > 5 else "")
    return f"; it is on {len(lists)} other list{'s' * (len(lists) > 1)}: {shown_lists} (give --list)"


def _say_not_in_file(result: ImportResult) -> None:
    """Of each list the file names, its entries the file does not hold, counted (never their plates): removed
    with --replace; kept without, said on stderr (an import left a row deleted from the file listed, told
    "imported 1 entries")."""
    for name, count in result.not_in_rows.items():
        if result.replaced:
            print(f"removed {count} entries of list {name} not in this file")
        else:
            print(f"alpr: note: {count} entries of list {name} are not in this file (kept; --replace removes them)",
                  file=sys.stderr)  # fmt: skip

"""What the records of who took plate data share (`alpr search`'s look-ups, `alpr export`'s dumps):
the tables they are kept in, the reason and operator each record names, and the operator's default
name. A record is written before the data is given, is append-only (a trigger), and the workers'
role may add to it but never read or change it (common/grants.py's grant_to): it is the owner's to audit."""

from __future__ import annotations

import os
import pwd
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError

from common.errors import ConfigError, InputError

AUDIT_TABLES = ("plate_searches", "plate_exports")
"""The audit records in Postgres (migrations 12 and 13): added to, never read, changed or pruned but
by the schema's owner."""

RECORDED_BEFORE = {
    "search": ("plate_searches", "a search is recorded before its results are given", "none was given"),
    "export": ("plate_exports", "an export is recorded before a row is written", "nothing was exported"),
}
"""Each recorded command's table, what it is recorded before, and what a refused record leaves undone."""

OWNER_ONLY_TABLES = ("watchlist_changes",)
"""Records Postgres writes itself (migration 16's triggers, as the owner): no other role may touch them."""

POLICY_TABLES = ("audit_retention",)
"""The owner's settings Postgres holds every role to (migration 26: the audit retention its trigger refuses deletes
within, common/audit_policy.py): read by the others, written by the owner alone (`alpr db upgrade`); the workers'
login, granted INSERT on every table, is given none here (a second row is refused anyway)."""

COUNTS_TABLES = ("frame_counts", "frame_count_changes", "frame_counts_since")
"""The frames log's per-minute counts (migration 21), written by Postgres alone: its triggers on the frames
log and the merge (frame_counts_merged), SECURITY DEFINER functions run as the owner. Other roles read them
(`alpr status`) and write none: the workers' login, granted INSERT on every table, could add a million
frames done to a camera's minute (a review)."""


def _printable_line(least: int) -> AfterValidator:
    """Text of at least `least` characters besides spaces, printable, on one line: the pattern refused
    only ASCII controls, and a reason of three spaces, or one holding a line separator (U+2028, U+0085)
    or a right-to-left override that made one record read as two lines or another reason, was recorded
    (as the watch-list's reasons, which refused them already)."""

    def check(text: str) -> str:
        if not text.isprintable():
            raise ValueError("must be printable characters on one line (no control, format or line-break characters)")
        if len(text.strip()) < least:
            raise ValueError(f"needs at least {least} characters besides spaces")
        return text

    return AfterValidator(check)


Reason = Annotated[str, Field(max_length=200), _printable_line(3)]
"""Why plate data is taken (a case number, a retention hand-over): one line, recorded as given."""

Operator = Annotated[str, Field(max_length=100), _printable_line(1)]
"""Who takes it (`--by`; the database login is recorded beside it, by Postgres)."""

RecordedPath = Annotated[str, Field(max_length=4096), _printable_line(1)]
"""Where it went (an export's file): one line, as a reason is (a file named with a line break wrote
`searched_by chief` as a line of its own into the record)."""


def login_name() -> str:
    """The operator's login name, `--by`'s default: the user this process runs as (`sudo` names who ran
    it: `ann via sudo`), "unknown" where its uid has none (a container's); the database login is recorded
    too. Not $USER or $LOGNAME, which anyone sets (getpass's first choice: `USER=chief alpr search` was
    recorded as chief's)."""
    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return "unknown"
    invoker = os.environ.get("SUDO_USER", "")
    return f"{invoker} via sudo" if invoker and invoker != name and os.getuid() == 0 else name


OPERATOR_FIELDS = frozenset({"searched_by", "exported_by", "changed_by"})
"""The records' operator fields, which `--by` fills."""

FLAG_OF = {"csv_path": "csv", "camera_id": "camera"}
"""Other fields filled by a flag of another name."""


def refused_flag(error: ValidationError) -> InputError:
    """The first field a record refused, as the flag that gave it: `--by` for the operator (a search named
    it --searched-by, a flag no one can type), else the field's name as a flag (`--reason`, `--within`)."""
    problem = error.errors()[0]
    field = ".".join(str(part) for part in problem["loc"])
    flag = "by" if field in OPERATOR_FIELDS else FLAG_OF.get(field, field.replace("_", "-"))
    return InputError(f"--{flag}: {problem['msg']}")


def record_refused(command: Literal["search", "export"], role: str) -> ConfigError:
    """The one line for a `command` whose record the role logged in may not add to (a role with SELECT
    alone, the pruner's): which role to use instead, never a grant of the workers' rights to this one
    (given the pruner's role, that undid its being a role apart). A search printed psycopg's
    `InsufficientPrivilege` raw where an export explained."""
    table, before, undone = RECORDED_BEFORE[command]
    return ConfigError(
        f"alpr {command}: role {role} may not add to the record of {table.removeprefix('plate_')} (INSERT on"
        f" {table}): {before}; {command} as the workers' role (the one `alpr db upgrade --grant ROLE` names) or"
        f" as the schema's owner; {undone}"
    )

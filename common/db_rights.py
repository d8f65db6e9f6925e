"""The rights a process's Postgres role lacks, said in one line that names the role and how to mend it:
checked when an OCR or redact worker starts (one whose role could not write started fine, then failed
every job, each attempt a traceback), and told for the error Postgres raised elsewhere (SQLSTATE 42501:
the ingest node, the sighting worker, `alpr watchlist` and `alpr replay` printed psycopg's
`InsufficientPrivilege: permission denied for table cameras`, neither role nor fix)."""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

INSUFFICIENT_PRIVILEGE = "42501"
"""SQLSTATE of a statement the role has no right to run."""

OCR_WORKER_RIGHTS = {"plate_reads": ("INSERT",), "sighting_cursors": ("INSERT",),
                     "frames": ("SELECT", "INSERT", "UPDATE")}  # fmt: skip
"""What an OCR worker writes: the reads, each new camera for the sighting pool, how a frame's reads ended."""

REDACT_WORKER_RIGHTS = {"frames": ("SELECT", "INSERT", "UPDATE"), "alerts": ("SELECT",)}
"""What a redactor writes and reads: how each frame ended, the frames lost; the alerts' evidence it keeps."""

HAS_RIGHT = """
SELECT CASE WHEN %(right)s IN ('SELECT', 'INSERT', 'UPDATE')
    THEN has_any_column_privilege(%(table)s::regclass, %(right)s)  -- a grant of some columns counts
    ELSE has_table_privilege(%(table)s::regclass, %(right)s) END
"""
"""Whether the role logged in may use `right` on `table` (as Postgres reckons it: PUBLIC, memberships)."""


def how_to_mend(role: str) -> str:
    """What to do about a role without the chain's rights: log in as the role granted them, or grant them
    (never the pruner's role: that undid its being a role apart)."""
    return (
        f"log in as the workers' role (the one `alpr db upgrade --grant ROLE` named) or the schema's owner;"
        f" for {role} to be the workers' role, grant it with `alpr db upgrade --grant {role}` as the owner"
    )


def require_rights(pool: ConnectionPool, who: str, needs: Mapping[str, tuple[str, ...]]) -> None:
    """ConfigError (from common.errors) naming the role and every right it lacks of `needs` (table ->
    rights), unless the role logged in has them all: checked at start, not found in every job."""
    from common.errors import ConfigError

    with pool.connection() as connection:
        row = connection.execute("SELECT current_user").fetchone()
        role = str(row[0]) if row else "?"
        missing = []
        for table, rights in needs.items():
            for right in rights:
                if connection.execute(HAS_RIGHT, {"table": table, "right": right}).fetchone() != (True,):
                    missing.append(f"{right} {table}")
    if missing:
        raise ConfigError(f"{who}: Postgres role {role} may not {', '.join(missing)}: {how_to_mend(role)}")


def login_role(database_url: str | None) -> str:
    """The role a URL logs in as: its user, else PGUSER, else the user this process runs as (libpq's
    default; not $USER, which anyone sets)."""
    if database_url:
        from psycopg.conninfo import conninfo_to_dict

        try:
            user = conninfo_to_dict(database_url).get("user")
        except Exception:  # noqa: BLE001 (a URL the driver cannot parse failed before any right was asked)
            user = None
        if user:
            return str(user)
    if os.environ.get("PGUSER"):
        return os.environ["PGUSER"]
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a container's uid with no name
        return f"of uid {os.geteuid()}"


def rights_refused(error: BaseException, database_url: str | None) -> str | None:
    """The one line for an error Postgres raised for want of a right (psycopg's InsufficientPrivilege, or
    common.db.DatabaseWriteError carrying its SQLSTATE): the role and how to mend it; None for another."""
    if getattr(error, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
        return None
    role = login_role(database_url)
    refused = (str(error).strip().splitlines() or [type(error).__name__])[0]  # a table's name, never data
    return f"Postgres role {role} lacks a right this needs ({refused}): {how_to_mend(role)}"

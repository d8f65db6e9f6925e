"""The rights a process's Postgres role lacks, said in one line that names the role and how to mend it:
checked when a role that logs to Postgres starts — an ingest node reaching it, an OCR, redact, sighting
or alert worker (one whose role could not write started fine, then failed every job, each attempt a
traceback; an ingest node or a sighting worker failed its first statement) — and told for the error
Postgres raised elsewhere (SQLSTATE 42501: `alpr watchlist` and `alpr replay` printed psycopg's
`InsufficientPrivilege: permission denied for table cameras`, neither role nor fix)."""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

INSUFFICIENT_PRIVILEGE = "42501"
"""SQLSTATE of a statement the role has no right to run."""

Needs = Mapping[str, tuple[str, ...]]
"""The rights a role needs: table (or sequence) -> rights, as Postgres names them."""

OCR_WORKER_RIGHTS: Needs = {"plate_reads": ("INSERT",), "plate_reads_id_seq": ("USAGE",),
                            "sighting_cursors": ("INSERT",), "frames": ("SELECT", "INSERT", "UPDATE"),
                            "frame_counts_merged": ("EXECUTE",)}  # fmt: skip
"""What an OCR worker writes: the reads (and their ids drawn), each new camera for the sighting pool, how a
frame's reads ended; and the frames' per-minute counts it merges (the pool's duty, migration 21's function:
without EXECUTE, a database that took it from PUBLIC, the start check passed and every merge round failed,
a WARNING a minute, the changes piling up; a review)."""

REDACT_WORKER_RIGHTS: Needs = {"frames": ("SELECT", "INSERT", "UPDATE"), "alerts": ("SELECT",),
                               "frame_counts_merged": ("EXECUTE",)}  # fmt: skip
"""What a redactor writes and reads: how each frame ended, the frames lost; the alerts' evidence it keeps; the
frames' per-minute counts it merges (as an OCR worker's)."""

INGEST_NODE_RIGHTS: Needs = {
    "cameras": ("SELECT", "INSERT", "UPDATE"),
    "frames": ("SELECT", "INSERT"),
    "camera_watermarks": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "sighting_cursors": ("SELECT",),
}
"""What an ingest node writes and reads: its cameras (registered, or their settings updated), a row per
sampled frame, each camera's watermark (set, then deleted once the camera is no longer sampled there); the
frames logged already and their latest capture time, how far the sighting pool has grouped each camera
(the watermark's and the cameras' upserts read their key: SELECT too)."""

SIGHTING_WORKER_RIGHTS: Needs = {
    "sighting_cursors": ("SELECT", "UPDATE"),
    "plate_reads": ("SELECT",),
    "frames": ("SELECT",),
    "camera_watermarks": ("SELECT",),
    "watchlist": ("SELECT",),
    "sightings": ("INSERT",),
    "alerts": ("INSERT",),
    "alert_deliveries": ("SELECT", "INSERT", "UPDATE"),
}
"""What a sighting worker reads and writes: each camera's cursor (locked FOR UPDATE, saved), the reads to
group, the frames and watermarks that settle them, the watch-lists; the sightings, the alerts and their
deliveries, marked queued once their jobs are. Not `watchlist_version`: without it the lists are loaded
every refresh, as before migration 9."""

ALERT_WORKER_RIGHTS: Needs = {
    "alerts": ("SELECT",),
    "alert_deliveries": ("SELECT", "INSERT", "UPDATE"),
    "watchlist": ("SELECT",),
}
"""What an alert worker reads and writes: the alert it delivers; each delivery's claim and outcome, those
due (queued again), and those a recent alert lacks for a receiver its file names (added); whether the entry
an alert matched is listed still (a delivery whose entry was removed is rejected at its claim)."""

TABLE_RIGHTS = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
SEQUENCE_RIGHTS = ("USAGE", "SELECT", "UPDATE")

RIGHTS = """
SELECT c.relname, r.privilege FROM pg_class c CROSS JOIN unnest(%(table_rights)s::text[]) AS r(privilege)
WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s)
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND CASE WHEN r.privilege IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
      THEN has_any_column_privilege(%(role)s, c.oid, r.privilege)  -- a grant of some columns counts
      ELSE has_table_privilege(%(role)s, c.oid, r.privilege) END
UNION ALL
SELECT c.relname, r.privilege FROM pg_class c CROSS JOIN unnest(%(sequence_rights)s::text[]) AS r(privilege)
WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s) AND c.relkind = 'S'
  AND has_sequence_privilege(%(role)s, c.oid, r.privilege)
UNION ALL
SELECT '', 'CREATE' WHERE has_schema_privilege(%(role)s, %(schema)s, 'CREATE')
"""
"""What `role` may do in the schema, as Postgres reckons it (through PUBLIC, memberships, a superuser's):
(table or sequence, right) pairs, and ('', 'CREATE') where it may add tables. The one question of every
rights check: the workers' start checks (`require_rights`), the prune's and the grants' (common/grants.py,
common/pruner_role.py)."""


FUNCTIONS_EXECUTED = """
SELECT p.proname, 'EXECUTE' FROM pg_proc p
WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s) AND p.proname = ANY(%(names)s)
  AND has_function_privilege(%(role)s, p.oid, 'EXECUTE')
"""
"""Which of the functions `names` of the schema `role` may run (through PUBLIC, as Postgres gives every role
by default, unless a database took it back): (function, 'EXECUTE') pairs. Asked apart from RIGHTS, whose
every right the grants' checks weigh (a pruner may run what every role may)."""


def functions_run(connection: psycopg.Connection, role: str, schema: str, names: list[str]) -> set[tuple[str, str]]:
    """Which of the functions `names` of `schema` `role` may run (see FUNCTIONS_EXECUTED)."""
    values = {"role": role, "schema": schema, "names": names}
    return {(str(name), str(right)) for name, right in connection.execute(FUNCTIONS_EXECUTED, values)}


def rights_in_schema(connection: psycopg.Connection, role: str, schema: str) -> set[tuple[str, str]]:
    """What `role` may do in `schema` (see RIGHTS)."""
    values = {"role": role, "schema": schema, "table_rights": list(TABLE_RIGHTS),
              "sequence_rights": list(SEQUENCE_RIGHTS)}  # fmt: skip
    return {(str(name), str(right)) for name, right in connection.execute(RIGHTS, values)}


COLUMNS_READABLE = """
SELECT c.relname, a.attname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s) AND c.relname = ANY(%(tables)s)
  AND a.attnum > 0 AND NOT a.attisdropped AND has_column_privilege(%(role)s, c.oid, a.attnum, 'SELECT')
"""
"""The columns of the tables `tables` that `role` may read, as Postgres reckons it (a grant of the table, of
the column, through PUBLIC or a membership): RIGHTS counts a table whose one column may be read as read."""


def columns_readable(connection: psycopg.Connection, role: str, schema: str, tables: list[str]) -> dict[str, set[str]]:
    """The columns of each of `tables` in `schema` that `role` may read (see COLUMNS_READABLE)."""
    values = {"role": role, "schema": schema, "tables": tables}
    readable: dict[str, set[str]] = {table: set() for table in tables}
    for table, column in connection.execute(COLUMNS_READABLE, values):
        readable[str(table)].add(str(column))
    return readable


def how_to_mend(role: str) -> str:
    """What to do about a role without the chain's rights: log in as the role granted them, or grant them
    (never the pruner's role: that undid its being a role apart)."""
    return (
        f"log in as the workers' role (the one `alpr db upgrade --grant ROLE` named) or the schema's owner;"
        f" for {role} to be the workers' role, grant it with `alpr db upgrade --grant {role}` as the owner"
    )


def require_rights(pool: ConnectionPool, who: str, needs: Needs) -> None:
    """ConfigError (from common.errors) naming the role and every right it lacks of `needs` (table ->
    rights, each table, sequence or function (EXECUTE) in the schema the role works in), unless the role
    logged in has them all: checked at start, not found in every job."""
    from common.errors import ConfigError

    with pool.connection() as connection:
        row = connection.execute("SELECT current_user, current_schema()").fetchone()
        role, schema = (str(row[0]), row[1]) if row else ("?", None)
        has = rights_in_schema(connection, role, str(schema)) if schema is not None else set()
        if run := [name for name, rights in needs.items() if "EXECUTE" in rights and schema is not None]:
            has |= functions_run(connection, role, str(schema), run)
    if missing := [
        f"{right} {table}" for table, rights in needs.items() for right in rights if (table, right) not in has
    ]:
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
    common.db_writes.DatabaseWriteError carrying its SQLSTATE): the role and how to mend it; None for another."""
    if getattr(error, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
        return None
    role = login_role(database_url)
    refused = (str(error).strip().splitlines() or [type(error).__name__])[0]  # a table's name, never data
    return f"Postgres role {role} lacks a right this needs ({refused}): {how_to_mend(role)}"

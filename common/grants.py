"""The workers' role's grant (`alpr db upgrade --grant ROLE`, `grant_to`): what the chain's processes may
read, add, update (UPDATED, a frame's FRAMES_UPDATED) and delete (DELETED_FROM), and nothing more, the grant
refused whole where the role may still create in the schema or rewrite the logs; and what every grant checks
of the role it names (a name Postgres keeps as written, a role that exists, the schema it is granted in),
the pruner's too (common/pruner_role.py)."""

from __future__ import annotations

import re

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from common.audit import AUDIT_TABLES, COUNTS_TABLES, OWNER_ONLY_TABLES, POLICY_TABLES
from common.db_rights import rights_in_schema
from common.errors import ConfigError
from common.schema_upgrade import newer_schema, version_in, wait_for_turn

ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
"""A Postgres role the workers may log in as (lower case, as unquoted SQL names are)."""


DELETED_FROM = ("camera_watermarks", "watchlist")
"""The tables the chain deletes rows from (a camera's watermark once passed, `alpr watchlist remove`):
the logs of reads, frames, sightings and alerts are only ever added to (and a frame's outcome updated)."""

UPDATED = ("alert_deliveries", "sighting_cursors", "camera_watermarks", "cameras", "watchlist")
"""The tables whose rows the chain updates whole: a delivery's state, a camera's grouping cursor and
watermark, its settings, a listed plate's reason and expiry."""

FRAMES_UPDATED = ("plates", "stage_ms", "kept_path", "outcome", "detail", "done_at", "read_outcome")
"""The columns of a frame's row the chain updates: how it ended. Its id, camera and capture time are
written once; its reference for `alpr replay --orphans` (frame_ref) is written with its pending row and dropped
by Postgres when it ends (migration 24's trigger), never updated by the chain: granted here, the release
before's grant (a rollback's `migrate`) revoked it, and this release's redactors still running had every final
record and sweep refused (a review). The workers'
role updated every column of every table: a worker broken into back-dated
the plate log's reads, a frame's capture time, an alert's body (a review), and the next prune deleted
the evidence that the logs "cannot be erased" by it was to keep."""


MERGE_GRANT = "GRANT EXECUTE ON FUNCTION {}.frame_counts_merged() TO {}"
"""The frames' per-minute counts merged (migration 21's definer function): the OCR and redactor pools' duty and
each prune round. Given by name, not left to PUBLIC's default: a database that takes EXECUTE from PUBLIC
refused every merge, and the changes piled up under `alpr status` (a review)."""


def grant_to(pool: ConnectionPool, role: str, turn_wait_s: float | None = None) -> bool:
    """Give `role` what the chain's processes need and nothing more: read and add the rows of every table
    of the schema (and use its sequences), update only those of UPDATED and a frame's FRAMES_UPDATED,
    delete only those of DELETED_FROM, only add to the audit records (AUDIT_TABLES), never write the
    migrations' record nor create in the schema; run by `alpr db upgrade --grant` after the migrations, so
    tables added later are granted too. The migrating role owns the tables; a worker that is broken into
    cannot drop them or run as a superuser. ConfigError (nothing changed) when the role may still create
    in the schema (through PUBLIC, as PostgreSQL 14 and before let every role, or a role it is a member
    of): an operator or function it planted there (`&&` on text arrays, which Postgres prefers to
    pg_catalog's) ran as whoever searched or pruned, the owner. The frames log's per-minute counts
    (COUNTS_TABLES) are only read: Postgres's own functions write them, as the owner.

    True once granted; False, nothing changed, where the schema is newer than this release's (`newer_schema`:
    a release rolled back, whose Compose `migrate` runs this at every `up`): the newer release's grants stand.
    Granted, the grant of ALL TABLES gave the role SELECT and INSERT on the newer release's tables this one
    knows nothing of, its owner-only records among them (a review: a million fake frames counted in through
    frame_count_changes). It waits `turn_wait_s` at most for its turn (schema_upgrade.wait_for_turn)."""
    check_role_name(role, "--grant")
    with pool.connection() as connection, connection.transaction():
        # grants at once were refused ("tuple concurrently updated"), and Compose waits on `migrate`: they take
        wait_for_turn(connection, turn_wait_s)  # turns, after any upgrade
        check_role_exists(connection, role)
        if newer_schema(version_in(connection)):
            return False
        schema_name = current_schema(connection)
        schema, name = sql.Identifier(schema_name), sql.Identifier(role)
        for statement in (
            "GRANT USAGE ON SCHEMA {} TO {}",
            "REVOKE CREATE ON SCHEMA {} FROM {}",
            "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA {} TO {}",
            "REVOKE UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {} FROM {}",  # as granted before
            "REVOKE SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {} FROM {}",  # setval: a rewound id failed every insert
            "GRANT USAGE ON ALL SEQUENCES IN SCHEMA {} TO {}",  # nextval, all an insert needs
        ):
            connection.execute(sql.SQL(statement).format(schema, name))
        frames = sql.Identifier(schema_name, "frames")
        connection.execute(sql.SQL("REVOKE UPDATE ({}) ON {} FROM {}").format(  # column grants of an earlier run
            sql.SQL(", ").join(map(sql.Identifier, frame_columns(connection, schema_name))), frames, name))  # fmt: skip
        connection.execute(sql.SQL("GRANT UPDATE ({}) ON {} TO {}").format(
            sql.SQL(", ").join(map(sql.Identifier, FRAMES_UPDATED)), frames, name))  # fmt: skip
        for table in UPDATED:
            connection.execute(sql.SQL("GRANT UPDATE ON {} TO {}").format(sql.Identifier(schema_name, table), name))
        # the migrations' record is read (start checks), never written: a row deleted made the next upgrade
        # run migration 1 again and fail (every service waits on it), a row added skipped a migration
        migrations = sql.Identifier(schema_name, "schema_migrations")
        connection.execute(sql.SQL("REVOKE INSERT, UPDATE ON {} FROM {}").format(migrations, name))
        # the audit records (alpr search's look-ups, alpr export's dumps) are added to, never read or changed:
        # who looked for which plate, who took the log away, is the owner's to audit
        # and only the columns an operator fills: an id chosen by the inserter took the ids the sequence
        # would give next, and every export and search after failed to be recorded (so refused)
        for table in AUDIT_TABLES:
            audited = sql.Identifier(schema_name, table)
            connection.execute(sql.SQL("REVOKE SELECT, INSERT, UPDATE ON {} FROM {}").format(audited, name))
            columns = [str(column) for (column,) in connection.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                " AND NOT attisdropped AND attname <> 'id' ORDER BY attnum",
                (f"{sql.Identifier(schema_name, table).as_string(connection)}",),
            )]  # fmt: skip
            connection.execute(sql.SQL("GRANT INSERT ({}) ON {} TO {}").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), audited, name))  # fmt: skip
        for table in OWNER_ONLY_TABLES:  # the record of watch-list changes: written by its triggers, as the owner
            connection.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.Identifier(schema_name, table), name))
            qualified = sql.Identifier(schema_name, table).as_string(connection)  # a schema named "Alpr" too
            row = connection.execute("SELECT pg_get_serial_sequence(%s, 'id')", (qualified,)).fetchone()
            if row and row[0]:  # nor its ids drawn (gaps in the record)
                connection.execute(sql.SQL("REVOKE ALL ON SEQUENCE {} FROM {}").format(sql.SQL(row[0]), name))
        for table in (*COUNTS_TABLES, *POLICY_TABLES):  # the frames' per-minute counts: read by `alpr status`,
            # written by Postgres; the audit retention: read, written by the owner
            connection.execute(sql.SQL("REVOKE INSERT ON {} FROM {}").format(sql.Identifier(schema_name, table), name))
        connection.execute(sql.SQL(MERGE_GRANT).format(sql.Identifier(schema_name), name))  # the pools' duty
        for table in DELETED_FROM:
            connection.execute(sql.SQL("GRANT DELETE ON {} TO {}").format(sql.Identifier(schema_name, table), name))
        refuse_schema_creators(connection, role, schema_name)
        refuse_extra_writes(connection, role, schema_name)
    return True


def frame_columns(connection: psycopg.Connection, schema_name: str) -> list[str]:
    """The columns of the frames table."""
    return [str(column) for (column,) in connection.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (sql.Identifier(schema_name, "frames").as_string(connection),),
    )]  # fmt: skip


def refuse_extra_writes(connection: psycopg.Connection, role: str, schema_name: str) -> None:
    """ConfigError unless `role`, and each role it is a member of (SET ROLE reaches it, inherited or not),
    may update, delete or empty only what the grant gives, nor add to the counts Postgres keeps
    (COUNTS_TABLES): given more through PUBLIC or a membership (a
    role of an earlier set-up, pg_write_all_data), it still back-dated and deleted the plate log, the
    grant said done all the same (a review)."""
    allowed = {(t, "UPDATE") for t in (*UPDATED, "frames")} | {(t, "DELETE") for t in DELETED_FROM}
    extra: set[str] = set()
    for (who,) in connection.execute(
        "SELECT rolname FROM pg_roles WHERE rolname = %s OR pg_has_role(%s, oid, 'MEMBER')", (role, role)
    ).fetchall():
        shown = "" if who == role else f" as {who}"
        extra |= {f"{right} {table}{shown}" for table, right in rights_in_schema(connection, str(who), schema_name)
                  if right in ("UPDATE", "DELETE", "TRUNCATE") and (table, right) not in allowed
                  or right == "INSERT" and table in (*COUNTS_TABLES, *POLICY_TABLES)}  # fmt: skip
        frames = sql.Identifier(schema_name, "frames").as_string(connection)
        for column in set(frame_columns(connection, schema_name)) - set(FRAMES_UPDATED):
            row = connection.execute(
                "SELECT has_column_privilege(%s, %s::regclass, %s, 'UPDATE')", (who, frames, column)
            )
            if row.fetchone() == (True,):
                extra.add(f"UPDATE frames.{column}{shown}")
    if extra:
        shown = ", ".join(sorted(extra)[:6]) + (" ..." if len(extra) > 6 else "")
        raise ConfigError(
            f"--grant: role {role} may still {shown} (a superuser, the tables' owner, or given it through PUBLIC"
            " or a role it is a member of): the logs it could rewrite or erase; name a role of its own"
        )


def refuse_schema_creators(connection: psycopg.Connection, role: str, schema_name: str) -> None:
    """ConfigError unless neither `role` nor a role it is a member of (SET ROLE reaches it, inherited or
    not) may create in the schema."""
    creators = [str(who) for (who,) in connection.execute(
        "SELECT rolname FROM pg_roles WHERE pg_has_role(%s, oid, 'MEMBER')"
        " AND has_schema_privilege(oid, %s, 'CREATE') ORDER BY rolname <> %s, rolname",
        (role, schema_name, role),
    )]  # fmt: skip
    if creators:
        through = "" if creators == [role] else f" (as {', '.join(c for c in creators if c != role)})"
        raise ConfigError(
            f"--grant: role {role} may still create in schema {schema_name}{through}, through PUBLIC (PostgreSQL"
            f" 14 and before let every role) or a role it is a member of: run REVOKE CREATE ON SCHEMA"
            f" {schema_name} FROM PUBLIC as its owner, or name a role of its own"
        )


def check_role_name(role: str, flag: str) -> None:
    """ConfigError naming `flag` unless `role` is a name Postgres keeps as written (ROLE_NAME)."""
    if not ROLE_NAME.fullmatch(role):
        raise ConfigError(f"{flag} takes a role name of 1-63 lower-case letters, digits and _, not {role[:70]!r}")


def check_role_exists(connection: psycopg.Connection, role: str) -> None:
    """ConfigError unless the role exists: grants are given to a role the operator made, never made here."""
    if connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
        raise ConfigError(  # a password on a command line is shown by `ps` to every local user, kept in history
            f"no Postgres role {role}: create it first (CREATE ROLE {role} LOGIN), then set its password with psql's"
            f" \\password {role}, which asks for it: never on a command line"
        )


def current_schema(connection: psycopg.Connection) -> str:
    row = connection.execute("SELECT current_schema()").fetchone()
    if row is None or row[0] is None:
        raise ConfigError("the database has no current schema (search_path names none that exists)")
    return str(row[0])

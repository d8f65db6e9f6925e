"""The rights of the role `alpr db prune` logs in as (`alpr db upgrade --grant-pruner ROLE`): it reads
what the prune reads (the pruned tables, the alerts whose evidence is kept and their deliveries' status, the
audit records' ids and times alone, the migrations' record a start checks) and deletes rows of the pruned
tables (common/retention.py's PRUNED), of the alerts (their deliveries go by the schema's cascade, the
owner's) and of the audit records (common/audit_retention.py), nothing more: no
insert or update anywhere, no other table's rows deleted, no table's emptied, no schema changed (the frames
log's per-minute counts change through Postgres's own SECURITY DEFINER functions, which every role may run:
its deletes' trigger, and the merge at a round's end, common/retention.py's _merge_frame_counts). A
process that runs for as long as the chain does then holds no owner's (in Compose, a superuser's)
password. The rights are checked once granted, as Postgres reckons them (through PUBLIC, a role it is
a member of, a superuser's), and the grant refused whole where the role may more."""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from common.audit_policy import AUDIT_POLICY
from common.audit_retention import AUDIT_TIMES
from common.db_rights import columns_readable, functions_run, rights_in_schema
from common.errors import ConfigError
from common.grants import MERGE_GRANT, check_role_exists, check_role_name, current_schema
from common.retention import PRUNED
from common.schema_upgrade import require_schema, wait_for_turn

READ_BY_THE_PRUNE = ("schema_migrations", "alerts", *PRUNED)
"""The tables the prune reads: the migrations' record (the schema must be current), the alerts (what
they cite is kept) and the pruned tables themselves."""

ALERT_RIGHTS = {("alerts", "DELETE"), ("alert_deliveries", "SELECT")}
"""What pruning the alerts adds (ALPR_ALERT_RETENTION_DAYS): their rows deleted, each delivery's alert and
status read (DELIVERY_COLUMNS: one pending or being sent keeps its alert); the deliveries themselves go by
the cascade, as the owner."""

AUDIT_COLUMNS = {table: ("id", time) for table, time in AUDIT_TIMES.items()}
"""The audit records' columns the prune reads (granted these alone: not who searched, why, or the plate)."""

COLUMNS_READ = {**AUDIT_COLUMNS, "alert_deliveries": ("alert_id", "status")}
"""The tables the prune reads some columns of, and those columns, granted alone: the audit records' ids and
times, the deliveries' alert and status (not their receivers, or the error a receiver answered: the whole
table was granted, a review). A pruner that may read any other column of them (through PUBLIC, a membership)
is refused the grant, naming them, as for any other right more (the table counted as read alike before)."""

AUDIT_RIGHTS = {(table, right) for table in AUDIT_TIMES for right in ("SELECT", "DELETE")} | {(AUDIT_POLICY, "SELECT")}
"""What pruning the audit records adds (ALPR_AUDIT_RETENTION_DAYS): SELECT of AUDIT_COLUMNS, DELETE; and the
database's own audit retention read (migration 26: the owner's to change), which Postgres holds each delete to."""

MERGED = "frame_counts_merged"
"""The function each prune round ends with (the frames' per-minute counts merged): checked at the start too, as
every role may run it unless a database took EXECUTE back from PUBLIC: the prune then deleted its batches and
failed at the merge, saying the role may not read or delete the plate data (a review)."""

NOT_GRANTED = (
    "alpr db prune: the role it logs in as may not read or delete the plate data; grant it with"
    " `alpr db upgrade --grant-pruner ROLE` (as the schema's owner), or run the prune as the owner"
)

OLDER_GRANT = (
    "alpr db prune: role {role} lacks rights this release's prune needs (missing: {missing}): it was granted"
    " an earlier release's, or they were taken back; re-run `alpr db upgrade --grant-pruner {role}` as the"
    " schema's owner (Compose's `migrate` does at each start), or run the prune as the owner"
)
"""The refusal of a pruner with some of the rights but not all: one granted before the alerts and the audit
records were pruned (an upgrade in place applies the migrations; the grant is its own flag)."""


def pruner_rights_wanted(alerts: bool = True, audit: bool = True) -> set[tuple[str, str]]:
    """The rights a pruner role is given, and all it may have: (table, right) pairs; a prune that keeps the
    alerts (`alerts` False) or the audit records (`audit` False) without limit needs fewer."""
    wanted = {(table, "SELECT") for table in READ_BY_THE_PRUNE} | {(table, "DELETE") for table in PRUNED}
    return wanted | (ALERT_RIGHTS if alerts else set()) | (AUDIT_RIGHTS if audit else set())


def grant_pruner(pool: ConnectionPool, role: str, turn_wait_s: float | None = None) -> None:
    """Give `role` the rights of pruner_rights_wanted and take back any other it was given on the
    schema's tables and sequences, in one transaction; run after the migrations, so tables added later
    are covered. ConfigError (nothing changed) when the role would still have more: a superuser, the
    tables' owner, or one given them through PUBLIC or a role it is a member of. It waits `turn_wait_s` at most
    for its turn (schema_upgrade.wait_for_turn)."""
    check_role_name(role, "--grant-pruner")
    with pool.connection() as connection, connection.transaction():
        wait_for_turn(connection, turn_wait_s)  # one grant at a time, after any upgrade
        check_role_exists(connection, role)
        schema_name = current_schema(connection)
        schema, name = sql.Identifier(schema_name), sql.Identifier(role)
        for statement in (
            "REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}",  # column grants too
            "REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}",
            "REVOKE CREATE ON SCHEMA {} FROM {}",
            "GRANT USAGE ON SCHEMA {} TO {}",
        ):
            connection.execute(sql.SQL(statement).format(schema, name))
        for table, right in sorted(pruner_rights_wanted()):
            columns: sql.Composable = sql.SQL("")  # some columns alone (COLUMNS_READ)
            if right == "SELECT" and table in COLUMNS_READ:
                columns = sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, COLUMNS_READ[table])))
            connection.execute(sql.SQL("GRANT {}{} ON {} TO {}").format(
                sql.SQL(right), columns, sql.Identifier(schema_name, table), name))  # fmt: skip
        connection.execute(sql.SQL(MERGE_GRANT).format(schema, name))  # each round merges the frame counts
        extra = rights_in_schema(connection, role, schema_name) - pruner_rights_wanted()
        for table, readable in columns_readable(connection, role, schema_name, list(COLUMNS_READ)).items():
            if more := sorted(readable - set(COLUMNS_READ[table])):  # PUBLIC's SELECT, say: who searched
                extra.add((table, f"read {', '.join(more)} of"))
        for (other,) in connection.execute(  # rights a role may SET ROLE to (a NOINHERIT membership)
            "SELECT rolname FROM pg_roles WHERE rolname <> %s AND pg_has_role(%s, oid, 'MEMBER')", (role, role)
        ).fetchall():
            extra |= {
                (table, f"{right} as {other}") for table, right in rights_in_schema(connection, other, schema_name)
            }
        if extra:
            shown = ", ".join(f"{right} {table or 'in the schema'}" for table, right in sorted(extra)[:6])
            raise ConfigError(
                f"--grant-pruner: role {role} may still {shown}{' ...' if len(extra) > 6 else ''} (a superuser,"
                " the tables' owner, or given it through PUBLIC or a role it is a member of): name a role of its own"
            )


def require_prune_rights(pool: ConnectionPool, alerts: bool = True, audit: bool = True) -> None:
    """ConfigError (NOT_GRANTED, or `alpr db upgrade` where the schema is not current) unless the role
    logged in may do what a prune does (of the alerts, of the audit records: where `alerts`, `audit`), its
    merge (MERGED) included: checked at the start, not found in the middle of the first batch. A role with
    the plate data's rights but not these (granted by an earlier release) is told to re-run the grant, by
    name (OLDER_GRANT): it failed mid-prune on a bare permission error. A dry run is checked alike: it is how
    an operator tries a prune's login, and one that needed only reading said "would delete" and exit 0 for
    the workers' role, which the prune then refused."""
    with pool.connection() as connection:
        row = connection.execute("SELECT current_user, current_schema()").fetchone()
    if row is None or row[1] is None:  # no schema of the search path the role may use
        raise ConfigError(f"{NOT_GRANTED} (it may use no schema of its search path)")
    try:
        require_schema(pool)
    except psycopg.errors.InsufficientPrivilege:  # the migrations' record is not its to read
        raise ConfigError(NOT_GRANTED) from None
    with pool.connection() as connection:
        rights = rights_in_schema(connection, str(row[0]), str(row[1]))
        rights |= functions_run(connection, str(row[0]), str(row[1]), [MERGED])
        for table, readable in columns_readable(connection, str(row[0]), str(row[1]), list(COLUMNS_READ)).items():
            if not set(COLUMNS_READ[table]) <= readable:  # some other column alone: the prune's read fails
                rights.discard((table, "SELECT"))
    missing = (pruner_rights_wanted(alerts, audit) | {(MERGED, "EXECUTE")}) - rights
    named = ", ".join(f"{r} {t}" for t, r in sorted(missing))
    if missing and missing <= ALERT_RIGHTS | AUDIT_RIGHTS:  # the plate data's all there: an older grant
        raise ConfigError(OLDER_GRANT.format(role=row[0], missing=named))
    if missing:
        raise ConfigError(f"{NOT_GRANTED} (missing: {named})")

"""How long the audit records of plate searches and exports (common/audit.py) are kept: `alpr db prune`
deletes those made before ALPR_AUDIT_RETENTION_DAYS (at least the plate data's retention: the audit is how
misuse of a search is found, so it outlives the data searched; Settings.audit_days), in Postgres
(`prune_audit`, as the pruner's role, granted DELETE on them) and in `alpr run`'s SQLite log
(`sqlite_audit_prunable`, then common/retention.prune_sqlite_log's batches). They stay append-only
otherwise: never updated or emptied. Postgres's trigger (migration 26) deletes none younger than the database's
own audit retention (common/audit_policy.py: the owner's, set by `alpr db upgrade`; 0, none at all), whoever
asks: a login that may prune cannot erase the record of a misuse within it (migration 25 let any record a day
old go). The SQLite log's (SQLITE_NOT_ERASED) deletes none younger than a day: a file its user may rewrite
whole, with no login apart to keep out, holds no floor the prune's own settings could not move."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime

from psycopg import sql
from psycopg_pool import ConnectionPool

AUDIT_TIMES = {"plate_searches": "searched_at", "plate_exports": "exported_at"}
"""The audit tables (common/audit.AUDIT_TABLES) and the time each record was made, Postgres's to set (and
SQLite's CURRENT_TIMESTAMP in `alpr run`'s log)."""

AUDIT_BATCH_ROWS = 5000
"""Records deleted per statement (and transaction), as the plate data's batches (common/retention.BATCH_ROWS)."""

OLD_ENOUGH = (
    "{time} < %(before)s AND {time} < (SELECT now() - make_interval(secs => greatest(days, 1) * 86400)"
    " FROM audit_retention WHERE days > 0)"
)
"""A record the prune deletes: made before the cutoff, and before the database's audit retention by Postgres's
clock (migration 26's table: none where it is 0), as its trigger allows (a client's clock ahead of the server's,
or a retention of the prune's shorter than the database's, would otherwise fail the whole batch)."""

DELETE_AUDIT = f"DELETE FROM {{table}} WHERE id IN (SELECT id FROM {{table}} WHERE {OLD_ENOUGH} LIMIT %(rows)s)"
"""One batch: the records' ids and times are all the prune reads of them (its SELECT on those columns alone:
not whose search, why, or the plate searched)."""

COUNT_AUDIT = f"SELECT count(*) FROM {{table}} WHERE {OLD_ENOUGH}"


def prune_audit(
    pool: ConnectionPool, before: datetime, rows: dict[str, int], dry_run: bool, stop: threading.Event | None
) -> bool:
    """Delete the audit records made before `before` (or count them, `dry_run`) into `rows` per table,
    AUDIT_BATCH_ROWS a transaction; False where `stop` ended it between two batches. The tables are small
    (a record per search or export): a batch finds its rows by reading the table, with no index of time."""
    for table, time_column in AUDIT_TIMES.items():
        parts = {"table": sql.Identifier(table), "time": sql.Identifier(time_column)}
        values = {"before": before, "rows": AUDIT_BATCH_ROWS}
        if dry_run:
            with pool.connection() as connection:
                row = connection.execute(sql.SQL(COUNT_AUDIT).format(**parts), values).fetchone()
            rows[table] += int(row[0]) if row else 0
            continue
        while True:
            if stop is not None and stop.is_set():
                return False
            with pool.connection() as connection:
                deleted = connection.execute(sql.SQL(DELETE_AUDIT).format(**parts), values).rowcount
            rows[table] += deleted
            if deleted < AUDIT_BATCH_ROWS:
                break
    return True


AUDIT_NAMES = {"plate_searches": "plate searches", "plate_exports": "exports"}
"""What each table records, as its append-only trigger's refusal names it."""

SQLITE_NOT_ERASED = (
    "CREATE TRIGGER {table}_not_erased BEFORE DELETE ON {table} WHEN OLD.{time} >= datetime('now', '-1 day')"
    " BEGIN SELECT RAISE(ABORT, 'the record of {what} is append-only: a record is deleted past its retention"
    " alone (alpr db prune), never within a day'); END"
)
"""The SQLite log's trigger that keeps an audit table's records from deletion, but of those a day old or more
(its first form, plate_search.SQLITE_SCHEMA's and export_record's, refused every delete)."""


def sqlite_audit_before(before: datetime) -> str:
    """A cutoff in the form the SQLite log's audit records are dated in (CURRENT_TIMESTAMP's: UTC, a space for
    the T, whole seconds), compared with them as text."""
    return before.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def sqlite_audit_prunable(connection: sqlite3.Connection, table: str) -> None:
    """The log's trigger on `table` made SQLITE_NOT_ERASED (a log `alpr run` began before: every delete
    refused), in a transaction of its own; one already so is left as it is."""
    wanted = SQLITE_NOT_ERASED.format(table=table, time=AUDIT_TIMES[table], what=AUDIT_NAMES[table])
    name = f"{table}_not_erased"
    row = connection.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (name,)).fetchone()
    if row is not None and row[0] == wanted:
        return
    connection.execute("BEGIN IMMEDIATE")
    with connection:
        connection.execute(f"DROP TRIGGER IF EXISTS {name}")
        connection.execute(wanted)

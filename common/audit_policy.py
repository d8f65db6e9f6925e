"""The database's own audit retention (migration 26's one-row table, AUDIT_POLICY): how long Postgres keeps the
records of plate searches and exports whoever asks, the pruner's login included (its trigger refuses to delete
a record younger, and every record where it is 0: kept without limit). `alpr db upgrade`, run as the schema's
owner, writes it from its settings (Settings.audit_days: ALPR_AUDIT_RETENTION_DAYS, or 730 days or the plate
data's retention where longer, 0 where either is 0; `set_audit_retention`); the owner alone may change it, so
lowering it is the owner's deliberate act, not the pruner's. `alpr db prune` reads it at each round
(`read_audit_retention`) and prunes past the longer of its own setting and it, saying so in one line where its
own is shorter (`held_to_database`): a batch the trigger refused failed the prune midway. A role that may
not write it (the workers', the pruner's) running the upgrade is not refused: where its settings give another
retention it is warned (NotOwnersToSetError), the database's left as it was, and the upgrade, which every
role of Compose waits on, goes on."""

from __future__ import annotations

import psycopg
from psycopg_pool import ConnectionPool

from common import defaults
from common.audit import POLICY_TABLES
from common.errors import ConfigError
from common.schema_upgrade import wait_for_turn

AUDIT_POLICY = POLICY_TABLES[0]
"""The table of one row holding the audit retention in days (`days`), the owner's to change, the pruner's to read."""


def describe(days: float) -> str:
    """An audit retention as the commands say it."""
    return f"deleted past {days:g} days, by no one sooner" if days else "kept without limit"


class NotOwnersToSetError(ConfigError):
    """The database's audit retention is not the settings' (or may not be read) and the role logged in may not
    set it: the owner's to set; `alpr db upgrade` says so in a warning and goes on."""


def read_audit_retention(pool: ConnectionPool) -> float:
    """The database's audit retention in days (0: kept without limit; no row, as Postgres's trigger reads it: 0);
    ConfigError, in one line, where it is not 0 or 1 to MAX_RETENTION_DAYS (the table's check dropped: NaN, an
    infinity or a million days failed the prune's start with a traceback, a review)."""
    with pool.connection() as connection:
        row = connection.execute(f"SELECT days FROM {AUDIT_POLICY}").fetchone()
    days = float(row[0]) if row else 0.0
    if days != 0 and not 1 <= days <= defaults.MAX_RETENTION_DAYS:  # NaN compares false: refused too
        raise ConfigError(
            f"the database's audit retention ({AUDIT_POLICY}.days) is {days:g}: it must be 0 (kept without limit)"
            f" or 1 to {defaults.MAX_RETENTION_DAYS:g} days; run `alpr db upgrade` as the schema's owner to set it"
            " from the settings"
        )
    return days


def set_audit_retention(pool: ConnectionPool, days: float, turn_wait_s: float | None = None) -> float | None:
    """Write `days` as the database's audit retention (the owner's act: `alpr db upgrade`); the retention it
    replaced where one was set before (the first, migration 26's 0 filled, is not told), or None (also where it
    was `days` already: nothing written). NotOwnersToSetError where it differs, or may not be read, and the role
    logged in may not change it (not the schema's owner): a role that may not write it, its settings the
    database's retention, is not refused (the retention was read FOR SHARE, which needs UPDATE: the workers' and the
    pruner's upgrade of a current schema failed, a review; upgrades take turns by wait_for_turn, and the UPDATE
    locks the row), waiting `turn_wait_s` at most for its turn (wait_for_turn). ConfigError where the schema has
    no policy (older than migration 26)."""
    with pool.connection() as connection, connection.transaction():
        wait_for_turn(connection, turn_wait_s)  # after any upgrade or grant of another process
        if connection.execute("SELECT to_regclass(%s)", (AUDIT_POLICY,)).fetchone() in (None, (None,)):
            raise ConfigError("alpr db upgrade: the schema has no audit retention to set (migration 26): upgrade it")
        try:
            row = connection.execute(f"SELECT days, set_at IS NOT NULL FROM {AUDIT_POLICY}").fetchone()
        except psycopg.errors.InsufficientPrivilege:
            raise NotOwnersToSetError(not_owners("not readable by this role", days, "may not be")) from None
        was = float(row[0]) if row is not None else 0.0
        if row is not None and was == days and row[1]:
            return None
        try:
            with connection.transaction():  # a savepoint: a refusal leaves the transaction usable
                if row is None:
                    connection.execute(f"INSERT INTO {AUDIT_POLICY} (days, set_at) VALUES (%s, now())", (days,))
                else:
                    connection.execute(f"UPDATE {AUDIT_POLICY} SET days = %s, set_at = now()", (days,))
        except psycopg.errors.InsufficientPrivilege:
            if was == days:  # the settings' already, but for who wrote it (set_at): nothing to tell
                return None
            raise NotOwnersToSetError(not_owners(describe(was), days, "is not")) from None
    return was if row is not None and row[1] and was != days else None


def shown(days: float) -> str:
    """An audit retention with its days, as `alpr db upgrade --dry-run` says it."""
    return f"{days:g} days ({describe(days)})" if days else "0 (kept without limit)"


PREVIEW_LOCK_TIMEOUT = "5s"
"""How long `alpr db upgrade --dry-run` waits for the audit retention's table before saying it is locked."""


def preview_audit_retention(pool: ConnectionPool, days: float | None, refused: str = "") -> str:
    """What `alpr db upgrade --dry-run` says of the audit retention, in one line: the one the upgrade would write
    (`days`, the settings'; None where they are refused, `refused` saying why: the upgrade leaves the database's as
    it is) and the one the database holds, or that it has no table yet (migration 26 makes it). Read as
    `set_audit_retention` reads it, without its turn taken or a row locked, nothing written: a role that may not
    write it is told the upgrade would leave it (and warn), one that may not read it that it is not read. Its read
    waits PREVIEW_LOCK_TIMEOUT at most for the table (the upgrade's sessions wait without limit: the owner's
    `LOCK TABLE` or `VACUUM FULL` of it hung the dry run, silently, a review), then says the table is locked."""
    with pool.connection() as connection, connection.transaction():
        connection.execute(f"SET LOCAL lock_timeout = '{PREVIEW_LOCK_TIMEOUT}'")
        rights = connection.execute(
            "SELECT has_table_privilege(t, 'SELECT'), has_table_privilege(t, 'UPDATE')"
            " FROM (SELECT to_regclass(%s) AS t) AS policy WHERE t IS NOT NULL",
            (AUDIT_POLICY,),
        ).fetchone()
        row = None
        if rights and rights[0]:
            try:
                with connection.transaction():  # a savepoint: the transaction ends cleanly after a lock timeout
                    row = connection.execute(f"SELECT days, set_at IS NOT NULL FROM {AUDIT_POLICY}").fetchone()
            except psycopg.errors.LockNotAvailable:
                return (f"audit retention: not read: another session has held {AUDIT_POLICY} locked for"
                        f" {PREVIEW_LOCK_TIMEOUT} (pg_locks says which); the upgrade would wait for it")  # fmt: skip
    held = float(row[0]) if row else 0.0
    if rights is None:
        database = f"no {AUDIT_POLICY} table yet (migration 26 makes it, at 0: kept without limit)"
    else:
        database = shown(held) if rights[0] else f"nothing this role may read ({AUDIT_POLICY})"
    if days is None:
        return f"audit retention: the database's, {database}, left as it is: {refused}"
    if row is not None and held == days and row[1]:
        return f"audit retention: {shown(days)}, as the database holds: nothing to write"
    said = f"the database {'has' if rights is None else 'holds' if rights[0] else 'says'} {database}"
    if rights is not None and not rights[1]:
        return (f"audit retention: the settings give {shown(days)}; {said}; only the schema's owner may write it:"
                " the upgrade, as this role, would leave it as it is, with a warning")  # fmt: skip
    return f"audit retention: would write {shown(days)}; {said}"


def not_owners(database: str, days: float, differs: str) -> str:
    """What a role that may not set the retention is told of the database's (`database`, as said) and the
    settings' (`days`), which it `differs` from ("is not", or where not read "may not be")."""
    return (
        f"the database's audit retention ({database}) {differs} the settings' ({describe(days)}), and only the"
        " schema's owner may set it: left as it was; run `alpr db upgrade` as the owner to change it"
    )


def held_to_database(configured: float, database: float, named: str) -> tuple[float, str | None]:
    """The audit retention a prune deletes past: its own (`configured`, from `named`), or the database's where that
    is longer or without limit (0: none deleted), which Postgres's trigger holds every delete to; with the line
    that says so where they differ that way (None where the prune's own holds)."""
    if database and configured >= database:
        return configured, None
    told = (
        f"{named} is {configured:g} days, but the database keeps the audit records"
        f" {f'{database:g} days' if database else 'without limit'} (set by `alpr db upgrade` from the owner's"
        f" settings): {f'pruned past {database:g} days' if database else 'none pruned'}; run `alpr db upgrade` as"
        " the schema's owner with this setting to change the database's"
    )
    return database, told

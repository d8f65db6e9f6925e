"""Watch-lists: plates listed with a reason and an optional expiry, in named lists (Postgres table
`watchlist`, migration 6). Owns the table's reads and writes (`WatchList`: add, remove, the entries a
worker loads, the version that tells it when to load them again) and the import of a whole file's entries
in one transaction (`WatchList.import_rows`, `ImportResult`; the file's format: common/watchlist_csv.py).
The entry and its checks are common/watchlist_entry.py's; matching a read against the entries,
common/watchlist_index.py's; the copy a worker matches every read against, reloaded every few seconds,
common/watchlist_cache.py's."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool

from common import defaults
from common.errors import InputError
from common.watchlist_entry import (
    DEFAULT_LIST,
    EARLIEST,
    MAX_REASON_CHARS,
    NEVER_FROM,
    WatchEntry,
    normalise_plate,
    shown,
)

log = logging.getLogger(__name__)


def _one_line(reason: str) -> str:
    """A reason as stored, made one printable line (controls, line breaks and format characters become
    spaces): the table's check bounds its length only, and a reason the entry refused dropped its plate
    from every match."""
    return " ".join("".join(c if c.isprintable() else " " for c in reason).split())[:MAX_REASON_CHARS] or "?"


class WatchList:
    """The `watchlist` table through a connection pool (the schema brought up by `alpr db upgrade`)."""

    def __init__(self, pool: ConnectionPool, operator: str | None = None) -> None:
        self.pool = pool
        self.operator = operator
        """Who makes the changes (`alpr watchlist --by`): named in Postgres's record of them (migration 16)."""

    def _named(self, connection: psycopg.Connection) -> None:
        """The operator, for this transaction's changes' record."""
        if self.operator is not None:
            connection.execute("SELECT set_config('alpr.operator', %s, true)", (self.operator,))

    def add(self, entry: WatchEntry) -> None:
        """Add an entry, or replace the reason and expiry of the same plate on the same list."""
        with self.pool.connection() as connection, connection.transaction():
            self._named(connection)
            _upsert(connection, [entry])

    def remove(self, plate: str, list_name: str = DEFAULT_LIST) -> bool:
        """Remove a plate from a list; False when it was not on it."""
        with self.pool.connection() as connection, connection.transaction():
            self._named(connection)
            cursor = connection.execute(
                "DELETE FROM watchlist WHERE list_name = %s AND plate = %s", (list_name, normalise_plate(plate))
            )
            return cursor.rowcount > 0

    def lists_of(self, plate: str) -> list[str]:
        """The names of the lists that hold `plate` (expired entries too), sorted: what `alpr watchlist
        remove` names when the plate is not on the list given."""
        with self.pool.connection() as connection:
            rows = connection.execute(
                "SELECT list_name FROM watchlist WHERE plate = %s ORDER BY list_name", (normalise_plate(plate),)
            ).fetchall()
        return [str(row[0]) for row in rows]

    def entries(
        self, include_expired: bool = False, expired_within_s: float = 0.0, connection: psycopg.Connection | None = None
    ) -> list[WatchEntry]:
        """Every entry (only those not expired, or expired less than `expired_within_s` ago, unless
        asked), by list and plate; read over `connection` where given (`_connection`), else one of the
        pool's."""
        where = (
            ""
            if include_expired
            else " WHERE expires_at IS NULL OR expires_at > now() - make_interval(secs => %(within)s)"
        )
        # a row written by hand (or before the bounds) past NEVER_FROM or before EARLIEST read as never / expired:
        # one Python could not hold failed every load, and the workers matched against no list at all
        expires = (
            "CASE WHEN expires_at >= %(never_from)s THEN NULL"
            " WHEN expires_at < %(earliest)s THEN %(earliest)s ELSE expires_at END"
        )
        with self._connection(connection) as reading:
            rows = reading.execute(
                f"SELECT plate, reason, list_name, {expires} FROM watchlist{where} ORDER BY list_name, plate",
                {"never_from": NEVER_FROM, "earliest": EARLIEST, "within": expired_within_s},
            ).fetchall()
        entries = []
        for plate, reason, list_name, expires_at in rows:
            try:  # a reason written by hand in SQL with a tab or a line break: the plate was skipped (fail-open)
                entries.append(WatchEntry(plate, _one_line(reason), list_name, expires_at))
            except InputError as error:  # a row written by hand in SQL: skipped, the others still match
                log.warning("watch-list %s: an entry is skipped, not valid: %s", shown(str(list_name)), error)
        return entries

    def version(self, connection: psycopg.Connection | None = None) -> int:
        """A number that grows with every change to the table (a trigger counts each statement, a hand-
        written SQL one included, migration 9): the cache reloads the entries only when it moved. Read
        as `entries` is."""
        with self._connection(connection) as reading:
            row = reading.execute("SELECT version FROM watchlist_version").fetchone()
        return int(row[0]) if row else 0

    @contextlib.contextmanager
    def _connection(self, connection: psycopg.Connection | None) -> Iterator[psycopg.Connection]:
        """`connection` within a savepoint of its transaction (a failure leaves the transaction going), or
        as it is in autocommit (each statement its own transaction, ended before its rows are turned into
        Python's: a list of 1.5 million rows takes seconds), or one of the pool's."""
        if connection is not None and connection.autocommit:
            yield connection
            return
        if connection is not None:
            with connection.transaction():
                yield connection
            return
        with self.pool.connection(timeout=defaults.DB_ATTEMPT_S) as pooled:
            yield pooled

    def import_rows(self, rows: Sequence[WatchEntry], replace: bool = False) -> ImportResult:
        """Add or update `rows` (an import file's, all checked first by common.watchlist_csv.read_csv: any
        fault imports nothing) in one transaction, a plate named again in its list one entry, its last row
        winning. With `replace`, each list the rows name then holds exactly them: its other entries are
        removed in the same transaction (an operator who keeps a list as a file and deletes a recovered
        car's row left it listed and alerting, told "imported"); without, they are counted, and kept."""
        with self.pool.connection() as connection, connection.transaction():
            self._named(connection)
            written = _upsert(connection, rows)
            in_rows = Counter(name for name, _ in {(row.list_name, row.plate) for row in rows})
            lists = sorted(in_rows)
            if replace:  # one statement, its change records one insert, as the upsert's
                counted = connection.execute(
                    "WITH gone AS (DELETE FROM watchlist w WHERE w.list_name = ANY(%s::text[]) AND NOT EXISTS"
                    " (SELECT 1 FROM unnest(%s::text[], %s::text[]) AS f(list_name, plate)"
                    " WHERE f.list_name = w.list_name AND f.plate = w.plate) RETURNING w.list_name)"
                    " SELECT list_name, count(*) FROM gone GROUP BY 1",
                    (lists, [row.list_name for row in rows], [row.plate for row in rows]),
                ).fetchall()
                not_in_rows = {str(name): int(count) for name, count in counted}
            else:  # every entry of the rows is in the table now: the others are what the list holds beyond them
                counted = connection.execute(
                    "SELECT list_name, count(*) FROM watchlist WHERE list_name = ANY(%s::text[]) GROUP BY 1", (lists,)
                ).fetchall()
                not_in_rows = {str(name): int(count) - in_rows[name] for name, count in counted}
        not_in_rows = {name: not_in_rows[name] for name in sorted(not_in_rows) if not_in_rows[name] > 0}
        return ImportResult(written, lists, not_in_rows, replace)


@dataclass(frozen=True)
class ImportResult:
    """What `WatchList.import_rows` did: the entries written, the lists the rows named and, of each such
    list with entries the rows do not hold, how many: removed where `replaced`, else kept."""

    written: int
    lists: list[str]
    not_in_rows: dict[str, int]
    replaced: bool


def _upsert(connection: psycopg.Connection, entries: Sequence[WatchEntry]) -> int:
    """One statement however many entries (the table's change trigger fires once; 100,000 statements
    took minutes), the last of a plate listed twice in a list winning, as the entries are given; the
    number of distinct entries written."""
    last = list({(e.list_name, e.plate): e for e in entries}.values())
    connection.execute(
        "INSERT INTO watchlist (list_name, plate, reason, expires_at)"
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[])"
        " ON CONFLICT (list_name, plate) DO UPDATE SET reason = excluded.reason, expires_at = excluded.expires_at",
        (
            [e.list_name for e in last],
            [e.plate for e in last],
            [e.reason for e in last],
            [e.expires_at for e in last],
        ),
    )
    return len(last)

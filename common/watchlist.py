"""Watch-lists: plates listed with a reason and an optional expiry, in named lists (Postgres table
`watchlist`, migration 6). Owns the entry type and its validation (`WatchEntry`, `normalise_plate`),
the table's reads and writes (`WatchList`; the CSV import's format: common/watchlist_csv.py),
matching a plate against the entries (`match_lists`: exact or within a plate distance, look-alikes
counting half) and the copy a worker matches every read against (`WatchListCache`, reloaded every
few seconds)."""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import MAXYEAR, UTC, datetime

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool

from common import defaults
from common.errors import InputError
from common.iso_time import from_iso, period
from common.plate_distances import plate_codes, plate_distances
from common.plate_keys import KEY_WIDTH, MAX_DELETIONS, DeletionKeys, deletions_for
from common.plate_text import LOOKALIKE_SUBSTITUTION_COST, plate_distance

log = logging.getLogger(__name__)

PLATE_RE = re.compile(r"[A-Z0-9]{1,16}")
LIST_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DEFAULT_LIST = "default"
MAX_REASON_CHARS = 200


CHARACTER_BITS = {char: bit for bit, char in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")}
"""A plate character's bit in a character set; any other character shares bit 63."""


def char_set(text: str) -> int:
    """The characters of a text as a 64-bit set: a cheap lower bound of plate_distance."""
    bits = 0
    for char in set(text):
        bits |= 1 << CHARACTER_BITS.get(char, 63)
    return bits


def shown(value: str, limit: int = 40) -> str:
    """`value` quoted and escaped as Python writes it, shortened to `limit` characters: for messages."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _one_line(reason: str) -> str:
    """A reason as stored, made one printable line (controls, line breaks and format characters become
    spaces): the table's check bounds its length only, and a reason the entry refused dropped its plate
    from every match."""
    return " ".join("".join(c if c.isprintable() else " " for c in reason).split())[:MAX_REASON_CHARS] or "?"


def normalise_plate(text: str) -> str:
    """Plate text as listed and as read: upper case, spaces, dashes and dots dropped; anything else
    (another character, empty, over 16 characters) is refused, saying what is wrong without the value
    (`plate_fault`)."""
    plate = re.sub(r"[\s.-]", "", text)
    plate = plate.upper() if plate.isascii() else plate  # upper-cased, ı and ſ became I and S, ß SS, ﬁ FI
    if not PLATE_RE.fullmatch(plate):
        raise InputError(
            f"not a plate: {plate_fault(plate)} (letters A-Z and digits, 1 to 16; spaces, - and . ignored)"
        )
    return plate


def plate_fault(plate: str) -> str:
    """What keeps `plate` (spaces, - and . dropped) from being one, by counts, never its characters: the
    message was shown on stderr (which cron and systemd keep) by `alpr watchlist add/remove -`, `alpr search -`
    and `alpr watchlist import` (a review: "not a plate: 'AB12CDÖ'")."""
    if not plate:
        return "nothing left once spaces, - and . are dropped"
    others = sum(not ("A" <= c <= "Z" or "0" <= c <= "9") for c in plate)
    said = [f"{len(plate)} characters"] + ["more than 16"] * (len(plate) > 16)
    return ", ".join(said + [f"{others} not A-Z or 0-9"] * (others > 0))


NEVER_FROM = datetime(9999, 12, 30, tzinfo=UTC)
"""An expiry at or after this is no expiry: 9999-12-31 is how many systems write "never", and a time
past it (in any zone) cannot be read back into Python: one such row stopped every worker loading the
lists (Postgres keeps years past 9999; Python's datetime does not)."""

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""No expiry before this is taken (year 1 with a time zone ahead of UTC was stored as 1 BC, unreadable)."""


def parse_expiry(text: str) -> datetime | None:
    """An ISO-8601 date or date and time ('' = never); without a time zone it is UTC; kept in UTC. A date
    alone lists the plate through that day: it ends when the next begins (2030-07-01 ended as 1 July
    began, where an operator reads "expires on 1 July" as listed that day), in every form Python reads
    (2030-W27-1 the same; a week alone, 2030-W27, through its Sunday). From NEVER_FROM on: never."""
    if not text.strip():
        return None
    try:
        moment = from_iso(text.strip())
        moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        if moment >= NEVER_FROM:
            return None
        moment = (moment + period(text.strip())).astimezone(UTC)
    except ValueError:
        raise InputError(f"not an ISO-8601 date or time: {shown(text)}") from None
    except OverflowError:  # year 1 ahead of UTC, or the last days of 9999 and a day or week added
        if moment.year == MAXYEAR:
            return None
        raise InputError(f"not an expiry from 1970 on: {shown(text)}") from None
    if moment < EARLIEST:
        raise InputError(f"not an expiry from 1970 on: {shown(text)}")
    return None if moment >= NEVER_FROM else moment


@dataclass(frozen=True)
class WatchEntry:
    """One listed plate (normalised), why it is listed, its list, and when the listing ends (None: never)."""

    plate: str
    reason: str
    list_name: str = DEFAULT_LIST
    expires_at: datetime | None = None
    chars: int = field(init=False, repr=False, compare=False)
    """char_set(plate), computed once."""

    def __post_init__(self) -> None:
        if not PLATE_RE.fullmatch(self.plate):
            raise InputError(f"not a normalised plate: {plate_fault(self.plate)}")
        if not self.reason.strip() or len(self.reason) > MAX_REASON_CHARS or not self.reason.isprintable():
            raise InputError(f"a reason needs 1 to {MAX_REASON_CHARS} printable characters, on one line")
        if not LIST_NAME_RE.fullmatch(self.list_name):
            raise InputError(f"not a list name: {shown(self.list_name)} (A-Z, a-z, 0-9, _ . -; 1 to 64)")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise InputError("an expiry needs a time zone")
        object.__setattr__(self, "chars", char_set(self.plate))

    @classmethod
    def parse(cls, plate: str, reason: str, expires: str = "", list_name: str = "") -> WatchEntry:
        """An entry from text as typed or as in a CSV cell: the plate normalised, '' list = the default."""
        spaced = "".join(" " if unicodedata.category(c) == "Zs" else c for c in reason)  # a no-break space pasted
        return cls(normalise_plate(plate), spaced.strip(), list_name.strip() or DEFAULT_LIST, parse_expiry(expires))

    def expired(self, now_s: float) -> bool:
        return self.expires_at is not None and self.expires_at.timestamp() <= now_s


@dataclass(frozen=True)
class WatchMatch:
    """A plate that matched an entry, and how far apart they are (0: exactly)."""

    plate: str
    entry: WatchEntry
    distance: float


def match_lists(plate: str, entries: Sequence[WatchEntry], max_distance: float, now_s: float) -> list[WatchMatch]:
    """On every list that holds an entry within `max_distance` of `plate` (within a look-alike swap for an
    entry shorter than defaults.WATCH_FUZZY_MIN_CHARS), its nearest (ties by plate),
    by list name: a plate listed as unpaid parking and as stolen raises both, not the first list's
    alone. Expired entries (at `now_s`: the capture time) and an empty plate never match."""
    return WatchIndex(entries, max_distance).match_lists(plate, max_distance, now_s)


DISTANCES_AT_ONCE_FROM = 4
"""Candidates from which WatchIndex computes their exact distances at once in numpy, not one by one."""


class WatchIndex:
    """The entries indexed two ways. Within `keyed_distance` (ALPR_WATCH_MAX_DISTANCE: the sighting worker
    builds it so; 1.0 by default) a read's candidates are looked up by their deletion keys
    (common/plate_keys.py: every entry within that distance shares one with the read, keys with up to
    floor(keyed_distance) characters dropped), a handful on a hot-list of 100,000; the numpy bounds
    (length and character set, computed over every entry at once) narrow what is left, and the exact
    distance decides, for many candidates all at once (common/plate_distances.py: within 3 the keys leave
    360 to 1,240 of 100,000 random plates, 9–31 ms a read one at a time, about 1–2.4 ms at once). Beyond
    it the bounds alone, over every entry. With the exact distance one at a time (`match_lists_scanned`,
    the tests' reference) they left about 370 of 100,000 random 7-character plates within 1.0 (a look-alike
    swap costs 0.5, so two differing characters passed them), 8 ms a read, and a sighting worker of 250
    reads a second fell further behind every round (a review); within 2 and 3 (no keys there before)
    0.36–0.62 s and 2.0–2.2 s (benchmarks/bench_watchlist.py). One entry at a time in Python, before: 30 ms
    a read."""

    def __init__(self, entries: Sequence[WatchEntry], keyed_distance: float = defaults.WATCH_MAX_DISTANCE) -> None:
        self.entries = tuple(entries)
        count = len(self.entries)
        self.lengths = np.fromiter((len(e.plate) for e in self.entries), np.int64, count)
        self.chars = np.fromiter((e.chars for e in self.entries), np.uint64, count)
        self.expires_s = np.fromiter(
            (math.inf if e.expires_at is None else e.expires_at.timestamp() for e in self.entries), np.float64, count
        )
        self.codes = plate_codes([e.plate for e in self.entries], KEY_WIDTH)
        """Each entry's plate as bytes, for the exact distance to many at once (common/plate_distances.py)."""
        self.short = self.lengths < defaults.WATCH_FUZZY_MIN_CHARS
        """Entries matched within a look-alike swap at most (a whole edit matched too many other plates)."""
        deletions = min(deletions_for(keyed_distance), MAX_DELETIONS)  # further: the bounds over every entry
        self.keys = DeletionKeys([e.plate for e in self.entries], deletions)

    def match_lists(self, plate: str, max_distance: float, now_s: float) -> list[WatchMatch]:
        """match_lists (module function) against these entries."""
        if not plate or not self.entries:
            return []
        deletions = deletions_for(max_distance)
        if deletions <= self.keys.deletions and len(plate) <= KEY_WIDTH + deletions:
            return self._nearest(plate, max_distance, now_s, self.keys.candidates(plate, deletions))
        return self._nearest(plate, max_distance, now_s, np.arange(len(self.entries)))

    def match_lists_scanned(self, plate: str, max_distance: float, now_s: float) -> list[WatchMatch]:
        """match_lists with the bounds over every entry, no keys, and the exact distance one entry at a
        time in Python: what match_lists did before its keys and plate_distances, the reference the tests
        compare it with."""
        if not plate or not self.entries:
            return []
        return self._nearest(plate, max_distance, now_s, np.arange(len(self.entries)), at_once=False)

    def _distances(self, plate: str, indices: np.ndarray, at_once: bool = True) -> np.ndarray:
        """plate_distance from `plate` to each entry of `indices`: in Python for a few (numpy's start costs
        about as much as one), else all at once (common/plate_distances.py); with `at_once` False, one at a
        time."""
        if len(indices) < DISTANCES_AT_ONCE_FROM or not at_once:
            return np.array([plate_distance(plate, self.entries[index].plate) for index in indices.tolist()])
        return plate_distances(plate, self.codes[indices], self.lengths[indices])

    def _nearest(
        self, plate: str, max_distance: float, now_s: float, candidates: np.ndarray, at_once: bool = True
    ) -> list[WatchMatch]:
        """Each list's nearest entry among `candidates` (indices, ascending: of a plate listed twice on a
        list, the first wins) within reach of `plate`, by list name (`at_once`: `_distances`)."""
        # Lower bounds of the distance: the length difference; a character of one plate missing from the
        # other takes an edit of at least the look-alike cost.
        chars, edit_cost = np.uint64(char_set(plate)), min(LOOKALIKE_SUBSTITUTION_COST, 1.0)
        entry_chars = self.chars[candidates]
        missing = np.maximum(np.bitwise_count(chars & ~entry_chars), np.bitwise_count(entry_chars & ~chars))
        short_distance = min(max_distance, LOOKALIKE_SUBSTITUTION_COST)
        reach = np.where(self.short[candidates], short_distance, max_distance)
        near = (np.abs(self.lengths[candidates] - len(plate)) <= reach) & (missing * edit_cost <= reach)
        near &= self.expires_s[candidates] > now_s
        distances = self._distances(plate, candidates[near], at_once)
        within = distances <= reach[near]
        best: dict[str, WatchMatch] = {}
        for index, distance in zip(candidates[near][within].tolist(), distances[within].tolist(), strict=True):
            entry = self.entries[index]
            held = best.get(entry.list_name)
            if held is None or (distance, entry.plate) < (held.distance, held.entry.plate):
                best[entry.list_name] = WatchMatch(plate, entry, distance)
        return [best[name] for name in sorted(best)]


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


POSTGRES_CLOCK_SKEW_S = 60.0
"""How far the worker's clock may be from Postgres's: the cache loads entries expired this much longer
ago than it judges by, as Postgres's clock decides what is loaded and the worker's what is judged."""


class WatchListUnavailableError(Exception):
    """No watch-list has been loaded yet, and it cannot be now: whoever matches reads against it must not
    take them (a read taken unmatched is never alerted on)."""


class WatchListCache:
    """The entries a worker matches every read against, reloaded at most every `refresh_s` (no query
    per read). While Postgres is unreachable the last loaded entries stay in use, with a warning; before
    any has loaded, WatchListUnavailableError. For one thread (a worker's job loop)."""

    def __init__(
        self,
        watchlist: WatchList,
        refresh_s: float,
        clock: Callable[[], float] = time.monotonic,
        expired_within_s: float = 0.0,
        wall_clock: Callable[[], float] = time.time,
        keyed_distance: float = defaults.WATCH_MAX_DISTANCE,
    ) -> None:
        self.watchlist = watchlist
        self.keyed_distance = keyed_distance
        """The distance the index's keys reach (WatchIndex): the worker's ALPR_WATCH_MAX_DISTANCE. Within 3,
        100,000 plates' keys take 51 MB (23 MB within 2, 6.4 MB within 1; 1,000,000: ten times that; their
        plates' bytes, for the exact distance, 1.6 MB more at any distance), built again at each reload that
        changed the table (1,000,000: 4.7 s within 3, 1.6 s within 1)."""
        self.refresh_s = refresh_s
        self.clock, self.wall_clock = clock, wall_clock
        self.expired_within_s = expired_within_s
        """Entries expired this long ago are loaded too (and a minute more, for the worker's clock against
        Postgres's): a read is matched as of its capture time, which the grouping may reach that late."""
        self._entries: tuple[WatchEntry, ...] = ()
        self._index = WatchIndex(())
        self._version: int | None = None
        self._loaded_at: float | None = None
        self._ever_loaded = False
        self.loaded_wall_s: float | None = None
        """When the entries were last loaded or found unchanged (wall clock), or None: what they are as of."""

    def current(self, connection: psycopg.Connection | None = None) -> tuple[WatchEntry, ...]:
        """The entries, reloaded first when the last load (or attempt) is `refresh_s` old, over
        `connection` where given (a second connection from the pool could be refused — too many clients,
        a role's connection limit — and a worker just started matched a listed car against no entry at
        all, its alerts lost for good: a review). The sighting worker gives it in autocommit, out of any
        transaction (common/db.autocommitting): the entries and their index are built in Python, seconds
        for a long list, and a session of its pool idle in a transaction that long is ended by Postgres.
        WatchListUnavailableError while no load has ever succeeded."""
        now = self.clock()
        if self._loaded_at is None or now - self._loaded_at >= self.refresh_s:
            self._loaded_at = now
            try:
                try:
                    version: int | None = self.watchlist.version(connection)
                except psycopg.errors.InsufficientPrivilege:  # a role not granted it since migration 9
                    version = None  # every refresh loads them, as before the count
                if version is None or version != self._version:  # 100,000 entries took 0.4 s: only when changed
                    window_s = self.expired_within_s + POSTGRES_CLOCK_SKEW_S
                    entries = tuple(self.watchlist.entries(expired_within_s=window_s, connection=connection))
                    index = WatchIndex(entries, self.keyed_distance)
                    self._entries, self._index, self._version = entries, index, version
                    self._ever_loaded = True
                self.loaded_wall_s = self.wall_clock()
            except Exception as error:  # Postgres away or anything else: matching goes on with what it had
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
                if not self._ever_loaded:
                    self._loaded_at = None  # the next call tries again at once
                    raise WatchListUnavailableError(f"the watch-lists cannot be loaded ({reason})") from error
                log.warning("watch-lists not reloaded (%s); matching against the %d entries loaded before",
                            reason, len(self._entries))  # fmt: skip
        return self.loaded()

    def loaded(self) -> tuple[WatchEntry, ...]:
        """The entries as last loaded, never reloading; WatchListUnavailableError while none ever were."""
        if not self._ever_loaded:
            raise WatchListUnavailableError("the watch-lists have not been loaded yet")
        return self._entries

    def match_lists(
        self,
        plate: str,
        max_distance: float,
        captured_at_s: float,
        connection: psycopg.Connection | None = None,
        refresh: bool = True,
        now_s: float | None = None,
    ) -> list[WatchMatch]:
        """match_lists against the current entries (`current`, over `connection` where given; with
        `refresh` False, those `loaded` already: within a transaction kept alive, which a reload would
        leave idle while Python builds the list), each judged as of `captured_at_s` (an entry that expired
        after the car was seen still matches it), or as of `expired_within_s` before now when that is later:
        entries expired before are no longer loaded, and a pass longer than that (a parked car) alerted
        on an entry expired meanwhile only while the table happened not to change. Now is `now_s` where
        given (the sighting pool gives Postgres's clock: by its host's, 30 minutes ahead, a listed car
        whose entry had 10 minutes left was judged expired and never alerted on, a review), else
        `wall_clock`'s."""
        if refresh:
            self.current(connection)
        else:
            self.loaded()
        as_of_s = max(captured_at_s, (self.wall_clock() if now_s is None else now_s) - self.expired_within_s)
        return self._index.match_lists(plate, max_distance, as_of_s)

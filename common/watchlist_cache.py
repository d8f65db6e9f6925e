"""The watch-list entries a worker matches every read against (`WatchListCache`): loaded from the table
(common/watchlist.py) when its version moved, at most every few seconds, indexed once per load
(common/watchlist_index.py), kept in use while Postgres is away; before any load, reads are not taken
(`WatchListUnavailableError`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg

from common import defaults
from common.watchlist import WatchList
from common.watchlist_entry import WatchEntry
from common.watchlist_index import WatchIndex, WatchMatch

log = logging.getLogger(__name__)

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

"""Matching a plate against watch-list entries: on every list, its nearest entry within a plate distance,
exactly or with look-alikes counting half (`match_lists`, `WatchMatch`), through an index of the entries
(`WatchIndex`: deletion keys, numpy bounds, exact distances at once) that a worker builds once per load of
the lists (common/watchlist_cache.py) and matches every read against."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from common import defaults
from common.plate_distances import plate_codes, plate_distances
from common.plate_keys import KEY_WIDTH, MAX_DELETIONS, DeletionKeys, deletions_for
from common.plate_text import LOOKALIKE_SUBSTITUTION_COST, plate_distance
from common.watchlist_entry import WatchEntry, char_set


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

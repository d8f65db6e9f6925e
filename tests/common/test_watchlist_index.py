"""The watch-list index (common/watchlist_index.py `WatchIndex`, common/plate_keys.py): its deletion keys find
every text within the distance they claim, to each level (exhaustively over short look-alike-dense
texts), its matches are the same as the bounds over every entry at every distance a worker may be set
to (0 to 3), for 100,000 random plates and for a dense list of every length, and reads of every kind
(listed, look-alike swaps, edits, random, odd), and it computes the exact distance for a few entries a
read, not hundreds (a sighting worker fell further behind every round: a review), within 2 and 3 too."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

import common.watchlist_index
from common.plate_distances import plate_distances
from common.plate_keys import MAX_DELETIONS, DeletionKeys, deletions_for, text_keys
from common.plate_text import LOOKALIKE_GROUPS, plate_distance
from common.watchlist_entry import WatchEntry
from common.watchlist_index import WatchIndex, WatchMatch

NOW_S = datetime(2030, 6, 1, tzinfo=UTC).timestamp()
LETTERS, DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789"
PLATE_CHARS = LETTERS + DIGITS


def us_plate(rng: random.Random) -> str:
    """Three letters and four digits: a dense format (the one whose bounds left most entries)."""
    return "".join(rng.choices(LETTERS, k=3) + rng.choices(DIGITS, k=4))


def hot_list(rng: random.Random, count: int) -> list[WatchEntry]:
    """`count` random entries: mostly 3 letters and 4 digits, some other lengths (short ones among them),
    on two lists, a few expired, a few plates listed twice on one list."""
    expired, later = datetime(2030, 5, 1, tzinfo=UTC), datetime(2030, 7, 1, tzinfo=UTC)
    entries = []
    for number in range(count):
        other_length = "".join(rng.choices(PLATE_CHARS, k=rng.randint(2, 9)))
        plate = us_plate(rng) if number % 10 else other_length
        entries.append(
            WatchEntry(
                plate,
                f"reason {number}",
                "stolen" if number % 3 else "parking",
                expired if number % 50 == 0 else later if number % 7 == 0 else None,
            )
        )
    entries += [WatchEntry(e.plate, "listed again", e.list_name) for e in entries[5:200:20]]
    return entries


def lookalike(char: str, rng: random.Random) -> str:
    """Another character of `char`'s look-alike group, or `char` where it has none."""
    group = next((group for group in LOOKALIKE_GROUPS if char in group), char)
    return rng.choice([other for other in group if other != char] or [char])


def variant(plate: str, rng: random.Random) -> str:
    """`plate` misread: look-alike swaps, a substitution, an insertion or a deletion, or several."""
    chars = list(plate)
    for _ in range(rng.randint(1, 3)):
        kind, at = rng.randrange(5), rng.randrange(len(chars) + 1)
        if kind <= 1 and at < len(chars):
            chars[at] = lookalike(chars[at], rng)
        elif kind == 2 and at < len(chars):
            chars[at] = rng.choice(PLATE_CHARS)
        elif kind == 3:
            chars.insert(at, rng.choice(PLATE_CHARS))
        elif chars[1:]:
            del chars[min(at, len(chars) - 1)]
    return "".join(chars)


def reads(rng: random.Random, entries: list[WatchEntry], count: int) -> Iterator[str]:
    """Reads of every kind: listed plates, their misreads, random plates, odd texts."""
    odd = ["", "A", "ab1234", "ABC-123", "ÀBC1234", "A" * 16, "B" * 17, "8" * 18, "ABC?234"]
    yield from odd
    for number in range(count - len(odd)):
        listed = rng.choice(entries).plate
        yield (listed, variant(listed, rng), variant(listed, rng), us_plate(rng))[number % 4]


def as_compared(matches: list[WatchMatch]) -> list[tuple[str, str, str, float]]:
    """Matches as compared: every field, the entry's identity (reason) included."""
    return [(m.plate, m.entry.list_name, m.entry.reason, m.distance) for m in matches]


@pytest.fixture(scope="module")
def large_index() -> WatchIndex:
    """100,000 random entries, indexed once for the module to the largest distance a worker may be set to."""
    return WatchIndex(hot_list(random.Random(7), 100_000), keyed_distance=3.0)


@pytest.mark.parametrize("deletions", range(1, MAX_DELETIONS + 1))
def test_deletion_keys_find_every_text_within_their_reach(deletions):
    """Every pair of short texts over look-alikes and others (every text of 1 to 3 of them, and reads of
    up to 6, or with a character outside A-Z 0-9) within a distance below `deletions` + 1 shares a key:
    exhaustively."""
    texts = ["".join(chars) for length in range(1, 4) for chars in itertools.product("O0B8XI1", repeat=length)]
    keys = DeletionKeys(texts, deletions)
    rng = random.Random(deletions)
    longer = ["".join(rng.choices("O0B8XI1", k=rng.randint(4, 6))) for _ in range(150)]
    for read in [*texts, *longer, "O?", "?", "x0B", "O0?8B", "??????"]:
        candidates = set(keys.candidates(read).tolist())
        within = {index for index, text in enumerate(texts) if plate_distance(read, text) < deletions + 1}
        assert within <= candidates, (read, [texts[index] for index in within - candidates])


def test_keys_of_a_read_are_the_keys_of_the_same_listed_plate():
    """The keys hashed in Python for a read and in numpy for a listed plate agree, to every level."""
    rng = random.Random(3)
    texts = ["".join(rng.choices(PLATE_CHARS, k=rng.randint(1, 16))) for _ in range(300)]
    for deletions in range(MAX_DELETIONS + 1):
        keys = DeletionKeys(texts, deletions)
        high = ~np.uint64(2**keys.owner_bits - 1)
        kept = np.concatenate(keys.levels)
        owners = np.concatenate([keys.owners(level) for level in range(deletions + 1)])
        for index, text in enumerate(texts):
            read = {key & int(high) for key in text_keys(text, deletions)}
            assert set((kept[owners == index] & high).tolist()) == read, (deletions, text)


ALLOWED_DISTANCES = [0.0, 0.5, 1.0, 1.5, 1.99, 2.0, 2.5, 3.0]
"""Every step ALPR_WATCH_MAX_DISTANCE may take (a look-alike swap costs 0.5), to its largest, 3."""


@pytest.fixture(scope="module")
def unkeyed_index(large_index: WatchIndex) -> WatchIndex:
    """The same entries keyed to no deletion: from 1.0 on, the bounds over every entry and the exact distances
    at once (common/plate_distances.py, itself compared with plate_distance exhaustively)."""
    return WatchIndex(large_index.entries, keyed_distance=0.0)


@pytest.mark.parametrize("max_distance", ALLOWED_DISTANCES)
def test_the_keyed_index_matches_what_the_bounds_over_every_entry_match(large_index, unkeyed_index, max_distance):
    """100,000 random entries: every read (listed, misread by up to three edits, random, odd) matches the
    same entries, at the same distances, as by the bounds over every entry (what the index did before
    its keys). From 1.5 on, the bounds' exact distances are computed at once (one at a time took seconds a read
    there: 12 to 100 reads took 4 of CI's minutes; now 100 each), but for the first two reads, compared one at a
    time too."""
    count = 1000 if max_distance < 1.5 else 100
    rng = random.Random(int(max_distance * 100))
    entries = list(large_index.entries)
    matched = 0
    for number, read in enumerate(reads(rng, entries, count)):
        keyed = large_index.match_lists(read, max_distance, NOW_S)
        if max_distance < 1.5 or number < 2:
            assert as_compared(keyed) == as_compared(large_index.match_lists_scanned(read, max_distance, NOW_S)), read
        if max_distance >= 1.0:
            assert unkeyed_index.keys.deletions < deletions_for(max_distance)  # the bounds over every entry
            assert as_compared(keyed) == as_compared(unkeyed_index.match_lists(read, max_distance, NOW_S)), read
        matched += bool(keyed)
    assert matched > count // 4  # the reads near listed plates did match


DENSE_CHARS = "O0DQB8I1LS5XK"
"""Look-alikes (O0DQ, B8, I1L, S5) and two others: a list of these is near every read of them."""


def dense_list(rng: random.Random, count: int) -> list[WatchEntry]:
    """`count` entries of 1 to 12 dense characters, on two lists, a few expired."""
    expired = datetime(2030, 5, 1, tzinfo=UTC)
    return [
        WatchEntry(
            "".join(rng.choices(DENSE_CHARS, k=rng.randint(1, 12))),
            f"reason {number}",
            "stolen" if number % 3 else "parking",
            expired if number % 50 == 0 else None,
        )
        for number in range(count)
    ]


@pytest.mark.parametrize("max_distance", ALLOWED_DISTANCES)
def test_the_keyed_index_matches_the_bounds_on_a_dense_list_of_every_length(max_distance):
    """1,000 entries of 1 to 12 look-alike-dense characters and 1,500 reads of them (look-alike swaps,
    substitutions, insertions, deletions, up to three at once, and other lengths): the same matches, at
    the same distances, by the keys as by the bounds over every entry, with a match of every distance up
    to `max_distance` among them (the keys are tested where they have something to miss)."""
    rng = random.Random(17 + int(max_distance * 10))
    index = WatchIndex(dense_list(rng, 1000), keyed_distance=3.0)
    unkeyed = WatchIndex(index.entries, keyed_distance=0.0)  # from 1.0 on: the bounds, distances at once
    entries = list(index.entries)
    seen: set[float] = set()
    for number in range(1500):
        listed = rng.choice(entries).plate
        read = (variant(listed, rng), variant(variant(listed, rng), rng), listed)[number % 3]
        keyed = index.match_lists(read, max_distance, NOW_S)
        if max_distance < 1.0 or number < 150:  # one at a time: 1,500 reads took 15-18 s a distance from 2 on
            assert as_compared(keyed) == as_compared(index.match_lists_scanned(read, max_distance, NOW_S)), read
        else:
            assert as_compared(keyed) == as_compared(unkeyed.match_lists(read, max_distance, NOW_S)), read
        seen |= {match.distance for match in keyed}
    assert seen == {step / 2 for step in range(int(max_distance * 2) + 1)}


def test_an_index_keyed_to_one_distance_scans_beyond_it():
    """An index keyed within 1.0 (the default) matches within 3 by the bounds over every entry, the same."""
    rng = random.Random(5)
    index = WatchIndex(dense_list(rng, 500))
    assert index.keys.deletions == 1
    for read in ["O0B8X", "SKQ1", "LLL", "XXXXXXXXXXXXXXXX"]:
        assert as_compared(index.match_lists(read, 3.0, NOW_S)) == as_compared(
            index.match_lists_scanned(read, 3.0, NOW_S)
        )


@pytest.mark.parametrize(("max_distance", "most", "count"), [(1.0, 5, 1000), (2.0, 100, 200), (3.0, 2500, 100)])
def test_a_read_computes_the_exact_distance_for_a_few_entries(large_index, monkeypatch, max_distance, most, count):
    """100,000 random entries, random reads of the densest format: within 1.0 the bounds over every entry
    left about 450 a read for the exact distance (8 ms, a review), within 2 and 3 about 26,000 and 94,000
    (0.6 and 2.2 s, benchmarks/bench_watchlist.py); the keys leave under 5, 100 and 2,500 on average."""
    calls = [0]

    def counted(a: str, b: str) -> float:
        calls[0] += 1
        return plate_distance(a, b)

    def counted_at_once(text: str, codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        calls[0] += len(lengths)
        return plate_distances(text, codes, lengths)

    monkeypatch.setattr(common.watchlist_index, "plate_distance", counted)
    monkeypatch.setattr(common.watchlist_index, "plate_distances", counted_at_once)
    rng = random.Random(11)
    plates = [us_plate(rng) for _ in range(count)]
    for plate in plates:
        large_index.match_lists(plate, max_distance, NOW_S)
    assert calls[0] / len(plates) < most

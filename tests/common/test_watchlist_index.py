"""The watch-list index (common/watchlist.py `WatchIndex`, common/plate_keys.py): its deletion keys find
every text within the distance they claim (exhaustively over short look-alike-dense texts), its
matches are the same as the bounds over every entry for 100,000 random plates and reads of every kind
(listed, look-alike swaps, edits, random, odd), and it computes the exact distance for a few entries a
read, not hundreds (a sighting worker fell further behind every round: a review)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

import common.watchlist
from common.plate_keys import KEYED_REACH, DeletionKeys, text_keys
from common.plate_text import LOOKALIKE_GROUPS, plate_distance
from common.watchlist import WatchEntry, WatchIndex, WatchMatch

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
    """100,000 random entries, indexed once for the module."""
    return WatchIndex(hot_list(random.Random(7), 100_000))


def test_deletion_keys_find_every_text_within_their_reach():
    """Every pair of short texts over look-alikes and others (and a read one longer, or with a character
    outside A-Z 0-9) within a distance below KEYED_REACH shares a key: exhaustively."""
    texts = ["".join(chars) for length in range(1, 4) for chars in itertools.product("O0B8XI1", repeat=length)]
    keys = DeletionKeys(texts)
    read_texts = [*texts, "O0B8", "XX1I", "8B0O", "O?", "?", "x0B"]
    for read in read_texts:
        candidates = set(keys.candidates(read).tolist())
        within = {index for index, text in enumerate(texts) if plate_distance(read, text) < KEYED_REACH}
        assert within <= candidates, (read, [texts[index] for index in within - candidates])


def test_keys_of_a_read_are_the_keys_of_the_same_listed_plate():
    """The keys hashed in Python for a read and in numpy for a listed plate agree."""
    rng = random.Random(3)
    texts = ["".join(rng.choices(PLATE_CHARS, k=rng.randint(1, 16))) for _ in range(300)]
    keys = DeletionKeys(texts)
    for index, text in enumerate(texts):
        assert sorted(keys.hashes[keys.owners == index].tolist()) == sorted(text_keys(text))


@pytest.mark.parametrize(("max_distance", "count"), [(1.0, 1000), (0.0, 500), (0.5, 500), (1.5, 60), (1.99, 30)])
def test_the_keyed_index_matches_what_the_bounds_over_every_entry_match(large_index, max_distance, count):
    """100,000 random entries: every read (listed, misread, random, odd) matches the same entries, at
    the same distances, as by the bounds over every entry (what the index did before its keys)."""
    rng = random.Random(int(max_distance * 100))
    entries = list(large_index.entries)
    matched = 0
    for read in reads(rng, entries, count):
        keyed = large_index.match_lists(read, max_distance, NOW_S)
        assert as_compared(keyed) == as_compared(large_index.match_lists_scanned(read, max_distance, NOW_S)), read
        matched += bool(keyed)
    assert matched > count // 4  # the reads near listed plates did match


def test_a_read_computes_the_exact_distance_for_a_few_entries(large_index, monkeypatch):
    """100,000 random entries, random reads of the densest format within 1.0: the bounds over every entry
    left about 370 a read for the exact distance (8 ms, a review); the keys leave under 5 on average."""
    calls = [0]

    def counted(a: str, b: str) -> float:
        calls[0] += 1
        return plate_distance(a, b)

    monkeypatch.setattr(common.watchlist, "plate_distance", counted)
    rng = random.Random(11)
    plates = [us_plate(rng) for _ in range(1000)]
    for plate in plates:
        large_index.match_lists(plate, 1.0, NOW_S)
    assert calls[0] / len(plates) < 5

"""Plate distances to many plates at once (common/plate_distances.py): exactly plate_distance's values,
exhaustively over short texts of look-alikes (every group) and other characters, for reads of every
length against plates of every length up to 16 (padded in rows as wide as the widest), reads with
characters no plate holds, and the watch-list index's use of it: within 3 a read's hundreds of
candidates are measured at once, not one by one in Python (31 ms a read for 100,000 random plates)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import common.watchlist_index
from common.plate_distances import PLATE_CHARS, plate_codes, plate_distances
from common.plate_keys import KEY_WIDTH
from common.plate_text import LOOKALIKE_GROUPS, plate_distance
from common.watchlist_entry import WatchEntry
from common.watchlist_index import DISTANCES_AT_ONCE_FROM, WatchIndex
from tests.strategies import FUZZ_SETTINGS

DENSE = "O0DI1B8S5X"
"""Look-alikes of four groups and one character in none."""


def distances(read: str, plates: list[str]) -> list[float]:
    """plate_distances from `read` to `plates`, kept in rows KEY_WIDTH wide as the index keeps them."""
    lengths = np.array([len(plate) for plate in plates], np.int64)
    return plate_distances(read, plate_codes(plates, KEY_WIDTH), lengths).tolist()


def test_every_pair_of_short_texts_is_plate_distance() -> None:
    """Every text of 1 to 3 dense characters against every other, and reads of 0 to 7 of them with a
    character no plate holds (?, lower case, non-ASCII): plate_distance's value, to the half."""
    plates = ["".join(chars) for length in range(1, 4) for chars in itertools.product(DENSE, repeat=length)]
    rng = random.Random(1)
    odd = ["", "?", "o", "À", "O?0", "8b8", "1I?L1", "??????", "OOOOOOO"]
    others = ["".join(rng.choices(DENSE + "?q", k=rng.randint(4, 7))) for _ in range(60)]
    for read in [*plates[:110], *plates[110::7], *odd, *others]:
        assert distances(read, plates) == [plate_distance(read, plate) for plate in plates], read


@pytest.mark.parametrize("group", LOOKALIKE_GROUPS)
def test_every_look_alike_costs_half_an_edit(group: str) -> None:
    """Each look-alike pair of every group costs 0.5, a character of another group or none 1."""
    others = [char for char in PLATE_CHARS if char not in group]
    for char in group:
        plates = [*group, *others]
        assert distances(char, plates) == [0.0 if p == char else 0.5 if p in group else 1.0 for p in plates]


def test_lengths_to_sixteen_and_padding() -> None:
    """Plates of 1 to 16 characters in one call (rows padded to the widest), reads of 0 to 20."""
    rng = random.Random(2)
    plates = ["".join(rng.choices(PLATE_CHARS, k=length)) for length in range(1, 17) for _ in range(5)]
    for length in range(21):
        read = "".join(rng.choices(PLATE_CHARS, k=length))
        assert distances(read, plates) == [plate_distance(read, plate) for plate in plates], read
        assert distances(read, plates[:1]) == [plate_distance(read, plates[0])]
    assert distances("ABC", []) == []


@FUZZ_SETTINGS
@given(
    st.text(alphabet=DENSE + "AZ27?é", max_size=18),
    st.lists(st.text(alphabet=DENSE + "AZ27", min_size=1, max_size=16), min_size=1, max_size=20),
)
def test_random_texts_are_plate_distance(read: str, plates: list[str]) -> None:
    """Random reads (any characters) against random plates: plate_distance's values."""
    assert distances(read, plates) == [plate_distance(read, plate) for plate in plates]


def test_a_read_within_3_measures_its_candidates_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Within 3 a read of a dense list has hundreds of candidates: fewer than DISTANCES_AT_ONCE_FROM of
    them go through plate_distance in Python one at a time, the rest at once (one at a time, 31 ms a read
    of 100,000 random plates of 3 letters and 4 digits)."""
    rng = random.Random(3)
    index = WatchIndex(
        [WatchEntry("".join(rng.choices("O0B8XK", k=7)), "listed") for _ in range(5000)], keyed_distance=3.0
    )
    one_by_one, at_once = [0], [0]

    def counted(a: str, b: str) -> float:
        one_by_one[0] += 1
        return plate_distance(a, b)

    def counted_at_once(text: str, codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        at_once[0] += len(lengths)
        return plate_distances(text, codes, lengths)

    monkeypatch.setattr(common.watchlist_index, "plate_distance", counted)
    monkeypatch.setattr(common.watchlist_index, "plate_distances", counted_at_once)
    reads = ["".join(rng.choices("O0B8XK", k=7)) for _ in range(20)]
    for read in reads:
        assert index.match_lists(read, 3.0, 0.0)
    assert one_by_one[0] < DISTANCES_AT_ONCE_FROM * len(reads)
    assert at_once[0] > 100 * len(reads)

"""Plate text distance (common/plate_text.py): Levenshtein where a look-alike substitution (O/0, B/8,
...) costs half an edit. A table of edge cases, every look-alike group, and properties against an
independent reference (recursive, memoised) on random texts: symmetry, the triangle inequality, and
never more than plain Levenshtein."""

from __future__ import annotations

from functools import cache
from itertools import combinations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.plate_text import (
    LOOKALIKE_GROUPS,
    character_counts,
    distance_lower_bound,
    plate_distance,
    substitution_cost,
)
from tests.strategies import FUZZ_SETTINGS

PLATE_CHARS = "0123456789ABCDGILOQSTXZ"
"""Look-alikes of every group and a few characters in none (C, X, 3, 9)."""


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("", "", 0.0),
        ("", "ABC", 3.0),
        ("ABC", "", 3.0),
        ("ABC123", "ABC123", 0.0),
        ("A", "B", 1.0),
        ("O", "8", 1.0),  # different groups
        ("C", "0", 1.0),  # C is in no group
        ("7ABC284", "7A8C284", 0.5),
        ("7ABC284", "7XBC284", 1.0),
        ("KPX4721", "KPX4727", 1.0),
        ("KPX4721", "KPX472", 1.0),  # deletion
        ("KPX472", "KPX4721", 1.0),  # insertion
        ("0O0", "OOO", 1.0),
        ("SO8", "5D8", 1.0),
        ("ABC", "CBA", 2.0),
        ("FLAW", "LAWN", 2.0),
        ("KITTEN", "SITTING", 3.0),
        ("AB12CD", "XYZ", 5.5),  # Z aligned with its look-alike 2
        ("AB13CD", "XYW", 6.0),
    ],
)
def test_plate_distance_table(a: str, b: str, expected: float) -> None:
    assert plate_distance(a, b) == expected
    assert plate_distance(b, a) == expected


@pytest.mark.parametrize(("a", "b"), [pair for group in LOOKALIKE_GROUPS for pair in combinations(group, 2)])
def test_every_lookalike_pair_costs_half(a: str, b: str) -> None:
    assert substitution_cost(a, b) == substitution_cost(b, a) == 0.5
    assert plate_distance(f"X{a}9", f"X{b}9") == 0.5


def test_lookalike_groups_are_disjoint_upper_case_and_complete() -> None:
    chars = "".join(LOOKALIKE_GROUPS)
    assert len(chars) == len(set(chars))
    assert chars == chars.upper()
    assert set(chars) >= set("O0DQI1LB8S5Z2G6A4T7")


def _reference(a: str, b: str) -> float:
    """Weighted Levenshtein by plain recursion, with its own look-alike test."""

    def cost(x: str, y: str) -> float:
        if x == y:
            return 0.0
        return 0.5 if any(x in group and y in group for group in LOOKALIKE_GROUPS) else 1.0

    @cache
    def d(i: int, j: int) -> float:
        if i == 0 or j == 0:
            return float(i + j)
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + cost(a[i - 1], b[j - 1]))

    return d(len(a), len(b))


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


plates = st.text(alphabet=PLATE_CHARS, max_size=9)


@FUZZ_SETTINGS
@given(plates, plates)
def test_matches_reference_and_plain_levenshtein_bounds(a: str, b: str) -> None:
    distance = plate_distance(a, b)
    assert distance == _reference(a, b)
    assert distance == plate_distance(b, a)
    assert _levenshtein(a, b) / 2 <= distance <= _levenshtein(a, b)
    assert (distance == 0) == (a == b)


@FUZZ_SETTINGS
@given(plates, plates, plates)
def test_triangle_inequality(a: str, b: str, c: str) -> None:
    assert plate_distance(a, c) <= plate_distance(a, b) + plate_distance(b, c)


@FUZZ_SETTINGS
@given(plates, plates)
def test_the_lower_bound_from_character_counts_never_exceeds_the_distance(a: str, b: str) -> None:
    bound = distance_lower_bound(character_counts(a), character_counts(b))
    assert bound <= plate_distance(a, b)
    assert bound == distance_lower_bound(character_counts(b), character_counts(a))


@pytest.mark.parametrize(
    ("a", "b", "bound"),
    [("KPX4721", "KPX4721", 0.0), ("KPX4721", "KPX4727", 1.0), ("O0", "0D", 0.0), ("ABC", "", 1.5), ("AB", "XY", 2.0)],
)
def test_the_lower_bound_counts_look_alikes_as_one_character(a: str, b: str, bound: float) -> None:
    assert distance_lower_bound(character_counts(a), character_counts(b)) == bound

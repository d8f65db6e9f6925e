"""Plate text comparison, in one place for every stage that matches plates: `plate_distance`, an edit
distance in which confusing two look-alike characters (O and 0, B and 8, ...) costs half an edit, so
that an OCR misread of one look-alike counts less than a different plate. The look-alike table is
`LOOKALIKE_GROUPS`. Texts are compared as given: callers pass normalised text (upper case, no spaces),
as the OCR core produces. `character_counts` and `distance_lower_bound` rule out far-apart texts
without the edit distance's dynamic programme (a camera with a hundred plates in view compares ten
thousand pairs a frame). Pure functions."""

from __future__ import annotations

LOOKALIKE_GROUPS: tuple[str, ...] = ("O0DQ", "I1L", "B8", "S5", "Z2", "G6", "A4", "T7")
"""Characters OCR confuses on plates; each group's characters are look-alikes of one another (groups
are disjoint, upper case)."""

LOOKALIKE_SUBSTITUTION_COST = 0.5
"""Cost of substituting one character by a look-alike of it (any other edit costs 1)."""

_GROUP_OF: dict[str, int] = {char: index for index, group in enumerate(LOOKALIKE_GROUPS) for char in group}
"""Character -> index of its look-alike group (read-only lookup built once from LOOKALIKE_GROUPS)."""


def substitution_cost(a: str, b: str) -> float:
    """Cost of replacing character `a` by `b`: 0 if equal, LOOKALIKE_SUBSTITUTION_COST for look-alikes,
    else 1."""
    if a == b:
        return 0.0
    group = _GROUP_OF.get(a)
    if group is not None and group == _GROUP_OF.get(b):
        return LOOKALIKE_SUBSTITUTION_COST
    return 1.0


def plate_distance(a: str, b: str) -> float:
    """Levenshtein distance between two plate texts where substituting a look-alike character costs
    LOOKALIKE_SUBSTITUTION_COST; insertion, deletion and any other substitution cost 1. Symmetric,
    0 only for equal texts. Two rows of the dynamic programme: O(len(a) * len(b)), tiny for plates."""
    if a == b:
        return 0.0
    if not a or not b:
        return float(len(a) or len(b))
    previous = [float(j) for j in range(len(b) + 1)]
    for i, char_a in enumerate(a, start=1):
        current = [float(i)]
        for j, char_b in enumerate(b, start=1):
            current.append(
                min(
                    previous[j] + 1.0,
                    current[j - 1] + 1.0,
                    previous[j - 1] + substitution_cost(char_a, char_b),
                )
            )
        previous = current
    return previous[-1]


def character_counts(text: str) -> dict[str, int]:
    """How often each look-alike group (or other character) occurs in `text`, for `distance_lower_bound`."""
    counts: dict[str, int] = {}
    for char in text:
        group = _GROUP_OF.get(char)
        key = LOOKALIKE_GROUPS[group][0] if group is not None else char
        counts[key] = counts.get(key, 0) + 1
    return counts


def distance_lower_bound(a: dict[str, int], b: dict[str, int]) -> float:
    """A lower bound of `plate_distance` between two texts from their `character_counts`: half the
    characters one has and the other lacks (an insertion or deletion changes that sum by one, a
    substitution by two at most, a look-alike's by none)."""
    return (
        sum(abs(count - b.get(key, 0)) for key, count in a.items()) / 2
        + sum(count for key, count in b.items() if key not in a) / 2
    )

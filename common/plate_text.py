"""Plate text comparison, in one place for every stage that matches plates: `plate_distance`, an edit
distance in which confusing two look-alike characters (O and 0, B and 8, ...) costs half an edit, so
that an OCR misread of one look-alike counts less than a different plate. The look-alike table is
`LOOKALIKE_GROUPS`. Texts are compared as given: callers pass normalised text (upper case, no spaces),
as the OCR core produces. Pure functions."""

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

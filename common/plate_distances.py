"""`plate_distance` (common/plate_text.py) from one text to many listed plates at once, in numpy: the
watch-list index's exact distance for its candidates (common.watchlist_index.WatchIndex). Within 3 a read of
a 7-character plate leaves 360 to 1,240 of 100,000 random listed plates sharing a deletion key with it
(common/plate_keys.py), and the dynamic programme in Python, one plate at a time, took 31 ms a read.

The same dynamic programme, one row of it (a character of the text) at a time for every listed plate at
once, in whole half edits (a look-alike substitution costs 1, any other edit 2: integers, so the result
is plate_distance's exactly, not a float summed in another order). A row's insertions, each cell from
the one to its left, are a running minimum: cell j is the least of x[k] + 2 (j - k) over k <= j, where
x is the cell from above or above-left, so 2 j plus the running minimum of x[k] - 2 k. A listed plate
shorter than the widest is padded; its distance is read at its own length, which the padding after it
never reaches. Pure functions and immutable arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.plate_text import LOOKALIKE_SUBSTITUTION_COST, substitution_cost

PLATE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
"""The characters of a listed plate (common.watchlist_entry.PLATE_RE)."""

_HALVES = 2
"""Costs are counted in halves of an edit."""

if not (LOOKALIKE_SUBSTITUTION_COST * _HALVES).is_integer():
    raise RuntimeError(
        f"a look-alike substitution must cost whole halves of an edit, not {LOOKALIKE_SUBSTITUTION_COST}"
    )

_OTHER = 255
"""The code of a text's character that is no plate character: it costs a whole edit against every one."""


def _half_costs() -> np.ndarray:
    """substitution_cost in halves between the codes (bytes) of two characters: a whole edit (2) for any
    code that is no plate character's (padding, and `_OTHER`), equal ones included."""
    costs = np.full((256, 256), _HALVES, np.int32)
    for a in PLATE_CHARS:
        for b in PLATE_CHARS:
            costs[ord(a), ord(b)] = round(substitution_cost(a, b) * _HALVES)
    costs.setflags(write=False)
    return costs


_HALF_COSTS = _half_costs()


def plate_codes(plates: Sequence[str], width: int) -> np.ndarray:
    """Plates (each at most `width` plate characters) as rows of their bytes, padded with 0."""
    padded = b"".join(plate.encode("ascii").ljust(width, b"\0") for plate in plates)
    return np.frombuffer(padded, np.uint8).reshape(len(plates), width)


def plate_distances(text: str, codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """plate_distance(text, plate) for each plate given as a row of `codes` (plate_codes) and its
    length: float64, the same values."""
    count = len(lengths)
    width = int(lengths.max()) if count else 0
    columns = np.ascontiguousarray(codes[:, :width].T)  # a column of the programme: every plate's character
    steps = (np.arange(width + 1, dtype=np.int32) * _HALVES)[:, None]
    previous = np.broadcast_to(steps, (width + 1, count))
    row = np.empty((width + 1, count), np.int32)
    for at, char in enumerate(text, start=1):
        costs = _HALF_COSTS[ord(char) if char in PLATE_CHARS else _OTHER][columns]
        row[0] = at * _HALVES
        np.minimum(previous[1:] + _HALVES, previous[:-1] + costs, out=row[1:])
        row -= steps
        previous = np.minimum.accumulate(row, axis=0) + steps
    return previous[lengths, np.arange(count)] / _HALVES

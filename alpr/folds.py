"""The real images' folds: each image of the evaluation sets falls into one of five by a hash of its
file name (stable across machines and runs). `alpr train-ocr` trains on some folds and measures fold 0;
`alpr calibrate` can fit the confidence on reads of folds a recogniser never trained on."""

from __future__ import annotations

import hashlib

FOLDS = 5
"""How many folds the images fall into; fold 0 is the held-out one."""

FOUR_FIFTHS = frozenset(range(1, FOLDS))
"""The folds trained on by default: all but the held-out one."""


def fold(name: str) -> int:
    """An image's fold, by its file name."""
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % FOLDS


def held_out(name: str) -> bool:
    """One image in five, by its file name: not trained on by default, it measures each epoch."""
    return fold(name) == 0


def parse_folds(text: str) -> frozenset[int]:
    """`2,3,4` as a non-empty set of folds; ValueError naming what is wrong."""
    parts = text.split(",")
    if not all(part.strip().isdigit() and int(part) < FOLDS for part in parts):
        raise ValueError(f"folds are numbers 0-{FOLDS - 1} separated by commas, not {text!r}")
    return frozenset(int(part) for part in parts)

"""Deletion keys of plate texts (symmetric deletion, as migration 12's `plate_search_keys` does for
search): a text's look-alike skeleton (each character replaced by its LOOKALIKE_GROUPS representative)
and that skeleton with up to `deletions` characters dropped, every way. Two texts within a plate
distance below `deletions` + 1 share a key, so a watch-list read looks its candidates up among a few
keys instead of bounding every listed plate (`DeletionKeys`, used by common.watchlist_index.WatchIndex).

Why every match is found, for plate_distance(a, b) = c < d + 1: take an alignment of cost c. Its
ordinary edits (an insertion, a deletion, a substitution of characters that are not look-alikes) cost
1 each, so there are at most d (`deletions_for`); its other edits are look-alike substitutions (0.5
each). In the skeletons a look-alike substitution is no edit at all (look-alikes share their group's
representative) and an ordinary substitution is still one (different groups, or characters outside any
group, keep different skeleton characters). So the skeletons are at most d unit edits apart: s
substitutions, i insertions into a, j deletions from a, s + i + j <= d. Drop from a's skeleton the s
substituted and j deleted characters, from b's the s substituted and i inserted ones: what is left is
the same text, each with at most d characters dropped, a key of both. Texts further apart may share
one too (a candidate the exact distance then refuses), never the other way round.

Keys are kept as 64-bit hashes (a random weight per position, summed modulo 2**64, in numpy): two
different keys hashed alike only add a candidate. A text's keys are kept by level (how many characters
dropped): a read within a distance below 2 looks in levels 0 and 1 only, whatever deeper levels were
built. Pure functions and immutable arrays."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from common.plate_text import LOOKALIKE_GROUPS

MAX_DELETIONS = 3
"""The deepest level built: ALPR_WATCH_MAX_DISTANCE is at most 3 (common/config.py), three ordinary
edits."""

KEY_WIDTH = 16
"""The longest text keyed (a listed plate: common.watchlist_entry.PLATE_RE); a key of a read longer than this
is no listed plate's and is not looked up."""

_OTHER_CODE = 64
"""The skeleton code of every character outside A-Z and 0-9 (a read's: listed plates have none):
different such characters share it, which only adds candidates."""


def deletions_for(max_distance: float) -> int:
    """The level of keys that finds every text within `max_distance`: its ordinary edits, 1 each."""
    return math.floor(max_distance)


def _skeleton_codes() -> dict[str, int]:
    """A-Z and 0-9 -> a code from 1 (0 pads a text), look-alikes sharing their group's first's."""
    codes = {char: code for code, char in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", start=1)}
    for group in LOOKALIKE_GROUPS:
        for char in group:
            codes[char] = codes[group[0]]
    return codes


SKELETON_CODES = _skeleton_codes()

_BYTE_CODES = np.zeros(256, np.uint64)
_BYTE_CODES[[ord(char) for char in SKELETON_CODES]] = [SKELETON_CODES[char] for char in SKELETON_CODES]
_BYTE_CODES.setflags(write=False)

_WEIGHTS = np.random.default_rng(20261205).integers(0, 2**64, KEY_WIDTH + 1, dtype=np.uint64, endpoint=False)
_WEIGHTS.setflags(write=False)
_PYTHON_WEIGHTS = tuple(int(weight) for weight in _WEIGHTS)
_MASK = 2**64 - 1


def text_keys(text: str, deletions: int = 1) -> list[int]:
    """The hashed keys of `text` with 0 to `deletions` characters dropped (each once; none longer than
    KEY_WIDTH), as `DeletionKeys` hashes a listed plate's."""
    codes = [SKELETON_CODES.get(char, _OTHER_CODE) for char in text]
    weights, keys = _PYTHON_WEIGHTS, set()
    for level in range(min(deletions, len(codes)) + 1):
        if len(codes) - level > KEY_WIDTH:
            continue
        for dropped in itertools.combinations(range(len(codes)), level):
            kept = [code for at, code in enumerate(codes) if at not in dropped]
            keys.add(sum(code * weight for code, weight in zip(kept, weights, strict=False)) & _MASK)
    return sorted(keys)


def _level_hashes(codes: np.ndarray, level: int) -> np.ndarray:
    """Rows of skeleton codes, all of one length, with every `level` characters dropped: the hashes of
    every row's every way (as text_keys hashes them), way by way. From running sums of each character's
    weighted code at every shift, a way is `level` + 1 differences of them, not a new weighted sum."""
    count, length = codes.shape
    sums = []  # sums[shift][p]: the weighted codes before position p, each weighed as if `shift` places left
    for shift in range(level + 1):
        weighted = np.zeros((length + 1, count), np.uint64)
        weighted[shift + 1 :] = codes[:, shift:].T * _WEIGHTS[: length - shift, None]
        sums.append(np.cumsum(weighted, axis=0, dtype=np.uint64))
    ways = []
    for dropped in itertools.combinations(range(length), level):
        bounds = (-1, *dropped, length)
        hashed = np.zeros(count, np.uint64)
        for shift in range(level + 1):  # the characters between the shift-th and the next dropped one
            hashed += sums[shift][bounds[shift + 1]] - sums[shift][bounds[shift] + 1]
        ways.append(hashed)
    return np.concatenate(ways) if ways else np.empty(0, np.uint64)


class DeletionKeys:
    """Every key of some texts (each at most KEY_WIDTH characters of A-Z and 0-9) with up to `deletions`
    characters dropped, by level, sorted, each 8 bytes: its hash's high bits, then the index of the text
    it came from (`owner_bits` of them; two keys alike in their high bits only add a candidate).
    7-character plates have 1, 7, 21 and 35 keys at levels 0 to 3: 100,000 of them take 6.4 MB to level
    1, 23 MB to 2, 51 MB to 3 (1,000,000: ten times that, built in about 1.6, 2.9 and 4.7 s here)."""

    def __init__(self, texts: Sequence[str], deletions: int = 1) -> None:
        if not 0 <= deletions <= MAX_DELETIONS:
            raise ValueError(f"deletions from 0 to {MAX_DELETIONS}, not {deletions}")
        self.deletions = deletions
        count = len(texts)
        self.owner_bits = max(1, (count - 1).bit_length())
        lengths = np.fromiter((len(text) for text in texts), np.int64, count)
        padded = b"".join(text.encode("ascii").ljust(KEY_WIDTH, b"\0") for text in texts)
        codes = _BYTE_CODES[np.frombuffer(padded, np.uint8).reshape(count, KEY_WIDTH)]
        high = ~np.uint64(2**self.owner_bits - 1)
        self.levels: list[np.ndarray] = []
        """Per level (characters dropped): its keys, sorted."""
        for level in range(deletions + 1):
            keys = [np.empty(0, np.uint64)]
            for length in np.unique(lengths[lengths >= level]).tolist():
                rows = np.flatnonzero(lengths == length)
                hashes = _level_hashes(codes[rows, :length], level)
                keys.append((hashes & high) | np.tile(rows.astype(np.uint64), len(hashes) // len(rows)))
            level_keys = np.concatenate(keys)
            level_keys.sort()
            self.levels.append(level_keys)

    @property
    def nbytes(self) -> int:
        """The keys' memory."""
        return sum(keys.nbytes for keys in self.levels)

    def owners(self, level: int) -> np.ndarray:
        """The index of the text each key of `level` came from, in the keys' order."""
        return (self.levels[level] & np.uint64(2**self.owner_bits - 1)).astype(np.int64)

    def candidates(self, text: str, deletions: int | None = None) -> np.ndarray:
        """The indices (ascending, each once) of the texts that share a key of at most `deletions` (at most
        those built; None: those) characters dropped with `text`: every one within a plate distance below
        `deletions` + 1, and a few more."""
        deletions = self.deletions if deletions is None else deletions
        if deletions > self.deletions:
            raise ValueError(f"keys were built to {self.deletions} deletions, not {deletions}")
        low = np.uint64(2**self.owner_bits - 1)
        firsts = np.array(text_keys(text, deletions), np.uint64) & ~low
        found = []
        for keys in self.levels[: deletions + 1]:
            starts = np.searchsorted(keys, firsts, side="left")
            ends = np.searchsorted(keys, firsts | low, side="right")
            spans = zip(starts.tolist(), ends.tolist(), strict=True)
            found += [keys[start:end] for start, end in spans if end > start]
        return np.unique(np.concatenate(found) & low).astype(np.int64) if found else np.empty(0, np.int64)

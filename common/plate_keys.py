"""Deletion keys of plate texts (symmetric deletion, as migration 12's `plate_search_keys` does for
search): a text's look-alike skeleton (each character replaced by its LOOKALIKE_GROUPS representative)
and that skeleton with each character dropped in turn. Two texts within `plate_distance` below
KEYED_REACH share a key, so a watch-list read looks its candidates up among a few keys instead of
bounding every listed plate (`DeletionKeys`, used by common.watchlist.WatchIndex).

Why every match is found, for plate_distance(a, b) = c < KEYED_REACH = 2: take an alignment of cost c.
Its ordinary edits (an insertion, a deletion, a substitution of characters that are not look-alikes)
cost 1 each, so there is at most one; its other edits are look-alike substitutions (0.5 each). In the
skeletons a look-alike substitution is no edit at all (look-alikes share their group's representative)
and an ordinary substitution is still one (different groups, or characters outside any group, keep
different skeleton characters). So the skeletons are equal (their keys `skeleton` are), or one
substitution apart at position i (both with i dropped are equal), or one insertion apart (the shorter's
skeleton is the longer's with one character dropped). Every such pair shares a key; texts more than
that apart may share one too (a candidate the exact distance then refuses), never the other way round.

Keys are kept as 64-bit hashes (a random weight per position, summed modulo 2**64, in numpy): two
different keys hashed alike only add a candidate. Pure functions and immutable arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.plate_text import LOOKALIKE_GROUPS

KEYED_REACH = 2.0
"""Deletion keys find every text within a plate distance below this (the proof above); beyond it a
caller compares some other way."""

KEY_WIDTH = 16
"""The longest text keyed (a listed plate: common.watchlist.PLATE_RE); a text read may be one longer."""

_OTHER_CODE = 64
"""The skeleton code of every character outside A-Z and 0-9 (a read's: listed plates have none):
different such characters share it, which only adds candidates."""


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


def text_keys(text: str) -> list[int]:
    """The hashed deletion keys of `text` (at most KEY_WIDTH + 1 characters): its skeleton's, then
    its skeleton's with each character dropped, as `DeletionKeys` hashes a listed plate's."""
    if len(text) > KEY_WIDTH + 1:
        raise ValueError(f"a text of more than {KEY_WIDTH + 1} characters is not keyed")
    codes = [SKELETON_CODES.get(char, _OTHER_CODE) for char in text]
    weights = _PYTHON_WEIGHTS
    # after[p]: the characters after p, each moved one place left (position p dropped)
    after = [0] * (len(codes) + 1)
    for p in range(len(codes) - 1, 0, -1):
        after[p - 1] = after[p] + codes[p] * weights[p - 1]
    keys, before = [], 0
    for p, code in enumerate(codes):
        keys.append((before + after[p]) & _MASK)
        before += code * weights[p]
    return [before & _MASK, *keys]


def _hashed(codes: np.ndarray) -> np.ndarray:
    """Rows of skeleton codes (0 after each text's end) hashed as text_keys hashes them."""
    return (codes * _WEIGHTS[: codes.shape[1]]).sum(axis=1, dtype=np.uint64)


class DeletionKeys:
    """Every key of some texts (each at most KEY_WIDTH characters of A-Z and 0-9), sorted, with the
    index of the text it came from: about 8 keys a text, 16 bytes each (100,000 plates: 13 MB, built in
    about 0.3 s: a reload's, not a read's)."""

    def __init__(self, texts: Sequence[str]) -> None:
        count = len(texts)
        lengths = np.fromiter((len(text) for text in texts), np.int64, count)
        padded = b"".join(text.encode("ascii").ljust(KEY_WIDTH, b"\0") for text in texts)
        codes = _BYTE_CODES[np.frombuffer(padded, np.uint8).reshape(count, KEY_WIDTH)]
        hashes, owners = [_hashed(codes)], [np.arange(count)]
        for dropped in range(KEY_WIDTH):
            rows = np.flatnonzero(lengths > dropped)
            if not rows.size:
                break
            kept = np.delete(codes[rows], dropped, axis=1)
            hashes.append(_hashed(kept))
            owners.append(rows)
        all_hashes = np.concatenate(hashes)
        order = np.argsort(all_hashes, kind="stable")
        self.hashes = all_hashes[order]
        self.owners = np.concatenate(owners)[order]

    def candidates(self, text: str) -> np.ndarray:
        """The indices (ascending, each once) of the texts that share a key with `text` (at most KEY_WIDTH
        + 1 characters): every one within a plate distance below KEYED_REACH, and a few more."""
        keys = np.array(text_keys(text), np.uint64)
        starts = np.searchsorted(self.hashes, keys, side="left")
        ends = np.searchsorted(self.hashes, keys, side="right")
        spans = zip(starts.tolist(), ends.tolist(), strict=True)
        found = [self.owners[start:end] for start, end in spans if end > start]
        return np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)

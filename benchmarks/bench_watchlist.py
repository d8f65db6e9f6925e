"""Matching a read against a large watch-list (a national hot-list holds 100,000 plates and more): ms
per read with the index a worker uses (`common.watchlist_index.WatchIndex.match_lists`: deletion keys, common/
plate_keys.py, built to the largest distance timed, 3; the candidates' exact distances at once, common/
plate_distances.py), with the numpy bounds over every entry and the exact distance one entry at a time
that it used before (`match_lists_scanned`) and, within 0 and 1, one entry at a time in Python with the
same bounds (what that replaced), side by side in one run, with the exact distances computed a read; on
random plates of the US alphabet (7 characters) and of the densest US format (3 letters, 4 digits).
Then the keys' memory and build time (a reload's) to each level, 1 to 3 characters dropped.

    .venv/bin/python benchmarks/bench_watchlist.py [--entries 100000] [--reads 200] [--scan-reads 10]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import numpy as np

import common.watchlist_index
from common.plate_distances import plate_distances
from common.plate_keys import DeletionKeys
from common.plate_text import LOOKALIKE_SUBSTITUTION_COST, plate_distance
from common.watchlist_entry import WatchEntry, char_set
from common.watchlist_index import WatchIndex

ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
FORMATS: dict[str, Callable[[random.Random], str]] = {
    "7 of the alphabet": lambda rng: "".join(rng.choices(ALPHABET, k=7)),
    "LLLDDDD": lambda rng: "".join(rng.choices(ALPHABET[:23], k=3) + rng.choices(ALPHABET[23:], k=4)),
}


def one_at_a_time(plate: str, entries: list[WatchEntry], max_distance: float) -> int:
    """Matches within max_distance, entry by entry with the same lower bounds: the method replaced."""
    chars, edit_cost, found = char_set(plate), min(LOOKALIKE_SUBSTITUTION_COST, 1.0), 0
    for entry in entries:
        missing = max((chars & ~entry.chars).bit_count(), (entry.chars & ~chars).bit_count())
        if abs(len(entry.plate) - len(plate)) > max_distance or missing * edit_cost > max_distance:
            continue
        found += plate_distance(plate, entry.plate) <= max_distance
    return found


class Counted:
    """plate_distance and plate_distances, counting the distances computed (put in common.watchlist_index's
    place while timing)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, a: str, b: str) -> float:
        self.calls += 1
        return plate_distance(a, b)

    def many(self, text: str, codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        self.calls += len(lengths)
        return plate_distances(text, codes, lengths)


def timed(
    match: Callable[[str, float], int], reads: list[str], distance: float, counted: Counted
) -> tuple[list[int], float, float]:
    """Each read's match count within `distance`, ms per read (CPU time), exact distances per read."""
    counted.calls, start = 0, time.process_time()
    found = [match(read, distance) for read in reads]
    return found, 1000 * (time.process_time() - start) / len(reads), counted.calls / len(reads)


def compare(name: str, entries: list[WatchEntry], reads: list[str], counted: Counted, scan_reads: int) -> None:
    """One format's table: the three methods within 0 and 1.0, the first two within 2 and 3 (one at a time
    takes seconds a read there; the bounds over every entry a third of a second and more, timed over the
    first `scan_reads` reads), checked to agree."""
    start = time.perf_counter()
    index = WatchIndex(entries, keyed_distance=3.0)
    print(f"{name}: {len(entries)} entries; index built in {1000 * (time.perf_counter() - start):.0f} ms")
    print(f"{'distance':>8} {'keyed ms/read':>14} {'bounds ms/read':>15} {'one at a time':>14}"
          f" {'keyed/bounds exact distances a read':>36}")  # fmt: skip
    for distance in (0.0, 1.0, 2.0, 3.0):
        keyed, fast, fast_calls = timed(lambda r, d: len(index.match_lists(r, d, 0.0)), reads, distance, counted)
        scanned = reads if distance <= 1.0 else reads[:scan_reads]
        bounded, scan, scan_calls = timed(
            lambda r, d: len(index.match_lists_scanned(r, d, 0.0)), scanned, distance, counted
        )
        assert keyed[: len(scanned)] == bounded, "the keys and the bounds disagree"
        slow_text = "-"
        if distance <= 1.0:
            plain, slow, _ = timed(lambda r, d: min(1, one_at_a_time(r, entries, d)), reads, distance, counted)
            assert bounded == plain, "the bounds and the scan disagree"
            slow_text = f"{slow:.2f}"
        print(f"{distance:>8g} {fast:>14.3f} {scan:>15.2f} {slow_text:>14} {fast_calls:>22.2f} / {scan_calls:.1f}")


def key_costs(plates: list[str]) -> None:
    """The keys' memory and build time to each level (what a reload builds for ALPR_WATCH_MAX_DISTANCE
    below 1, 2, 3 and 3 itself)."""
    for deletions in range(4):
        start = time.perf_counter()
        keys = DeletionKeys(plates, deletions)
        elapsed_s = time.perf_counter() - start
        print(f"  keys to {deletions} dropped: {keys.nbytes / 1e6:.1f} MB, built in {elapsed_s:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--scan-reads", type=int, default=10, help="reads the bounds are timed on within 2 and 3")
    args = parser.parse_args()
    counted = Counted()
    common.watchlist_index.plate_distance = counted  # type: ignore[assignment]
    common.watchlist_index.plate_distances = counted.many  # type: ignore[assignment]
    for name, make in FORMATS.items():
        rng = random.Random(0)
        entries = [WatchEntry(make(rng), "listed") for _ in range(args.entries)]
        reads = [make(rng) for _ in range(args.reads)]
        reads[::10] = [e.plate for e in entries[: len(reads[::10])]]  # a read in ten is listed
        compare(name, entries, reads, counted, args.scan_reads)
        key_costs([entry.plate for entry in entries])


if __name__ == "__main__":
    main()

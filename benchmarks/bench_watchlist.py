"""Matching a read against a large watch-list (a national hot-list holds 100,000 plates and more): ms
per read with the index a worker uses (`common.watchlist.WatchIndex`: numpy bounds over every entry
at once, then the exact distance for the few left) against one entry at a time in Python with the
same bounds (what it replaced), side by side in one run, on random plates of the US alphabet.

    .venv/bin/python benchmarks/bench_watchlist.py [--entries 100000] [--reads 200]
"""

from __future__ import annotations

import argparse
import random
import time

from common.plate_text import LOOKALIKE_SUBSTITUTION_COST, plate_distance
from common.watchlist import WatchEntry, WatchIndex, char_set

ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def one_at_a_time(plate: str, entries: list[WatchEntry], max_distance: float) -> int:
    """Matches within max_distance, entry by entry with the same lower bounds: the method replaced."""
    chars, edit_cost, found = char_set(plate), min(LOOKALIKE_SUBSTITUTION_COST, 1.0), 0
    for entry in entries:
        missing = max((chars & ~entry.chars).bit_count(), (entry.chars & ~chars).bit_count())
        if abs(len(entry.plate) - len(plate)) > max_distance or missing * edit_cost > max_distance:
            continue
        found += plate_distance(plate, entry.plate) <= max_distance
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(0)
    entries = [WatchEntry("".join(rng.choices(ALPHABET, k=7)), "listed") for _ in range(args.entries)]
    reads = ["".join(rng.choices(ALPHABET, k=7)) for _ in range(args.reads)]
    reads[::10] = [e.plate for e in entries[: len(reads[::10])]]  # a read in ten is listed
    start = time.perf_counter()
    index = WatchIndex(entries)
    print(f"{args.entries} entries; index built in {1000 * (time.perf_counter() - start):.1f} ms")
    print(f"{'distance':>8} {'index ms/read':>14} {'one at a time':>14} {'ratio':>6}")
    for distance in (0.0, 1.0):
        start = time.perf_counter()
        indexed = [len(index.match_lists(r, distance, 0.0)) for r in reads]
        fast = 1000 * (time.perf_counter() - start) / len(reads)
        start = time.perf_counter()
        plain = [min(1, one_at_a_time(r, entries, distance)) for r in reads]
        slow = 1000 * (time.perf_counter() - start) / len(reads)
        assert indexed == plain, "the index and the scan disagree"
        print(f"{distance:>8g} {fast:>14.2f} {slow:>14.2f} {slow / fast:>6.1f}")


if __name__ == "__main__":
    main()

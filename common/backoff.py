"""One backoff helper for every retry loop: the wait doubles from `first_s` up to `longest_s`, and
resets once the thing waited for answers."""

from __future__ import annotations

from dataclasses import dataclass

MAX_DOUBLINGS = 60
"""Doublings past which the wait stops growing (any `longest_s` is reached long before)."""


@dataclass
class Backoff:
    first_s: float
    longest_s: float
    failures: int = 0

    def next_delay(self) -> float:
        """Record a failure; the wait before the next attempt."""
        self.failures += 1
        doublings = min(self.failures - 1, MAX_DOUBLINGS)  # 2.0 ** 1024 overflows: a day's outage would raise
        return float(min(self.longest_s, self.first_s * 2.0**doublings))

    def reset(self) -> None:
        self.failures = 0

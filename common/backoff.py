"""One backoff helper for every retry loop: the wait doubles from `first_s` up to `longest_s`, and
resets once the thing waited for answers. With `jitter`, each wait is cut by a random share up to it, so
that many clients failing together (an ingest node's cameras behind one dead recorder) do not retry in
lockstep; without it (the default) the waits are exact."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

MAX_DOUBLINGS = 60
"""Doublings past which the wait stops growing (any `longest_s` is reached long before)."""


def jittered(delay_s: float, jitter: float, rng: random.Random | None = None) -> float:
    """`delay_s` cut by a random share up to `jitter` (0: none; 0.5: uniformly from half of it to all of it)."""
    if jitter <= 0:
        return delay_s
    return delay_s * (rng or random).uniform(1.0 - min(jitter, 1.0), 1.0)


def stretched(delay_s: float, jitter: float, rng: random.Random | None = None) -> float:
    """`delay_s` lengthened by a random share up to `jitter` (0: none; 0.5: uniformly from all of it to 1.5
    times it): jitter for a wait that must not be shortened (a refused login retried: a camera's lockout)."""
    if jitter <= 0:
        return delay_s
    return delay_s * (rng or random).uniform(1.0, 1.0 + jitter)


@dataclass
class Backoff:
    first_s: float
    longest_s: float
    failures: int = 0
    jitter: float = 0.0
    """The most of each wait cut off at random (0: exact waits; 0.5: each from half of it to all of it)."""
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)
    """Where the jitter comes from (seeded in tests)."""

    def next_delay(self) -> float:
        """Record a failure; the wait before the next attempt."""
        self.failures += 1
        doublings = min(self.failures - 1, MAX_DOUBLINGS)  # 2.0 ** 1024 overflows: a day's outage would raise
        return jittered(float(min(self.longest_s, self.first_s * 2.0**doublings)), self.jitter, self.rng)

    def reset(self) -> None:
        self.failures = 0

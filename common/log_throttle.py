"""One log line a minute for an event that may repeat for every job: the first at once, then the count
since the last line, at most once per interval. A key differing between roles had every job refused,
each with its own WARNING and traceback: 30-90 of them an incident, burying the line that said why.
A spell of them (a duty failing at every round while Postgres is read-only) ends with `end`: how many
and for how long, told once (at INFO: it answers again) where the spell was told at all. The bound holds
across spells: the next spell's first is told once the interval since the last line has passed (at once
where none was ever told), else counted and told with the next line; `end` forgot the time, and a duty
alternating fail/succeed told each failure and each recovery: 60 WARNING and 60 INFO lines in 120 rounds
(a review), where a steady failure told one. With an interval past REPEATED_LOG_INTERVAL_S (a line a
spell: `math.inf`), a new spell waits REPEATED_LOG_INTERVAL_S."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from common import defaults


class Throttle:
    """Counts an event and says when to report it: at the first, then at most every `interval_s`,
    with how many happened since the last report. Thread-safe (RQ's control channel is read on a
    thread of its own)."""

    def __init__(
        self, interval_s: float = defaults.REPEATED_LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.unreported = 0
        self.reported_at: float | None = None
        self.spell = 0
        """Events since the spell began (the first since the last `end`)."""
        self.spell_began_at = 0.0
        """When the spell's first event was counted."""
        self.spell_told = False
        """Whether an event of this spell was reported (its end is told only then)."""
        self.lock = threading.Lock()

    def note(self) -> int:
        """Count one event; how many to report now (0: not yet: wait for the interval)."""
        with self.lock:
            at = self.clock()
            if not self.spell:
                self.spell_began_at = at
            self.unreported += 1
            self.spell += 1
            return self._due(at, now=False)

    def end(self) -> tuple[int, float] | None:
        """The spell is over (what failed went through): how many events it counted and how long it lasted
        (seconds from its first), once; None when none was counted since the last end, or when none of
        them was reported (begun within the interval of the last line: they stay counted, reported with the
        next line). The time of the last line is kept: the next spell's first waits out the interval."""
        with self.lock:
            if not self.spell:
                return None
            ended = (self.spell, self.clock() - self.spell_began_at) if self.spell_told else None
            self.spell, self.spell_told = 0, False
            if ended:
                self.unreported = 0  # (told by the spell's end)
            return ended

    def due(self, now: bool = False) -> int:
        """How many events to report now, forgotten once returned: every one not yet reported, once the
        interval since the last report has passed (a new spell's: at most REPEATED_LOG_INTERVAL_S; or at
        the first ever, or with `now`); else 0."""
        with self.lock:
            return self._due(self.clock(), now)

    def _due(self, at: float, now: bool) -> int:
        """`due` at time `at`, the lock held."""
        interval_s = self.interval_s if self.spell_told else min(self.interval_s, defaults.REPEATED_LOG_INTERVAL_S)
        waited = self.reported_at is None or at - self.reported_at >= interval_s
        if not self.unreported or not (waited or now):
            return 0
        count, self.unreported, self.reported_at = self.unreported, 0, at
        self.spell_told = self.spell_told or self.spell > 0
        return count

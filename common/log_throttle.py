"""One log line a minute for an event that may repeat for every job: the first at once, then the count
since the last line, at most once per interval. A key differing between roles had every job refused,
each with its own WARNING and traceback: 30-90 of them an incident, burying the line that said why.
A spell of them (a duty failing at every round while Postgres is read-only) ends with `end`: how many
and for how long, told once (at INFO: it answers again), and the next spell's first is told at once."""

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
        """When the spell's first event was reported (at once: the first since the last `end`)."""
        self.lock = threading.Lock()

    def note(self) -> int:
        """Count one event; how many to report now (0: not yet: wait for the interval)."""
        with self.lock:
            self.unreported += 1
            self.spell += 1
        return self.due()

    def end(self) -> tuple[int, float] | None:
        """The spell is over (what failed went through): how many events it counted and how long it lasted
        (seconds from its first), once; None when none was counted since the last end. The next event is
        reported at once, as the first of a new spell."""
        with self.lock:
            if not self.spell:
                return None
            ended = (self.spell, self.clock() - self.spell_began_at)
            self.spell, self.unreported, self.reported_at = 0, 0, None
            return ended

    def due(self, now: bool = False) -> int:
        """How many events to report now, forgotten once returned: every one not yet reported, once the
        interval since the last report has passed (or at the first, or with `now`); else 0."""
        with self.lock:
            at = self.clock()
            waited = self.reported_at is None or at - self.reported_at >= self.interval_s
            if not self.unreported or not (waited or now):
                return 0
            if self.reported_at is None:
                self.spell_began_at = at
            count, self.unreported, self.reported_at = self.unreported, 0, at
            return count

"""The time an ingest node dates its frames by (`CaptureClock`): the host's clock as it runs on the
monotonic clock, so that a step of the host's clock (an NTP correction, a VM resumed, an operator's
`date -s`) neither crowds frames together nor spreads them apart.

Dated by the host's clock read afresh, a clock set an hour ahead for three seconds and then corrected
dated the next hour of frames 1 ms apart (each camera's frames never go back in time, so they waited
for the clock to catch up): a car's reads in one instant, sightings merged. Now a difference within
FOLLOW_WITHIN_S (NTP's own slewing) is taken at once forward and slewed back; a larger step only once
the host's clock has kept it for STEP_HOLD_S. Forward the time jumps; back it slews (dates run at
1 - SLEW_RATE of real time until they meet the host's clock): frames are never dated back, nor crowded.
The clock underneath is the boot-time one where there is one (Linux: it counts a suspend, which the
monotonic clock does not, so a resumed VM's frames are not dated as far behind as it slept).

The node uses this one clock for everything it dates (frames, their store time in the detect job, the
frames log's watermarks): a detector ages a frame by store time less capture time, which two clocks
apart would have made seconds or hours old.

A camera's frames are dated by `CameraClock`: this clock, but never before the camera's last frame
logged by the nodes before this one (the frames log, ingest/camera_sampling.py `IngestNode.dated_until`). A node
started with its host's clock two minutes behind dated its frames two minutes before its predecessor's
last, which the sighting pool had grouped past already: 48 cars had no sighting (a chaos review). Ahead
of this clock, a camera's time runs at 1 - SLEW_RATE of real time until they meet, as for a step back."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

FOLLOW_WITHIN_S = 1.0
"""A difference from the host's clock up to this is taken at once: forward at once, back by slewing."""

STEP_HOLD_S = 30.0
"""How long the host's clock must keep a larger step before the frames' time takes it."""

SLEW_RATE = 0.5
"""A step back is taken at this many seconds per second (dates run at half speed meanwhile)."""


def boot_time() -> float:
    """Seconds since boot, suspends included (CLOCK_BOOTTIME); the monotonic clock where there is none."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()


class CaptureClock:
    """Seconds since the epoch for dating frames, shared by a node's camera threads (see the module
    docstring). `wall` and `monotonic` are the host's clocks (given in tests)."""

    def __init__(self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] | None = None):
        monotonic = monotonic or boot_time
        self._wall, self._monotonic = wall, monotonic
        self._lock = threading.Lock()
        now = monotonic()
        self._offset = wall() - now
        self._last = now
        self._step_since: float | None = None

    def now(self) -> float:
        """The frames' time now: monotonic, so never earlier than at the last call."""
        with self._lock:
            now = self._monotonic()
            elapsed, self._last = max(0.0, now - self._last), now
            host = self._wall() - now
            gap = host - self._offset
            if abs(gap) <= FOLLOW_WITHIN_S:
                if self._step_since is not None:
                    log.info("the host's clock is within %.0f s of the frames' time again", FOLLOW_WITHIN_S)
                self._step_since = None
            elif self._step_since is None:
                self._step_since = now
                log.warning(
                    "the host's clock stepped %+.1f s: frames keep the time they ran by, and take the step"
                    " only if the clock keeps it %.0f s", gap, STEP_HOLD_S,
                )  # fmt: skip
            if self._step_since is None or now - self._step_since >= STEP_HOLD_S:
                self._offset = host if gap > 0 else self._offset - min(-gap, SLEW_RATE * elapsed)
            return now + self._offset


class CameraClock:
    """One camera's capture time: the node's `clock`, but starting no earlier than `not_before_s` (the
    camera's last frame, logged by an earlier node) and slewing down to it from there, at 1 - SLEW_RATE
    of real time, never back: frames neither go back in time nor crowd together. At or behind the node's
    clock it is the node's clock."""

    def __init__(self, clock: CaptureClock, not_before_s: float = 0.0) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last = clock.now()
        self.lead_s = max(0.0, not_before_s - self._last)
        """How far this camera's time is ahead of the node's clock (0 once they met)."""

    def now(self) -> float:
        """The camera's time now: monotonic, and the node's clock once the lead has slewed away."""
        with self._lock:
            now = self._clock.now()
            if self.lead_s > 0:
                self.lead_s = max(0.0, self.lead_s - SLEW_RATE * max(0.0, now - self._last))
            self._last = now
            return now + self.lead_s

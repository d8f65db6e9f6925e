"""How long before it is read a stream's frame was captured, by the stream's own timestamps (PTS): after
a stall, the frames the network held back arrive in a burst, and the first one sampled was dated when it
arrived, seconds after its capture. A stream's timestamps are used only while they keep the clock's pace
(an HTTP MJPEG stream has none: FFmpeg numbers its frames at a nominal 25 frames/s, whatever the camera
sends), and a delay that holds is taken for the new normal (a camera's clock running slow, a stream's
time base moved), not for frames held back."""

from __future__ import annotations

import math
from collections import deque

PACE_WINDOW_S = 20.0
"""How much of a stream's recent past its pace is judged over."""

MIN_PACE_SPAN_S = 10.0
"""A stream's timestamps are trusted once they have kept the clock's pace for this long."""

PACE_TOLERANCE = 0.2
"""How far the timestamps' pace may lie from the clock's (a share) and still be trusted: far enough for a
reader held up now and then (a busy host), not for a nominal rate (25 frames/s stamped on 5 or 15)."""

MIN_LAG_S = 0.05
"""A lag shorter than this is jitter in delivery, not frames held back: none."""

MAX_LAG_S = 20.0
"""A lag longer than this is no stall's backlog but a stream whose timestamps cannot be trusted: none.
The ingest node's watermark for a stream stays this far behind its clock at most (ingest/ledger.py)."""

HELD_LAG_S = 5.0
"""A lag every frame has had for this long is the stream's new normal delay (a backlog is read out in a
burst): the delays are measured from it on."""


class StreamLag:
    """A stream's frames in the order read: `lag_s(read_at_s, stamp_s)` says how long before `read_at_s`
    (seconds on a monotonic clock) the frame stamped `stamp_s` (the stream's time, seconds) was captured:
    its delay beyond the least delay the stream has shown, where the timestamps can be trusted; else 0."""

    def __init__(self) -> None:
        self.recent: deque[tuple[float, float]] = deque()
        """(read at, stamp) of the frames of the last PACE_WINDOW_S, oldest first."""
        self.least_delay_s: float | None = None
        self.lagging_since_s: float | None = None
        """When the run of frames that all lagged began (None: the last frame did not lag)."""
        self.run_least_delay_s = math.inf
        self.trusted = False
        """Whether the timestamps kept the clock's pace, as last judged on a frame that did not lag (the
        frames of a burst, read at once, would make any pace look wrong)."""

    def reset(self) -> None:
        """Forget the stream's past: it has no timestamps, or its time went back (a new time base)."""
        self.recent.clear()
        self.least_delay_s, self.lagging_since_s, self.run_least_delay_s = None, None, math.inf
        self.trusted = False

    def lag_s(self, read_at_s: float, stamp_s: float | None) -> float:
        if stamp_s is None or not math.isfinite(stamp_s) or (self.recent and stamp_s < self.recent[-1][1]):
            self.reset()
            if stamp_s is None or not math.isfinite(stamp_s):
                return 0.0
        delay_s = read_at_s - stamp_s
        if self.least_delay_s is None or delay_s < self.least_delay_s:
            self.least_delay_s = delay_s
        self.recent.append((read_at_s, stamp_s))
        while self.recent[0][0] < read_at_s - PACE_WINDOW_S:
            self.recent.popleft()
        lag_s = delay_s - self.least_delay_s
        if lag_s < MIN_LAG_S:
            self.lagging_since_s, self.run_least_delay_s = None, math.inf
            self.trusted = self.paced()
            return 0.0
        if self.lagging_since_s is None:
            self.lagging_since_s = read_at_s
        self.run_least_delay_s = min(self.run_least_delay_s, delay_s)
        if read_at_s - self.lagging_since_s >= HELD_LAG_S:  # held: the normal delay now, and trust earned anew
            least_delay_s = self.run_least_delay_s  # (an MJPEG camera at 25 frames/s, as FFmpeg stamps it, kept
            self.reset()  # its trust when it fell to 12: dated up to 5 s early, most samples lost)
            self.least_delay_s = least_delay_s
            self.recent.append((read_at_s, stamp_s))
            return 0.0
        return lag_s if self.trusted and lag_s <= MAX_LAG_S else 0.0

    def paced(self) -> bool:
        """Whether the frames read so far, over MIN_PACE_SPAN_S at least, were stamped at the clock's pace."""
        if not self.recent:
            return False
        (first_read_s, first_stamp_s), (last_read_s, last_stamp_s) = self.recent[0], self.recent[-1]
        span_s = last_read_s - first_read_s
        return span_s >= MIN_PACE_SPAN_S and abs((last_stamp_s - first_stamp_s) / span_s - 1) <= PACE_TOLERANCE

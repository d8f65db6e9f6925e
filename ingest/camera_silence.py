"""Whether a camera an ingest node holds has gone silent (`CameraSilence`): the node itself decides, per
camera, from the monotonic time its thread last sampled a frame (handed on, ingested or skipped, or counted
unsampled) or last waited for room (recorded footage held back is alive), set when its camera loop starts.
Exported as `alpr_camera_silent{camera}` (AlprCameraSilent), computed at each scrape: 1 while the node holds
the camera and it has sampled nothing for `silent_after_s` — CAMERA_SILENT_S, or CAMERA_SILENT_INTERVALS (3)
of its sample intervals where those are longer (common/defaults_ingest.py) — 0 once it ended or failed for
good (their own metrics tell), and while it is stood by for or lost. A camera thread that died unexpectedly
samples nothing and reads silent.

The rule the node's series replaced judged silence from the counters at Prometheus (no frame ingested or
skipped in 10 minutes): it fired on a camera sampled every 15 minutes (sample_fps may be as low as
MIN_SAMPLE_FPS, a frame an hour) and on every recorded footage waiting for room through an outage of the
chain (a review)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Gauge

from common import defaults

DONE_STATES = frozenset({"ended", "failed"})
"""A camera's states after which it samples nothing and is not silent: alpr_camera_ended and alpr_camera_failed
tell (AlprCameraFailed)."""


def silent_after_s(sample_fps: float) -> float:
    """How long a camera sampled at `sample_fps` may sample nothing before it reads silent (defaults.CAMERA_SILENT_S,
    or defaults.CAMERA_SILENT_INTERVALS of its sample intervals where those are longer)."""
    return max(defaults.CAMERA_SILENT_S, defaults.CAMERA_SILENT_INTERVALS / sample_fps)


@dataclass
class Heard:
    """A camera the node holds: its metric label, its silence bound, when it last sampled, whether it is done."""

    label: str
    silent_after_s: float
    last_s: float
    done: bool = False
    progress: Callable[[], int] | None = None
    """How far its source has read (frames grabbed, sampled or not), looked at each scrape: footage a restarted
    node passes over (finished by the node before) samples nothing for hours and is not silent (a review)."""
    progress_seen: int | None = None


class CameraSilence:
    """The cameras this node holds and when each was last heard from; `alpr_camera_silent` read from them."""

    def __init__(self, gauge: Gauge, label: Callable[[str], str], clock: Callable[[], float] = time.monotonic):
        self.gauge, self.label, self.clock = gauge, label, clock
        self.held: dict[str, Heard] = {}  # camera id -> its entry, while the node holds (samples) it
        self.lock = threading.Lock()
        self.watched: set[str] = set()  # the labels whose gauge reads `silent`

    def watch(self, camera_id: str) -> None:
        """Export the camera's gauge, read at each scrape (0 until the camera is held)."""
        label = self.label(camera_id)
        if label not in self.watched:
            self.watched.add(label)
            self.gauge.labels(camera=label).set_function(lambda: float(self.silent(label)))

    def hold(self, camera_id: str, sample_fps: float) -> None:
        """The node's thread for the camera starts: heard from now."""
        self.watch(camera_id)
        with self.lock:
            self.held[camera_id] = Heard(self.label(camera_id), silent_after_s(sample_fps), self.clock())

    def heard(self, camera_id: str) -> None:
        """The camera sampled a frame, counted frames unsampled, or waits for room: alive now."""
        entry = self.held.get(camera_id)
        if entry is not None:
            entry.last_s = self.clock()

    def state(self, camera_id: str, state: str) -> None:
        """The camera's state for `alpr status`: ended or failed for good, it is not silent; connected again, it
        may be."""
        entry = self.held.get(camera_id)
        if entry is not None:
            entry.done = state in DONE_STATES

    def reading(self, camera_id: str, progress: Callable[[], int]) -> None:
        """The camera's source opened: `progress` says how far it has read (each change is being heard from)."""
        entry = self.held.get(camera_id)
        if entry is not None:
            entry.progress, entry.progress_seen = progress, progress()  # a pass begun is no progress: a dead
            # restream that opens and closes at each reconnect read 0 for ever (a review)

    def release(self, camera_id: str) -> None:
        """The node holds the camera no longer (lost to another node, or the node stopped): not silent."""
        with self.lock:
            self.held.pop(camera_id, None)

    def silent(self, label: str) -> bool:
        """Whether a camera of the label (cameras past MAX_CAMERA_LABELS share one) the node holds is silent."""
        now = self.clock()
        with self.lock:
            entries = [entry for entry in self.held.values() if entry.label == label]
        return any(judged_silent(entry, now) for entry in entries)

    def unheard(self) -> dict[str, float]:
        """The cameras the node holds and judges silent (each by itself, as its alpr_camera_silent would be, not
        by its label's), with how long each has sampled nothing: their state for `alpr status` says so
        (`said_states`, written by ingest/job_packer.py's refresh_depth)."""
        now = self.clock()
        with self.lock:
            held = list(self.held.items())
        return {camera: now - entry.last_s for camera, entry in held if judged_silent(entry, now)}


def judged_silent(entry: Heard, now: float) -> bool:
    """Whether the camera of `entry` is silent at `now` (the monotonic clock's): neither failed nor ended, it
    has sampled nothing for its bound; its source grabbing frames since last looked at is being heard from."""
    if entry.progress is not None and (reached := entry.progress()) != entry.progress_seen:
        entry.last_s, entry.progress_seen = now, reached  # grabbing frames: alive, sampled or not
    return not entry.done and now - entry.last_s >= entry.silent_after_s


NO_STATE_YET = "connecting"
"""The state said of a silent camera whose thread has set none (it died, or its first open hangs)."""


def said_states(states: dict[str, str], unheard: dict[str, float]) -> dict[str, str]:
    """The cameras' states for `alpr status` (camera id -> JSON: state, since, errors), each camera its node
    judges silent (`unheard`: how long it has sampled nothing) with `silent_since`, the wall-clock time it was
    last heard from; one with no state yet (its thread died before setting one) said NO_STATE_YET. `alpr status`
    showed nothing of a silent camera (a review)."""
    said = dict(states)
    for camera, unheard_s in unheard.items():
        state = json.loads(states[camera]) if camera in states else {"state": NO_STATE_YET, "errors": 0}
        said[camera] = json.dumps({**state, "silent_since": round(time.time() - unheard_s, 1)})
    return said

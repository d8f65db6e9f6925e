"""The kept frames alerts cite, which the keep folder's sweep spares (an alert's evidence stays with it):
held as one sorted array of 64-bit digests of their names (`kept_name`), 8 bytes an alert, and loaded
once whole, then each sweep only the alerts recorded since the last load (alerts_by_created), with a
margin for a transaction that committed late. The sweep loaded every alert ever raised, every 10 minutes,
into a set of names (alerts are never pruned): a million alerts took a redactor from 142 to 637 MB and
10 s a sweep, past Compose's 512 MB, and it was killed at every sweep thereafter (a soak review).

Loads since only ever add: an alert deleted by hand kept its frame spared for as long as the redactor ran
(a review). The set is built whole again, in place of the old, when the alerts are fewer than at the last
load (one deleted), and at least every WHOLE_LOAD_EVERY loads (one deleted and another raised between two)."""

from __future__ import annotations

import hashlib
from array import array

import numpy as np

from common.frame_log import FrameLog
from redactor_worker.kept_frames import kept_name

RELOAD_MARGIN_S = 3600.0
"""How far before the newest alert loaded the next load begins: an alert is dated when its transaction
began (`created_at`), and one that began before the newest loaded may commit after the load."""


WHOLE_LOAD_EVERY = 6
"""Loads (sweeps: KEEP_SWEEP_S, 10 minutes) from one whole load to the next at most: within an hour a frame
whose alert was deleted is swept. A whole load of a million alerts took 6-9 s (2 busy cores) and held 8 MB
more while the new set was built (the loads between, 0.7-1 s; counting the alerts, 45-80 ms)."""


def name_digest(camera_folder: str, file_name: str) -> int:
    """A kept frame's name as 64 bits (two names share one by chance one time in 2^64: that frame spared)."""
    digest = hashlib.blake2b(f"{camera_folder}/{file_name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class AlertEvidence:
    """The names of the kept frames alerts cite, as last loaded (`refresh`); `(camera folder, file name) in`
    it says whether the sweep spares that file. Never loaded, it holds none (the caller deletes nothing)."""

    def __init__(self) -> None:
        self.digests = np.empty(0, dtype=np.uint64)
        self.loaded_until_s: float | None = None
        """The newest alert loaded (its `created_at`, Unix seconds); None before the first load."""
        self.alerts = 0
        """How many alerts there were at the last load (ALERTS_COUNTED)."""
        self.loads_since_whole = 0
        """Loads since the last whole one."""

    @property
    def loaded(self) -> bool:
        return self.loaded_until_s is not None

    def refresh(self, frame_log: FrameLog) -> None:
        """Load the alerts recorded since the last load, streamed, or all of them (the first time, when
        there are fewer alerts than at the last load, or WHOLE_LOAD_EVERY loads after the last whole one)
        into a new set that takes the old one's place; on an error (Postgres away), what was loaded stays
        as it was."""
        alerts = frame_log.alerts_counted()  # before the load: one raised meanwhile is loaded, or next time
        whole = self.loaded_until_s is None or alerts < self.alerts or self.loads_since_whole + 1 >= WHOLE_LOAD_EVERY
        since_s = 0.0 if whole or self.loaded_until_s is None else max(0.0, self.loaded_until_s - RELOAD_MARGIN_S)
        found = array("Q")

        def take(rows: list[tuple[str, str]]) -> None:
            found.extend(name_digest(*kept_name(camera_id, frame_id)) for camera_id, frame_id in rows)

        newest_s = frame_log.alerted_frames(since_s, take)
        loaded = np.frombuffer(found, dtype=np.uint64)
        self.digests = np.unique(loaded) if whole else np.union1d(self.digests, loaded)
        self.loaded_until_s = newest_s if whole else max(newest_s, self.loaded_until_s or 0.0)
        self.alerts, self.loads_since_whole = alerts, 0 if whole else self.loads_since_whole + 1

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, tuple) or len(name) != 2:
            return False
        digest = np.uint64(name_digest(str(name[0]), str(name[1])))
        at = int(np.searchsorted(self.digests, digest))
        return at < len(self.digests) and self.digests[at] == digest

    def __len__(self) -> int:
        return len(self.digests)

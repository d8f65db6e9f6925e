"""The kept frames alerts cite, which the keep folder's sweep spares (an alert's evidence stays with it):
held as one sorted array of 64-bit digests of their names (`kept_name`), 8 bytes an alert, and loaded
once whole, then each sweep only the alerts recorded since the last load (alerts_by_created), with a
margin for a transaction that committed late. The sweep loaded every alert ever raised, every 10 minutes,
into a set of names (alerts are never pruned): a million alerts took a redactor from 142 to 637 MB and
10 s a sweep, past Compose's 512 MB, and it was killed at every sweep thereafter (a soak review)."""

from __future__ import annotations

import hashlib
from array import array

import numpy as np

from common.frame_log import FrameLog
from redactor_worker.kept_frames import kept_name

RELOAD_MARGIN_S = 3600.0
"""How far before the newest alert loaded the next load begins: an alert is dated when its transaction
began (`created_at`), and one that began before the newest loaded may commit after the load."""


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

    @property
    def loaded(self) -> bool:
        return self.loaded_until_s is not None

    def refresh(self, frame_log: FrameLog) -> None:
        """Load the alerts recorded since the last load (all of them the first time), streamed; on an
        error (Postgres away), what was loaded stays as it was."""
        since_s = 0.0 if self.loaded_until_s is None else max(0.0, self.loaded_until_s - RELOAD_MARGIN_S)
        found = array("Q")

        def take(rows: list[tuple[str, str]]) -> None:
            found.extend(name_digest(*kept_name(camera_id, frame_id)) for camera_id, frame_id in rows)

        newest_s = frame_log.alerted_frames(since_s, take)
        self.digests = np.union1d(self.digests, np.frombuffer(found, dtype=np.uint64))
        self.loaded_until_s = max(newest_s, self.loaded_until_s or 0.0)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, tuple) or len(name) != 2:
            return False
        digest = np.uint64(name_digest(str(name[0]), str(name[1])))
        at = int(np.searchsorted(self.digests, digest))
        return at < len(self.digests) and self.digests[at] == digest

    def __len__(self) -> int:
        return len(self.digests)

"""The early scan's progress through a camera's logged reads (`EarlyScan`): which reads the early match
(sighting_worker/matching.py, `WatchMatcher.match_early`) has taken, kept in the camera's cursor, and which
of them were logged late (captured behind the cursor, and not grouped already)."""

from __future__ import annotations

from dataclasses import dataclass, field

from common import defaults
from common.sighting_log import LoggedRead


@dataclass
class EarlyScan:
    """Which logged reads the early match has taken. Read ids are drawn at insert and commits land in
    any order, so a read may become visible after higher ids were taken: each round reads the ids above
    `from_id` — the highest id taken EARLY_RESCAN_S ago — skipping those in `seen`, the ones taken since.
    Kept as the cursor's early_read_id (`from_id`) and in its state (`seen`, `marks`, `grouped`)."""

    from_id: int
    seen: set[int] = field(default_factory=set)
    marks: list[list[float]] = field(default_factory=list)
    """[Postgres's time, highest id taken by then], one per round that took reads, within the window."""
    took_reads: bool = False
    """Whether this round took any read."""
    grouped: set[int] = field(default_factory=set)
    """Reads the grouping took before this scan did (a backlog past SIGHTING_BATCH_READS a round, or a read
    committed between the two in one round): captured behind the cursor when taken, yet not logged late."""

    @classmethod
    def load(cls, from_id: int, state: dict[str, object]) -> EarlyScan:
        early = state.get("early")
        if not isinstance(early, dict):
            return cls(from_id)
        seen: set[int] = set()
        for entry in early.get("seen", []):  # runs of ids [first, last], or single ids (as saved before)
            first, last = (entry, entry) if isinstance(entry, int) else entry
            seen.update(range(int(first), int(last) + 1))
        grouped = {i for first, last in early.get("grouped", []) for i in range(int(first), int(last) + 1)}
        return cls(from_id, seen, [list(m) for m in early.get("marks", [])], grouped=grouped)

    def took(self, ids: list[int], now_s: float) -> None:
        """Note the reads taken this round (at `now_s`, Postgres's clock); move `from_id` up to the highest id
        taken a window ago."""
        self.took_reads = True
        self.seen.update(ids)
        self.marks.append([now_s, float(max(self.seen))])
        old = [m for m in self.marks if m[0] <= now_s - defaults.EARLY_RESCAN_S]
        if old:
            self.from_id = max(self.from_id, int(old[-1][1]))
            self.marks = [m for m in self.marks if m[0] > now_s - defaults.EARLY_RESCAN_S]
        self.seen = {i for i in self.seen if i > self.from_id}
        self.grouped = {i for i in self.grouped if i > self.from_id}

    def late(self, read: LoggedRead, behind_s: float) -> bool:
        """Whether a read this round took was logged late: captured before `behind_s`, the camera's cursor
        as the round found it, and not grouped already (`grouped`), so that no grouping will ever read it."""
        grouped = read.read_id in self.grouped
        self.grouped.discard(read.read_id)
        return read.observation.captured_at_s < behind_s and not grouped

    def grouping(self, ids: list[int]) -> None:
        """Note the reads the grouping took this round that this scan has not (`grouped`)."""
        self.grouped.update(i for i in ids if i > self.from_id and i not in self.seen)

    def state(self) -> dict[str, object]:
        """Saved in the cursor: `seen` as runs of consecutive ids [first, last] (a frame's reads are logged
        together): a car park's 14,500 ids, one by one, rewrote 250 KB of JSON every round."""
        state: dict[str, object] = {"seen": id_runs(self.seen), "taken": len(self.seen), "marks": self.marks}
        if self.grouped:
            state["grouped"] = id_runs(self.grouped)
        return state  # taken: for CAMERAS_WITH_WORK


def id_runs(ids: set[int]) -> list[list[int]]:
    """Ids as runs of consecutive ids [first, last]."""
    runs: list[list[int]] = []
    for read_id in sorted(ids):
        if runs and read_id == runs[-1][1] + 1:
            runs[-1][1] = read_id
        else:
            runs.append([read_id, read_id])
    return runs

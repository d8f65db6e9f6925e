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
    """Reads a worker of the earlier release grouped before this scan took them (saved in its cursor): captured
    behind the cursor when taken, yet not logged late. This release matches such reads as it groups them
    (`grouping`) and notes them in `seen` instead."""

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
        scanned = max(ids, default=self.from_id)
        self.seen.update(ids)  # also holds the reads taken by `grouping`, not by this scan: not its progress
        self.marks.append([now_s, float(max(scanned, int(self.marks[-1][1]) if self.marks else self.from_id))])
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

    def grouping(self, reads: list[LoggedRead]) -> list[LoggedRead]:
        """The reads the grouping takes this round that this scan has not taken (a backlog past
        SIGHTING_BATCH_READS a round, or a read committed between a round's early query and its grouping
        query), taken now: the early match is done on them before they are grouped, so that the pass their
        alert begins holds their track (sighting_worker/passes.link_tracks). Taken after their sighting was
        closed and alerted on, a lookalike's read (a fuzzy match) met a pass that kept no box, and was
        alerted on again (a review: one read, two alerts on each of 4 lookalike entries). Noted in `seen`
        (skipped by the scan, as by the earlier release's), not in its progress (`marks`): they lie ahead
        of it in a backlog."""
        taken = [read for read in reads if read.read_id > self.from_id and read.read_id not in self.seen]
        self.seen.update(read.read_id for read in taken)
        return taken

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

"""One open track: the reads of one plate in front of one camera so far, bounded in memory, and how
it becomes a `Sighting` and a JSON-ready dict (the tracker's state) and back.

A track keeps its earliest, newest and best reads, the read count, the motion of the box centre
(from its two newest reads), the distinct texts read with their counts (at most `max_texts`) and,
for the vote, the text and confidence of the `max_kept` reads with text of highest confidence (as
`Ballot`s: the vote needs nothing else, and a track's saved state stays about 2 KB, not 12)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common.types import Observation, Sighting
from sighting_worker.voting import REACH, Ballot, Voter, vote


def observation_to_state(observation: Observation) -> dict[str, Any]:
    """The observation as a JSON-ready dict (the box as a list)."""
    return {
        "camera_id": observation.camera_id,
        "frame_id": observation.frame_id,
        "plate_index": observation.plate_index,
        "captured_at_s": observation.captured_at_s,
        "box_xyxy": list(observation.box_xyxy),
        "text": observation.text,
        "confidence": observation.confidence,
    }


def observation_from_state(state: dict[str, Any]) -> Observation:
    """The observation `observation_to_state` wrote."""
    x1, y1, x2, y2 = (float(value) for value in state["box_xyxy"])
    return Observation(
        camera_id=str(state["camera_id"]),
        frame_id=str(state["frame_id"]),
        plate_index=int(state["plate_index"]),
        captured_at_s=float(state["captured_at_s"]),
        box_xyxy=(x1, y1, x2, y2),
        text=str(state["text"]),
        confidence=float(state["confidence"]),
    )


def _best_key(observation: Observation) -> tuple[bool, float]:
    """Order of reads for `best`: a read with text before one without, then by confidence."""
    return bool(observation.text), observation.confidence


def _confidence(read: Voter) -> float:
    return read.confidence


def ballot_from_state(item: Any) -> Ballot:
    """A kept read as state version 2 writes it ([text, confidence]) or version 1 did (a whole observation)."""
    if isinstance(item, dict):
        return Ballot(str(item["text"]), float(item["confidence"]))
    text, confidence = item
    return Ballot(str(text), float(confidence))


@dataclass
class Track:
    """The reads of one plate in front of one camera so far (see the module docstring)."""

    first: Observation
    last: Observation
    best: Observation
    reads: int = 1
    velocity_px_s: tuple[float, float] = (0.0, 0.0)
    kept: list[Ballot] = field(default_factory=list)
    text_counts: dict[str, int] = field(default_factory=dict)
    plate: str = ""
    """The current voted text (derived from `kept`, not stored in the state)."""

    @classmethod
    def start(cls, observation: Observation, max_kept: int, max_texts: int) -> Track:
        """A track of one read."""
        track = cls(first=observation, last=observation, best=observation, reads=0)
        track.add(observation, max_kept, max_texts)
        return track

    def add(self, observation: Observation, max_kept: int, max_texts: int) -> None:
        """Adds one read. A read older than the newest updates counts, first and best, not the motion."""
        self.reads += 1
        if observation.captured_at_s < self.first.captured_at_s:
            self.first = observation
        if observation is not self.last and observation.captured_at_s >= self.last.captured_at_s:
            dt_s = observation.captured_at_s - self.last.captured_at_s
            if dt_s > 0:
                (x, y), (last_x, last_y) = observation.center_xy, self.last.center_xy
                self.velocity_px_s = ((x - last_x) / dt_s, (y - last_y) / dt_s)
            self.last = observation
        if _best_key(observation) > _best_key(self.best):
            self.best = observation
        if observation.text:
            self._count_text(observation.text, max_texts)
            self.kept.append(Ballot(observation.text, observation.confidence))
            if len(self.kept) > max_kept:
                self.kept.remove(min(self.kept, key=_confidence))
            self.plate = vote(self.kept)[0]

    def _count_text(self, text: str, max_texts: int) -> None:
        """Counts one read of `text`; when `max_texts` texts are counted already, a new one replaces
        the least read (the earliest counted among equals)."""
        if text not in self.text_counts and len(self.text_counts) >= max_texts:
            del self.text_counts[min(self.text_counts, key=self.text_counts.__getitem__)]
        self.text_counts[text] = self.text_counts.get(text, 0) + 1

    def time_gap_s(self, captured_at_s: float) -> float:
        """How far `captured_at_s` lies outside the track's time span (0 inside it)."""
        return max(0.0, self.first.captured_at_s - captured_at_s, captured_at_s - self.last.captured_at_s)

    def predicted_center_xy(self, captured_at_s: float) -> tuple[float, float]:
        """Where the box centre should be at `captured_at_s`, moving on from the newest read."""
        dt_s = captured_at_s - self.last.captured_at_s
        x, y = self.last.center_xy
        return x + self.velocity_px_s[0] * dt_s, y + self.velocity_px_s[1] * dt_s

    @property
    def sighting_id(self) -> str:
        """The id of the sighting: "<camera_id>:<frame_id>:<plate_index>" of the earliest read."""
        return f"{self.first.camera_id}:{self.first.frame_id}:{self.first.plate_index}"

    def to_sighting(self, trusted_confidence: float | None = None, reach: float = REACH) -> Sighting:
        """The sighting these reads make: a plate one of them reads exactly at `trusted_confidence` is
        contested only by the reads within `reach` of it (`vote`)."""
        plate, confidence = vote(self.kept, trusted_confidence, reach)
        return Sighting(
            sighting_id=self.sighting_id,
            camera_id=self.first.camera_id,
            plate=plate,
            confidence=confidence,
            first_seen_s=self.first.captured_at_s,
            last_seen_s=self.last.captured_at_s,
            reads=self.reads,
            best_frame_id=self.best.frame_id,
            best_box_xyxy=self.best.box_xyxy,
            best_confidence=self.best.confidence,
            texts=tuple(sorted(self.text_counts.items(), key=lambda item: (-item[1], item[0]))),
        )

    def to_state(self) -> dict[str, Any]:
        """The track as a JSON-ready dict."""
        return {
            "first": observation_to_state(self.first),
            "last": observation_to_state(self.last),
            "best": observation_to_state(self.best),
            "reads": self.reads,
            "velocity_px_s": list(self.velocity_px_s),
            "kept": [[ballot.text, ballot.confidence] for ballot in self.kept],
            "text_counts": [[text, count] for text, count in self.text_counts.items()],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Track:
        """The track `to_state` wrote."""
        vx, vy = (float(value) for value in state["velocity_px_s"])
        kept = [ballot_from_state(item) for item in state["kept"]]
        return cls(
            first=observation_from_state(state["first"]),
            last=observation_from_state(state["last"]),
            best=observation_from_state(state["best"]),
            reads=int(state["reads"]),
            velocity_px_s=(vx, vy),
            kept=kept,
            text_counts={str(text): int(count) for text, count in state["text_counts"]},
            plate=vote(kept)[0],
        )

"""The plate vote of one sighting: `vote(observations) -> (plate, confidence)`.

Only reads with text vote ("" is a plate found but not read), each weighted by its confidence. The
length wins by confidence-weighted majority (ties: more reads, then the best read's length). Among
the reads of that length each position votes for its character the same way (ties: more reads, then
the character of the best read of that length).

Sighting confidence, in [0, 1]: the surest read that says the winning character, discounted by how
strongly the strongest rival contests it, at the weakest position (and for the length):

    confidence = certainty(length) * min over positions i of (best_i * certainty_i)
    certainty  = 1 / (1 + r**2),  r = the strongest rival's weight / the winner's weight

- best_i: the highest confidence among the reads with the winning character at position i;
- r: 0 when no read disagrees (certainty 1), 1 at a tie (certainty 0.5): the winner's odds over its
  rival grow with the square of their weight ratio.

One read alone gives its own confidence; agreeing reads never make the plate surer than its surest
read (reads of one car in consecutive frames fail together, so their agreement is weak evidence), and
each disagreeing read lowers it: 7ABC284 read five times at 0.9, once of them as 7A8C284, gives
0.9 / (1 + 0.25**2) = 0.847; GHT2093 read fifteen times and OHT2093 five times, all at 0.9, gives 0.81.

A voted plate that one of its reads says exactly at `trusted_confidence` (the trusted-read threshold: that
read alone would be a sure sighting) is contested only by the reads within `reach` of it (the tracker's
reach by text, two edits): a read further off reads another plate (the next car, joined by its box) or no
plate (a sticker, a fragment), and is no evidence against it. Contested by such a read, a listed plate
read once at 0.876 (BB135BO) was voted at 0.568 beside the next car's read at 0.644 (RK6O5AB) 1 s later,
and raised no alert, which it raised alone (a review: 3 of 26 reads in [0.85, 0.9) lost their alert)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, Protocol

from common.plate_text import plate_distance

REACH = 2.0
"""Default `reach` of `vote`, two edits: the tracker's reach by text (sighting_worker/grouping.MAX_TEXT_DISTANCE)."""


class Voter(Protocol):
    """What a read brings to the vote: its text and its confidence (an `Observation` does, a `Ballot` too)."""

    @property
    def text(self) -> str: ...

    @property
    def confidence(self) -> float: ...


class Ballot(NamedTuple):
    """A read as the vote keeps it: nothing but its text and its confidence (a track keeps up to 50 of
    a parked car's reads, whole observations made its saved state ten times as large)."""

    text: str
    confidence: float


def _confidence(read: Voter) -> float:
    return read.confidence


def _winner(tally: dict[str, list[float]], preferred: str) -> str:
    """Key of the tally with the greatest (weight, count), ties to `preferred`, then to the first seen."""
    return max(tally, key=lambda key: (tally[key][0], tally[key][1], key == preferred))


def _certainty(tally: dict, winner: object) -> float:  # type: ignore[type-arg]
    """1 / (1 + r**2), r the strongest rival's weight over the winner's (weights in `tally[key][0]`)."""
    rivals = [entry[0] for key, entry in tally.items() if key != winner]
    if not rivals or tally[winner][0] <= 0:
        return 1.0 if not rivals else 0.5
    ratio = max(rivals) / tally[winner][0]
    return 1.0 / (1.0 + ratio**2)


def _vote_length(reads: list[Voter]) -> tuple[int, float]:
    """The confidence-weighted majority length among the reads (ties: more reads, the best read's), and
    its certainty."""
    tally: dict[int, list[float]] = {}
    for read in reads:
        weight_count = tally.setdefault(len(read.text), [0.0, 0.0])
        weight_count[0] += read.confidence
        weight_count[1] += 1
    best_length = len(max(reads, key=_confidence).text)
    length = max(tally, key=lambda key: (tally[key][0], tally[key][1], key == best_length))
    return length, _certainty(tally, length)


def _vote_position(reads: list[Voter], position: int, best_char: str) -> tuple[str, float]:
    """The winning character at `position` among reads of one length, and best_i * certainty_i."""
    tally: dict[str, list[float]] = {}
    for read in reads:
        # weight, count, highest confidence
        entry = tally.setdefault(read.text[position], [0.0, 0.0, 0.0])
        entry[0] += read.confidence
        entry[1] += 1
        entry[2] = max(entry[2], read.confidence)
    char = _winner(tally, best_char)
    return char, tally[char][2] * _certainty(tally, char)


def vote(voters: Iterable[Voter], trusted_confidence: float | None = None, reach: float = REACH) -> tuple[str, float]:
    """The voted plate text of these reads and the sighting confidence (see the module docstring);
    ("", 0.0) when no read has text. With `trusted_confidence`, a plate one of them reads exactly that
    sure is contested only by the reads within `reach` of it."""
    reads = [read for read in voters if read.text]
    if not reads:
        return "", 0.0
    plate, confidence = _vote(reads)
    if trusted_confidence is not None and any(r.text == plate and r.confidence >= trusted_confidence for r in reads):
        near = [read for read in reads if plate_distance(read.text, plate) <= reach]
        if len(near) < len(reads):
            near_plate, near_confidence = _vote(near)
            if near_plate == plate:  # the plate stays the vote's; only its contest is narrowed
                confidence = max(confidence, near_confidence)  # never less sure than with every read
    return plate, confidence


def _vote(reads: list[Voter]) -> tuple[str, float]:
    """`vote` over reads with text, every read contesting."""
    length, length_certainty = _vote_length(reads)
    same_length = [read for read in reads if len(read.text) == length]
    best_text = max(same_length, key=_confidence).text
    chars: list[str] = []
    weakest = 1.0
    for position in range(length):
        char, score = _vote_position(same_length, position, best_text[position])
        chars.append(char)
        weakest = min(weakest, score)
    return "".join(chars), min(1.0, max(0.0, length_certainty * weakest))

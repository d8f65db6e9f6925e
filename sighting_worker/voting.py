"""The plate vote of one sighting: `vote(observations) -> (plate, confidence)`.

Only reads with text vote ("" is a plate found but not read), each weighted by its confidence. The
length wins by confidence-weighted majority (ties: more reads, then the best read's length). Among
the reads of that length each position votes for its character the same way (ties: more reads, then
the character of the best read of that length).

Sighting confidence, in [0, 1]:

    confidence = length_share * min over positions i of (share_i * support_i)

- length_share: the winning length's share of the confidence of all voting reads;
- share_i: the winning character's share of the confidence at position i (reads of that length);
- support_i = 1 - prod(1 - c_j) over the reads j with the winning character at i: the chance that
  at least one of them is right, were the reads independent.

One read alone gives its own confidence. The formula rises with every read that agrees, and with its
confidence, and falls with every read that disagrees: 7ABC284 read five times at 0.9, once of them
as 7A8C284, gives 0.8 (the third position's 4-to-1 share); read five times alike, 1 - 0.1**5."""

from __future__ import annotations

from collections.abc import Iterable

from sighting_worker.types import Observation


def _confidence(observation: Observation) -> float:
    return observation.confidence


def _winner(tally: dict[str, list[float]], preferred: str) -> str:
    """Key of the tally with the greatest (weight, count), ties to `preferred`, then to the first seen."""
    return max(tally, key=lambda key: (tally[key][0], tally[key][1], key == preferred))


def _vote_length(reads: list[Observation]) -> int:
    """The confidence-weighted majority length among the reads (ties: more reads, the best read's)."""
    tally: dict[int, list[float]] = {}
    for read in reads:
        weight_count = tally.setdefault(len(read.text), [0.0, 0.0])
        weight_count[0] += read.confidence
        weight_count[1] += 1
    best_length = len(max(reads, key=_confidence).text)
    return max(tally, key=lambda length: (tally[length][0], tally[length][1], length == best_length))


def _vote_position(reads: list[Observation], position: int, best_char: str) -> tuple[str, float]:
    """The winning character at `position` among reads of one length, and its share_i * support_i."""
    tally: dict[str, list[float]] = {}
    for read in reads:
        # weight, count, product of (1 - confidence)
        entry = tally.setdefault(read.text[position], [0.0, 0.0, 1.0])
        entry[0] += read.confidence
        entry[1] += 1
        entry[2] *= 1.0 - read.confidence
    char = _winner(tally, best_char)
    total = sum(entry[0] for entry in tally.values())
    share = tally[char][0] / total if total > 0 else 0.0
    return char, share * (1.0 - tally[char][2])


def vote(observations: Iterable[Observation]) -> tuple[str, float]:
    """The voted plate text of these reads and the sighting confidence (see the module docstring);
    ("", 0.0) when no read has text."""
    reads = [observation for observation in observations if observation.text]
    if not reads:
        return "", 0.0
    length = _vote_length(reads)
    same_length = [read for read in reads if len(read.text) == length]
    total = sum(read.confidence for read in reads)
    length_share = sum(read.confidence for read in same_length) / total if total > 0 else 0.0
    best_text = max(same_length, key=_confidence).text
    chars: list[str] = []
    weakest = 1.0
    for position in range(length):
        char, score = _vote_position(same_length, position, best_text[position])
        chars.append(char)
        weakest = min(weakest, score)
    return "".join(chars), min(1.0, max(0.0, length_share * weakest))

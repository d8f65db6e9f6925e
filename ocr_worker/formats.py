"""The step that turns an engine's per-character choices into ranked candidates: the choices weighed
by the region's character priors (US: a wavering O is the zero), k-best readings, template-constrained
readings with letter/digit confusion correction, and a penalty for readings that fit no format of the
region (the regions' formats are data, in common/regions.py). Each ranked reading
keeps the probability of its least sure character and its margin over a look-alike its region's formats
allow in its place, which calibration (ocr_worker/calibration.py) weighs beside the mean."""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from common.regions import CLASSES, RegionFormats
from common.types import PlateCandidate

CharChoices = Sequence[Sequence[tuple[str, float]]]
"""Per character position, the engine's alternatives (character, probability), best first."""

TO_DIGIT = {
    "O": "0",
    "Q": "0",
    "D": "0",
    "U": "0",
    "I": "1",
    "L": "1",
    "T": "1",
    "Z": "2",
    "A": "4",
    "S": "5",
    "G": "6",
    "B": "8",
}
"""Letters that are read in place of a digit they resemble."""

TO_LETTER = {"0": "O", "1": "I", "2": "Z", "4": "A", "5": "S", "6": "G", "7": "T", "8": "B"}
"""Digits that are read in place of a letter they resemble."""

CONFUSION_PROBABILITY_FACTOR = 0.5
"""A character swapped through the confusion tables keeps this share of its probability."""

MIN_PROBABILITY = 1e-4
"""Floor under character probabilities before taking logarithms."""


def _look_alikes() -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {}
    for a, b in [*TO_DIGIT.items(), *TO_LETTER.items()]:
        found.setdefault(a, set()).add(b)
        found.setdefault(b, set()).add(a)
    return {character: frozenset(others) for character, others in found.items()}


LOOK_ALIKES = _look_alikes()
"""Each character's look-alikes of the other kind (a letter's digits, a digit's letters): the confusion
tables' pairs, both ways (0: O, Q, D, U; O: 0; 1: I, L, T; T: 1, 7)."""

LOOK_ALIKE_FLOOR = 1e-3
"""Floor under both probabilities of `look_alike_margin`, which thus lies within ±log(1000) = ±6.9:
a look-alike the recogniser gave less (or did not list among its alternatives) counts as this."""

NO_LOOK_ALIKE_MARGIN = -math.log(LOOK_ALIKE_FLOOR)
"""The margin of a reading none of whose characters has a look-alike its region's formats allow there."""


@dataclass(frozen=True)
class Reading:
    """A ranked reading before calibration: the candidate, its confidence the per-character geometric
    mean of its score (the engine's probabilities less the region's penalties), and the probability of
    its least sure step: a character as the engine gave it (halved when swapped through the confusion
    tables), or the call that a character is spurious and dropped. One doubtful character in a sure
    plate is how most misreads look, and a mean hides it."""

    candidate: PlateCandidate
    weakest_character: float
    look_alike_margin: float = NO_LOOK_ALIKE_MARGIN
    """The least, over its characters that have a look-alike of the other kind which would also fit one of
    the region's formats, of log(p(character) / p(look-alike)), each as the engine gave it after the
    region's priors (0 where the engine did not list it), floored at LOOK_ALIKE_FLOOR. Where the formats
    leave a glyph's kind open (RK026AJ or RKO26AJ: both fit an eu format), only the recogniser tells the
    0 from the O, and a reading is as sure as that call is; where they pin it, the ranking corrects it."""


def look_alike_margin(text: str, choices: CharChoices, positions: Sequence[int], region: RegionFormats) -> float:
    """`Reading.look_alike_margin` of `text`, whose characters were read at `positions` of `choices`
    (each of them but one the reading calls spurious and drops). A region of no templates (`any`) leaves
    every look-alike open: each counts (none did, the margin stayed at its most, and the calibration took
    every such read for unambiguous: RK026AJ, an O read 0, accepted at 0.86 that eu's formats left at 0.79)."""
    margin = NO_LOOK_ALIKE_MARGIN
    open_to_all = not region.templates
    for at, (character, position) in enumerate(zip(text, positions, strict=True)):
        if not (others := LOOK_ALIKES.get(character)):
            continue
        listed = dict(choices[position])
        mine = max(listed.get(character, 0.0), LOOK_ALIKE_FLOOR)
        for other in others:
            odds = math.log(mine / max(listed.get(other, 0.0), LOOK_ALIKE_FLOOR))
            if odds < margin and (open_to_all or region.match(text[:at] + other + text[at + 1 :]) is not None):
                margin = odds
    return margin


def _log(p: float) -> float:
    return math.log(max(p, MIN_PROBABILITY))


def k_best(choices: CharChoices, k: int) -> list[tuple[str, float, float]]:
    """The k most probable strings (text, log-probability, least character probability) when
    positions are independent."""
    if not choices or any(not alts for alts in choices):
        return []
    start = tuple(0 for _ in choices)
    heap = [(-sum(_log(alts[0][1]) for alts in choices), start)]
    seen = {start}
    out: list[tuple[str, float, float]] = []
    while heap and len(out) < k:
        neg, picks = heapq.heappop(heap)
        picked = [choices[i][j] for i, j in enumerate(picks)]
        out.append(("".join(c for c, _ in picked), -neg, min(p for _, p in picked)))
        for i, j in enumerate(picks):
            if j + 1 < len(choices[i]):
                nxt = picks[:i] + (j + 1,) + picks[i + 1 :]
                if nxt not in seen:
                    seen.add(nxt)
                    delta = _log(choices[i][j + 1][1]) - _log(choices[i][j][1])
                    heapq.heappush(heap, (neg - delta, nxt))
    return out


def fitting_choice(alts: Sequence[tuple[str, float]], kind: str) -> tuple[str, float] | None:
    """One position's most probable character of class `kind` (L, D, A): the likelier of the best
    allowed alternative and the top character swapped through the confusion tables (O/0, I/1, B/8...)."""
    if not alts:
        return None
    allowed = CLASSES[kind]
    options = [(c, p) for c, p in alts if c in allowed]
    top, p_top = alts[0]
    swapped = TO_DIGIT.get(top) if kind == "D" else TO_LETTER.get(top)
    if swapped is not None:
        options.append((swapped, p_top * CONFUSION_PROBABILITY_FACTOR))
    return max(options, key=lambda option: option[1]) if options else None


def _joined(fits: Sequence[tuple[str, float] | None]) -> tuple[str, float, float] | None:
    """Per-position choices as (text, log-probability, least character probability); None if one is missing."""
    chars, logp, weakest = [], 0.0, 1.0
    for fit in fits:
        if fit is None:
            return None
        chars.append(fit[0])
        logp += _log(fit[1])
        weakest = min(weakest, fit[1])
    return "".join(chars), logp, weakest


def constrained_best(choices: CharChoices, template: str) -> tuple[str, float, float] | None:
    """The most probable string that fits `template` (text, log-probability, least character
    probability), position by position (`fitting_choice`)."""
    if len(choices) != len(template):
        return None
    return _joined([fitting_choice(alts, kind) for alts, kind in zip(choices, template, strict=True)])


def _drop_costs(choices: CharChoices) -> list[float]:
    """Per character, the log-cost of calling it spurious (a seal, sticker or frame edge read as a
    character): small only when the engine was unsure that any character is there at all (its
    alternatives together are unlikely), not when it was merely unsure which character it is. None
    are dropped from fewer than three characters."""
    if len(choices) < 3:
        return []
    return [_log(1 - min(0.99, sum(p for _, p in alts))) for alts in choices]


def _template_readings(
    choices: CharChoices, templates: Sequence[str]
) -> list[tuple[str, float, float, tuple[int, ...]]]:
    """For each template, the best reading of the whole choices and of the choices less each one
    character in turn that fits it (text, log-probability with the drop's cost, least probability,
    the positions of choices read).
    A position's best character per class, with its log-probability, is worked out once and shared by
    every template (this runs for every plate read: it was half of the ranking's time)."""
    fits = [{kind: _fit_with_log(alts, kind) for kind in CLASSES} for alts in choices]
    costs = _drop_costs(choices)
    every = tuple(range(len(choices)))
    out = []
    for template in templates:
        if len(template) == len(choices):
            found = _joined_fits([fits[i][kind] for i, kind in enumerate(template)])
            if found:
                out.append((*found, every))
        if costs and len(template) == len(choices) - 1:
            for dropped, cost in enumerate(costs):
                kept = fits[:dropped] + fits[dropped + 1 :]
                found = _joined_fits([fit[kind] for fit, kind in zip(kept, template, strict=True)])
                if found:
                    read = every[:dropped] + every[dropped + 1 :]
                    out.append((found[0], found[1] + cost, min(found[2], math.exp(cost)), read))
    return out


def _fit_with_log(alts: Sequence[tuple[str, float]], kind: str) -> tuple[str, float, float] | None:
    """`fitting_choice` with its log-probability: (character, probability, log-probability)."""
    fit = fitting_choice(alts, kind)
    return None if fit is None else (fit[0], fit[1], _log(fit[1]))


def _joined_fits(fits: Sequence[tuple[str, float, float] | None]) -> tuple[str, float, float] | None:
    """`_joined` of fits that carry their log-probability (the same sums, in the same order)."""
    logp, weakest = 0.0, 1.0
    for fit in fits:
        if fit is None:
            return None
        logp += fit[2]
        weakest = min(weakest, fit[1])
    return "".join(fit[0] for fit in fits), logp, weakest  # type: ignore[index]


def with_priors(choices: CharChoices, log_priors: Mapping[str, float]) -> CharChoices:
    """Each position's alternatives weighed by the region's character priors, by Bayes' rule: a
    character's score times e^prior, renormalised so that the position keeps its total mass (at least
    1: the classes not listed, blank among them, keep their share), best first. A position without a
    character that has a prior is left as it is, and a character the engine did not list stays
    unlisted. A wavering O/0 goes the region's way; a sure one stays."""
    if not log_priors:
        return choices
    weighed: list[Sequence[tuple[str, float]]] = []
    for alts in choices:
        if not any(c in log_priors for c, _ in alts):
            weighed.append(alts)
            continue
        listed = sum(p for _, p in alts)
        scaled = [(c, p * math.exp(log_priors.get(c, 0.0))) for c, p in alts]
        mass = max(1.0, listed)
        scale = mass / (sum(p for _, p in scaled) + mass - listed)
        weighed.append(sorted(((c, p * scale) for c, p in scaled), key=lambda alt: -alt[1]))
    return weighed


def rank_candidates(choices: CharChoices, region: RegionFormats, limit: int) -> list[Reading]:
    """Ranked readings, best first, of the choices weighed by the region's character priors. The score
    is the reading's log-probability less the region's penalties; the confidence is its per-character
    geometric mean, in [0, 1]."""
    choices = with_priors(choices, region.character_log_priors)
    scored: dict[str, tuple[float, float, tuple[int, ...]]] = {}

    def offer(text: str, logp: float, weakest: float, positions: tuple[int, ...]) -> None:
        if text and logp > scored.get(text, (-math.inf, 0.0, ()))[0]:
            scored[text] = (logp, weakest, positions)

    every = tuple(range(len(choices)))
    for text, logp, weakest in k_best(choices, max(limit * 2, 4)):
        offer(text, logp, weakest, every)
    for text, logp, weakest, positions in _template_readings(choices, list(region.templates)):
        offer(text, logp, weakest, positions)
    ranked = []
    for text, (logp, weakest, positions) in scored.items():
        matched = region.match(text)
        if matched is None:
            logp -= region.unmatched_log_penalty
        if not region.min_length <= len(text) <= region.max_length:
            logp -= region.length_log_penalty
        ranked.append((logp, text, matched, weakest, positions))
    ranked.sort(key=lambda item: item[0], reverse=True)
    return [
        Reading(
            PlateCandidate(text, round(min(1.0, math.exp(logp / len(text))), 4), matched),
            weakest,
            look_alike_margin(text, choices, positions, region),
        )
        for logp, text, matched, weakest, positions in ranked[:limit]
    ]

"""What the recogniser said of a listed plate: the evidence a watch-list match rests on (`Evidence`), of a
read (`read_evidence`: its own candidates, plate_reads.candidates, the recogniser's top texts with their
probabilities) or of a sighting (`sighting_evidence`: each text's probability averaged over the sighting's
reads), and the rule a fuzzy match alerts by (`Evidence.allows`).

An exact match is the text read: its probability is the read's (the sighting's) confidence, and it alerts
as before. A fuzzy one (a listed plate within ALPR_WATCH_MAX_DISTANCE, not equal) alerts only when the
recogniser gave the listed text a probability of at least ALPR_WATCH_FUZZY_MIN_PROBABILITY: on distance
alone, a listed plate one edit or a look-alike swap from a passing car alerted on nearly every pass where
that car was read right (an alert review: precision 20% with near-miss lists; 4.2% of correctly read us
cars against a 100,000-entry random hot-list), while the misreads it is there for keep the listed text
among their candidates (RKO26AJ read RK026AJ, RKO26AJ its candidate at 0.0091). A sighting's probability
is the mean over its reads, not the largest: a lookalike parked in view, read for hours, would otherwise
alert once any one read of it named the listed plate faintly."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from common.alerts import AlertCandidate
from common.types import Sighting
from common.watchlist_entry import PLATE_RE
from common.watchlist_index import WatchMatch

READ_CANDIDATES = "SELECT candidates FROM plate_reads WHERE id = %s"
"""A logged read's candidates (JSON: text, confidence, format; best first)."""

SIGHTING_CANDIDATES = """
WITH reads AS (
    SELECT id, candidates FROM plate_reads
    WHERE camera_id = %(camera)s AND captured_at >= to_timestamp(%(first)s) AND captured_at <= to_timestamp(%(last)s)
        AND plate_text = ANY(%(texts)s)
), said AS (
    SELECT reads.id, c->>'text' AS text, max((c->>'confidence')::float8) AS probability
    FROM reads, jsonb_array_elements(CASE jsonb_typeof(reads.candidates) WHEN 'array' THEN reads.candidates
                                     ELSE '[]'::jsonb END) AS c
    WHERE jsonb_typeof(c->'text') = 'string' AND jsonb_typeof(c->'confidence') = 'number'
    GROUP BY reads.id, c->>'text'
)
SELECT text, sum(probability) / (SELECT count(*) FROM reads) FROM said GROUP BY text ORDER BY text
"""
"""A sighting's texts, each with its probability summed over the sighting's reads (the camera's reads of
its texts within its span) and divided by their number: the mean, a read not naming the text counting 0."""

SPAN_MARGIN_S = 0.001
"""A sighting's span is read as Unix seconds (floats): its first and last reads are looked for this much wider."""


@dataclass
class Evidence:
    """The candidates of a read or a sighting (text -> probability), loaded when first asked for, and the
    confidence of its text (its voted plate)."""

    confidence: float
    load: Callable[[], dict[str, float]]
    loaded: dict[str, float] | None = field(default=None, repr=False)

    @property
    def candidates(self) -> dict[str, float]:
        if self.loaded is None:
            self.loaded = self.load()
        return self.loaded

    def probability(self, match: WatchMatch) -> float:
        """How probable the recogniser found the listed plate: an exact match's, the confidence; a fuzzy
        one's, the listed text's among the candidates (0 where it is none of them)."""
        return self.confidence if match.distance == 0 else self.candidates.get(match.entry.plate, 0.0)

    def allows(self, match: WatchMatch, min_probability: float) -> bool:
        """Whether the match may alert: exact, or the listed text at least `min_probability` (0: any)."""
        return match.distance == 0 or min_probability <= 0 or self.probability(match) >= min_probability

    def top(self, count: int) -> tuple[AlertCandidate, ...]:
        """The `count` likeliest candidates, best first (among equals, a read's in the recogniser's order, a
        sighting's by text)."""
        ranked = sorted(self.candidates.items(), key=lambda item: -item[1])
        return tuple(AlertCandidate(text=text, confidence=round(p, 6)) for text, p in ranked[:count])


def _plates(pairs: list[tuple[Any, Any]]) -> dict[str, float]:
    """Text -> probability, plate texts only, each probability within [0, 1] (a row written by hand is
    no reason to fail a camera's round)."""
    found: dict[str, float] = {}
    for text, probability in pairs:
        if isinstance(text, str) and PLATE_RE.fullmatch(text) and isinstance(probability, int | float):
            found[text] = max(found.get(text, 0.0), min(1.0, max(0.0, float(probability))))
    return found


def read_evidence(connection: psycopg.Connection | None, read_id: int, confidence: float) -> Evidence:
    """A logged read's evidence: its own candidates (none without a `connection`)."""

    def load() -> dict[str, float]:
        if connection is None:
            return {}
        row = connection.execute(READ_CANDIDATES, (read_id,)).fetchone()
        listed = row[0] if row is not None else []
        listed = json.loads(listed) if isinstance(listed, str) else listed
        items = [c for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
        return _plates([(c.get("text"), c.get("confidence")) for c in items])

    return Evidence(confidence, load)


def sighting_evidence(connection: psycopg.Connection | None, sighting: Sighting) -> Evidence:
    """A sighting's evidence: each text its reads' candidates name, its probability averaged over them
    (none without a `connection`)."""

    def load() -> dict[str, float]:
        texts = [text for text, _ in sighting.texts if PLATE_RE.fullmatch(text)]
        if connection is None or not texts:
            return {}
        rows = connection.execute(
            SIGHTING_CANDIDATES,
            {"camera": sighting.camera_id, "first": sighting.first_seen_s - SPAN_MARGIN_S,
             "last": sighting.last_seen_s + SPAN_MARGIN_S, "texts": texts},
        ).fetchall()  # fmt: skip
        return _plates([(text, probability) for text, probability in rows])

    return Evidence(sighting.confidence, load)

"""Plate regions as data: the character classes and each region's plate templates and length limits,
loaded and validated from the bundled common/plate_formats.yaml, and a region's template penalty
weighed for a recogniser (`RegionFormats.weighted`). Shared by ingest (a camera's region
is checked when the cameras file is read), the OCR pool (its ranking, ocr_worker/formats.py, and its
synthetic training plates) and the commands that evaluate and calibrate."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from importlib import resources
from typing import Any

import yaml

from common.errors import ConfigError

LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
"""The letters a plate may hold."""

DIGITS = frozenset("0123456789")
"""The digits a plate may hold."""

MAX_LOG_PRIOR = 5.0
"""The largest size of a character's log prior (`character_log_priors`) that a region may set: a
sanity bound (at 5 a prior already outweighs a recogniser 99% sure), refusing a slip of the pen."""

REGION_KEYS = frozenset({"min_length", "max_length", "unmatched_log_penalty", "complete", "templates",
                         "character_log_priors"})  # fmt: skip
"""What a region of plate_formats.yaml may say: anything else is a misspelling, refused by name."""

CLASSES = {"L": LETTERS, "D": DIGITS, "A": LETTERS | DIGITS}
"""A template's character classes: `L` letter, `D` digit, `A` either."""


@dataclass(frozen=True)
class RegionFormats:
    """One region's plate templates and length limits, and what a reading that fits no template, or
    whose length is outside the limits, loses (natural-log units)."""

    name: str
    templates: dict[str, str]
    min_length: int
    max_length: int
    unmatched_log_penalty: float
    length_log_penalty: float
    complete: bool = False
    """The templates list every plate the region issues (Brazil's two national formats), so a
    reading that fits none is a misread whatever the recogniser: its penalty is never weighed down."""
    character_log_priors: Mapping[str, float] = field(default_factory=dict)
    """Natural-log weights on characters that the region's plates hold more or less often than a
    recogniser expects (US: the letter O, which most states leave out and draw like the zero), applied
    to each position's alternatives by Bayes' rule before ranking (ocr_worker/formats.with_priors)."""

    @property
    def typical_length(self) -> float:
        """The mean length of the region's templates (the middle of its limits without any)."""
        if not self.templates:
            return (self.min_length + self.max_length) / 2
        return sum(len(t) for t in self.templates) / len(self.templates)

    def weighted(self, weight: float) -> RegionFormats:
        """The region with its template penalty scaled by `weight`: how much its templates, which
        never list every format, count against a recogniser's own reading (fitted per recogniser by
        `alpr calibrate`; 1.0 as written). The length limits are facts and keep their penalty, and so
        does a region whose templates are `complete`."""
        if not 0 <= weight <= 1:
            raise ConfigError(f"a format weight must lie in [0, 1], got {weight!r}")
        if self.complete:
            return self
        return replace(self, unmatched_log_penalty=self.unmatched_log_penalty * weight)

    @cached_property
    def _templates_by_length(self) -> dict[int, tuple[str, ...]]:
        by_length: dict[int, tuple[str, ...]] = {}
        for template in self.templates:
            by_length[len(template)] = (*by_length.get(len(template), ()), template)
        return by_length

    def match(self, text: str) -> str | None:
        """The template `text` fits, if any (the first in the file's order)."""
        for template in self._templates_by_length.get(len(text), ()):
            if all(c in CLASSES[k] for c, k in zip(text, template, strict=True)):
                return template
        return None


@cache
def load_regions() -> dict[str, RegionFormats]:
    """All regions of the bundled plate_formats.yaml, validated."""
    return parse_regions(yaml.safe_load(resources.files("common").joinpath("plate_formats.yaml").read_text()))


def parse_regions(raw: dict[str, dict[str, Any]]) -> dict[str, RegionFormats]:
    """The regions of a plate_formats.yaml document, validated (a ConfigError names what is wrong)."""
    regions = {}
    for name, spec in raw.items():
        if unknown := set(spec) - REGION_KEYS:
            raise ConfigError(
                f"plate_formats.yaml: region {name}: unknown keys {sorted(unknown)}; known: {sorted(REGION_KEYS)}"
            )
        templates = {str(t): str(d or "") for t, d in (spec.get("templates") or {}).items()}
        for template in templates:
            if not template or set(template) - set(CLASSES):
                raise ConfigError(f"plate_formats.yaml: region {name}: template {template!r} may use only L, D and A")
        regions[name] = RegionFormats(
            name=name,
            templates=templates,
            min_length=int(spec["min_length"]),
            max_length=int(spec["max_length"]),
            unmatched_log_penalty=float(spec["unmatched_log_penalty"]),
            length_log_penalty=2 * float(spec["unmatched_log_penalty"]) + 1.0,
            complete=_flag(spec.get("complete", False), f"plate_formats.yaml: region {name}: complete"),
            character_log_priors=_priors(spec.get("character_log_priors", {}), f"plate_formats.yaml: region {name}"),
        )
    return regions


def _priors(value: object, where: str) -> dict[str, float]:
    """A region's character priors, checked: plate characters (a digit key, which YAML reads as a
    number, taken as the digit) to finite log weights within MAX_LOG_PRIOR."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: character_log_priors must map characters to numbers, got {value!r}")
    priors = {}
    for key, weight in value.items():
        character = str(key) if type(key) is int and 0 <= key <= 9 else key  # YAML reads `0:` as a number
        if not (isinstance(character, str) and character in LETTERS | DIGITS):
            raise ConfigError(f"{where}: character_log_priors: {character!r} is not a plate character (A-Z, 0-9)")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            raise ConfigError(f"{where}: character_log_priors: {character}: {weight!r} is not a number")
        if abs(weight) > MAX_LOG_PRIOR:
            raise ConfigError(f"{where}: character_log_priors: {character}: {weight} is beyond ±{MAX_LOG_PRIOR}")
        priors[character] = float(weight)
    return priors


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{what} must be true or false, got {value!r}")
    return value


def region_formats(name: str) -> RegionFormats:
    """The region called `name`; a ConfigError naming the known ones if there is none."""
    regions = load_regions()
    if name not in regions:
        raise ConfigError(f"unknown plate region {name!r}; known: {', '.join(sorted(regions))}")
    return regions[name]

"""A pydantic ValidationError told as one line a person reads (`format_errors`): the settings', a cameras
file's, a receivers file's and a job's. Field names, which may come from outside, are shortened and any
URL password in them masked; input values are never shown."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from common.credentials import mask_url

MAX_PLACE_CHARS = 40
"""A field name from outside (a cameras file's, a job's) is shortened to this in a message."""


def format_errors(
    error: ValidationError, prefix: str = "", limit: int = 8, label: str = "", names: Mapping[str, str] | None = None
) -> str:
    """A pydantic ValidationError as one line: `[label]PLACE: message; ...` (the place in capitals after
    a prefix, as environment variables are named; lower case without one), the rest counted past
    `limit`. Input values are never shown; field names, which may come from outside, are shortened and
    any URL password in them masked."""
    problems = []
    for item in error.errors()[:limit]:
        place = ".".join(_place_part(p) for p in item["loc"])
        if names and item["loc"] and str(item["loc"][0]) in names:  # given by a flag: named as typed
            place = names[str(item["loc"][0])]
        else:
            place = (prefix + place.upper()) if prefix and place else place
        message = " ".join(str(item["msg"]).removeprefix("Value error, ").split())
        problems.append(f"{label}{place or '(entry)'}: {message}" if place or label else message)
    if error.error_count() > limit:
        problems.append(f"and {error.error_count() - limit} more")
    return mask_url("; ".join(problems))


def _place_part(part: str | int) -> str:
    text = mask_url(str(part))
    if text and text.isprintable() and len(text) <= MAX_PLACE_CHARS:
        return text
    shown = repr(text)
    return shown if len(shown) <= MAX_PLACE_CHARS else shown[: MAX_PLACE_CHARS - 3] + "..."

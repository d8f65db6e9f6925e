"""Reading back the JSON the chain writes where others may write too: to Redis (a role's published entry, a
camera's state, an RQ control message) and to the logs as JSON text (a sighting's texts read, in `alpr
run`'s SQLite file and read as text from Postgres). Whoever may write there may write anything, so each is
read within a bound of bytes, and whatever is not a JSON object (or list) of ours reads as None, never an
exception. 1000 `[` (within a 1024-byte bound) raised RecursionError, which the readers' hand-made `except`
lists missed in part: every role exited 1 at start, and a running alert worker quit; a sighting's texts so
nested ended `alpr search` in a traceback (reviews). Every reader of such JSON uses this one parser."""

from __future__ import annotations

import json
from typing import Any


def refuse_constant(name: str) -> Any:
    """NaN, Infinity and -Infinity: no JSON the chain writes holds them (json.dumps' own extension)."""
    raise ValueError(f"{name} is not a number the chain writes")


def json_object(raw: bytes | str | None, max_bytes: int) -> dict[str, Any] | None:
    """`raw` as the JSON object it holds; None where there is none, it is longer than `max_bytes`, or it
    is not a JSON object (not JSON, not UTF-8, nested past the interpreter's depth, a bare value or list,
    NaN or Infinity anywhere). The caller still checks each field it uses: any client may have written it."""
    parsed = json_value(raw, max_bytes)
    return parsed if isinstance(parsed, dict) else None


def json_list(raw: bytes | str | None, max_bytes: int) -> list[Any] | None:
    """`raw` as the JSON list it holds; None where there is none (as `json_object`: a bare value or an
    object is none). The caller still checks each item it uses."""
    parsed = json_value(raw, max_bytes)
    return parsed if isinstance(parsed, list) else None


def json_value(raw: bytes | str | None, max_bytes: int) -> Any:
    """`raw` parsed; None where it is not text, longer than `max_bytes`, or no JSON the chain writes (not
    JSON, not UTF-8, nested past the interpreter's depth, NaN or Infinity anywhere) — as for JSON `null`."""
    if not isinstance(raw, bytes | str) or len(raw) > max_bytes:
        return None
    try:
        return json.loads(raw, parse_constant=refuse_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None

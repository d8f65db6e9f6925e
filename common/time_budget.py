"""A job's time budget: work done a chunk at a time while, at the pace of the chunks before, the next
would end by the job's deadline; what was not begun is passed on by the pool with why (`skipped`,
`over job time budget`) rather than the job timing out, failing on every attempt, with nothing handed
on (defaults.JOB_TIME_BUDGET_SHARE)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def within_budget(
    items: Sequence[T],
    chunk_size: int,
    deadline: float,
    work: Callable[[list[T]], R],
    weight: Callable[[T], int] = lambda item: 1,
) -> list[R]:
    """`work`'s results on `items`, `chunk_size` at a time, while each chunk can end by `deadline`
    (time.monotonic()): the first chunk always, each next one only if, at the pace of those before per
    unit of `weight` (a frame; an OCR job's plates), it would end in time. The items not begun are those
    past the chunks done."""
    done: list[R] = []
    size = max(1, chunk_size)
    begun_at, finished = time.monotonic(), 0
    for first in range(0, len(items), size):
        chunk = list(items[first : first + size])
        load = sum(max(1, weight(item)) for item in chunk)
        now = time.monotonic()
        if finished and now + (now - begun_at) / finished * load > deadline:
            break
        done.append(work(chunk))
        finished += load
    return done

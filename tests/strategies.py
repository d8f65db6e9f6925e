"""Hypothesis strategies and settings the fuzz tests share."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    # Hypothesis caches what it learns under .hypothesis/ in the working directory, from collection on
    # (before any fixture runs): keep that in a temporary folder, removed at exit, not in the checkout.
    HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="alpr-hypothesis-")
    set_hypothesis_home_dir(HYPOTHESIS_HOME)
    atexit.register(shutil.rmtree, HYPOTHESIS_HOME, ignore_errors=True)

FUZZ_SETTINGS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
"""Each test stays within a few seconds; no example database is kept between runs."""


def json_like(samples: list[str], max_text: int = 20, max_leaves: int = 30) -> st.SearchStrategy:
    """Anything JSON-like: None, bools, numbers (nan and infinities included), text (with `samples`
    that reach the parser's corners), and lists and dicts of them."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=max_text)
        | st.sampled_from(samples)
    )
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6),
        max_leaves=max_leaves,
    )

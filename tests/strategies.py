"""Hypothesis strategies the fuzz tests share."""

from __future__ import annotations

from hypothesis import strategies as st


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

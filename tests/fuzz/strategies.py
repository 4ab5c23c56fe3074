"""Shared hypothesis settings and byte-stream strategies for the fuzz tests.

Every property here runs derandomized (the examples follow from the test's
name, not from the clock) and without the example database, so that CI runs
the same examples every time and leaves no ``.hypothesis`` folder behind.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def fuzz(max_examples: int) -> settings:
    """Deterministic hypothesis settings with ``max_examples`` examples."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


#: Bytes a line-oriented protocol finds interesting: terminators, its own
#: punctuation, NUL, DEL, bytes with the high bit set.
SPICY = b"\r\n\n\r>*<?- =0123456789ABCDEFOSP\x00\x7f\x80\xff"


def stream_bytes(max_size: int = 400) -> st.SearchStrategy[bytes]:
    """Random bytes, biased towards the bytes a line protocol reacts to."""
    spicy = st.lists(st.sampled_from(list(SPICY)), max_size=max_size).map(bytes)
    return st.one_of(st.binary(max_size=max_size), spicy)


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, repeats allowed)."""
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


cuts = st.lists(st.integers(0, 10_000), max_size=12)

"""The median selection networks: correct for every input, and small."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reduce.combine import NETWORK_MAX_N
from reduce.errors import InputError
from reduce.median import (
    median_network,
    median_passes,
    median_schedule,
    pairwise_network,
    run_median_schedule,
)


def _zero_one_inputs(n: int) -> list[npt.NDArray[np.uint8]]:
    """Line k of every 0-1 input of ``n`` lines, as packed bits (2^n of them)."""
    index = np.arange(1 << n, dtype=np.uint32)
    return [np.packbits(((index >> k) & 1).astype(bool)) for k in range(n)]


def _ones(n: int) -> npt.NDArray[np.int64]:
    """The number of ones of each 0-1 input of ``n`` lines."""
    index = np.arange(1 << n, dtype=np.uint32)
    return sum((((index >> k) & 1).astype(np.int64) for k in range(n)), np.int64(0))


@pytest.mark.parametrize("width", [1, 2, 4, 8, 16])
def test_pairwise_network_sorts_every_zero_one_input(width: int) -> None:
    # The 0-1 principle: a comparator network that sorts every input of
    # zeros and ones sorts every input.
    lines = _zero_one_inputs(width)
    for a, b in pairwise_network(width):
        assert a < b
        lines[a], lines[b] = lines[a] & lines[b], lines[a] | lines[b]
    for lower, upper in itertools.pairwise(lines):
        assert not np.any(lower & ~upper)  # a 1 above a 0 somewhere


@pytest.mark.parametrize("n", range(1, 21))
def test_median_schedule_selects_the_middle_of_every_zero_one_input(n: int) -> None:
    # Min and max commute with any monotone map, so a network that puts the
    # rank-r value on a plane for every 0-1 input does so for every input.
    planes = _zero_one_inputs(n)
    for a, b, want_min, want_max in median_schedule(n):
        low, high = planes[a] & planes[b], planes[a] | planes[b]
        if want_min:
            planes[a] = low
        if want_max:
            planes[b] = high
    ones = _ones(n)
    for rank in ((n - 1) // 2, n // 2):  # the rank-r value is 1 iff ones > n-1-r
        got = np.unpackbits(planes[rank])[: 1 << n].astype(bool)
        assert np.array_equal(got, ones >= n - rank)


def _middle(band: npt.NDArray[np.float32]) -> tuple[np.float32, np.float32]:
    planes = [plane.copy() for plane in band]
    run_median_schedule(planes, np.empty_like(planes[0]))
    n = band.shape[0]
    return planes[(n - 1) // 2], planes[n // 2]


@pytest.mark.parametrize("n", range(1, NETWORK_MAX_N + 1))
def test_middle_planes_are_the_order_statistics(n: int) -> None:
    rng = np.random.default_rng(400 + n)
    wide = rng.standard_normal((n, 40, 50)) * 10.0 ** rng.integers(-5, 6, (n, 40, 50))
    ties = rng.integers(-2, 3, (n, 40, 50))
    band = np.concatenate([wide, ties], axis=1).astype(np.float32)
    lower, upper = _middle(band)
    ordered = np.sort(band, axis=0)
    assert np.array_equal(lower, ordered[(n - 1) // 2])
    assert np.array_equal(upper, ordered[n // 2])


@pytest.mark.parametrize("n", range(2, NETWORK_MAX_N + 1))
def test_a_nan_on_any_plane_reaches_the_median(n: int) -> None:
    # As np.median: one NaN among the values makes the median NaN. Column j
    # has its NaN on plane j; column n has none.
    band = np.random.default_rng(n).normal(size=(n, 1, n + 1)).astype(np.float32)
    band[np.arange(n), 0, np.arange(n)] = np.nan
    lower, upper = _middle(band)
    assert np.all(np.isnan(lower[0, :n]))
    assert np.all(np.isnan(upper[0, :n]))
    assert not np.isnan(lower[0, n])
    assert not np.isnan(upper[0, n])


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, NETWORK_MAX_N),
    seed=st.integers(0, 2**32 - 1),
    spread=st.sampled_from([2, 5, 1000]),
)
def test_middle_planes_match_numpy_median(n: int, seed: int, spread: int) -> None:
    rng = np.random.default_rng(seed)
    band = rng.integers(-spread, spread + 1, (n, 2, 9)).astype(np.float32)
    band += rng.random((n, 2, 9), dtype=np.float32)  # ties and near-ties
    lower, upper = _middle(band)
    expected = np.median(band.astype(np.float64), axis=0)
    assert np.array_equal((lower.astype(np.float64) + upper) / 2.0, expected)


def test_network_is_pruned_to_the_middle() -> None:
    full = median_network(20)
    assert 0 < len(full) < 91  # the smallest known full sorting network of 20
    assert all(0 <= a < 20 and 0 <= b < 20 and a != b for a, b in full)


def test_schedule_skips_dead_outputs() -> None:
    steps = median_schedule(20)
    assert len(steps) == len(median_network(20))
    passes = sum(want_min + want_max for _, _, want_min, want_max in steps)
    assert passes == median_passes(20) < 2 * len(steps)
    assert all(want_min or want_max for _, _, want_min, want_max in steps)


@pytest.mark.parametrize(
    ("n", "batcher"),  # passes of the pruned Batcher odd-even merge network
    [(9, 40), (15, 84), (20, 150), (21, 162), (35, 382), (50, 612), (64, 828)],
)
def test_fewer_passes_than_the_pruned_batcher_network(n: int, batcher: int) -> None:
    assert median_passes(n) < batcher
    assert median_passes(20) <= 126


def test_an_empty_stack_has_no_network() -> None:
    with pytest.raises(InputError, match="no frames"):
        median_schedule(0)

"""The running median window equals a whole-stack combination, exactly."""

from __future__ import annotations

import os
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from pytest_mock import MockerFixture

from reduce.errors import ReductionError
from reduce.window import MedianWindow, window_ranks

from .conftest import combine

SHAPE = (7, 5)


def _stack(rng: np.random.Generator, n: int) -> np.ndarray:
    """Values with ties (small integers), wide ranges and cosmic-ray-like spikes."""
    stack = rng.integers(-3, 4, size=(n, *SHAPE)).astype(np.float32)
    stack[:, 0] = rng.normal(1000.0, 300.0, size=(n, SHAPE[1]))
    stack[:, 1] = rng.uniform(-1e4, 6e4, size=(n, SHAPE[1]))
    spikes = rng.random((n, *SHAPE)) < 0.05
    stack[spikes] += np.float32(40000.0)
    return stack


@pytest.mark.parametrize("n_total", [2, 3, 4, 5, 8, 13, 20, 25])
def test_window_keeps_the_middle_ranks_of_any_prefix(n_total: int) -> None:
    for k in range(2, n_total + 1):
        lo, hi = window_ranks(n_total, k)
        assert 0 <= lo <= (k - 1) // 2
        assert k // 2 <= hi <= k - 1
    assert window_ranks(n_total, n_total) == ((n_total - 1) // 2, n_total // 2)


@pytest.mark.parametrize("n_total", [2, 3, 4, 5, 6, 7, 11, 12, 20, 25])
def test_window_equals_the_band_combination_for_every_prefix(
    tmp_path: Path, n_total: int
) -> None:
    rng = np.random.default_rng(1000 + n_total)
    stack = _stack(rng, n_total)
    window = MedianWindow(
        tmp_path / "w.median", n_total, shape=SHAPE, band_rows=3, threads=2
    )
    try:
        for k in range(n_total):
            window.add(stack[k])
            if k == 0:
                assert not window.available()  # one frame: no scatter
                continue
            got = window.result()
            want = combine(stack[: k + 1])
            assert np.array_equal(got.data, want.data)
            assert np.array_equal(got.variance, want.variance)
            assert np.array_equal(got.npix, want.npix)
            median = np.median(stack[: k + 1].astype(np.float64), axis=0)
            assert np.array_equal(got.data, median.astype(np.float32))
        with pytest.raises(ReductionError, match="window for"):
            window.add(stack[0])
    finally:
        window.close()
    assert not (tmp_path / "w.median").exists()


def test_window_rejects_a_frame_of_the_wrong_shape(tmp_path: Path) -> None:
    window = MedianWindow(tmp_path / "w.median", 3, shape=SHAPE)
    with closing(window), pytest.raises(ReductionError, match="expected float32"):
        window.add(np.zeros((SHAPE[0], SHAPE[1] + 1), np.float32))


def test_a_short_write_reports_the_kernels_reason(
    tmp_path: Path, mocker: MockerFixture
) -> None:
    """A full disk shows as a short write first: the rest is written to learn why."""
    window = MedianWindow(tmp_path / "w.median", 3, shape=SHAPE)
    mocker.patch("reduce.window.os.pwritev", return_value=100)
    full = mocker.patch(
        "reduce.window.os.pwrite", side_effect=OSError(28, "No space left on device")
    )
    with closing(window), pytest.raises(OSError, match="No space left on device"):
        window.add(np.zeros(SHAPE, np.float32))
    assert full.call_args.args[2] > 0  # the rest, after the 100 bytes written


def test_a_short_write_that_completes_loses_nothing(
    tmp_path: Path, mocker: MockerFixture
) -> None:
    """An interrupted write that can go on is finished: the median is exact."""
    stack = np.random.default_rng(5).normal(size=(3, *SHAPE)).astype(np.float32)
    real = os.pwritev
    mocker.patch(
        "reduce.window.os.pwritev",
        side_effect=lambda fd, views, at: min(real(fd, views, at), 64),
    )
    window = MedianWindow(tmp_path / "w.median", 3, shape=SHAPE)
    with closing(window):
        for frame in stack:
            window.add(frame)
        median = window.result().data
    np.testing.assert_array_equal(median, np.median(stack, axis=0))

"""The median combination: exact, banded, with its variance and rejection."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reduce.combine import (
    DEFAULT_BAND_ROWS,
    KERNEL_BAND_ROWS,
    NETWORK_MAX_N,
    CombineConfig,
    NoiseModel,
    combine_band_into,
    median_planes,
    median_variance_factor,
    middle_mean_into,
)
from reduce.errors import InputError, SettingsError
from reduce.settings import Options

from .conftest import combine


@pytest.mark.parametrize("n", range(1, 26))
def test_median_identical_to_numpy(n: int) -> None:
    rng = np.random.default_rng(n)
    stack = rng.normal(100.0, 5.0, (n, 9, 11)).astype(np.float32)
    expected = np.median(stack.astype(np.float64), axis=0)
    assert np.array_equal(median_planes(stack), expected)
    combined = combine(stack)
    assert np.array_equal(combined.data, expected.astype(np.float32))
    assert np.all(combined.npix == n)


@pytest.mark.parametrize("n", [2, 6, 7, 20])
def test_median_with_ties_and_integers(n: int) -> None:
    rng = np.random.default_rng(100 + n)
    stack = rng.integers(0, 4, (n, 16, 16)).astype(np.float32)
    assert np.array_equal(median_planes(stack), np.median(stack, axis=0))


def test_even_median_averages_in_double() -> None:
    # Two float32 values whose float32 mean would round differently.
    a = np.float32(16777216.0)
    b = np.float32(16777218.0)
    stack = np.array([[[a]], [[b]]], dtype=np.float32)
    assert median_planes(stack)[0, 0] == 16777217.0


def test_large_stack_uses_partition_and_matches_numpy() -> None:
    n = NETWORK_MAX_N + 5
    stack = np.random.default_rng(7).normal(size=(n, 5, 6)).astype(np.float32)
    assert np.array_equal(median_planes(stack), np.median(stack.astype(float), axis=0))


def test_band_size_does_not_change_the_result() -> None:
    stack = np.random.default_rng(3).normal(size=(5, 37, 8)).astype(np.float32)
    whole = combine(stack)
    for rows in (1, 4, 16):
        for r0 in range(0, 37, rows):
            part = combine(stack[:, r0 : r0 + rows], row0=r0)
            assert np.array_equal(part.data, whole.data[r0 : r0 + rows])
            assert np.array_equal(part.variance, whole.variance[r0 : r0 + rows])


def test_variance_is_that_of_the_median() -> None:
    rng = np.random.default_rng(11)
    n, sigma = 9, 3.0
    stack = rng.normal(0.0, sigma, (n, 200, 200)).astype(np.float32)
    combined = combine(stack)
    predicted = sigma**2 * math.pi / (2 * n)
    assert np.mean(combined.variance) == pytest.approx(predicted, rel=0.02)
    # and the scatter of many independent medians agrees with it (loosely:
    # pi/2N is the large-N factor, a few per cent high for N=9)
    assert np.var(combined.data) == pytest.approx(predicted, rel=0.1)


def test_median_variance_factor() -> None:
    assert median_variance_factor(1) == 1.0
    assert median_variance_factor(2) == 0.5
    assert median_variance_factor(10) == pytest.approx(math.pi / 20)


def test_single_frame_variance_comes_from_the_noise_model() -> None:
    frame = np.full((1, 3, 4), 17.3, dtype=np.float32)
    noise = NoiseModel(read_noise_adu=(2.0, 3.0), gain=(1.73, 1.6))
    out = combine(frame, CombineConfig(noise=noise), row0=0)
    assert np.allclose(out.variance, 4.0 + 17.3 / 1.73)
    assert np.all(np.isnan(combine(frame, CombineConfig()).variance))


def test_noise_clip_rejects_a_cosmic_ray() -> None:
    rng = np.random.default_rng(5)
    stack = rng.normal(10.0, 2.0, (6, 20, 20)).astype(np.float32)
    stack[2, 4, 5] += 5000.0  # cosmic ray
    stack[4, 4, 5] += 3000.0  # and another, same pixel
    noise = NoiseModel(read_noise_adu=(2.0, 2.0), gain=(1.0, 1.0), nsigma=5.0)
    out = combine(stack, CombineConfig(method="noise_clip", noise=noise))
    assert out.npix[4, 5] == 4
    kept = np.delete(stack[:, 4, 5], [2, 4]).astype(np.float64)
    assert out.data[4, 5] == np.float32(np.median(kept))
    plain = combine(stack)
    assert plain.data[4, 5] != out.data[4, 5]


def test_noise_clip_uses_each_amplifier_noise() -> None:
    # Row 2055 is amplifier 1 (low noise), row 2056 amplifier 2 (high noise).
    stack = np.zeros((5, 2, 1), dtype=np.float32)
    stack[0, :, 0] = 30.0  # 30 ADU off: 15 sigma for amp 1, 3 sigma for amp 2
    noise = NoiseModel(read_noise_adu=(2.0, 10.0), gain=(1e9, 1e9), nsigma=5.0)
    out = combine(stack, CombineConfig(method="noise_clip", noise=noise), 2055)
    assert out.npix.ravel().tolist() == [4, 5]


def test_config_errors() -> None:
    with pytest.raises(SettingsError, match="noise model"):
        CombineConfig(method="noise_clip")
    with pytest.raises(SettingsError, match="band_rows"):
        CombineConfig(band_rows=0)
    with pytest.raises(SettingsError, match="gain"):
        NoiseModel(read_noise_adu=(1.0, 1.0), gain=(0.0, 1.0))
    with pytest.raises(InputError, match="expected"):
        combine(np.zeros((0, 3, 3), dtype=np.float32))
    with pytest.raises(SettingsError, match="band_rows must be >= 1, got 0"):
        Options(band_rows=0)


def test_band_rows_follow_the_path_unless_asked() -> None:
    # The kernel (built here, as in CI) takes 64-row bands of a median of
    # 2..64 frames; numpy's paths (noise clipping, one frame, more than 64)
    # keep 16-row bands; asked rows are kept.
    assert Options().rows_per_band(20) == KERNEL_BAND_ROWS == 64
    assert Options().rows_per_band(NETWORK_MAX_N + 1) == DEFAULT_BAND_ROWS == 16
    assert Options().rows_per_band(1) == DEFAULT_BAND_ROWS
    assert Options(method="noise_clip").rows_per_band(20) == DEFAULT_BAND_ROWS
    assert Options(band_rows=5).rows_per_band(20) == 5


@st.composite
def _bands(draw: st.DrawFn) -> npt.NDArray[np.float32]:
    """Stacks of 1..64 frames: small integers (many ties) or wide float32 values."""
    n = draw(st.integers(1, NETWORK_MAX_N))
    rows, cols = draw(st.integers(1, 3)), draw(st.integers(1, 7))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        values = rng.integers(-3, 4, (n, rows, cols)).astype(np.float32)
    else:
        values = rng.standard_normal((n, rows, cols)) * 10.0 ** rng.integers(-3, 5)
    return values.astype(np.float32)


@settings(max_examples=300, deadline=None)
@given(band=_bands())
def test_in_place_network_median_equals_numpy(band: npt.NDArray[np.float32]) -> None:
    n = band.shape[0]
    original = band.copy()
    data = np.empty(band.shape[1:], np.float32)
    variance = np.empty_like(data)
    npix = np.empty(band.shape[1:], np.int16)
    noise = NoiseModel(read_noise_adu=(1.0, 1.0))
    combine_band_into(band, CombineConfig(noise=noise), 0, data, variance, npix)
    expected = np.median(original.astype(np.float64), axis=0).astype(np.float32)
    assert np.array_equal(data, expected)
    assert np.all(npix == n)
    # The variance is taken from the planes the network permuted: it must be
    # that of the original values, so none was lost or duplicated.
    if n >= 2:
        reference = np.var(original.astype(np.float64), axis=0, ddof=1)
        reference *= median_variance_factor(n)
        scale = np.max(np.abs(original.astype(np.float64)), axis=0) ** 2 + 1e-30
        assert np.all(np.abs(variance - reference) <= 1e-5 * scale)


@pytest.mark.parametrize("n", [2, 3, 4, 7, 16, 19, 20, 21, 33, 64])
def test_in_place_band_median_matches_numpy_with_ties(n: int) -> None:
    # Few distinct values: many ties, so a comparator whose dead output was
    # skipped would show up as a wrong middle value somewhere.
    rng = np.random.default_rng(300 + n)
    stack = rng.integers(0, 5, (n, 9, 11)).astype(np.float32)
    out = combine(stack, CombineConfig())
    assert np.array_equal(out.data, np.median(stack.astype(np.float64), axis=0))


def _finite_float32(bits: int) -> np.float32:
    """A float32 with the given bit pattern, kept finite and below 1e37."""
    value = np.float32(np.array([bits], dtype=np.uint32).view(np.float32)[0])
    if not np.isfinite(value) or abs(value) > 1e37:
        return np.float32(1.0)
    return value


@settings(max_examples=2000, deadline=None)
@given(
    a=st.integers(0, 2**32 - 1).map(_finite_float32),
    b=st.integers(0, 2**32 - 1).map(_finite_float32),
)
def test_middle_mean_in_float32_rounds_as_numina_double(
    a: np.float32, b: np.float32
) -> None:
    # numina: (upper + lower) / 2.0 in double, then cast to float32.
    expected = np.float32((np.float64(a) + np.float64(b)) / 2.0)
    if abs(expected) < np.finfo(np.float32).tiny:  # subnormal halves: not ADU
        return
    out = np.empty(1, np.float32)
    middle_mean_into(np.array([a]), np.array([b]), out)
    assert out[0] == expected or (np.isnan(out[0]) and np.isnan(expected))


def test_middle_mean_of_neighbours_and_far_apart_values() -> None:
    # Ties at the float32 rounding of the exact sum, and exponents far apart.
    rng = np.random.default_rng(5)
    lower = rng.normal(0.0, 1.0, 100_000).astype(np.float32)
    lower *= np.float32(10.0) ** rng.integers(-12, 12, lower.size).astype(np.float32)
    upper = np.nextafter(lower, np.float32(np.inf))
    upper[::2] = rng.normal(0.0, 1e6, upper[::2].size).astype(np.float32)
    expected = ((lower.astype(np.float64) + upper) / 2.0).astype(np.float32)
    out = np.empty_like(lower)
    middle_mean_into(lower, upper, out)
    assert np.array_equal(out, expected)

"""The overscan model: megaradrp's spline, checked against an independent fit."""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest

from reduce.errors import SettingsError
from reduce.geometry import AMP1, AMP2, AMPLIFIERS, RAW_SHAPE, TRIMMED_SHAPE
from reduce.overscan import (
    bspline_basis,
    clip_window,
    clipped_std,
    fit_lsq_spline,
    fit_overscan,
)
from tests.unit.reduce.trimming import preprocess


def power_basis_fit(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], knot: int
) -> npt.NDArray[np.float64]:
    """Independent float64 cubic spline with one knot: truncated power basis."""
    lo, hi = x[0], x[-1]
    t = (x - lo) / (hi - lo)
    tk = (knot - lo) / (hi - lo)
    design = np.column_stack([t**0, t, t**2, t**3, np.clip(t - tk, 0, None) ** 3])
    coeffs, *_ = np.linalg.lstsq(design, y, rcond=None)
    fitted: npt.NDArray[np.float64] = design @ coeffs
    return fitted


def raw_with_overscan(seed: int) -> npt.NDArray[np.uint16]:
    rng = np.random.default_rng(seed)
    raw = rng.normal(0.0, 3.0, RAW_SHAPE)
    rows = np.arange(RAW_SHAPE[0])
    raw += (2000.0 + 4.0 * np.sin(rows / 700.0) + 1e-6 * (rows - 1500.0) ** 2)[:, None]
    return np.rint(raw).astype(np.uint16)


def test_bspline_basis_is_a_partition_of_unity() -> None:
    x = np.linspace(0.0, 10.0, 101)
    knots = np.array([0, 0, 0, 0, 3.0, 10, 10, 10, 10], dtype=float)
    basis = bspline_basis(x, knots, 3)
    assert basis.shape == (101, 5)
    assert np.allclose(basis.sum(axis=1), 1.0)
    assert np.all(basis >= 0)


def test_spline_reproduces_a_cubic_exactly() -> None:
    x = np.arange(0, 2056, dtype=float)
    y = 3.0 + 1e-3 * x - 2e-7 * x**2 + 5e-11 * x**3
    spline = fit_lsq_spline(x, y, (1200.0,))
    assert np.allclose(spline(x), y, rtol=0, atol=1e-9)


@pytest.mark.parametrize("amp", AMPLIFIERS)
def test_overscan_model_matches_independent_fit(amp: object) -> None:
    assert amp in AMPLIFIERS
    raw = raw_with_overscan(1)
    a = AMP1 if amp is AMP1 else AMP2
    model = fit_overscan(raw[a.raw_overscan], a)
    rows = np.arange(a.data_rows.start, a.data_rows.stop, dtype=float)
    profile = raw[a.raw_overscan].astype(np.float64).mean(axis=1)
    expected = power_basis_fit(rows, model.profile.astype(np.float64), a.knot_row)
    assert np.max(np.abs(model.model - expected)) < 1e-8
    # the float32 profile is the mean of integers: exact to float32 rounding
    assert np.allclose(model.profile, profile, rtol=1e-7, atol=0)
    assert model.profile.dtype == np.float32
    assert model.spline.knots.tolist() == [rows[0]] * 4 + [a.knot_row] + [rows[-1]] * 4


def test_preprocess_subtracts_and_trims_with_one_rounding() -> None:
    raw = raw_with_overscan(2)
    trimmed, models = preprocess(raw)
    assert trimmed.shape == TRIMMED_SHAPE
    assert trimmed.dtype == np.float32
    for amp, model in zip(AMPLIFIERS, models, strict=True):
        expected = (raw[amp.raw_data].astype(np.float64) - model.model[:, None]).astype(
            np.float32
        )
        assert np.array_equal(trimmed[amp.trimmed_rows], expected)
    # Amplifier 2's first data row is raw row 2156 and lands at trimmed row 2056.
    assert trimmed[2056, 0] == np.float32(float(raw[2156, 50]) - models[1].model[0])


def test_residual_rms_estimates_the_read_noise() -> None:
    rng = np.random.default_rng(9)
    overscan = np.rint(1500.0 + rng.normal(0.0, 4.0, (2056, 50))).astype(np.uint16)
    model = fit_overscan(overscan, AMP1)
    # quantisation adds 1/12 ADU^2
    assert model.residual_rms == pytest.approx(np.sqrt(16 + 1 / 12), rel=0.02)
    assert model.level == pytest.approx(1500.0, abs=0.05)


def test_fitpack_backend_without_scipy_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = importlib.import_module

    def no_scipy(name: str, package: str | None = None) -> ModuleType:
        if name.startswith("scipy"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", no_scipy)
    with pytest.raises(SettingsError, match=r"needs scipy.*backend='numpy'"):
        fit_lsq_spline(np.arange(10.0), np.arange(10.0), (5.0,), backend="fitpack")


@pytest.mark.parametrize(("size", "tolerance"), [(1_000, 0.15), (200_000, 0.03)])
def test_clip_window_locates_a_contaminated_gaussian(
    size: int, tolerance: float
) -> None:
    """Median and MAD of a sample: the truth (0, 2) within ~4 standard errors.

    The tolerance is ~4 standard errors of a median (1.25 sigma / sqrt(n)) and
    of a MAD sigma (1.65 sigma / sqrt(n)) for the values actually used: all
    1000, or a sample of ~33 000 of the 200 000.
    """
    rng = np.random.default_rng(21)
    values = rng.normal(0.0, 2.0, size)
    values[rng.integers(0, size, size // 100)] += 5_000.0  # 1% cosmic rays
    centre, scale = clip_window(values)
    assert abs(centre) < 2.0 * tolerance
    assert scale == pytest.approx(2.0, rel=tolerance)
    assert clipped_std(values) == pytest.approx(2.0, rel=tolerance)


def _with_cosmic_rays(
    overscan: npt.NDArray[np.uint16], seed: int, fraction: float = 0.01
) -> npt.NDArray[np.uint16]:
    """A copy with ``fraction`` of the pixels hit, 100 ADU to saturation."""
    rng = np.random.default_rng(seed)
    hit = rng.random(overscan.shape) < fraction
    counts = overscan.astype(np.float64)
    counts[hit] += rng.uniform(100.0, 1e5, int(hit.sum()))
    return np.clip(counts, 0, 65535).astype(np.uint16)


@pytest.mark.parametrize("amp", AMPLIFIERS)
def test_cosmic_rays_in_the_overscan_move_neither_level_nor_noise(amp: object) -> None:
    # About 40% of the rows hold a hit: megaradrp's model (plain row means)
    # moves by up to ~2000 ADU; the level model and the read noise must not.
    a = AMP1 if amp is AMP1 else AMP2
    clean = raw_with_overscan(3)[a.raw_overscan]
    rows = np.arange(a.data_rows.start, a.data_rows.stop, dtype=float)
    truth = 2000.0 + 4.0 * np.sin(rows / 700.0) + 1e-6 * (rows - 1500.0) ** 2
    before = fit_overscan(clean, a)
    after = fit_overscan(_with_cosmic_rays(clean, 4), a)
    assert np.max(np.abs(after.model - before.model)) > 50  # megaradrp's: moved
    assert np.max(np.abs(after.level_model - truth)) < 0.15
    assert np.max(np.abs(before.level_model - truth)) < 0.15
    read_noise = np.sqrt(9 + 1 / 12)  # 3 ADU and the quantisation
    assert after.residual_rms == pytest.approx(read_noise, rel=0.03)
    assert before.residual_rms == pytest.approx(read_noise, rel=0.03)
    assert after.level == pytest.approx(float(np.mean(truth)), abs=0.05)

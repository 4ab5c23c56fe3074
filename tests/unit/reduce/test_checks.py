"""The numbers the frame checks rest on: the sampled level and silicon's law.

The light-leak check itself is tested in ``test_leaks.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from reduce.checks import FrameCheckConfig
from reduce.frames import TILE_GRID, clipped_means

CONFIG = FrameCheckConfig()


def test_doubling_follows_silicon_near_163_k() -> None:
    # d ln D / dT = 1.5 / T + Eg / (2 k T^2) with Eg = 1.16 eV at 163 K.
    k_ev = 8.617333e-5
    slope = 1.5 / 163.0 + 1.16 / (2 * k_ev * 163.0**2)
    assert 2.0 ** (10.0 / CONFIG.doubling_k) == pytest.approx(
        np.exp(10 * slope), rel=0.1
    )


def test_the_sampled_level_is_unbiased_below_one_adu() -> None:
    # Integer counts: 0.3 ADU of dark under 2 ADU of read noise, a few hot
    # pixels and cosmic rays. The median of such a sample snaps to a step.
    rng = np.random.default_rng(163)
    values = np.rint(rng.normal(0.3, 2.0, (33, 4096))).astype(np.float32)
    values.ravel()[rng.choice(values.size, 300, replace=False)] += 5000.0
    assert abs(float(np.median(values)) - 0.3) > 0.2
    mean, tiles, errors = clipped_means(values)
    assert mean == pytest.approx(0.3, abs=0.02)
    assert tiles.shape == errors.shape == TILE_GRID
    # each tile: its own unbiased mean, with the error its pixel count says
    assert np.all(np.abs(tiles - 0.3) < 5 * errors)
    assert np.median(errors) == pytest.approx(2.0 / np.sqrt(33 * 4096 / 32), rel=0.1)


def test_a_raised_tile_is_measured_not_clipped() -> None:
    rng = np.random.default_rng(5)
    values = np.rint(rng.normal(0.0, 2.0, (33, 4096))).astype(np.float32)
    values[24:, -512:] += 3.0  # the last tile (rows 24:33) lit by 3 ADU
    _, tiles, _ = clipped_means(values)
    assert tiles[-1, -1] - np.median(tiles) == pytest.approx(3.0, abs=0.15)

"""The batch reduction's master is megaradrp's: the median of the
overscan-corrected, trimmed frames minus the master bias."""

from __future__ import annotations

import numpy as np

from tests.unit.reduce.trimming import preprocess

from .conftest import DARK_S, Campaign


def test_master_dark_is_median_of_preprocessed_minus_bias(campaign: Campaign) -> None:
    # A slab across the amplifier boundary (np.median is slow on it all).
    rows = slice(2000, 2120)
    trimmed = np.stack([preprocess(raw)[0][rows] for raw in campaign.darks])
    median = np.median(trimmed.astype(np.float64), axis=0).astype(np.float32)
    expected = median - campaign.master_bias[rows]
    assert np.array_equal(campaign.master_dark.data[rows], expected)
    assert campaign.master_dark.data.dtype == np.float32
    assert np.all(campaign.master_dark.npix == 3)
    assert [f.darktime for f in campaign.master_dark.frames] == [DARK_S] * 3

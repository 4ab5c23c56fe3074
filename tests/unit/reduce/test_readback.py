"""Frames read back at chosen pixels: the values the combination saw."""

from __future__ import annotations

import numpy as np
import pytest

from reduce.engine import RawBands
from reduce.geometry import TRIMMED_SHAPE
from reduce.readback import PIXEL_BATCH_ROWS, frame_pixels

from .conftest import Campaign


@pytest.mark.parametrize("seed", [1, 2])
def test_read_back_values_equal_the_bands_the_combination_read(
    campaign: Campaign, seed: int
) -> None:
    # Pixels everywhere, both amplifiers, first and last rows and columns,
    # repeats and several in one batch of raw rows: each value is the one
    # the band reader gives that frame at that pixel, bit for bit.
    frames = campaign.master_dark.frames
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, TRIMMED_SHAPE[0], 500)
    cols = rng.integers(0, TRIMMED_SHAPE[1], 500)
    corners = [
        0,
        TRIMMED_SHAPE[0] // 2 - 1,
        TRIMMED_SHAPE[0] // 2,
        TRIMMED_SHAPE[0] - 1,
    ]
    rows = np.concatenate([rows, corners, [PIXEL_BATCH_ROWS, PIXEL_BATCH_ROWS]])
    cols = np.concatenate([cols, [0, TRIMMED_SHAPE[1] - 1] * 2, [5, 5]])
    got = frame_pixels(frames, rows.astype(np.intp), cols.astype(np.intp))

    source = RawBands(
        [f.path for f in frames],
        [f.overscan for f in frames],
        [f.data_offset for f in frames],
    )
    source.open()
    try:
        for k in range(len(frames)):
            expected = np.empty(TRIMMED_SHAPE, np.float32)
            source.load(k, 0, TRIMMED_SHAPE[0], expected)
            assert np.array_equal(
                got[k].view(np.uint32), expected[rows, cols].view(np.uint32)
            )
    finally:
        source.close()


def test_no_pixel_asked_reads_nothing(campaign: Campaign) -> None:
    frames = campaign.master_dark.frames
    empty = np.empty(0, np.intp)
    assert frame_pixels(frames, empty, empty).shape == (len(frames), 0)

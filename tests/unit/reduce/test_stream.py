"""Streaming, in-memory and file-based reductions agree exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reduce.combine import CombineConfig
from reduce.errors import InputError
from reduce.io import write_raw
from reduce.overscan import preprocess
from reduce.stream import DarkAccumulator, reduce_files, reduce_frames
from reduce.synthetic import raw_header

from .conftest import DARK_S, Campaign


def test_master_dark_is_median_of_preprocessed_minus_bias(campaign: Campaign) -> None:
    # Check a slab across the amplifier boundary (np.median is slow on it all).
    rows = slice(2000, 2120)
    trimmed = np.stack([preprocess(raw)[0][rows] for raw in campaign.darks])
    median = np.median(trimmed.astype(np.float64), axis=0).astype(np.float32)
    expected = median - campaign.master_bias.data[rows]
    assert np.array_equal(campaign.master_dark.data[rows], expected)
    assert campaign.master_dark.data.dtype == np.float32
    assert campaign.master_dark.bias_subtracted
    assert np.all(campaign.master_dark.npix == 3)
    assert campaign.master_dark.darktime == DARK_S


def test_accumulator_with_memmap_equals_in_memory(
    campaign: Campaign, tmp_path: Path
) -> None:
    buffer = tmp_path / "stack.npy"
    with DarkAccumulator(
        len(campaign.darks), bias=campaign.master_bias.data, buffer_path=buffer
    ) as acc:
        for k, raw in enumerate(campaign.darks):
            info = acc.add(raw, raw_header(DARK_S), source=f"dark_{k}.fits")
            assert info.darktime == DARK_S
            assert buffer.exists()
        master = acc.finish()
    assert not buffer.exists()
    assert np.array_equal(master.data, campaign.master_dark.data)
    assert np.array_equal(master.variance, campaign.master_dark.variance)
    assert [f.source for f in master.frames] == [f"dark_{k}.fits" for k in range(3)]


def test_file_based_bands_equal_in_memory(campaign: Campaign, tmp_path: Path) -> None:
    paths = []
    for k, raw in enumerate(campaign.darks):
        path = tmp_path / f"dark_{k}.fits"
        write_raw(path, raw, raw_header(DARK_S))
        paths.append(path)
    # 100 rows per band: one band straddles the amplifier boundary (row 2056).
    master = reduce_files(
        paths, bias=campaign.master_bias.data, config=CombineConfig(band_rows=100)
    )
    assert np.array_equal(master.data, campaign.master_dark.data)
    assert np.array_equal(master.variance, campaign.master_dark.variance)
    assert np.array_equal(master.npix, campaign.master_dark.npix)
    assert master.frames[0].exptime == DARK_S
    for ours, theirs in zip(master.frames, campaign.master_dark.frames, strict=True):
        assert np.array_equal(ours.overscan[1].model, theirs.overscan[1].model)


def test_bias_variance_is_added(campaign: Campaign) -> None:
    bias_var = np.full(campaign.master_bias.data.shape, 0.25, dtype=np.float32)
    master = reduce_frames(
        campaign.darks[:1] * 2, bias=campaign.master_bias.data, bias_variance=bias_var
    )
    assert np.allclose(master.variance, 0.25)  # two identical frames: no scatter


def test_accumulator_refuses_extra_frames(campaign: Campaign) -> None:
    with DarkAccumulator(1) as acc:
        acc.add(campaign.darks[0])
        with pytest.raises(InputError, match="full"):
            acc.add(campaign.darks[1], source="dark_9.fits")


def test_empty_accumulator_and_bad_bias() -> None:
    with DarkAccumulator(2) as acc, pytest.raises(InputError, match="no frame"):
        acc.finish()
    with pytest.raises(InputError, match="master bias"):
        DarkAccumulator(2, bias=np.zeros((10, 10), dtype=np.float32))

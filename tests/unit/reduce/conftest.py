"""Shared synthetic frames for the reduction tests (built once per session)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from reduce.qc import HotPixels, detect_hot_pixels
from reduce.stream import MasterFrame, reduce_frames
from reduce.synthetic import DetectorTruth, make_raw, raw_header

DARK_S = 3600.0


@dataclass(frozen=True)
class Campaign:
    """Three biases and three one-hour darks of a known detector, reduced."""

    truth: DetectorTruth
    biases: list[npt.NDArray[np.uint16]]
    darks: list[npt.NDArray[np.uint16]]
    master_bias: MasterFrame
    master_dark: MasterFrame


@pytest.fixture(scope="session")
def campaign() -> Campaign:
    truth = DetectorTruth()
    rng = np.random.default_rng(12345)
    biases = [make_raw(truth, 0.0, rng) for _ in range(3)]
    darks = [make_raw(truth, DARK_S, rng) for _ in range(3)]
    master_bias = reduce_frames(biases)
    master_dark = reduce_frames(
        darks, [raw_header(DARK_S)] * len(darks), bias=master_bias.data
    )
    return Campaign(truth, biases, darks, master_bias, master_dark)


@pytest.fixture(scope="session")
def hot(campaign: Campaign) -> HotPixels:
    """Hot pixels and columns of the campaign's master dark (default settings)."""
    return detect_hot_pixels(campaign.master_dark.data)

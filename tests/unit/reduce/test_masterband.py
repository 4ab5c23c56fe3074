"""Each final band of a master: bias subtracted, cosmic rays counted, written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from reduce.combine import CombineConfig, Combined, NoiseModel, combine_band_into
from reduce.fits.cards import Header
from reduce.geometry import AMP1, AMP2, TRIMMED_SHAPE
from reduce.masterband import CosmicRayModel, MasterBand
from reduce.productfile import MasterSink, ProductFile
from reduce.products import ImagePlan, image_plan
from reduce.steps import cosmic_ray_model

from .conftest import Campaign


def _primary(layout: list[ImagePlan | bytes]) -> Header:
    plan = layout[0]
    assert isinstance(plan, ImagePlan)
    return plan.header.copy()


def test_the_band_subtracts_the_bias_and_the_sink_derives_the_rate(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(11)
    median = rng.normal(1000, 3, TRIMMED_SHAPE).astype(np.float32)
    bias = rng.normal(990, 1, TRIMMED_SHAPE).astype(np.float32)
    layout: list[ImagePlan | bytes] = [
        image_plan("PRIMARY", np.float32),
        image_plan("VARIANCE", np.float32),
        image_plan("MAP", np.int16),
        image_plan("DARKRATE", np.float32),
    ]
    out = ProductFile(tmp_path / "master_dark.fits", layout)
    combined = Combined(
        median.copy(),
        np.ones(TRIMMED_SHAPE, np.float32),
        np.full(TRIMMED_SHAPE, 7, np.int16),
    )
    band = MasterBand(
        MasterSink(out, 100.0), bias, np.full(TRIMMED_SHAPE, 0.5, np.float32), None
    )
    for r0 in range(0, TRIMMED_SHAPE[0], 1000):  # a band straddles the amplifiers
        band(r0, min(r0 + 1000, TRIMMED_SHAPE[0]), combined)
    assert band.cosmic_ray_pixels is None  # no model: not counted
    out.finish(_primary(layout))
    with fits.open(tmp_path / "master_dark.fits") as back:
        expected = median - bias
        np.testing.assert_array_equal(back[0].data, expected)
        np.testing.assert_array_equal(combined.data, expected)  # in place
        assert np.all(back["VARIANCE"].data == 1.5)
        rate = back["DARKRATE"].data
        for amp in (AMP1, AMP2):
            np.testing.assert_allclose(
                rate[amp.trimmed_rows],
                expected[amp.trimmed_rows] * amp.gain / 100.0,
                rtol=1e-6,
            )


@pytest.mark.parametrize("n", [3, 7, 20])
def test_the_band_counts_the_pixels_hit_by_cosmic_rays(n: int) -> None:
    # Rows 2040:2072 straddle the amplifiers (their read noises differ).
    r0, r1 = 2040, 2072
    rng = np.random.default_rng(100 + n)
    noise = NoiseModel(read_noise_adu=(3.0, 4.0), gain=(1.5, 1.7))
    rows = np.arange(r0, r1)[:, None]
    amp1 = rows < AMP1.trimmed_rows.stop
    signal = rng.uniform(0.0, 200.0, (r1 - r0, TRIMMED_SHAPE[1]))  # dark, ADU
    sigma = np.sqrt(np.where(amp1, 3.0**2, 4.0**2) + signal / np.where(amp1, 1.5, 1.7))
    stack = (signal + sigma * rng.standard_normal((n, *signal.shape))).astype(
        np.float32
    )
    hits = rng.choice(signal.size, 500, replace=False)  # distinct pixels
    frames = rng.integers(0, n, hits.size)
    stack.reshape(n, -1)[frames, hits] += rng.uniform(100.0, 5000.0, hits.size)
    expected = [
        int(
            np.count_nonzero(
                np.isin(hits, np.flatnonzero(np.broadcast_to(a, signal.shape)))
            )
        )
        for a in (amp1, ~amp1)
    ]
    combined = Combined(
        np.zeros(TRIMMED_SHAPE, np.float32),
        np.zeros(TRIMMED_SHAPE, np.float32),
        np.zeros(TRIMMED_SHAPE, np.int16),
    )
    combine_band_into(
        stack,
        CombineConfig(),
        r0,
        combined.data[r0:r1],
        combined.variance[r0:r1],
        combined.npix[r0:r1],
    )
    written: list[tuple[int, int]] = []
    model = CosmicRayModel(noise=noise, nframes=n)
    band = MasterBand(lambda a, b, _: written.append((a, b)), None, None, model)
    band(r0, r1, combined)
    assert written == [(r0, r1)]
    found = band.cosmic_ray_pixels
    assert found is not None
    for amp_found, amp_expected in zip(found, expected, strict=True):
        assert amp_expected - 2 <= amp_found <= amp_expected + 2


def test_too_few_frames_are_not_counted(campaign: Campaign) -> None:
    frames = campaign.master_dark.frames
    assert cosmic_ray_model(frames[:2], CombineConfig()) is None
    model = cosmic_ray_model(frames, CombineConfig())
    assert model is not None
    assert model.nframes == 3
    assert all(level > 0 for level in model.floor_adu)  # one-hour darks

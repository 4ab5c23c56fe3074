"""QC figures recovered from synthetic frames with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from reduce.errors import InputError, SettingsError
from reduce.geometry import AMP1, AMPLIFIERS
from reduce.hotpixels import DQ
from reduce.overscan import OverscanModel
from reduce.qalimits import QAFlag, QALimit, QCThresholds
from reduce.qc import (
    AmplifierQC,
    HotPixels,
    OverscanStats,
    assess,
    dark_current,
    dark_rate_image,
    detect_hot_pixels,
    overscan_stats,
    qc_master,
    read_noise_from_difference,
    read_noise_from_overscan,
)
from tests.unit.reduce.trimming import preprocess

from .conftest import DARK_S, Campaign


def models(campaign: Campaign) -> list[OverscanModel]:
    return [m for f in campaign.master_dark.frames for m in f.overscan]


@pytest.mark.parametrize("index", [0, 1])
def test_dark_current_within_two_percent(
    campaign: Campaign, hot: HotPixels, index: int
) -> None:
    amp = AMPLIFIERS[index]
    measured = dark_current(hot.amplifiers[index], amp, DARK_S)
    assert measured == pytest.approx(campaign.truth.dark_e_per_h[index], rel=0.02)


@pytest.mark.parametrize("index", [0, 1])
def test_read_noise_within_five_percent(campaign: Campaign, index: int) -> None:
    amp = AMPLIFIERS[index]
    truth = campaign.truth.read_noise_e[index]
    assert read_noise_from_overscan(models(campaign), amp) == pytest.approx(
        truth, rel=0.05
    )
    a, b = (preprocess(raw)[0] for raw in campaign.biases[:2])
    assert read_noise_from_difference(a, b, amp) == pytest.approx(truth, rel=0.05)


def test_hot_pixels_complete_and_clean(campaign: Campaign, hot: HotPixels) -> None:
    flagged = (hot.mask & DQ.HOT_PIXEL) > 0
    truth = campaign.truth.hot_mask
    completeness = np.count_nonzero(flagged & truth) / np.count_nonzero(truth)
    in_hot_column = campaign.truth.hot_column_mask
    false_positive = np.count_nonzero(flagged & ~truth & ~in_hot_column) / truth.size
    assert completeness >= 0.9995
    assert false_positive <= 1e-5


def test_hot_columns_found(campaign: Campaign, hot: HotPixels) -> None:
    expected = set()
    for amp in AMPLIFIERS:
        cols = np.flatnonzero(campaign.truth.hot_column_mask[amp.trimmed_rows][0])
        expected |= {(amp.number, int(c)) for c in cols}
    assert set(hot.hot_columns) == expected
    for number, col in hot.hot_columns:
        rows = AMPLIFIERS[number - 1].trimmed_rows
        assert np.all(hot.mask[rows, col] & DQ.HOT_COLUMN)


def test_no_data_bit_from_map(campaign: Campaign) -> None:
    npix = campaign.master_dark.npix.copy()
    npix[10, 20] = 0
    hot = detect_hot_pixels(campaign.master_dark.data, npix=npix, darktime_s=DARK_S)
    assert hot.mask[10, 20] & DQ.NO_DATA
    assert np.count_nonzero(hot.mask & DQ.NO_DATA) == 1
    # The counts come from each amplifier's thread: they must be the mask's.
    assert hot.flagged_fraction * hot.mask.size == np.count_nonzero(hot.mask)
    for amp, found in zip(AMPLIFIERS, hot.amplifiers, strict=True):
        rows = hot.mask[amp.trimmed_rows]
        assert found.hot_pixels == np.count_nonzero(rows & DQ.HOT_PIXEL)
    assert sum(a.hot_pixels for a in hot.amplifiers) == hot.n_hot_pixels > 0
    # A master bias has no dark rate: only NO_DATA, never a defect.
    bias = detect_hot_pixels(campaign.master_dark.data, npix=npix)
    assert bias.amplifiers == ()
    assert np.array_equal(bias.mask, (npix == 0).astype(np.uint8) * DQ.NO_DATA)


@pytest.mark.parametrize("value", [0, 3])
def test_no_data_bit_from_a_constant_map(campaign: Campaign, value: int) -> None:
    # The kernel's median gives MAP as one value broadcast (no memory): all
    # pixels are empty if that value is 0, none otherwise.
    npix = np.broadcast_to(np.int16(value), campaign.master_dark.data.shape)
    bias = detect_hot_pixels(campaign.master_dark.data, npix=npix)
    expected = DQ.NO_DATA if value == 0 else 0
    assert np.all(bias.mask == expected)


def test_qc_master_report(campaign: Campaign) -> None:
    report, hot = qc_master(
        campaign.master_dark.data,
        models(campaign),
        n_frames=3,
        darktime_s=DARK_S,
    )
    assert report.flag is QAFlag.GOOD, report.reasons
    assert report.reasons == ()
    amp1, amp2 = report.amplifiers
    assert amp1.overscan.level == pytest.approx(campaign.truth.bias_level_adu[0], abs=2)
    assert amp2.overscan.slope == pytest.approx(
        abs(campaign.truth.bias_drift_adu[1]), abs=0.3
    )
    assert amp1.hot_columns == campaign.truth.hot_columns
    as_json = report.to_json_dict()
    assert as_json["flag"] == "GOOD"
    assert len(as_json["amplifiers"]) == 2
    assert hot.mask.dtype == np.uint8


def test_dark_rate_image_units(campaign: Campaign) -> None:
    rate = dark_rate_image(campaign.master_dark.data, DARK_S)
    for k, amp in enumerate(AMPLIFIERS):
        typical = float(np.median(rate[amp.trimmed_rows])) * 3600.0
        assert typical == pytest.approx(campaign.truth.dark_e_per_h[k], rel=0.05)


def amp_qc(number: int, current: float, noise: float, drift: float) -> AmplifierQC:
    return AmplifierQC(number, current, noise, OverscanStats(2000.0, drift, 1.0), 0, 0)


def test_assess_flags_and_reasons() -> None:
    limits = QCThresholds()  # expected 5 e-/pix/h and 3.5 e-
    good = [amp_qc(1, 14.0, 4.5, 0.1), amp_qc(2, 1.0, 3.4, 9.0)]
    assert assess(good, 10, None, limits).flag is QAFlag.GOOD
    warm = [amp_qc(1, 16.0, 3.4, 0.1), amp_qc(2, 1.0, 3.4, 0.1)]
    report = assess(warm, 10, None, limits, temperature_k=165.04)
    assert report.flag is QAFlag.PARTIAL
    assert report.reasons == (
        "amplifier 1 dark current 16 e-/pix/h > warn limit 15 e-/pix/h "
        "(3 x expected 5) at 165.0 K",
    )
    unknown = assess(warm, 10, None, limits).reasons
    assert unknown[0].endswith("(CCD temperature unknown)")
    # The limits follow the detector's expected values.
    quiet = QCThresholds(expected_dark_current=1.0)
    assert assess(good, 10, None, quiet).flag is QAFlag.BAD  # 14 > 6 x 1
    noisy = [amp_qc(1, 1.0, 3.4, 0.1), amp_qc(2, 1.0, 9.0, 50.0)]
    hot = HotPixels(np.zeros((4112, 4096), np.uint8), ())
    hot.mask[:200] = DQ.HOT_PIXEL  # 4.9 % flagged hot
    report = assess(noisy, 2, hot, limits)
    assert report.flag is QAFlag.BAD
    assert len(report.reasons) == 3  # read noise, drift, hot fraction
    assert report.hot_fraction == pytest.approx(200 / 4112)
    # A dark block whose frames' CCD temperatures spread over more than 2 K.
    spread = assess(good, 10, None, limits, 168.0, temperature_spread_k=10.0)
    assert spread.flag is QAFlag.PARTIAL
    assert spread.reasons == (
        "CCD temperature spread across the frames 10 K > warn limit 2 K",
    )
    steady = assess(good, 10, None, limits, 168.0, temperature_spread_k=0.3)
    assert steady.flag is QAFlag.GOOD
    # Too few frames is the reduction's error (min_frames), never a QA flag.
    assert not any("frames" in r for r in report.reasons)


def test_threshold_errors() -> None:
    with pytest.raises(SettingsError, match="exceeds"):
        QALimit(warn=5.0, bad=1.0)
    with pytest.raises(SettingsError, match="hot_nsigma"):
        QCThresholds(hot_nsigma=0)
    with pytest.raises(SettingsError, match="expected_dark_current"):
        QCThresholds(expected_dark_current=0.0)
    found = detect_hot_pixels(np.zeros((4112, 4096)), darktime_s=DARK_S)
    with pytest.raises(InputError, match="DARKTIME"):
        dark_current(found.amplifiers[0], AMPLIFIERS[0], 0.0)


def _overscan(level_model: np.ndarray) -> OverscanModel:
    """A model whose level course is ``level_model`` (the rest is not read)."""
    return OverscanModel(
        amplifier=1,
        profile=np.zeros(1, np.float32),
        model=level_model,
        spline=None,  # type: ignore[arg-type]
        level_model=level_model,
        residual_rms=2.0,
    )


def test_overscan_drift_is_not_the_frames_offsets() -> None:
    # The review's case: per-frame bias offsets (sigma 2 ADU), which the
    # overscan removes exactly, were reported as 5-9 ADU of "drift".
    rows = np.arange(2056.0)
    settle = 3.0 * np.exp(-rows / 700.0)  # the same readout settle each frame
    offsets = np.random.default_rng(2).normal(1500.0, 2.0, 7)
    same = [_overscan(o + settle) for o in offsets]
    stats = overscan_stats(same, AMP1)
    assert stats.drift == pytest.approx(0.0, abs=1e-9)
    assert stats.slope == pytest.approx(settle[0] - settle[-1], rel=1e-9)
    # one frame whose level ramps 8.2 ADU more along the readout: +-4.1 ADU
    ramp = 0.004 * (rows - rows.mean())
    changed = [*same[:6], _overscan(offsets[6] + settle + ramp)]
    assert overscan_stats(changed, AMP1).drift == pytest.approx(4.11, abs=0.01)

"""Frame synthesis recovers its own truth: bias, noise, dark, defects, cosmics.

Every frame here is full size (the MEGARA geometry); the frames are shared
through module-scoped fixtures so that the file runs in a few seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from drivers.errors import ConfigError
from simulators.synthesis import (
    ADC_MAX_ADU,
    AMP_ROWS,
    DATA_SECTIONS,
    FIRST_READ_ROW,
    OVERSCAN_SECTIONS,
    PIXEL_SIZE_UM,
    PRESCAN_SECTIONS,
    ROW_OVERSCAN_SECTIONS,
    SHAPE,
    TRIMMED_SHAPE,
    Detector,
    DetectorConfig,
    approx_poisson_read_noise,
    dark_current_scale,
)

Frame = npt.NDArray[np.uint16]
REF_K = 163.15
WARM_K = 173.15
LONG_S = 3600.0
AMPS = (0, 1)


# --- helpers --------------------------------------------------------------------------


def clipped_mean_std(
    values: npt.NDArray[Any], nsig: float = 5.0
) -> tuple[float, float]:
    """Iterative symmetric sigma clipping, started from a subsample's median/MAD."""
    x = np.asarray(values, dtype=np.float32).ravel()
    sample = x[::17].astype(np.float64)
    centre = float(np.median(sample))
    spread = 1.4826 * float(np.median(np.abs(sample - centre))) or float(sample.std())
    keep = np.abs(x - centre) < nsig * spread
    for _ in range(10):
        kept = x[keep].astype(np.float64)
        centre, spread = float(kept.mean()), float(kept.std())
        new = np.abs(x - centre) < nsig * spread
        if np.array_equal(new, keep):
            break
        keep = new
    return centre, spread


def overscan_bias_rows(frame: Frame, amp: int) -> npt.NDArray[np.float64]:
    """Bias of each data row: a cubic fit to the overscan's row means, ADU."""
    rows, cols = OVERSCAN_SECTIONS[amp]
    means = frame[rows, cols].astype(np.float64).mean(axis=1)
    r = np.arange(rows.start, rows.stop, dtype=np.float64)
    fit = np.polynomial.Polynomial.fit(r, means, deg=3)
    return np.asarray(fit(r), dtype=np.float64)


def data_electrons(frame: Frame, amp: int, gain: float) -> npt.NDArray[np.float32]:
    """Overscan-corrected image-area pixels of one amplifier, e-."""
    bias = overscan_bias_rows(frame, amp).astype(np.float32)
    data = frame[DATA_SECTIONS[amp]].astype(np.float32)
    data -= bias[:, None]
    data *= np.float32(gain)
    return data


@dataclass(frozen=True)
class Reduced:
    """A frame's overscan-corrected data (e-) and clipped statistics, per amp."""

    electrons: tuple[npt.NDArray[np.float32], ...]
    centre: tuple[float, ...]
    spread: tuple[float, ...]

    def dark_e_s(self, exptime_s: float) -> float:
        """Clipped-mean dark current over both amplifiers, e-/s/pixel."""
        return float(np.mean(self.centre) / exptime_s)


def reduce(frame: Frame, config: DetectorConfig) -> Reduced:
    electrons = tuple(data_electrons(frame, amp, config.gains[amp]) for amp in AMPS)
    stats = [clipped_mean_std(e) for e in electrons]
    return Reduced(electrons, tuple(c for c, _ in stats), tuple(s for _, s in stats))


def independent_dark_law(t_k: float, ref_k: float) -> float:
    """D(T) = T^1.5 exp(-Eg(T) / 2kT) with Varshni's Eg, written out again here."""

    def d(t: float) -> float:
        eg = 1.1557 - 7.021e-4 * t**2 / (1108.0 + t)
        return math.pow(t, 1.5) * math.exp(-eg / (2.0 * 8.617333262e-5 * t))

    return d(t_k) / d(ref_k)


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config() -> DetectorConfig:
    return DetectorConfig(seed=7)


@pytest.fixture(scope="module")
def detector(config: DetectorConfig) -> Detector:
    return Detector(config)


@pytest.fixture(scope="module")
def bias_pair(detector: Detector) -> tuple[Frame, Frame]:
    a = detector.frame(exptime_s=0.0, temperature_k=REF_K, frame_seed=11)
    b = detector.frame(exptime_s=0.0, temperature_k=REF_K, frame_seed=12)
    return a, b


@pytest.fixture(scope="module")
def dark_ref(detector: Detector) -> tuple[Frame, Any]:
    frame = detector.frame(exptime_s=LONG_S, temperature_k=REF_K, frame_seed=21)
    return frame, detector.frame_truth()


@pytest.fixture(scope="module")
def dark_warm(detector: Detector) -> Frame:
    return detector.frame(exptime_s=LONG_S, temperature_k=WARM_K, frame_seed=22)


@pytest.fixture(scope="module")
def ref_reduced(config: DetectorConfig, dark_ref: tuple[Frame, Any]) -> Reduced:
    return reduce(dark_ref[0], config)


@pytest.fixture(scope="module")
def warm_reduced(config: DetectorConfig, dark_warm: Frame) -> Reduced:
    return reduce(dark_warm, config)


@pytest.fixture(scope="module")
def twin(config: DetectorConfig) -> Detector:
    """A second detector built from the same configuration."""
    return Detector(config)


@pytest.fixture(scope="module")
def other(config: DetectorConfig) -> Detector:
    """A detector with another seed."""
    return Detector(DetectorConfig(seed=config.seed + 1))


# --- geometry, dtype, determinism -----------------------------------------------------


def test_geometry_constants_match_megaradrp() -> None:
    # megaradrp 0.22 detector configuration: trim1/trim2, overscan1/2, prescan1/2.
    assert SHAPE == (4212, 4196)
    assert TRIMMED_SHAPE == (4112, 4096)
    assert (
        (slice(0, 2056), slice(50, 4146)),
        (slice(2156, 4212), slice(50, 4146)),
    ) == DATA_SECTIONS
    assert OVERSCAN_SECTIONS[0] == (slice(0, 2056), slice(4146, 4196))
    assert OVERSCAN_SECTIONS[1] == (slice(2156, 4212), slice(0, 50))
    assert PRESCAN_SECTIONS[0][1] == slice(0, 50)
    assert (
        (slice(2056, 2106), slice(50, 4146)),
        (slice(2106, 2156), slice(50, 4146)),
    ) == ROW_OVERSCAN_SECTIONS
    assert (slice(0, 2106), slice(2106, 4212)) == AMP_ROWS


def test_frame_is_uint16_raw_geometry(bias_pair: tuple[Frame, Frame]) -> None:
    frame = bias_pair[0]
    assert frame.shape == SHAPE
    assert frame.dtype == np.uint16


def test_same_seeds_give_identical_frames(
    twin: Detector, bias_pair: tuple[Frame, Frame]
) -> None:
    again = twin.frame(exptime_s=0.0, temperature_k=REF_K, frame_seed=11)
    assert np.array_equal(again, bias_pair[0])
    assert not np.array_equal(bias_pair[0], bias_pair[1])


def test_another_detector_seed_gives_another_frame(
    other: Detector, bias_pair: tuple[Frame, Frame]
) -> None:
    frame = other.frame(exptime_s=0.0, temperature_k=REF_K, frame_seed=11)
    assert not np.array_equal(frame, bias_pair[0])


def test_another_run_key_gives_independent_noise_on_the_same_detector(
    twin: Detector, bias_pair: tuple[Frame, Frame]
) -> None:
    """A second run (another key) never repeats the first run's frame 11."""
    again = twin.frame(exptime_s=0.0, temperature_k=REF_K, frame_seed=11, run_key=0)
    assert np.array_equal(again, bias_pair[0])  # 0 is the default key
    other_run = twin.frame(
        exptime_s=0.0, temperature_k=REF_K, frame_seed=11, run_key=2**63 - 1
    )
    rows, cols = DATA_SECTIONS[0]
    bias = twin.truth().bias_by_row_adu[rows, None]  # the fixed structure, out

    def noise(frame: Frame) -> npt.NDArray[np.float64]:
        return (frame[rows, cols] - bias).ravel()

    a, b = noise(bias_pair[0]), noise(other_run)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.01  # independent read noise
    assert np.corrcoef(a, a)[0, 1] == pytest.approx(1.0)
    assert twin.frame_truth() is not None
    assert twin.frame_truth().run_key == 2**63 - 1  # type: ignore[union-attr]


def test_run_key_and_frame_seed_never_alias(detector: Detector) -> None:
    """Each number enters the entropy with its length: no two triples collide."""

    def first_draw(frame_seed: int, run_key: int) -> float:
        seeds = detector._frame_seeds(frame_seed, run_key)
        return float(np.random.Generator(np.random.SFC64(seeds[0])).random())

    assert first_draw(5, 2**32) != first_draw(1 + 5 * 2**32, 0)
    assert first_draw(1, 2) != first_draw(2, 1)
    assert first_draw(3, 4) == first_draw(3, 4)


@pytest.mark.parametrize("key", [-1, 2**64, True, 1.5])
def test_a_bad_run_key_is_refused(detector: Detector, key: object) -> None:
    with pytest.raises(ConfigError, match="run_key"):
        detector.cosmic_rays(exptime_s=1.0, frame_seed=1, run_key=key)  # type: ignore[arg-type]


# --- bias and read noise --------------------------------------------------------------


@pytest.mark.parametrize("amp", AMPS)
def test_bias_level_from_overscan(
    detector: Detector, bias_pair: tuple[Frame, Frame], amp: int
) -> None:
    truth = detector.truth()
    level = float(bias_pair[0][OVERSCAN_SECTIONS[amp]].astype(np.float64).mean())
    assert abs(level - truth.bias_adu[amp]) < 0.5
    # The two amplifiers' levels are distinct, as on the real detector.
    assert abs(truth.bias_adu[0] - truth.bias_adu[1]) > 10.0


@pytest.mark.parametrize("amp", AMPS)
def test_row_drift_follows_truth_and_is_removed_by_a_smooth_fit(
    detector: Detector, bias_pair: tuple[Frame, Frame], amp: int
) -> None:
    truth = detector.truth()
    rows = OVERSCAN_SECTIONS[amp][0]
    true_rows = truth.bias_by_row_adu[rows]
    assert np.ptp(true_rows) > 1.0  # there is a drift to remove
    fitted = overscan_bias_rows(bias_pair[0], amp)
    assert np.sqrt(np.mean((fitted - true_rows) ** 2)) < 0.1
    # The data rows share their row's bias: bias-subtracted data average to zero.
    residual = data_electrons(bias_pair[0], amp, truth.gains[amp])
    assert abs(residual.mean()) < 0.05  # e-


@pytest.mark.parametrize("amp", AMPS)
def test_drift_is_a_settle_in_readout_order(detector: Detector, amp: int) -> None:
    bias = detector.truth().bias_by_row_adu[AMP_ROWS[amp]]
    first = FIRST_READ_ROW[amp] - AMP_ROWS[amp].start
    last = bias.size - 1 - first
    drift = detector.config.bias_drift_adu[amp]
    assert bias[last] - bias[first] == pytest.approx(drift, abs=0.05 * abs(drift))


@pytest.mark.parametrize("amp", AMPS)
def test_read_noise_from_two_biases(
    detector: Detector, bias_pair: tuple[Frame, Frame], amp: int
) -> None:
    truth = detector.truth()
    a, b = (f[DATA_SECTIONS[amp]].astype(np.float32) for f in bias_pair)
    _, spread = clipped_mean_std(a - b)
    measured_adu = spread / math.sqrt(2.0)
    # Rounding to integer ADU adds 1/12 ADU**2 to each frame's variance.
    expected = math.sqrt(truth.read_noise_adu[amp] ** 2 + 1.0 / 12.0)
    assert measured_adu == pytest.approx(expected, rel=0.05)
    assert truth.read_noise_adu[amp] == pytest.approx(
        truth.read_noise_e[amp] / truth.gains[amp]
    )


def test_non_data_regions_carry_bias_and_read_noise_only(
    detector: Detector, dark_ref: tuple[Frame, Any]
) -> None:
    frame, _ = dark_ref
    truth = detector.truth()
    for amp in AMPS:
        for section in (PRESCAN_SECTIONS[amp], ROW_OVERSCAN_SECTIONS[amp]):
            values = frame[section].astype(np.float64)
            bias = truth.bias_by_row_adu[section[0]][:, None]
            assert abs((values - bias).mean()) < 0.05
            assert (values - bias).std() == pytest.approx(
                math.sqrt(truth.read_noise_adu[amp] ** 2 + 1 / 12), rel=0.05
            )


def test_bias_frame_has_no_cosmic_rays(detector: Detector) -> None:
    assert detector.cosmic_rays(exptime_s=0.0, frame_seed=3).count == 0


# --- dark current ---------------------------------------------------------------------


def test_dark_current_at_reference_temperature(
    config: DetectorConfig, detector: Detector, ref_reduced: Reduced
) -> None:
    expected = detector.truth().dark_rate(REF_K)
    assert expected == pytest.approx(config.dark_ref_e_per_h / 3600.0)
    assert ref_reduced.dark_e_s(LONG_S) == pytest.approx(expected, rel=0.02)


def test_dark_current_temperature_law(
    detector: Detector, ref_reduced: Reduced, warm_reduced: Reduced
) -> None:
    law = independent_dark_law(WARM_K, REF_K)
    assert dark_current_scale(WARM_K, REF_K) == pytest.approx(law, rel=1e-9)
    assert law > 5.0  # 10 K warmer: roughly an order of magnitude
    truth = detector.truth()
    assert truth.dark_rate(WARM_K) == pytest.approx(truth.dark_rate(REF_K) * law)
    warm = warm_reduced.dark_e_s(LONG_S)
    assert warm == pytest.approx(truth.dark_rate(WARM_K), rel=0.02)
    cold = ref_reduced.dark_e_s(LONG_S)
    assert warm / cold == pytest.approx(law, rel=0.04)


def test_dark_map_is_trimmed_float32_with_defects(detector: Detector) -> None:
    truth = detector.truth()
    assert truth.dark_map_e_s.shape == TRIMMED_SHAPE
    assert truth.dark_map_e_s.dtype == np.float32
    assert not truth.dark_map_e_s.flags.writeable
    bulk = truth.dark_ref_e_per_s
    median = float(np.median(truth.dark_map_e_s[::7, ::7]))
    assert median == pytest.approx(bulk, rel=0.01)
    trow = truth.hot_rows - 100 * (truth.hot_rows >= 2156)
    at_hot = truth.dark_map_e_s[trow, truth.hot_cols - 50]
    assert np.all(at_hot >= truth.hot_rates_e_s * 0.999)


# --- hot pixels and columns -----------------------------------------------------------


def hot_candidates(reduced: Reduced) -> npt.NDArray[np.bool_]:
    """Raw-geometry mask of image-area pixels above a 6-sigma threshold."""
    mask = np.zeros(SHAPE, dtype=bool)
    for amp in AMPS:
        threshold = reduced.centre[amp] + 6.0 * reduced.spread[amp]
        mask[DATA_SECTIONS[amp]] = reduced.electrons[amp] > threshold
    return mask


def test_hot_pixels_recovered_from_two_darks(
    config: DetectorConfig,
    detector: Detector,
    ref_reduced: Reduced,
    warm_reduced: Reduced,
) -> None:
    truth = detector.truth()
    n_data = TRIMMED_SHAPE[0] * TRIMMED_SHAPE[1]
    assert truth.hot_rows.size == round(config.hot_pixel_fraction * n_data)
    # Seen in both darks: hot; a cosmic ray rarely hits the same pixel twice.
    found = hot_candidates(ref_reduced) & hot_candidates(warm_reduced)
    recall = found[truth.hot_rows, truth.hot_cols].mean()
    assert recall >= 0.99
    known = np.zeros(SHAPE, dtype=bool)
    known[truth.hot_rows, truth.hot_cols] = True
    for column in truth.hot_columns:
        known[column.row_start : column.row_stop, column.col] = True
    assert (found & ~known).sum() <= 0.01 * found.sum()


def test_hot_pixels_carry_their_own_poisson_noise(
    config: DetectorConfig, detector: Detector, dark_warm: Frame
) -> None:
    # The bulk noise model would give every pixel the bulk's variance; hot
    # pixels are drawn exactly, so their scatter follows their own mean.
    truth = detector.truth()
    rows, cols = truth.hot_rows, truth.hot_cols
    trimmed_rows = rows - 100 * (rows >= 2156)
    scale = dark_current_scale(WARM_K, REF_K)
    mean_e = truth.dark_map_e_s[trimmed_rows, cols - 50].astype(np.float64)
    mean_e *= scale * LONG_S
    gain = np.where(rows < 2106, config.gains[0], config.gains[1])
    rn = np.where(rows < 2106, config.read_noise_e[0], config.read_noise_e[1])
    adu = dark_warm[rows, cols].astype(np.float64)
    electrons = (adu - truth.bias_by_row_adu[rows]) * gain
    z = (electrons - mean_e) / np.sqrt(mean_e + rn**2 + gain**2 / 12.0)
    hit = np.zeros(SHAPE, dtype=bool)
    cosmics = detector.cosmic_rays(exptime_s=LONG_S, frame_seed=22)
    hit[cosmics.rows, cosmics.cols] = True
    clean = ~hit[rows, cols] & (adu < ADC_MAX_ADU)
    assert clean.sum() > 0.9 * rows.size
    assert abs(z[clean].mean()) < 0.15
    assert z[clean].std() == pytest.approx(1.0, rel=0.1)
    assert np.median(mean_e) > 50 * config.read_noise_e[0] ** 2  # shot-noise bound


def test_hot_columns_add_their_rate(
    config: DetectorConfig, detector: Detector, dark_ref: tuple[Frame, Any]
) -> None:
    frame, frame_truth = dark_ref
    truth = detector.truth()
    assert len(truth.hot_columns) == config.hot_columns
    hit = np.zeros(SHAPE, dtype=bool)
    hit[frame_truth.cosmics.rows, frame_truth.cosmics.cols] = True
    hit[truth.hot_rows, truth.hot_cols] = True
    for column in truth.hot_columns:
        rows = slice(column.row_start, column.row_stop)
        amp = 0 if column.row_start < 2106 else 1
        gain = config.gains[amp]
        clean = ~hit[rows, column.col]
        adu = frame[rows, column.col].astype(np.float64)[clean]
        signal_e = (adu - truth.bias_by_row_adu[rows][clean]) * gain
        expected = (column.rate_e_s + truth.dark_ref_e_per_s) * LONG_S
        sigma = math.sqrt(expected + config.read_noise_e[amp] ** 2 + gain**2 / 12)
        tolerance = 5.0 * sigma / math.sqrt(signal_e.size) + 0.05 * expected
        assert signal_e.mean() == pytest.approx(expected, abs=tolerance)


def test_defects_fixed_per_detector_seed(
    detector: Detector, twin: Detector, other: Detector
) -> None:
    a, b = detector.truth(), twin.truth()
    assert np.array_equal(a.hot_rows, b.hot_rows)
    assert np.array_equal(a.hot_cols, b.hot_cols)
    assert np.array_equal(a.hot_rates_e_s, b.hot_rates_e_s)
    assert a.hot_columns == b.hot_columns
    assert np.array_equal(a.dark_map_e_s, b.dark_map_e_s)
    c = other.truth()
    overlap = np.intersect1d(
        a.hot_rows * SHAPE[1] + a.hot_cols, c.hot_rows * SHAPE[1] + c.hot_cols
    )
    assert overlap.size < 0.01 * a.hot_rows.size
    assert a.hot_columns != c.hot_columns


# --- cosmic rays ----------------------------------------------------------------------


def test_cosmic_ray_count_scales_with_exposure(
    config: DetectorConfig, detector: Detector
) -> None:
    area_cm2 = TRIMMED_SHAPE[0] * TRIMMED_SHAPE[1] * (PIXEL_SIZE_UM * 1e-4) ** 2
    for exptime in (60.0, 600.0, 3000.0):
        counts = [
            detector.cosmic_rays(exptime_s=exptime, frame_seed=s).count
            for s in range(5)
        ]
        expected = config.cosmic_rate_per_cm2_s * area_cm2 * exptime
        # Poisson: the mean of 5 draws is within 5 sigma.
        assert np.mean(counts) == pytest.approx(
            expected, abs=5 * math.sqrt(expected / 5)
        )


def test_cosmic_rays_are_small_multi_pixel_tracks(detector: Detector) -> None:
    cosmics = detector.cosmic_rays(exptime_s=3000.0, frame_seed=4)
    pixels_per_event = cosmics.rows.size / cosmics.count
    assert 2.0 < pixels_per_event < 40.0
    in_data = (
        ((cosmics.rows < 2056) | (cosmics.rows >= 2156))
        & (cosmics.cols >= 50)
        & (cosmics.cols < 4146)
    )
    assert in_data.all()
    assert np.unique(cosmics.rows * SHAPE[1] + cosmics.cols).size == cosmics.rows.size
    # Mean charge: a few thousand electrons per event (about 75 e-/um in 40 um).
    assert 2000.0 < cosmics.electrons.sum() / cosmics.count < 20000.0


def test_frame_contains_its_cosmic_rays(
    config: DetectorConfig, detector: Detector, dark_ref: tuple[Frame, Any]
) -> None:
    frame, frame_truth = dark_ref
    cosmics = frame_truth.cosmics
    again = detector.cosmic_rays(exptime_s=LONG_S, frame_seed=21)
    assert cosmics.count == again.count > 0
    assert np.array_equal(cosmics.electrons, again.electrons)
    truth = detector.truth()
    strong = (cosmics.electrons > 300.0) & ~np.isin(
        cosmics.rows * SHAPE[1] + cosmics.cols,
        truth.hot_rows * SHAPE[1] + truth.hot_cols,
    )
    rows, cols = cosmics.rows[strong], cosmics.cols[strong]
    gain = np.where(rows < 2106, config.gains[0], config.gains[1])
    adu = frame[rows, cols].astype(np.float64)
    unsaturated = adu < ADC_MAX_ADU
    residual = (adu - truth.bias_by_row_adu[rows]) * gain - cosmics.electrons[strong]
    residual = residual[unsaturated]
    assert abs(np.median(residual) - truth.dark_rate(REF_K) * LONG_S) < 2.0
    assert np.percentile(np.abs(residual), 99) < 30.0


# --- light and saturation -------------------------------------------------------------


@pytest.fixture(scope="module")
def light_frame(detector: Detector) -> Frame:
    return detector.frame(
        exptime_s=20.0, temperature_k=REF_K, light_e_per_s=50.0, frame_seed=31
    )


@pytest.mark.parametrize("amp", AMPS)
def test_light_adds_expected_signal_and_shot_noise(
    config: DetectorConfig, detector: Detector, light_frame: Frame, amp: int
) -> None:
    electrons = data_electrons(light_frame, amp, config.gains[amp])
    centre, spread = clipped_mean_std(electrons)
    expected = 50.0 * 20.0 + detector.truth().dark_rate(REF_K) * 20.0
    assert centre == pytest.approx(expected, rel=0.005)
    gain = config.gains[amp]
    variance = expected + config.read_noise_e[amp] ** 2 + gain**2 / 12.0
    assert spread == pytest.approx(math.sqrt(variance), rel=0.02)


def test_saturation_clips_at_adc_maximum(detector: Detector) -> None:
    frame = detector.frame(
        exptime_s=1.0, temperature_k=REF_K, light_e_per_s=1.0e6, frame_seed=41
    )
    for amp in AMPS:
        assert np.all(frame[DATA_SECTIONS[amp]] == ADC_MAX_ADU)
        assert frame[OVERSCAN_SECTIONS[amp]].max() < 3000


# --- the noise model ------------------------------------------------------------------


@pytest.mark.parametrize("mean_e", [0.5, 5.0, 23.0, 300.0])
def test_bulk_noise_model_matches_poisson_plus_read_noise(mean_e: float) -> None:
    rng = np.random.default_rng(2024)
    n = 1_000_000
    rn = 3.4
    approx = approx_poisson_read_noise(mean_e, rn, rng.standard_normal(n))
    exact = rng.poisson(mean_e, n) + rn * rng.standard_normal(n)
    var = mean_e + rn**2
    sigma = math.sqrt(var)
    skew_exact = mean_e / var**1.5
    centred = approx - approx.mean()
    assert approx.mean() == pytest.approx(mean_e, abs=5 * sigma / math.sqrt(n))
    assert approx.var() == pytest.approx(var, rel=0.01)
    assert float((centred**3).mean()) / sigma**3 == pytest.approx(skew_exact, abs=0.012)
    assert np.median(approx) == pytest.approx(np.median(exact), abs=0.01 * sigma)


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seed", -1),
        ("gains", (0.0, 1.6)),
        ("gains", (float("nan"), 1.6)),
        ("read_noise_e", (0.1, 3.4)),
        ("bias_adu", (1400.0,)),
        ("dark_ref_e_per_h", -1.0),
        ("dark_ref_temp_k", 0.0),
        ("hot_pixel_fraction", 0.5),
        ("hot_pixel_e_per_h", (100.0, 10.0)),
        ("hot_columns", -1),
        ("cosmic_rate_per_cm2_s", -0.1),
    ],
)
def test_bad_config_raises(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        DetectorConfig(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"exptime_s": -1.0}, "exptime_s"),
        ({"temperature_k": float("nan")}, "temperature_k"),
        ({"light_e_per_s": -5.0}, "light_e_per_s"),
        ({"frame_seed": -1}, "frame_seed"),
    ],
)
def test_bad_frame_arguments_raise(
    detector: Detector, kwargs: dict[str, Any], name: str
) -> None:
    args: dict[str, Any] = {"exptime_s": 1.0, "temperature_k": REF_K, "frame_seed": 1}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=name):
        detector.frame(**args)

"""The second synthetic detector: written frames against the truth it returns.

astropy is the reader. Three sets of one detector are written once per module:
two biases (no CCD temperature written), two one-hour darks at the reference
temperature, and four one-hour darks 6.3 K warmer in a cosmic-ray storm with
light leaks in frames 0-2 (frame 3 is clean).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from astropy.io import fits

from reduce.geometry import (
    AMPLIFIERS,
    DATA_COLUMNS,
    MIDDLE_ROWS,
    RAW_SHAPE,
    TRIMMED_SHAPE,
)
from reduce.second_model import Leak, Scenario, SecondDetector, population
from reduce.second_model_sets import SetTruth, raw_frame, write_set

HOUR = 3600.0
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class Written:
    truth: SetTruth
    headers: list[fits.Header]
    counts: list[npt.NDArray[np.uint16]]

    def trimmed(self, k: int) -> F32:
        """Trimmed frame k minus the true bias of each row (level, offset, drift), ADU."""
        raw = self.counts[k].astype(np.float32)
        rows = self.truth.frames[k].bias_rows_adu.astype(np.float32)
        out = np.empty(TRIMMED_SHAPE, dtype=np.float32)
        for amp in AMPLIFIERS:
            out[amp.trimmed_rows] = raw[amp.raw_data] - rows[amp.data_rows, None]
        return out

    def overscan_corrected(self, k: int) -> F32:
        """Trimmed frame k minus each row's overscan mean (no truth used), ADU."""
        raw = self.counts[k].astype(np.float32)
        out = np.empty(TRIMMED_SHAPE, dtype=np.float32)
        for amp in AMPLIFIERS:
            level = raw[amp.raw_overscan].mean(axis=1, dtype=np.float64)
            out[amp.trimmed_rows] = raw[amp.raw_data] - level[:, None].astype(
                np.float32
            )
        return out


def _write(folder: Path, detector: SecondDetector, scenario: Scenario) -> Written:
    truth = write_set(folder, detector, scenario)
    headers, counts = [], []
    for path in truth.paths:
        with fits.open(path) as hdul:
            assert len(hdul) == 1
            headers.append(hdul[0].header.copy())
            counts.append(np.asarray(hdul[0].data))
    return Written(truth, headers, counts)


DETECTOR = SecondDetector()
WARM_K = 163.0 + 6.3
EDGE_LEAK = Leak(frame=0, shape="edge", rate_e_per_pix_s=0.01, where="left")
CORNER_LEAK = Leak(frame=1, shape="corner", rate_e_per_pix_s=0.01, where="top_left")
GRADIENT_LEAK = Leak(frame=2, shape="gradient", rate_e_per_pix_s=0.005, where="top")
UNIFORM_LEAK = Leak(frame=2, shape="uniform", rate_e_per_pix_s=0.002)


@pytest.fixture(scope="module")
def biases(tmp_path_factory: pytest.TempPathFactory) -> Written:
    scenario = Scenario(
        kind="bias", n_frames=2, exptime_s=0.0, temperature_k=None, seed=11
    )
    return _write(tmp_path_factory.mktemp("bias"), DETECTOR, scenario)


@pytest.fixture(scope="module")
def darks(tmp_path_factory: pytest.TempPathFactory) -> Written:
    scenario = Scenario(
        kind="dark", n_frames=2, exptime_s=HOUR, temperature_k=163.0, seed=12
    )
    return _write(tmp_path_factory.mktemp("dark"), DETECTOR, scenario)


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> Written:
    scenario = Scenario(
        kind="dark",
        n_frames=4,
        exptime_s=HOUR,
        temperature_k=WARM_K,
        cosmic_rate_scale=25.0,
        leaks=(EDGE_LEAK, CORNER_LEAK, GRADIENT_LEAK, UNIFORM_LEAK),
        seed=13,
    )
    return _write(tmp_path_factory.mktemp("warm"), DETECTOR, scenario)


@pytest.fixture(scope="module")
def bias_mean(biases: Written) -> F32:
    """Mean of the biases minus their true row bias: roll-off + fixed pattern."""
    return (biases.trimmed(0) + biases.trimmed(1)) / 2


def gains_per_row() -> F32:
    gain = np.empty(TRIMMED_SHAPE[0], dtype=np.float32)
    for n, amp in enumerate(AMPLIFIERS):
        gain[amp.trimmed_rows] = DETECTOR.gain_e_per_adu[n]
    return gain


def quiet_mask(written: Written, frames: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    """Pixels without hot excess or a cosmic-ray hit in any of ``frames``."""
    mask = written.truth.hot_map() == 0
    for k in frames:
        mask &= ~written.truth.cosmic_mask(k)
    return mask


# --- headers ---------------------------------------------------------------------


def test_a_dark_header_has_ccd_temperatures_in_kelvin_and_sensors_in_celsius(
    darks: Written,
) -> None:
    for header in darks.headers:
        assert header["OBSMODE"] == "MegaraDarkImage"
        assert header["INSTRUME"] == "MEGARA"
        assert header["EXPTIME"] == HOUR
        assert header["DARKTIME"] == HOUR
        temps = [header[f"CCDTEMP{n}"] for n in range(4)]
        assert all(abs(t - 163.0) <= 0.3 + 1e-9 for t in temps)
        assert tuple(temps) == darks.truth.ccd_temperatures_k
        for n in range(4):
            assert header.comments[f"CCDTEMP{n}"] == "[K] CCD temperature"
        sensors = [header[f"SENTEMP{n}"] for n in range(6)]
        assert 12.5 in sensors
        for n in range(6):
            assert header.comments[f"SENTEMP{n}"] == "[C] sensor temperature"
        assert "TEMPSTRT" not in header
        assert "INTLKOK" not in header
    assert darks.truth.temperature_k == 163.0


def test_missing_temperature_writes_no_ccd_keyword_but_keeps_the_sensors(
    biases: Written,
) -> None:
    for header in biases.headers:
        assert header["OBSMODE"] == "MegaraBiasImage"
        assert header["EXPTIME"] == 0.0
        assert not any(key.startswith("CCDTEMP") for key in header)
        assert "TEMPSTRT" not in header
        assert [header[f"SENTEMP{n}"] for n in range(6)].count(12.5) == 1
    assert biases.truth.ccd_temperatures_k is None
    assert biases.truth.temperature_k == DETECTOR.reference_temperature_k


def test_uuids_are_distinct_and_a_set_shares_its_block_uuid(
    biases: Written, darks: Written, warm: Written
) -> None:
    sets = (biases, darks, warm)
    uuids = [h["UUID"] for s in sets for h in s.headers]
    assert len(set(uuids)) == len(uuids) == 8
    blocks = [{h["BLCKUUID"] for h in s.headers} for s in sets]
    assert all(len(b) == 1 for b in blocks)
    assert len(set.union(*blocks)) == 3
    for s in sets:
        dates = [h["DATE-OBS"] for h in s.headers]
        assert dates == sorted(dates)
        assert len(set(dates)) == len(dates)


# --- bias ------------------------------------------------------------------------


def test_overscan_prescan_and_middle_rows_follow_the_true_row_bias(
    biases: Written,
) -> None:
    for k, raw in enumerate(biases.counts):
        rows = biases.truth.frames[k].bias_rows_adu
        for n, amp in enumerate(AMPLIFIERS):
            sigma = np.hypot(
                DETECTOR.read_noise_e[n] / DETECTOR.gain_e_per_adu[n], 12**-0.5
            )
            for columns in (amp.overscan_columns, amp.prescan_columns):
                residual = (
                    raw[amp.data_rows, columns].mean(axis=1) - rows[amp.data_rows]
                )
                assert abs(residual.mean()) < 0.03
                assert residual.std() == pytest.approx(sigma / np.sqrt(50), rel=0.1)
        middle = raw[MIDDLE_ROWS].mean(axis=1) - rows[MIDDLE_ROWS]
        assert np.abs(middle).max() < 0.3  # 4196 pixels a row, sigma < 0.04
    offsets = np.array([f.bias_offset_adu for f in biases.truth.frames])
    assert np.all(np.abs(offsets) < 8.0)  # N(0, 2 ADU)
    assert np.any(offsets[0] != offsets[1])


def test_data_minus_overscan_has_no_row_drift(biases: Written) -> None:
    far = slice(300, TRIMMED_SHAPE[1] - 300)  # away from the roll-off
    for k in range(2):
        corrected = biases.overscan_corrected(k)
        rows = biases.truth.frames[k].bias_rows_adu
        for n, amp in enumerate(AMPLIFIERS):
            drift = rows[amp.data_rows]
            assert np.ptp(drift) > 0.3  # there is a drift to remove
            profile = corrected[amp.trimmed_rows, far].mean(axis=1, dtype=np.float64)
            sigma = np.hypot(
                DETECTOR.read_noise_e[n] / DETECTOR.gain_e_per_adu[n], 12**-0.5
            )
            assert profile.std() == pytest.approx(sigma / np.sqrt(50), rel=0.12)
            # no drift left: correlation with the true drift is noise-level
            assert abs(np.corrcoef(profile, drift)[0, 1]) < 0.1


def test_the_row_drift_is_smooth_enough_for_a_one_knot_cubic_spline(
    biases: Written,
) -> None:
    for frame in biases.truth.frames:
        for amp in AMPLIFIERS:
            y = frame.bias_rows_adu[amp.data_rows]
            x = np.arange(amp.data_rows.start, amp.data_rows.stop, dtype=np.float64)
            x = (x - x[0]) / (x[-1] - x[0])
            knot = (amp.knot_row - amp.data_rows.start) / (amp.n_rows - 1)
            basis = np.stack(
                [x**0, x, x**2, x**3, np.clip(x - knot, 0, None) ** 3], axis=1
            )
            coef = np.linalg.lstsq(basis, y, rcond=None)[0]
            assert np.std(y - basis @ coef) < 0.05


def test_read_noise_from_the_difference_of_two_biases(biases: Written) -> None:
    diff = biases.trimmed(0) - biases.trimmed(1)
    raws = [c.astype(np.float32) for c in biases.counts]
    for n, amp in enumerate(AMPLIFIERS):
        gain = DETECTOR.gain_e_per_adu[n]
        expected = np.sqrt(2 * ((biases.truth.read_noise_e[n] / gain) ** 2 + 1 / 12))
        assert diff[amp.trimmed_rows].std() == pytest.approx(expected, rel=0.01)
        over = [
            r[amp.raw_overscan] - f.bias_rows_adu[amp.data_rows, None]
            for r, f in zip(raws, biases.truth.frames, strict=True)
        ]
        assert (over[0] - over[1]).std() == pytest.approx(expected, rel=0.02)


def test_the_rolloff_is_at_the_output_side_and_the_pattern_is_fixed(
    biases: Written, bias_mean: F32
) -> None:
    distance = np.arange(60)
    expected = DETECTOR.rolloff_adu * np.exp(-distance / DETECTOR.rolloff_efold_columns)
    for n, amp in enumerate(AMPLIFIERS):
        profile = bias_mean[amp.trimmed_rows].mean(axis=0, dtype=np.float64)
        near = profile[:60] if n == 0 else profile[::-1][:60]
        np.testing.assert_allclose(near, expected, atol=0.15)
        far = profile[300:-300]
        assert abs(far.mean()) < 0.02
        assert np.abs(far).max() < 0.2
        # the amplifier's other side has no roll-off
        other = profile[::-1][:10] if n == 0 else profile[:10]
        assert np.abs(other).max() < 0.2
    # the fixed pattern (sigma 0.4 ADU) is common to both frames
    a = biases.trimmed(0)[:, 300:-300].ravel()
    b = biases.trimmed(1)[:, 300:-300].ravel()
    covariance = np.mean((a - a.mean()) * (b - b.mean()), dtype=np.float64)
    assert covariance == pytest.approx(DETECTOR.bias_pattern_sigma_adu**2, abs=0.01)


# --- dark current ----------------------------------------------------------------

CENTRE = (slice(1000, 3100), slice(1000, 3100))  # > 1400 px from the glow corners


def dark_level(written: Written, k: int, bias_mean: F32) -> tuple[float, float]:
    """Mean dark signal per amplifier in the centre, quiet pixels, ADU."""
    signal = written.overscan_corrected(k) - bias_mean
    mask = quiet_mask(written, (k,))
    levels = []
    for amp in AMPLIFIERS:
        rows = slice(
            max(CENTRE[0].start, amp.trimmed_rows.start),
            min(CENTRE[0].stop, amp.trimmed_rows.stop),
        )
        levels.append(
            float(signal[rows, CENTRE[1]][mask[rows, CENTRE[1]]].mean(dtype=np.float64))
        )
    return levels[0], levels[1]


def test_dark_minus_bias_is_the_dark_current_over_the_gain(
    darks: Written, bias_mean: F32
) -> None:
    for k in range(2):
        for n, level in enumerate(dark_level(darks, k, bias_mean)):
            hours = darks.truth.exptime_s / 3600.0
            expected = (
                darks.truth.dark_e_per_pix_h[n] * hours / DETECTOR.gain_e_per_adu[n]
            )
            # overscan noise over ~1000 rows: 0.3 % (1 sigma) of the level
            assert level == pytest.approx(expected, rel=0.015)
    assert darks.truth.dark_e_per_pix_h == pytest.approx((5.0, 5.0))


def test_the_difference_of_two_darks_has_poisson_plus_read_variance(
    darks: Written,
) -> None:
    diff = darks.trimmed(0) - darks.trimmed(1)
    mask = quiet_mask(darks, (0, 1))
    for n, amp in enumerate(AMPLIFIERS):
        rows = slice(
            max(CENTRE[0].start, amp.trimmed_rows.start),
            min(CENTRE[0].stop, amp.trimmed_rows.stop),
        )
        values = diff[rows, CENTRE[1]][mask[rows, CENTRE[1]]]
        gain = DETECTOR.gain_e_per_adu[n]
        electrons = darks.truth.dark_e_per_pix_h[n]  # one hour
        expected = 2 * (electrons + DETECTOR.read_noise_e[n] ** 2) / gain**2 + 2 / 12
        assert values.var(dtype=np.float64) == pytest.approx(expected, rel=0.02)
        read_only = 2 * (DETECTOR.read_noise_e[n] / gain) ** 2 + 2 / 12
        assert values.var(dtype=np.float64) > 1.3 * read_only


def test_the_dark_current_doubles_every_6_3_kelvin(
    darks: Written, warm: Written, bias_mean: F32
) -> None:
    assert warm.truth.dark_e_per_pix_h == pytest.approx((10.0, 10.0))
    assert DETECTOR.dark_at(163.0 - 2 * 6.3) == pytest.approx((1.25, 1.25))
    cold = np.array(dark_level(darks, 0, bias_mean))
    hot = np.array(dark_level(warm, 3, bias_mean))
    np.testing.assert_allclose(hot / cold, 2.0, rtol=0.025)
    np.testing.assert_allclose(
        warm.truth.hot_e_per_s, darks.truth.hot_e_per_s * 2, rtol=1e-5
    )
    assert warm.truth.hot_count_above(0.01) > darks.truth.hot_count_above(0.01)


def test_amplifier_glow_peaks_at_each_readout_corner(
    darks: Written, bias_mean: F32
) -> None:
    signal = (darks.overscan_corrected(0) + darks.overscan_corrected(1)) / 2 - bias_mean
    mask = quiet_mask(darks, (0, 1))
    assert darks.truth.glow_location == ((0, 0), (4111, 4095))
    size = 1200
    for n, (r0, c0) in enumerate(darks.truth.glow_location):
        rows = slice(0, size) if r0 == 0 else slice(r0 + 1 - size, r0 + 1)
        cols = slice(0, size) if c0 == 0 else slice(c0 + 1 - size, c0 + 1)
        rr, cc = np.mgrid[rows, cols]
        radius = np.hypot(rr - r0, cc - c0)
        gain = DETECTOR.gain_e_per_adu[n]
        peak = darks.truth.glow_peak_e_per_pix_h[n]
        model = (
            peak * np.exp(-radius / 180.0) + darks.truth.dark_e_per_pix_h[n]
        ) / gain
        box, quiet = signal[rows, cols], mask[rows, cols]
        for low, high in ((0, 15), (15, 60), (60, 180), (180, 400), (400, 1000)):
            ring = quiet & (radius >= low) & (radius < high)
            assert box[ring].mean() == pytest.approx(
                model[ring].mean(), rel=0.05, abs=0.03
            )
    # the other two corners are dark current only
    for rows, cols in (((0, 100), (-100, None)), ((-100, None), (0, 100))):
        region = (slice(*rows), slice(*cols))
        amp = 0 if rows[0] == 0 else 1
        expected = darks.truth.dark_e_per_pix_h[amp] / DETECTOR.gain_e_per_adu[amp]
        assert signal[region][mask[region]].mean() == pytest.approx(expected, rel=0.05)


# --- hot pixels and columns ------------------------------------------------------


def test_hot_pixel_population() -> None:
    pop = population(DETECTOR)
    column_pixels = np.concatenate(
        [
            np.arange(s.start, s.stop) * TRIMMED_SHAPE[1] + s.column
            for s in pop.hot_columns
        ]
    )
    pixels = np.setdiff1d(pop.hot_index, column_pixels)
    n_pixels = TRIMMED_SHAPE[0] * TRIMMED_SHAPE[1]
    assert pixels.size == pytest.approx(1.5e-4 * n_pixels, rel=0.02)
    rates = pop.hot_e_per_s[np.isin(pop.hot_index, pixels)]
    assert rates.min() >= 0.005 * (1 - 1e-6)
    assert rates.max() <= 20.0 * (1 + 1e-6)
    assert np.mean(rates > 0.05) == pytest.approx(
        10**-1.2, abs=0.015
    )  # Pareto, index 1.2
    hot = np.zeros(TRIMMED_SHAPE, dtype=bool)
    hot.reshape(-1)[pixels] = True
    padded = np.pad(hot, 1)
    neighbour = (
        padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    )
    assert np.mean(neighbour[hot]) == pytest.approx(1 / 3, abs=0.04)  # crowded
    assert len(pop.hot_columns) == 4
    for seg in pop.hot_columns:
        assert 0.004 <= seg.e_per_s <= 0.03
        if seg.amplifier == 1:
            assert seg.stop == 2056
            assert seg.start < 2056
        else:
            assert seg.start == 2056
            assert seg.stop <= TRIMMED_SHAPE[0]


def test_hot_pixels_and_columns_are_where_the_truth_says(
    darks: Written, bias_mean: F32
) -> None:
    signal = (darks.overscan_corrected(0) + darks.overscan_corrected(1)) / 2 - bias_mean
    gains = gains_per_row()
    cosmic = darks.truth.cosmic_mask(0) | darks.truth.cosmic_mask(1)
    rows, cols = np.unravel_index(darks.truth.hot_index, TRIMMED_SHAPE)
    charge = darks.truth.hot_e_per_s * HOUR
    chosen = (charge > 100) & (charge < 60000) & ~cosmic[rows, cols]
    assert chosen.sum() > 150
    r, c = rows[chosen], cols[chosen]
    expected = (charge[chosen] + 5.0) / gains[r]
    sigma = np.sqrt(charge[chosen] / 2 + 30) / gains[r]
    pull = (signal[r, c] - expected) / sigma
    assert np.abs(pull).max() < 6
    assert abs(pull.mean()) < 0.2
    for seg in darks.truth.hot_columns:
        n = seg.amplifier - 1
        segment = signal[seg.start : seg.stop, seg.column]
        beside = signal[
            seg.start : seg.stop, seg.column - 3 if seg.column > 10 else seg.column + 3
        ]
        excess = np.median(segment) - np.median(beside)
        assert excess == pytest.approx(
            seg.e_per_s * HOUR / DETECTOR.gain_e_per_adu[n], rel=0.1, abs=0.5
        )


# --- cosmic rays, saturation -----------------------------------------------------


def test_cosmic_ray_hits_are_exactly_where_the_truth_says(
    warm: Written, bias_mean: F32
) -> None:
    hot = warm.truth.hot_map() * HOUR > 20
    area = TRIMMED_SHAPE[0] * TRIMMED_SHAPE[1] * 0.0015**2
    for k in (0, 3):
        frame = warm.truth.frames[k]
        expected = 1.5 * 25 * area * 60
        assert abs(frame.cosmic_events - expected) < 5 * np.sqrt(expected)
        assert 3.5 < frame.cosmic_hits.size / frame.cosmic_events < 4.6
        high = (warm.overscan_corrected(k) - bias_mean) > 100.0
        hits = warm.truth.cosmic_mask(k)
        assert np.array_equal(high & ~hot, hits & ~hot)
    biases_get_none = Scenario(kind="bias", n_frames=1, exptime_s=0.0)
    assert biases_get_none.cosmic_rate_scale == 1.0


def test_counts_are_clipped_to_16_bits() -> None:
    detector = SecondDetector(
        bias_level_adu=(0.0, 60000.0), hot_min_e_per_s=5.0, hot_columns=0, seed=778
    )
    assert not np.array_equal(
        population(detector).hot_index, population(DETECTOR).hot_index
    )
    scenario = Scenario(kind="dark", n_frames=1, exptime_s=HOUR, cosmic_rate_scale=0.0)
    counts, truth = raw_frame(detector, scenario, 0)
    assert counts.dtype == np.uint16
    assert counts.shape == RAW_SHAPE
    assert truth.cosmic_events == 0
    assert truth.cosmic_hits.size == 0
    amp1, amp2 = AMPLIFIERS
    assert counts[amp1.raw_overscan].min() == 0  # clipped at 0, no wrap-around
    assert counts[amp1.raw_overscan].max() < 30
    rows, cols = np.unravel_index(population(detector).hot_index, TRIMMED_SHAPE)
    in_amp2 = rows >= amp2.trimmed_rows.start
    raw_rows = rows[in_amp2] - amp2.trimmed_rows.start + amp2.data_rows.start
    assert np.all(counts[raw_rows, cols[in_amp2] + DATA_COLUMNS.start] == 65535)


# --- light leaks -----------------------------------------------------------------


def leak_electrons(warm: Written, k: int) -> tuple[F32, npt.NDArray[np.bool_]]:
    """Frame k minus the clean frame 3, in electrons, and its quiet pixels."""
    diff = (warm.trimmed(k) - warm.trimmed(3)) * gains_per_row()[:, None]
    return diff, quiet_mask(warm, (k, 3))


def test_leaks_are_only_in_their_frames(warm: Written) -> None:
    assert [f.leaks for f in warm.truth.frames] == [
        (EDGE_LEAK,),
        (CORNER_LEAK,),
        (GRADIENT_LEAK, UNIFORM_LEAK),
        (),
    ]
    assert warm.truth.leaks == (EDGE_LEAK, CORNER_LEAK, GRADIENT_LEAK, UNIFORM_LEAK)


def test_a_lit_edge_decays_from_the_named_edge(warm: Written) -> None:
    diff, quiet = leak_electrons(warm, 0)
    profile = np.nanmean(np.where(quiet, diff, np.nan), axis=0)
    cols = np.arange(TRIMMED_SHAPE[1])
    expected = 0.01 * HOUR * np.exp(-cols / 300.0)
    binned = profile.reshape(-1, 16).mean(axis=1)
    np.testing.assert_allclose(binned, expected.reshape(-1, 16).mean(axis=1), atol=0.15)
    assert binned[0] > 30


def test_a_lit_corner_decays_radially_from_the_named_corner(warm: Written) -> None:
    diff, quiet = leak_electrons(warm, 1)
    rr, cc = np.mgrid[0 : TRIMMED_SHAPE[0], 0 : TRIMMED_SHAPE[1]]
    radius = np.hypot(rr - (TRIMMED_SHAPE[0] - 1), cc)
    for low, high in (
        (0, 20),
        (20, 100),
        (100, 400),
        (400, 1000),
        (1000, 2000),
        (3000, 4000),
    ):
        ring = quiet & (radius >= low) & (radius < high)
        expected = (0.01 * HOUR * np.exp(-radius[ring] / 400.0)).mean()
        assert diff[ring].mean() == pytest.approx(expected, rel=0.05, abs=0.1)


def test_a_gradient_with_a_uniform_leak_is_linear_across_the_detector(
    warm: Written,
) -> None:
    diff, quiet = leak_electrons(warm, 2)
    profile = np.nanmean(np.where(quiet, diff, np.nan), axis=1)
    rows = np.arange(TRIMMED_SHAPE[0])
    slope, intercept = np.polyfit(rows / (TRIMMED_SHAPE[0] - 1), profile, 1)
    assert intercept == pytest.approx(0.002 * HOUR, abs=0.15)  # uniform only at row 0
    assert slope == pytest.approx(
        0.005 * HOUR, rel=0.02
    )  # gradient reaches L at the top
    residual = profile - (intercept + slope * rows / (TRIMMED_SHAPE[0] - 1))
    assert residual.std() < 0.5


# --- parameters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: SecondDetector(read_noise_e=(-1.0, 3.5)), "read_noise_e"),
        (lambda: SecondDetector(hot_fraction=0.5), "hot_fraction"),
        (
            lambda: SecondDetector(hot_column_e_per_s=(0.03, 0.004)),
            "hot_column_e_per_s",
        ),
        (lambda: SecondDetector(doubling_k=0.0), "doubling_k"),
        (lambda: Scenario(kind="bias", n_frames=1, exptime_s=10.0), "exptime_s"),
        (lambda: Scenario(kind="dark", n_frames=0, exptime_s=10.0), "n_frames"),
        (
            lambda: Scenario(
                kind="dark", n_frames=2, exptime_s=1.0, temperature_k=12.5
            ),
            "temperature_k",
        ),
        (
            lambda: Scenario(
                kind="dark",
                n_frames=2,
                exptime_s=1.0,
                leaks=(Leak(frame=2, shape="uniform", rate_e_per_pix_s=1.0),),
            ),
            "frame",
        ),
        (
            lambda: Scenario(
                kind="bias", n_frames=1, exptime_s=0.0, leaks=(UNIFORM_LEAK,)
            ),
            "leaks",
        ),
        (
            lambda: Leak(frame=0, shape="edge", rate_e_per_pix_s=1.0, where="top_left"),
            "where",
        ),
        (lambda: Leak(frame=0, shape="corner", rate_e_per_pix_s=1.0), "where"),
        (
            lambda: Leak(frame=0, shape="uniform", rate_e_per_pix_s=0.0),
            "rate_e_per_pix_s",
        ),
    ],
)
def test_invalid_parameters_are_refused_naming_the_field(
    make: Callable[[], object], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        make()

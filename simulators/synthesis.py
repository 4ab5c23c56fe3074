"""Synthesis of MEGARA raw CCD frames: seeded, fast, and faithful to the detector.

The geometry is MEGARA's raw format, as ``megaradrp`` 0.22 describes it
(``instrument/configs/component-2e02e135-...json``, keys ``trim1``, ``trim2``,
``overscan1``, ``overscan2``, ``prescan1``, ``prescan2``, ``middle1``,
``middle2``)::

    raw frame 4212 rows x 4196 columns, uint16 ADU (BITPIX=16, BZERO=32768)

    amplifier 1 owns rows 0:2106       amplifier 2 owns rows 2106:4212
      data       rows    0:2056, cols   50:4146     rows 2156:4212, cols   50:4146
      overscan   rows    0:2056, cols 4146:4196     rows 2156:4212, cols    0:50
      prescan    rows    0:2056, cols    0:50       rows 2156:4212, cols 4146:4196
      row overscan (gap) rows 2056:2106             rows 2106:2156

``megaradrp``'s overscan correction fits each amplifier's overscan columns,
averaged along the row, with a cubic spline (one interior knot, at row 1200 for
amplifier 1 and row 3100 for amplifier 2) and subtracts it from that
amplifier's data rows. The trimmed image (4112 x 4096) stacks amplifier 1's
data rows on top of amplifier 2's, as ``megaradrp.processing.trimover.trimOut``
does.

What a frame contains, per pixel, in electrons before the gain:

* image-area pixels (the data sections): dark current (a fixed map per
  detector: the bulk level with a small fixed pattern, hot pixels and hot column
  segments), scaled by the temperature law of :func:`dark_current_scale`;
  uniform light when asked for; cosmic rays in proportion to exposure time;
* every pixel: read noise, then the amplifier's bias (a level plus a smooth
  drift with the row in readout order) in ADU. Prescan, overscan and the gap
  rows carry bias and read noise only.

Noise model and why. Exact Poisson draws for 17 million pixels cost 0.5 to 0.9
s a frame on their own, more than the whole budget (0.6 s a frame). The bulk
(every pixel of an amplifier shares the same mean up to the few per cent fixed
pattern) is therefore drawn from a skew-corrected Gaussian (a first-order
Cornish-Fisher expansion) for the *sum* of the Poisson electrons and the
Gaussian read noise: ``e = lam + s*z + c*(z**2 - 1)``, with ``s**2 = lam +
rn**2`` and ``c = lam / (6 s**2)``. Its mean is exact, its variance exceeds the
exact one by ``2 c**2`` (always below 0.06 e-**2, as ``c < 1/6``), and its
third cumulant matches the exact one to first order, so the median and the
skewness of dark and flat frames come out right as well as their mean and
variance. The skewness of the sum, ``lam / (lam + rn**2)**1.5``, is at most
0.11 for rn = 3.4 e- (at ``lam = 2 rn**2``): the neglected higher-order terms
are smaller still. Hot pixels and hot-column pixels, whose means are far above
the bulk's and whose number is small (well under 1 % of the frame), are drawn
exactly: Poisson electrons plus Gaussian read noise. Cosmic-ray charge is added
on top, deterministically once the track is drawn.

Conventions and simplifications:

* Amplifier 1 reads its half from row 0 upwards and amplifier 2 its half from
  row 4211 downwards (each amplifier's serial register lies on the outer edge of
  its half); the bias drift is a function of the row in that readout order.
* A hot column segment runs from its defect row to the far edge of the half,
  away from the serial register (the pixels that are clocked through the
  defect); it is modelled as an elevated dark rate, with the same temperature
  law as the bulk.
* ADU values are rounded to the nearest integer and clipped to
  ``0..ADC_MAX_ADU``; there is no non-linearity, no blooming beyond the ADC's
  saturation and no charge-transfer inefficiency.
"""

from __future__ import annotations

import logging
import math
import operator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from drivers.errors import ConfigError

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U16 = npt.NDArray[np.uint16]
Section = tuple[slice, slice]

# --- geometry -----------------------------------------------------------------

#: Raw frame shape (rows, columns).
SHAPE: tuple[int, int] = (4212, 4196)
#: Shape of the trimmed image (both data sections stacked, amplifier 1 first).
TRIMMED_SHAPE: tuple[int, int] = (4112, 4096)
#: Pixel pitch, micrometres.
PIXEL_SIZE_UM = 15.0
#: Largest value the 16-bit ADC gives, ADU.
ADC_MAX_ADU = 65535
#: Rows of the raw frame that each amplifier reads (all columns).
AMP_ROWS: tuple[slice, slice] = (slice(0, 2106), slice(2106, 4212))
#: Image-area (data) sections per amplifier, raw coordinates.
DATA_SECTIONS: tuple[Section, Section] = (
    (slice(0, 2056), slice(50, 4146)),
    (slice(2156, 4212), slice(50, 4146)),
)
#: Overscan columns per amplifier (what megaradrp's spline fits).
OVERSCAN_SECTIONS: tuple[Section, Section] = (
    (slice(0, 2056), slice(4146, 4196)),
    (slice(2156, 4212), slice(0, 50)),
)
#: Prescan columns per amplifier.
PRESCAN_SECTIONS: tuple[Section, Section] = (
    (slice(0, 2056), slice(0, 50)),
    (slice(2156, 4212), slice(4146, 4196)),
)
#: Row overscan (the gap between the halves) per amplifier ("middle" in megaradrp).
ROW_OVERSCAN_SECTIONS: tuple[Section, Section] = (
    (slice(2056, 2106), slice(50, 4146)),
    (slice(2106, 2156), slice(50, 4146)),
)
#: Raw row that each amplifier reads first (next to its serial register).
FIRST_READ_ROW: tuple[int, int] = (0, 4211)
#: Rows of the gap: raw row = trimmed row + GAP_ROWS for amplifier 2's half.
GAP_ROWS = 100
_HALF_DATA_ROWS = 2056
_DATA_COL0 = 50

# --- physics ------------------------------------------------------------------

_BOLTZMANN_EV_PER_K = 8.617333262e-5
# Varshni parameters of the silicon band gap (Janesick, Scientific CCDs).
_EG0_EV, _EG_ALPHA_EV_PER_K, _EG_BETA_K = 1.1557, 7.021e-4, 1108.0
# Most probable ionisation of a minimum-ionising particle in silicon, e-/um.
_MIP_E_PER_UM = 75.0
# Spread (log-normal sigma) of a track's total charge around that value.
_MIP_LOG_SIGMA = 0.35
# Longest projected track, pixels, and smallest cos(zenith angle) drawn.
_MAX_TRACK_PX = 40.0
_MIN_COS_ZENITH = 0.05
# Stream identifiers that keep the detector's and the frames' seeds apart.
_STREAM_DETECTOR = 0x0DE7EC70
_STREAM_FRAME = 0x0F7A3E


def silicon_band_gap_ev(temperature_k: float) -> float:
    """Band gap of silicon, eV, at ``temperature_k`` kelvin (Varshni's law)."""
    t = temperature_k
    return _EG0_EV - _EG_ALPHA_EV_PER_K * t * t / (_EG_BETA_K + t)


def dark_current_scale(temperature_k: float, reference_k: float) -> float:
    """Dark current at ``temperature_k`` relative to that at ``reference_k``.

    The standard CCD law ``D(T) = D0 * T**1.5 * exp(-Eg(T) / (2 k T))``, with the
    silicon band gap ``Eg(T)`` of :func:`silicon_band_gap_ev`.

    Parameters
    ----------
    temperature_k, reference_k
        Detector temperatures, kelvin.

    Returns
    -------
    float
        The ratio ``D(temperature_k) / D(reference_k)`` (dimensionless).
    """

    def log_d(t: float) -> float:
        return 1.5 * math.log(t) - silicon_band_gap_ev(t) / (
            2 * _BOLTZMANN_EV_PER_K * t
        )

    return math.exp(log_d(temperature_k) - log_d(reference_k))


def noise_coefficients(mean_e: float, read_noise_e: float) -> tuple[float, float]:
    """Coefficients of the skew-corrected Gaussian for Poisson plus read noise.

    A draw is ``mean_e + sigma * z + skew * (z**2 - 1)`` with ``z`` standard
    normal (see the module notes for its accuracy).

    Parameters
    ----------
    mean_e
        Expected number of electrons, e-.
    read_noise_e
        Read noise, e- rms (> 0).

    Returns
    -------
    tuple of float
        ``(sigma, skew)`` in e-.
    """
    var = mean_e + read_noise_e * read_noise_e
    return math.sqrt(var), mean_e / (6.0 * var)


def approx_poisson_read_noise(
    mean_e: float, read_noise_e: float, z: npt.NDArray[np.floating[Any]]
) -> F64:
    """Electrons read from pixels of mean ``mean_e``: the bulk model of frames.

    Parameters
    ----------
    mean_e
        Expected number of photo- or dark electrons per pixel, e-.
    read_noise_e
        Read noise, e- rms.
    z
        Standard normal deviates, one per pixel.

    Returns
    -------
    numpy.ndarray
        Electrons (float64, same shape as ``z``), read noise included.
    """
    sigma, skew = noise_coefficients(mean_e, read_noise_e)
    zz = np.asarray(z, dtype=np.float64)
    return np.asarray(mean_e + sigma * zz + skew * (zz * zz - 1.0), dtype=np.float64)


# --- configuration and truth --------------------------------------------------


def _bad(name: str, value: object, expected: str) -> ConfigError:
    return ConfigError(
        f"detector config: {name} = {value!r} is invalid; expected {expected}; "
        "fix the detector section of the simulator configuration"
    )


def _check_pair(name: str, pair: tuple[float, float], lo: float, hi: float) -> None:
    if len(pair) != 2 or not all(math.isfinite(v) and lo <= v <= hi for v in pair):
        raise _bad(name, pair, f"two numbers (one per amplifier) in [{lo}, {hi}]")


def _check_range(name: str, pair: tuple[float, float]) -> None:
    ok = len(pair) == 2 and all(math.isfinite(v) and v > 0 for v in pair)
    if not ok or pair[0] > pair[1]:
        raise _bad(name, pair, "(low, high) with 0 < low <= high")


@dataclass(frozen=True, kw_only=True)
class DetectorConfig:
    """Parameters of the simulated MEGARA detector (e2v CCD231-84).

    Per-amplifier pairs are (amplifier 1, amplifier 2).

    Attributes
    ----------
    seed
        Seed of the fixed detector population (dark map, hot pixels, hot
        columns); a frame's noise combines it with a run key and the frame's
        own ``frame_seed``.
    gains
        Conversion gains, e-/ADU.
    read_noise_e
        Read noise, e- rms (>= 1: the bulk noise model needs it, see module notes).
    bias_adu
        Bias level, ADU: the mean over the amplifier's data (and overscan) rows.
    bias_drift_adu
        Peak-to-peak drift of the bias along the readout, ADU (sign: direction).
    bias_drift_rows
        e-folding length of the drift, rows (a settle after the start of readout).
    dark_ref_e_per_h
        Bulk dark current at ``dark_ref_temp_k``, e-/pixel/hour.
    dark_ref_temp_k
        Reference temperature, kelvin (MEGARA's CCD runs at about -110 C).
    dark_nonuniformity
        rms of the fixed pattern of the bulk dark current, fraction of it.
    hot_pixel_fraction
        Fraction of image-area pixels that are hot.
    hot_pixel_e_per_h
        (low, high) of the hot pixels' excess dark current at the reference
        temperature, e-/pixel/hour, drawn log-uniformly.
    hot_columns
        Number of hot column segments.
    hot_column_e_per_h
        (low, high) of their per-pixel excess dark current, e-/pixel/hour.
    cosmic_rate_per_cm2_s
        Cosmic-ray events per cm**2 of image area per second of exposure.
    depletion_depth_um
        Thickness of silicon that collects cosmic-ray charge, micrometres.
    """

    seed: int = 1
    gains: tuple[float, float] = (1.73, 1.6)
    read_noise_e: tuple[float, float] = (3.4, 3.4)
    bias_adu: tuple[float, float] = (1425.0, 1610.0)
    bias_drift_adu: tuple[float, float] = (3.0, -2.5)
    bias_drift_rows: float = 700.0
    dark_ref_e_per_h: float = 2.0
    dark_ref_temp_k: float = 163.15
    dark_nonuniformity: float = 0.05
    hot_pixel_fraction: float = 1.0e-4
    hot_pixel_e_per_h: tuple[float, float] = (60.0, 6000.0)
    hot_columns: int = 6
    hot_column_e_per_h: tuple[float, float] = (20.0, 200.0)
    cosmic_rate_per_cm2_s: float = 0.03
    depletion_depth_um: float = 40.0

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise _bad("seed", self.seed, "a non-negative integer")
        if self.seed < 0:
            raise _bad("seed", self.seed, "a non-negative integer")
        _check_pair("gains", self.gains, 0.05, 100.0)
        _check_pair("read_noise_e", self.read_noise_e, 1.0, 100.0)
        _check_pair("bias_adu", self.bias_adu, 100.0, 60000.0)
        _check_pair("bias_drift_adu", self.bias_drift_adu, -100.0, 100.0)
        self._check_scalar("bias_drift_rows", self.bias_drift_rows, 1.0, 1.0e6)
        self._check_scalar("dark_ref_e_per_h", self.dark_ref_e_per_h, 0.0, 1.0e6)
        self._check_scalar("dark_ref_temp_k", self.dark_ref_temp_k, 100.0, 320.0)
        self._check_scalar("dark_nonuniformity", self.dark_nonuniformity, 0.0, 0.3)
        self._check_scalar("hot_pixel_fraction", self.hot_pixel_fraction, 0.0, 0.01)
        _check_range("hot_pixel_e_per_h", self.hot_pixel_e_per_h)
        if not isinstance(self.hot_columns, int) or not 0 <= self.hot_columns <= 100:
            raise _bad("hot_columns", self.hot_columns, "an integer in [0, 100]")
        _check_range("hot_column_e_per_h", self.hot_column_e_per_h)
        self._check_scalar(
            "cosmic_rate_per_cm2_s", self.cosmic_rate_per_cm2_s, 0.0, 100.0
        )
        self._check_scalar("depletion_depth_um", self.depletion_depth_um, 1.0, 1000.0)

    @staticmethod
    def _check_scalar(name: str, value: float, lo: float, hi: float) -> None:
        if not (isinstance(value, int | float) and math.isfinite(value)):
            raise _bad(name, value, f"a number in [{lo}, {hi}]")
        if not lo <= value <= hi:
            raise _bad(name, value, f"a number in [{lo}, {hi}]")


@dataclass(frozen=True)
class HotColumn:
    """A hot column segment, raw coordinates: rows ``row_start:row_stop``."""

    col: int
    row_start: int
    row_stop: int
    rate_e_s: float  # excess dark current at the reference temperature, e-/s


@dataclass(frozen=True, kw_only=True, eq=False)
class DetectorTruth:
    """What a :class:`Detector` really is, for tests and QC checks (read-only).

    Attributes
    ----------
    gains
        e-/ADU per amplifier.
    read_noise_e, read_noise_adu
        Read noise per amplifier, e- rms and ADU rms.
    bias_adu
        Bias level per amplifier, ADU (mean over its data and overscan rows).
    bias_by_row_adu
        Bias of every raw row (4212,), ADU, level plus drift of the amplifier
        that reads the row; constant along a row.
    dark_ref_e_per_s
        Bulk dark current at ``dark_ref_temp_k``, e-/s/pixel.
    dark_ref_temp_k
        Reference temperature, kelvin.
    dark_map_e_s
        Dark current of every image-area pixel at the reference temperature,
        e-/s, float32, *trimmed* geometry (4112, 4096): fixed pattern, hot
        pixels and hot column segments included.
    hot_rows, hot_cols, hot_rates_e_s
        Hot pixels: raw row and column, and excess dark rate at the reference
        temperature (e-/s).
    hot_columns
        Hot column segments.
    """

    gains: tuple[float, float]
    read_noise_e: tuple[float, float]
    read_noise_adu: tuple[float, float]
    bias_adu: tuple[float, float]
    bias_by_row_adu: F64
    dark_ref_e_per_s: float
    dark_ref_temp_k: float
    dark_map_e_s: F32
    hot_rows: I64
    hot_cols: I64
    hot_rates_e_s: F64
    hot_columns: tuple[HotColumn, ...]

    def dark_rate(self, temperature_k: float) -> float:
        """Bulk dark current at ``temperature_k`` kelvin, e-/s/pixel.

        This is the level that a clipped mean or a median of a dark frame
        recovers: hot pixels and hot columns excluded.
        """
        scale = dark_current_scale(temperature_k, self.dark_ref_temp_k)
        return self.dark_ref_e_per_s * scale


@dataclass(frozen=True, kw_only=True, eq=False)
class CosmicRays:
    """Cosmic rays of one exposure, raw coordinates.

    Attributes
    ----------
    count
        Number of events (tracks).
    centres
        Track centres (count, 2): row, column (float, pixel centres at +0.5).
    rows, cols, electrons
        Every pixel that received charge, and how much (e-).
    """

    count: int
    centres: F64
    rows: I64
    cols: I64
    electrons: F64


@dataclass(frozen=True, kw_only=True, eq=False)
class FrameTruth:
    """What went into the last frame: its arguments, dark scale and cosmic rays."""

    frame_seed: int
    run_key: int
    exptime_s: float
    temperature_k: float
    light_e_per_s: float
    dark_scale: float
    cosmics: CosmicRays


@dataclass(frozen=True, eq=False)
class _AmpPlan:
    """Fixed per-amplifier arrays, local to the amplifier's block of rows."""

    index: int
    bias_col: F32  # (2106, 1): bias + 0.5 (rounding), ADU
    data_rows: slice  # local rows of the data section
    dark_map: F32  # (2056, 4096) view of the trimmed map, e-/s
    sparse_flat: I64  # local flat indices of hot and hot-column pixels
    sparse_rate: F64  # their dark rates, e-/s at the reference temperature
    sparse_bias: F64  # their bias + 0.5, ADU


# --- the detector -------------------------------------------------------------


class Detector:
    """A simulated MEGARA CCD that produces raw frames.

    The fixed population (dark map, hot pixels, hot columns, bias drift) is
    drawn once from ``config.seed`` alone; a frame's noise and cosmic rays come
    from ``(config.seed, run_key, frame_seed)``, so the same arguments give the
    same frame, and two runs with different keys never share a frame's noise
    (a master bias of one run is then independent of the darks of another).
    The two amplifiers are synthesised in two threads (numpy releases the GIL).

    Parameters
    ----------
    config
        Detector parameters.
    """

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        rng = np.random.default_rng(
            np.random.SeedSequence([_STREAM_DETECTOR, config.seed])
        )
        bias_rows = self._bias_by_row()
        dark_map, hot, columns = self._draw_dark_map(rng)
        self._truth = DetectorTruth(
            gains=config.gains,
            read_noise_e=config.read_noise_e,
            read_noise_adu=(
                config.read_noise_e[0] / config.gains[0],
                config.read_noise_e[1] / config.gains[1],
            ),
            bias_adu=config.bias_adu,
            bias_by_row_adu=_readonly(bias_rows),
            dark_ref_e_per_s=config.dark_ref_e_per_h / 3600.0,
            dark_ref_temp_k=config.dark_ref_temp_k,
            dark_map_e_s=_readonly(dark_map),
            hot_rows=_readonly(hot[0]),
            hot_cols=_readonly(hot[1]),
            hot_rates_e_s=_readonly(hot[2]),
            hot_columns=columns,
        )
        self._amps = tuple(self._plan(amp, dark_map, bias_rows) for amp in (0, 1))
        self._last: FrameTruth | None = None
        log.debug(
            "detector seed %d: %d hot pixels, %d hot columns",
            config.seed,
            hot[0].size,
            len(columns),
        )

    # -- public --------------------------------------------------------------

    def truth(self) -> DetectorTruth:
        """The detector's fixed truth (bias, noise, dark map, defects)."""
        return self._truth

    def frame_truth(self) -> FrameTruth | None:
        """What went into the last frame made, or None before the first."""
        return self._last

    def frame(
        self,
        *,
        exptime_s: float,
        temperature_k: float,
        light_e_per_s: float = 0.0,
        frame_seed: int,
        run_key: int = 0,
    ) -> U16:
        """Synthesise one raw frame.

        Parameters
        ----------
        exptime_s
            Integration time, seconds (0 for a bias).
        temperature_k
            Detector temperature during the integration, kelvin. If it varied,
            pass the temperature whose :func:`dark_current_scale` is the
            time average of the scale over the integration.
        light_e_per_s
            Uniform light reaching every image-area pixel, e-/s/pixel (non-zero
            when a cover half or the shutter is open).
        frame_seed
            Non-negative seed of this frame's noise and cosmic rays (the
            simulated controller passes the frame number).
        run_key
            Non-negative integer below 2**64 that sets the run (the simulators'
            ``--run-key``): frames of different runs get independent noise.

        Returns
        -------
        numpy.ndarray
            Raw frame, shape :data:`SHAPE`, uint16 ADU.
        """
        _check_frame_args(exptime_s, temperature_k, light_e_per_s, frame_seed)
        amp_seeds = self._frame_seeds(frame_seed, run_key)
        cosmics = self.cosmic_rays(
            exptime_s=exptime_s, frame_seed=frame_seed, run_key=run_key
        )
        scale = dark_current_scale(temperature_k, self.config.dark_ref_temp_k)
        out = np.empty(SHAPE, dtype=np.uint16)
        with ThreadPoolExecutor(max_workers=2) as pool:
            jobs = [
                pool.submit(
                    self._synth_amp,
                    plan,
                    out[AMP_ROWS[plan.index]],
                    np.random.Generator(np.random.SFC64(amp_seeds[plan.index])),
                    exptime_s * scale,
                    exptime_s * light_e_per_s,
                    cosmics,
                )
                for plan in self._amps
            ]
            for job in jobs:
                job.result()
        self._last = FrameTruth(
            frame_seed=frame_seed,
            run_key=run_key,
            exptime_s=float(exptime_s),
            temperature_k=float(temperature_k),
            light_e_per_s=float(light_e_per_s),
            dark_scale=scale,
            cosmics=cosmics,
        )
        return out

    def cosmic_rays(
        self, *, exptime_s: float, frame_seed: int, run_key: int = 0
    ) -> CosmicRays:
        """The cosmic rays that :meth:`frame` deposits for these arguments.

        Poisson number of events, uniform over the image area; each is a
        straight track whose projected length follows the zenith angle
        (``cos`` drawn with density ``cos**3``) and the depletion depth, with
        log-normal charge around 75 e-/um of path, shared bilinearly among the
        pixels around points spaced half a pixel along the track.
        """
        _check_frame_args(exptime_s, self.config.dark_ref_temp_k, 0.0, frame_seed)
        seeds = self._frame_seeds(frame_seed, run_key)
        rng = np.random.Generator(np.random.SFC64(seeds[2]))
        return _draw_cosmics(rng, self.config, exptime_s)

    def _frame_seeds(
        self, frame_seed: int, run_key: int
    ) -> list[np.random.SeedSequence]:
        """Independent streams of one frame: amplifier 1, amplifier 2, cosmics.

        Each number enters the entropy with its length in 32-bit words first,
        so that no two (seed, run key, frame) triples give the same words.
        """
        _check_seed("run_key", run_key)
        words = [_STREAM_FRAME]
        for value in (self.config.seed, run_key, frame_seed):
            words += _words(value)
        return np.random.SeedSequence(words).spawn(3)

    # -- construction helpers ------------------------------------------------

    def _bias_by_row(self) -> F64:
        cfg = self.config
        bias = np.empty(SHAPE[0], dtype=np.float64)
        for amp in (0, 1):
            rows = np.arange(SHAPE[0])[AMP_ROWS[amp]]
            k = np.abs(rows - FIRST_READ_ROW[amp]).astype(np.float64)
            settle = 1.0 - np.exp(-k / cfg.bias_drift_rows)
            span = float(settle.max() - settle.min()) or 1.0
            # Level = mean over the data rows, the rows that the overscan spans.
            in_data = (rows >= DATA_SECTIONS[amp][0].start) & (
                rows < DATA_SECTIONS[amp][0].stop
            )
            drift = cfg.bias_drift_adu[amp] * (settle - settle[in_data].mean()) / span
            bias[AMP_ROWS[amp]] = cfg.bias_adu[amp] + drift
        return bias

    def _draw_dark_map(
        self, rng: np.random.Generator
    ) -> tuple[F32, tuple[I64, I64, F64], tuple[HotColumn, ...]]:
        cfg = self.config
        bulk = cfg.dark_ref_e_per_h / 3600.0
        dark = rng.standard_normal(TRIMMED_SHAPE, dtype=np.float32)
        dark *= np.float32(bulk * cfg.dark_nonuniformity)
        dark += np.float32(bulk)
        np.maximum(dark, 0.0, out=dark)
        columns = []
        for _ in range(cfg.hot_columns):
            amp = int(rng.integers(2))
            col = int(rng.integers(TRIMMED_SHAPE[1]))
            defect = int(rng.integers(_HALF_DATA_ROWS))  # row within the half
            rate = float(_log_uniform(rng, cfg.hot_column_e_per_h, 1)[0]) / 3600.0
            # Pixels clocked through the defect: those farther from the register.
            if amp == 0:
                t0, t1 = defect, _HALF_DATA_ROWS
            else:
                t0, t1 = _HALF_DATA_ROWS, _HALF_DATA_ROWS + defect + 1
            dark[t0:t1, col] += np.float32(rate)
            r0, r1 = _raw_row(t0), _raw_row(t1 - 1) + 1
            columns.append(HotColumn(col + _DATA_COL0, int(r0), int(r1), rate))
        n_hot = round(cfg.hot_pixel_fraction * dark.size)
        flat = np.sort(rng.choice(dark.size, size=n_hot, replace=False))
        rates = _log_uniform(rng, cfg.hot_pixel_e_per_h, n_hot) / 3600.0
        dark.reshape(-1)[flat] += rates.astype(np.float32)
        trow, tcol = np.divmod(flat.astype(np.int64), TRIMMED_SHAPE[1])
        hot = (_raw_row(trow), tcol + _DATA_COL0, rates)
        return dark, hot, tuple(columns)

    def _plan(self, amp: int, dark_map: F32, bias_rows: F64) -> _AmpPlan:
        block = AMP_ROWS[amp]
        data_rows, data_cols = DATA_SECTIONS[amp]
        half = dark_map[amp * _HALF_DATA_ROWS : (amp + 1) * _HALF_DATA_ROWS]
        # Sparse pixels: hot pixels and hot-column pixels, drawn exactly.
        truth = self._truth
        is_hot = np.zeros(half.shape, dtype=bool)
        mine = (truth.hot_rows >= data_rows.start) & (truth.hot_rows < data_rows.stop)
        is_hot[
            truth.hot_rows[mine] - data_rows.start, truth.hot_cols[mine] - _DATA_COL0
        ] = True
        for column in truth.hot_columns:
            if data_rows.start <= column.row_start < data_rows.stop:
                rows = slice(
                    column.row_start - data_rows.start,
                    column.row_stop - data_rows.start,
                )
                is_hot[rows, column.col - _DATA_COL0] = True
        hot_r, hot_c = np.nonzero(is_hot)
        local_r = hot_r + (data_rows.start - block.start)
        sparse_flat = (local_r * SHAPE[1] + hot_c + data_cols.start).astype(np.int64)
        bias_col = (bias_rows[block] + 0.5).astype(np.float32)[:, None]
        return _AmpPlan(
            index=amp,
            bias_col=bias_col,
            data_rows=slice(
                data_rows.start - block.start, data_rows.stop - block.start
            ),
            dark_map=half,
            sparse_flat=sparse_flat,
            sparse_rate=half[hot_r, hot_c].astype(np.float64),
            sparse_bias=bias_rows[block][local_r] + 0.5,
        )

    # -- per-frame work ------------------------------------------------------

    def _synth_amp(
        self,
        plan: _AmpPlan,
        out: U16,
        rng: np.random.Generator,
        dark_s: float,
        light_e: float,
        cosmics: CosmicRays,
    ) -> None:
        """Fill ``out`` (the amplifier's rows) with ADU; runs in a worker thread."""
        amp = plan.index
        gain = self.config.gains[amp]
        rn = self.config.read_noise_e[amp]
        buf = rng.standard_normal(out.shape, dtype=np.float32)
        data = buf[plan.data_rows, DATA_SECTIONS[amp][1]]
        mean_e = self._truth.dark_ref_e_per_s * dark_s + light_e
        sigma, skew = noise_coefficients(mean_e, rn)
        tmp = np.empty(data.shape, dtype=np.float32)
        if skew > 0.0:
            np.square(data, out=tmp)
            tmp -= np.float32(1.0)
            tmp *= np.float32(skew / gain)
        buf *= np.float32(rn / gain)
        data *= np.float32(sigma / rn)
        if skew > 0.0:
            data += tmp
        if dark_s > 0.0:
            # The fixed pattern's mean, per pixel; the bulk noise uses mean_e.
            np.multiply(plan.dark_map, np.float32(dark_s / gain), out=tmp)
            data += tmp
        if light_e > 0.0:
            data += np.float32(light_e / gain)
        buf += plan.bias_col
        self._exact_sparse(plan, buf, rng, dark_s, light_e)
        self._add_cosmics(plan, buf, cosmics)
        np.clip(buf, 0.0, float(ADC_MAX_ADU), out=buf)
        np.copyto(out, buf, casting="unsafe")  # truncation of x + 0.5: rounding

    def _exact_sparse(
        self,
        plan: _AmpPlan,
        buf: F32,
        rng: np.random.Generator,
        dark_s: float,
        light_e: float,
    ) -> None:
        if plan.sparse_flat.size == 0:
            return
        amp = plan.index
        lam = plan.sparse_rate * dark_s + light_e
        electrons = rng.poisson(lam).astype(np.float64)
        electrons += self.config.read_noise_e[amp] * rng.standard_normal(lam.size)
        values = plan.sparse_bias + electrons / self.config.gains[amp]
        buf.reshape(-1)[plan.sparse_flat] = values.astype(np.float32)

    def _add_cosmics(self, plan: _AmpPlan, buf: F32, cosmics: CosmicRays) -> None:
        block = AMP_ROWS[plan.index]
        mine = (cosmics.rows >= block.start) & (cosmics.rows < block.stop)
        if not mine.any():
            return
        flat = (cosmics.rows[mine] - block.start) * SHAPE[1] + cosmics.cols[mine]
        adu = cosmics.electrons[mine] / self.config.gains[plan.index]
        buf.reshape(-1)[flat] += adu.astype(np.float32)  # unique pixels


# --- helpers ------------------------------------------------------------------


def _check_frame_args(
    exptime_s: float, temperature_k: float, light_e_per_s: float, frame_seed: int
) -> None:
    def bad(name: str, value: object, expected: str) -> ConfigError:
        return ConfigError(
            f"frame synthesis: {name} = {value!r} is invalid; expected {expected}; "
            "check the exposure command that asked for this frame"
        )

    if not (math.isfinite(exptime_s) and 0.0 <= exptime_s <= 1.0e6):
        raise bad("exptime_s", exptime_s, "seconds in [0, 1e6]")
    if not (math.isfinite(temperature_k) and 50.0 <= temperature_k <= 350.0):
        raise bad("temperature_k", temperature_k, "kelvin in [50, 350]")
    if not (math.isfinite(light_e_per_s) and 0.0 <= light_e_per_s <= 1.0e9):
        raise bad("light_e_per_s", light_e_per_s, "e-/s/pixel in [0, 1e9]")
    _check_seed("frame_seed", frame_seed)


def _check_seed(name: str, value: int) -> None:
    """A frame's seed or run key: an integer in [0, 2**64)."""
    try:
        number = operator.index(value)
    except TypeError:
        number = -1
    if isinstance(value, bool) or not 0 <= number < 2**64:
        raise ConfigError(
            f"frame synthesis: {name} = {value!r} is invalid; expected an integer "
            "in [0, 2**64); check the exposure command or the --run-key option"
        )


def _words(value: int) -> list[int]:
    """``value`` as its count of 32-bit words, then the words, low first."""
    words = [value & 0xFFFFFFFF]
    while value > 0xFFFFFFFF:
        value >>= 32
        words.append(value & 0xFFFFFFFF)
    return [len(words), *words]


def _readonly(array: npt.NDArray[Any]) -> Any:
    array.setflags(write=False)
    return array


def _log_uniform(
    rng: np.random.Generator, bounds: tuple[float, float], size: int
) -> F64:
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    return np.exp(rng.uniform(lo, hi, size))


def _raw_row(trimmed_row: Any) -> Any:
    """Raw row of a trimmed row (int or integer array)."""
    return trimmed_row + GAP_ROWS * (np.asarray(trimmed_row) >= _HALF_DATA_ROWS)


def _draw_cosmics(
    rng: np.random.Generator, cfg: DetectorConfig, exptime_s: float
) -> CosmicRays:
    n_rows, n_cols = TRIMMED_SHAPE
    area_cm2 = n_rows * n_cols * (PIXEL_SIZE_UM * 1.0e-4) ** 2
    count = int(rng.poisson(cfg.cosmic_rate_per_cm2_s * area_cm2 * exptime_s))
    if count == 0:
        empty_i = np.zeros(0, dtype=np.int64)
        return CosmicRays(
            count=0,
            centres=np.zeros((0, 2)),
            rows=empty_i,
            cols=empty_i.copy(),
            electrons=np.zeros(0),
        )
    y0 = rng.uniform(0.0, n_rows, count)
    x0 = rng.uniform(0.0, n_cols, count)
    cos_z = np.maximum(rng.uniform(0.0, 1.0, count) ** 0.25, _MIN_COS_ZENITH)
    tan_z = np.sqrt(1.0 - cos_z**2) / cos_z
    length_px = np.minimum(
        cfg.depletion_depth_um * tan_z / PIXEL_SIZE_UM, _MAX_TRACK_PX
    )
    path_um = np.hypot(cfg.depletion_depth_um, length_px * PIXEL_SIZE_UM)
    charge = _MIP_E_PER_UM * path_um * rng.lognormal(0.0, _MIP_LOG_SIGMA, count)
    phi = rng.uniform(0.0, 2.0 * np.pi, count)
    n_pts = np.maximum(1, np.ceil(2.0 * length_px)).astype(np.int64)
    event = np.repeat(np.arange(count), n_pts)
    first = np.repeat(np.cumsum(n_pts) - n_pts, n_pts)
    along = (np.arange(event.size) - first + 0.5) / n_pts[event] - 0.5
    y = y0[event] + along * length_px[event] * np.sin(phi[event]) - 0.5
    x = x0[event] + along * length_px[event] * np.cos(phi[event]) - 0.5
    q = charge[event] / n_pts[event]
    iy, ix = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    fy, fx = y - iy, x - ix
    rows = np.concatenate([iy, iy + 1, iy, iy + 1])
    cols = np.concatenate([ix, ix, ix + 1, ix + 1])
    share = np.concatenate([(1 - fy) * (1 - fx), fy * (1 - fx), (1 - fy) * fx, fy * fx])
    inside = (rows >= 0) & (rows < n_rows) & (cols >= 0) & (cols < n_cols)
    flat = rows[inside] * n_cols + cols[inside]
    electrons = np.tile(q, 4)[inside] * share[inside]
    pixels, inverse = np.unique(flat, return_inverse=True)
    summed = np.bincount(inverse, weights=electrons)
    keep = summed > 0.0
    trow, tcol = np.divmod(pixels[keep], n_cols)
    centres = np.column_stack(
        [y0 + GAP_ROWS * (y0 >= _HALF_DATA_ROWS), x0 + _DATA_COL0]
    )
    return CosmicRays(
        count=count,
        centres=_readonly(centres),
        rows=_readonly(_raw_row(trow).astype(np.int64)),
        cols=_readonly((tcol + _DATA_COL0).astype(np.int64)),
        electrons=_readonly(np.asarray(summed[keep], dtype=np.float64)),
    )

"""A second, independently written model of MEGARA's CCD for testing the QC.

The e2v CCD231-84 read by two amplifiers, in the raw layout of
:mod:`reduce.geometry`, written from a physical description only (not from
the other synthetic writers of this suite), so that the QC can be checked on
frames it was not written against. Units: ADU for bias quantities,
electrons (e-) for charge, seconds for times, kelvin for the CCD.

Every raw frame is, per amplifier and raw row ``y`` (readout index ``k``)::

    raw = bias_level + offset + drift(k) + read_noise            (all columns)
        + rolloff(column) + pattern(pixel) + electrons / gain    (data only)

* ``offset`` ~ N(0, ``bias_offset_sigma_adu``) per frame and amplifier;
  ``drift(k)`` a sum of three sinusoids of periods 2500-5000 readout rows
  with random phases per frame (smooth enough for a one-knot spline);
* ``rolloff`` is fixed: ``rolloff_adu * exp(-d / rolloff_efold_columns)``,
  ``d`` the distance in columns from the data edge next to the prescan
  (the amplifier's output side);
* ``electrons`` are Poisson draws of ``t * ((dark + hot) * 2**((T - T_ref) /
  doubling_k) + glow) + leaks``, plus cosmic-ray deposits. ``hot`` holds the
  hot pixels (capped at ``hot_max_e_per_s`` at T_ref, then scaled) and the hot
  column segments, both scaling with temperature; glow scales with ``t`` only.
  Biases (``t = 0``) get no dark, glow or cosmic rays.

Trimmed coordinates (rows 0:4112, columns 0:4096) are those of
:mod:`reduce.geometry`: amplifier 1 fills rows 0:2056 with its serial
register and output at row 0, column 0; amplifier 2 fills rows 2056:4112
with its register at row 4111 and output at column 4095. Edge names for the
light leaks follow the FITS display convention: ``bottom`` is row 0,
``top`` row 4111, ``left`` column 0, ``right`` column 4095.

The fixed population of the detector (non-uniformity, hot pixels and
columns, bias pattern) comes from :attr:`SecondDetector.seed`; the per-frame
randomness from :attr:`Scenario.seed` and the frame index, so one detector
can be observed in several sets. :mod:`reduce.second_model_sets` makes the
frames (:func:`~reduce.second_model_sets.raw_frame`) and writes sets.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from reduce.geometry import AMPLIFIERS
from reduce.geometry import TRIMMED_SHAPE as SHAPE

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

EDGES: Final = ("bottom", "top", "left", "right")
"""Edges of the trimmed frame: rows 0 and 4111, columns 0 and 4095."""

CORNERS: Final = {
    "bottom_left": (0, 0),
    "bottom_right": (0, SHAPE[1] - 1),
    "top_left": (SHAPE[0] - 1, 0),
    "top_right": (SHAPE[0] - 1, SHAPE[1] - 1),
}
"""Corner name -> trimmed (row, column) of the corner pixel."""

GLOW_CORNERS: Final = (CORNERS["bottom_left"], CORNERS["top_right"])
"""Trimmed (row, column) of each amplifier's readout corner (amp 1, amp 2)."""

_HALF_ROWS: Final = 2056  # trimmed rows of each amplifier


def _check(
    name: str, value: float, low: float, high: float, *, open_low: bool = False
) -> None:
    """Raise ValueError naming ``name`` unless ``low <= value <= high`` (finite)."""
    inside = value > low if open_low else value >= low
    if not (math.isfinite(value) and inside and value <= high):
        bracket = "(" if open_low else "["
        raise ValueError(
            f"{name}={value!r}: expected a value in {bracket}{low}, {high}]"
        )


def _check_pair(
    name: str, pair: tuple[float, ...], low: float, high: float, n: int = 2
) -> None:
    if len(pair) != n:
        raise ValueError(f"{name}={pair!r}: expected {n} values")
    for value in pair:
        _check(name, value, low, high)


@dataclass(frozen=True, kw_only=True)
class SecondDetector:
    """The CCD and its two amplifiers (index 0: amplifier 1, 1: amplifier 2).

    Attributes
    ----------
    bias_level_adu
        Bias level per amplifier, ADU.
    bias_offset_sigma_adu
        Sigma of the per-frame bias offset of each amplifier, ADU.
    row_drift_adu
        Summed amplitude of the per-frame row drift's three sinusoids, ADU.
    rolloff_adu, rolloff_efold_columns
        Fixed bias excess at the data column next to the prescan, ADU, and its
        e-folding distance, columns.
    bias_pattern_sigma_adu
        Sigma of the fixed per-pixel bias pattern of the data area, ADU.
    gain_e_per_adu, read_noise_e
        Gain (e-/ADU) and Gaussian read noise (e-) per amplifier.
    dark_e_per_pix_h
        Uniform dark current per amplifier at ``reference_temperature_k``.
    reference_temperature_k, doubling_k
        Dark current (and hot pixels) double every ``doubling_k`` kelvin.
    dark_nonuniformity
        Relative sigma of the fixed pixel-to-pixel dark non-uniformity.
    glow_peak_e_per_pix_h, glow_scale_px
        Amplifier glow at each readout-corner pixel (e-/pix/h, independent of
        temperature) and its radial e-folding distance, pixels.
    hot_fraction, hot_clumped_fraction
        Hot pixels per image pixel; the share of them in clumps of 2-4.
    hot_pareto_index, hot_min_e_per_s, hot_max_e_per_s
        Pareto law of the hot pixels' excess at the reference temperature.
    hot_columns, hot_column_e_per_s
        Number of hot column segments and the range of their excess, e-/s.
    cosmic_per_cm2_min, cosmic_length_px, cosmic_e_per_px, pixel_um
        Cosmic-ray events per cm^2 per minute, track length range in
        pixels, charge range per pixel in e-, and the pixel pitch in um.
    ccd_sensor_offsets_k
        Offsets of CCDTEMP0..3 from the true CCD temperature, K.
    sensor_temperatures_c
        SENTEMP0..5, degrees C (instrument sensors, never the CCD).
    seed
        Seed of the fixed population.
    """

    bias_level_adu: tuple[float, float] = (1850.0, 1930.0)
    bias_offset_sigma_adu: float = 2.0
    row_drift_adu: float = 1.5
    rolloff_adu: float = 6.0
    rolloff_efold_columns: float = 15.0
    bias_pattern_sigma_adu: float = 0.4
    gain_e_per_adu: tuple[float, float] = (AMPLIFIERS[0].gain, AMPLIFIERS[1].gain)
    read_noise_e: tuple[float, float] = (3.2, 3.5)
    dark_e_per_pix_h: tuple[float, float] = (5.0, 5.0)
    reference_temperature_k: float = 163.0
    doubling_k: float = 6.3
    dark_nonuniformity: float = 0.03
    glow_peak_e_per_pix_h: tuple[float, float] = (25.0, 25.0)
    glow_scale_px: float = 180.0
    hot_fraction: float = 1.5e-4
    hot_clumped_fraction: float = 1.0 / 3.0
    hot_pareto_index: float = 1.2
    hot_min_e_per_s: float = 0.005
    hot_max_e_per_s: float = 20.0
    hot_columns: int = 4
    hot_column_e_per_s: tuple[float, float] = (0.004, 0.03)
    cosmic_per_cm2_min: float = 1.5
    cosmic_length_px: tuple[int, int] = (1, 8)
    cosmic_e_per_px: tuple[float, float] = (300.0, 3000.0)
    pixel_um: float = 15.0
    ccd_sensor_offsets_k: tuple[float, float, float, float] = (0.2, -0.3, 0.3, -0.2)
    sensor_temperatures_c: tuple[float, ...] = (10.9, 11.3, 8.7, 9.8, 12.5, 11.7)
    seed: int = 777

    def __post_init__(self) -> None:
        _check_pair("bias_level_adu", self.bias_level_adu, 0.0, 60000.0)
        _check("bias_offset_sigma_adu", self.bias_offset_sigma_adu, 0.0, 100.0)
        _check("row_drift_adu", self.row_drift_adu, 0.0, 100.0)
        _check("rolloff_adu", self.rolloff_adu, -1000.0, 1000.0)
        _check(
            "rolloff_efold_columns",
            self.rolloff_efold_columns,
            0.0,
            4096.0,
            open_low=True,
        )
        _check("bias_pattern_sigma_adu", self.bias_pattern_sigma_adu, 0.0, 100.0)
        _check_pair("gain_e_per_adu", self.gain_e_per_adu, 0.1, 100.0)
        _check_pair("read_noise_e", self.read_noise_e, 0.0, 1000.0)
        _check_pair("dark_e_per_pix_h", self.dark_e_per_pix_h, 0.0, 1e6)
        _check(
            "reference_temperature_k",
            self.reference_temperature_k,
            0.0,
            400.0,
            open_low=True,
        )
        _check("doubling_k", self.doubling_k, 0.0, 100.0, open_low=True)
        _check("dark_nonuniformity", self.dark_nonuniformity, 0.0, 0.3)
        _check_pair("glow_peak_e_per_pix_h", self.glow_peak_e_per_pix_h, 0.0, 1e7)
        _check("glow_scale_px", self.glow_scale_px, 0.0, 10000.0, open_low=True)
        _check("hot_fraction", self.hot_fraction, 0.0, 0.01)
        _check("hot_clumped_fraction", self.hot_clumped_fraction, 0.0, 1.0)
        _check("hot_pareto_index", self.hot_pareto_index, 0.0, 10.0, open_low=True)
        _check("hot_min_e_per_s", self.hot_min_e_per_s, 0.0, 1000.0, open_low=True)
        _check("hot_max_e_per_s", self.hot_max_e_per_s, self.hot_min_e_per_s, 1e5)
        _check("hot_columns", self.hot_columns, 0, 100)
        _check_pair("hot_column_e_per_s", self.hot_column_e_per_s, 0.0, 1000.0)
        _check("cosmic_per_cm2_min", self.cosmic_per_cm2_min, 0.0, 1e4)
        _check_pair("cosmic_length_px", self.cosmic_length_px, 1, 64)
        _check_pair("cosmic_e_per_px", self.cosmic_e_per_px, 0.0, 1e6)
        _check("pixel_um", self.pixel_um, 0.0, 100.0, open_low=True)
        _check_pair("ccd_sensor_offsets_k", self.ccd_sensor_offsets_k, -5.0, 5.0, n=4)
        _check_pair(
            "sensor_temperatures_c", self.sensor_temperatures_c, -100.0, 100.0, n=6
        )
        _check("seed", self.seed, 0, 2**63 - 1)
        for name in ("hot_column_e_per_s", "cosmic_length_px", "cosmic_e_per_px"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(
                    f"{name}={(low, high)!r}: expected (low, high), low <= high"
                )

    def dark_scale(self, temperature_k: float) -> float:
        """Factor of the dark current (and hot pixels) at ``temperature_k``."""
        return float(
            2.0 ** ((temperature_k - self.reference_temperature_k) / self.doubling_k)
        )

    def dark_at(self, temperature_k: float) -> tuple[float, float]:
        """Uniform dark current per amplifier at ``temperature_k``, e-/pix/h."""
        scale = self.dark_scale(temperature_k)
        return (self.dark_e_per_pix_h[0] * scale, self.dark_e_per_pix_h[1] * scale)

    @property
    def area_cm2(self) -> float:
        """Light-sensitive area of the CCD, cm^2."""
        return SHAPE[0] * SHAPE[1] * (self.pixel_um * 1e-4) ** 2


LeakShape = Literal["uniform", "gradient", "edge", "corner"]


@dataclass(frozen=True, kw_only=True)
class Leak:
    """Light reaching the CCD during one dark frame.

    Attributes
    ----------
    frame
        Index of the frame in its set.
    shape
        ``uniform``: ``rate`` everywhere; ``gradient``: linear from 0 at the
        opposite edge to ``rate`` at edge ``where``; ``edge``: ``rate *
        exp(-d / 300 px)`` from edge ``where``; ``corner``: ``rate *
        exp(-r / 400 px)`` from corner ``where``.
    rate_e_per_pix_s
        Peak rate, e-/pix/s.
    where
        An edge of :data:`EDGES`, a corner of :data:`CORNERS`, or None
        (uniform).
    """

    frame: int
    shape: LeakShape
    rate_e_per_pix_s: float
    where: str | None = None

    def __post_init__(self) -> None:
        _check("frame", self.frame, 0, 998)
        _check("rate_e_per_pix_s", self.rate_e_per_pix_s, 0.0, 1e5, open_low=True)
        allowed: dict[str, tuple[str | None, ...]] = {
            "uniform": (None,),
            "gradient": EDGES,
            "edge": EDGES,
            "corner": tuple(CORNERS),
        }
        if self.shape not in allowed:
            raise ValueError(f"shape={self.shape!r}: expected one of {tuple(allowed)}")
        if self.where not in allowed[self.shape]:
            raise ValueError(
                f"where={self.where!r}: expected one of {allowed[self.shape]} for a "
                f"{self.shape} leak"
            )

    def rate_map(self) -> F32:
        """The leak's rate on the trimmed frame, e-/pix/s (broadcastable)."""
        rows = np.arange(SHAPE[0], dtype=np.float32)[:, None]
        cols = np.arange(SHAPE[1], dtype=np.float32)[None, :]
        rate = np.float32(self.rate_e_per_pix_s)
        if self.shape == "uniform":
            return np.full((1, 1), rate, dtype=np.float32)
        if self.shape == "corner":
            r0, c0 = CORNERS[str(self.where)]
            radius = np.sqrt((rows - r0) ** 2 + (cols - c0) ** 2)
            corner: F32 = (rate * np.exp(-radius / np.float32(400.0))).astype(
                np.float32
            )
            return corner
        distance = {
            "bottom": rows,
            "top": (SHAPE[0] - 1) - rows,
            "left": cols,
            "right": (SHAPE[1] - 1) - cols,
        }[str(self.where)]
        if self.shape == "edge":
            edge: F32 = (rate * np.exp(-distance / np.float32(300.0))).astype(
                np.float32
            )
            return edge
        span = np.float32(
            (SHAPE[0] if self.where in ("bottom", "top") else SHAPE[1]) - 1
        )
        return (rate * (1 - distance / span)).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One set of frames: its kind, exposure, temperature and events.

    Attributes
    ----------
    kind
        ``bias`` (``exptime_s`` 0, no leaks) or ``dark``.
    n_frames
        Frames of the set, 1-999.
    exptime_s
        Exposure (dark) time, s.
    temperature_k
        True CCD temperature, K; None: the detector's reference temperature,
        and no CCDTEMPn keyword is written.
    cosmic_rate_scale
        Factor on the cosmic-ray rate (a storm: 25).
    leaks
        Light leaks, each in one frame of a dark set.
    seed
        Seed of the per-frame randomness, 0 <= seed < 2**31.
    """

    kind: Literal["bias", "dark"]
    n_frames: int
    exptime_s: float
    temperature_k: float | None = 163.0
    cosmic_rate_scale: float = 1.0
    leaks: tuple[Leak, ...] = ()
    seed: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("bias", "dark"):
            raise ValueError(f"kind={self.kind!r}: expected 'bias' or 'dark'")
        _check("n_frames", self.n_frames, 1, 999)
        if self.kind == "bias":
            _check("exptime_s", self.exptime_s, 0.0, 0.0)
            if self.leaks:
                raise ValueError("leaks: expected none in a bias set (no exposure)")
        else:
            _check("exptime_s", self.exptime_s, 0.0, 1e5, open_low=True)
        if self.temperature_k is not None:
            _check("temperature_k", self.temperature_k, 100.0, 320.0)
        _check("cosmic_rate_scale", self.cosmic_rate_scale, 0.0, 1000.0)
        _check("seed", self.seed, 0, 2**31 - 1)
        for leak in self.leaks:
            if not isinstance(leak, Leak):
                raise ValueError(f"leaks: {leak!r} is not a Leak")
            _check("leaks[].frame", leak.frame, 0, self.n_frames - 1)


@dataclass(frozen=True, kw_only=True)
class HotColumn:
    """A hot column segment, trimmed coordinates, rows ``start:stop``."""

    amplifier: int
    column: int
    start: int
    stop: int
    e_per_s: float
    """Excess per pixel at the reference temperature, e-/s."""


@dataclass(frozen=True, eq=False)
class Population:
    """The fixed detector: maps on the trimmed frame (float32)."""

    dark_e_per_s: F32
    """Uniform dark current with its non-uniformity, at T_ref."""
    hot_index: I64
    """Flat trimmed indices of hot pixels and hot-column pixels (unique)."""
    hot_e_per_s: F32
    """Their excess at T_ref."""
    hot_columns: tuple[HotColumn, ...]
    glow_e_per_s: F32
    bias_pattern_adu: F32
    """Fixed per-pixel pattern plus the roll-off."""


@functools.lru_cache(maxsize=2)
def population(detector: SecondDetector) -> Population:
    """The detector's fixed population (cached; do not modify the arrays)."""
    rng = np.random.default_rng(detector.seed)
    rows, cols = SHAPE
    dark = rng.standard_normal(SHAPE, dtype=np.float32)
    dark *= np.float32(detector.dark_nonuniformity)
    dark += np.float32(1.0)
    np.maximum(dark, 0.0, out=dark)
    pattern = rng.standard_normal(SHAPE, dtype=np.float32)
    pattern *= np.float32(detector.bias_pattern_sigma_adu)
    column = np.arange(cols, dtype=np.float32)
    for n, amp in enumerate(AMPLIFIERS):
        half = dark[amp.trimmed_rows]
        half *= np.float32(
            detector.dark_e_per_pix_h[n] / 3600.0 / float(half.mean(dtype=np.float64))
        )
        distance = column if n == 0 else (cols - 1) - column
        rolloff = detector.rolloff_adu * np.exp(
            -distance / detector.rolloff_efold_columns
        )
        pattern[amp.trimmed_rows] += rolloff.astype(np.float32)
    glow = np.zeros(SHAPE, dtype=np.float32)
    r = np.arange(rows, dtype=np.float32)[:, None]
    c = column[None, :]
    for n, (r0, c0) in enumerate(GLOW_CORNERS):
        radius = np.sqrt((r - r0) ** 2 + (c - c0) ** 2)
        peak = np.float32(detector.glow_peak_e_per_pix_h[n] / 3600.0)
        glow += peak * np.exp(-radius / np.float32(detector.glow_scale_px))
    index, rate = _hot_pixels(detector, rng)
    segments = _hot_columns(detector, rng)
    for seg in segments:
        seg_rows = np.arange(seg.start, seg.stop, dtype=np.int64)
        index = np.concatenate([index, seg_rows * cols + seg.column])
        rate = np.concatenate([rate, np.full(seg_rows.size, seg.e_per_s)])
    unique, inverse = np.unique(index, return_inverse=True)
    summed = np.bincount(inverse, weights=rate).astype(np.float32)
    return Population(dark, unique, summed, segments, glow, pattern)


def _hot_pixels(
    detector: SecondDetector, rng: np.random.Generator
) -> tuple[I64, npt.NDArray[np.float64]]:
    """Flat indices (unique) and excess rates at T_ref of the hot pixels."""
    rows, cols = SHAPE
    total = round(detector.hot_fraction * rows * cols)
    clumped = round(total * detector.hot_clumped_fraction)
    steps = np.array([(0, 1), (0, -1), (1, 0), (-1, 0)])
    pixels: list[tuple[int, int]] = []
    while len(pixels) < clumped:
        size = int(rng.integers(2, 5))
        clump = [(int(rng.integers(4, rows - 4)), int(rng.integers(4, cols - 4)))]
        while len(clump) < size:
            base = clump[int(rng.integers(len(clump)))]
            step = steps[int(rng.integers(4))]
            new = (base[0] + int(step[0]), base[1] + int(step[1]))
            if new not in clump:
                clump.append(new)
        pixels.extend(clump)
    single = rng.choice(rows * cols, size=max(total - len(pixels), 0), replace=False)
    index = np.concatenate(
        [np.array([r * cols + c for r, c in pixels], dtype=np.int64), single]
    )
    index = index[np.sort(np.unique(index, return_index=True)[1])]
    excess = detector.hot_min_e_per_s * (
        1.0 + rng.pareto(detector.hot_pareto_index, index.size)
    )
    return index, np.minimum(excess, detector.hot_max_e_per_s)


def _hot_columns(
    detector: SecondDetector, rng: np.random.Generator
) -> tuple[HotColumn, ...]:
    """Segments from a defect row to the amplifier half's far edge."""
    segments = []
    columns = rng.choice(SHAPE[1], size=detector.hot_columns, replace=False)
    for column in columns:
        amp = int(rng.integers(2))
        low, high = detector.hot_column_e_per_s
        rate = float(rng.uniform(low, high))
        if amp == 0:  # register at row 0: the segment runs up to row 2055
            start, stop = int(rng.integers(0, _HALF_ROWS - 100)), _HALF_ROWS
        else:  # register at row 4111: the segment runs down to row 2056
            start, stop = _HALF_ROWS, int(rng.integers(_HALF_ROWS + 100, SHAPE[0])) + 1
        segments.append(
            HotColumn(
                amplifier=amp + 1,
                column=int(column),
                start=start,
                stop=stop,
                e_per_s=rate,
            )
        )
    return tuple(segments)

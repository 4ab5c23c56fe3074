"""The light-leak check: each dark frame against the other frames of its block.

Light adds signal that the other frames of the block do not have. Each frame's
sampled level is known per tile (:data:`reduce.frames.TILE_GRID`, 32 tiles per
amplifier, :class:`reduce.frames.TileLevels`) with its statistical error. For
frame ``k`` and tile ``t`` the excess over the others is

    r_kt = L_kt - median_{j != k} (L_jt * a_k / a_j)

where ``a`` is the dark-current law of the frame's CCD temperature (doubling
every ``doubling_k`` kelvin) when every frame's temperature is known, else 1
(and the reason says the temperature is unknown). Its error combines the
frame's, the median's (pi/2 times a mean's variance), the error of each
amplifier's overscan level model (common to all its tiles, so it does not
average down over them: it limits the uniform check), and a floor of
``leak_floor`` times the dark signal (what varies between honest frames:
temperature jitter, a glow that breathes), plus :data:`LAW_ERROR` of the
log-ratio of the temperature law when frames at other temperatures are
brought to this one's. From 5 frames on, the errors are
scaled up to the block's measured scatter, of the frames' mean levels and of
the tiles about their amplifier's mean (the median absolute residual, a
robust figure that one leaking frame does not move); with 3 or 4 frames the
error model alone is used.

A frame is a leak suspect when

* its mean excess over all tiles (a uniform leak) is above ``leak_nsigma``
  errors of that mean, whose floor term does not average down; or
* one tile's excess over its amplifier's mean excess (a lit edge, corner or
  gradient) is above ``leak_tile_nsigma`` errors: 5.5 by default, for 64
  tiles x N frames tested (a false alarm in about 10^-5 blocks of 7 frames
  of Gaussian noise).

Only an excess counts: light adds. Everything is relative to the block, so
the limits scale with the dark time and the noise, a short dark is judged as
fairly as a long one, and a block whose frames agree but are all warm is a
warm detector (judged by the QA's dark-current limits), not a leak. Fewer
than 3 frames cannot say which frame differs: nothing is excluded.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from reduce.frames import TILE_GRID, FrameInspection
from reduce.geometry import AMPLIFIERS

log = logging.getLogger(__name__)

MIN_FRAMES = 3
"""Fewest frames among which one that differs can be named."""

SCATTER_FRAMES = 5
"""From this many frames on, the block's measured scatter scales the errors."""

_MEDIAN_VARIANCE = math.pi / 2
"""Variance of a median over that of a mean, for Gaussian samples."""

LAW_ERROR = 0.1
"""Relative error of the dark-current law's log-ratio between temperatures.

A constant doubling every ``doubling_k`` is silicon's slope at 163 K; the
slope falls as the CCD warms (T^1.5 exp(-Eg / 2kT)), so 10 K warmer is 12.1
times the dark current, not the 13.0 the doubling gives: 7 % of a log-ratio
of 2.6. A frame compared with others at other temperatures is allowed this
error on their scaled dark signal."""


@dataclass(frozen=True)
class LeakSettings:
    """What the check needs of :class:`reduce.checks.FrameCheckConfig`."""

    nsigma: float
    tile_nsigma: float
    floor: float
    reference_k: float
    doubling_k: float


@dataclass(frozen=True)
class Suspect:
    """A frame whose signal exceeds the others', and the sentence saying so."""

    name: str
    reason: str


@dataclass(frozen=True)
class LeakScan:
    """What the check found, and how small a leak it could see.

    Attributes
    ----------
    suspects
        The frames that carry light the others do not.
    uniform_limit_e_s, tile_limit_e_s
        The median over the frames of the excess the check needed to call a
        leak, over the whole detector and in a typical tile, e-/pix/s: the
        sensitivity reached on this block.
    """

    suspects: tuple[Suspect, ...]
    uniform_limit_e_s: float
    tile_limit_e_s: float


def find_leaks(
    frames: Sequence[FrameInspection], settings: LeakSettings
) -> LeakScan | None:
    """The frames of a dark block that carry light the others do not (None:
    fewer than :data:`MIN_FRAMES`, no frame can be named)."""
    if len(frames) < MIN_FRAMES:
        return None
    levels = np.stack([f.tiles.levels for f in frames])  # (N, 2, rows, cols)
    errors = np.stack([f.tiles.errors for f in frames])
    offsets = np.stack([f.tiles.offset_errors for f in frames])  # (N, 2)
    scale = _temperature_law(frames, settings)
    scatter = _block_scatter(levels, errors, offsets, scale)
    suspects, uniform, tile = [], [], []
    for k, frame in enumerate(frames):
        verdict = _judge(k, frame, (levels, errors, offsets), scale, scatter, settings)
        uniform.append(verdict.uniform_limit_e_s)
        tile.append(verdict.tile_limit_e_s)
        if verdict.reason:
            suspects.append(Suspect(frame.name, verdict.reason))
    return LeakScan(tuple(suspects), float(np.median(uniform)), float(np.median(tile)))


@dataclass(frozen=True)
class _Verdict:
    reason: str
    uniform_limit_e_s: float
    tile_limit_e_s: float


def _temperature_law(
    frames: Sequence[FrameInspection], settings: LeakSettings
) -> npt.NDArray[np.float64] | None:
    """Each frame's dark-current factor, or None when a temperature is unknown."""
    temps = [f.temperature for f in frames]
    if any(t is None or not math.isfinite(t) for t in temps):
        return None
    exponents = (np.array(temps, dtype=np.float64) - settings.reference_k) / (
        settings.doubling_k
    )
    return np.asarray(2.0 ** np.clip(exponents, -60.0, 60.0), dtype=np.float64)


@dataclass(frozen=True)
class _Scatter:
    """Factors (>= 1) by which the block scatters beyond its error model: of
    the frames' mean levels, and of the tiles about their amplifier's mean."""

    mean: float = 1.0
    tile: float = 1.0


def _block_scatter(
    levels: npt.NDArray[np.float64],
    errors: npt.NDArray[np.float64],
    offsets: npt.NDArray[np.float64],
    scale: npt.NDArray[np.float64] | None,
) -> _Scatter:
    """The block's measured scatter, from :data:`SCATTER_FRAMES` frames on.

    Robust (the median absolute residual): one leaking frame does not move it.
    """
    n = levels.shape[0]
    if n < SCATTER_FRAMES:
        return _Scatter()
    norm = levels if scale is None else levels / scale[:, None, None, None]
    amp_means = norm.mean(axis=(2, 3))  # (N, 2)
    shape = norm - amp_means[:, :, None, None]
    tile_expected = errors * math.sqrt(1.0 + _MEDIAN_VARIANCE / n)
    ntiles = errors.shape[2] * errors.shape[3]
    mean_var = (np.mean(errors**2, axis=(2, 3)) / ntiles + offsets**2).mean(axis=1) / 2
    means = amp_means.mean(axis=1)
    mean_expected = np.sqrt(mean_var * (1.0 + _MEDIAN_VARIANCE / n))
    return _Scatter(
        mean=_robust_ratio(means - np.median(means), mean_expected),
        tile=_robust_ratio(shape - np.median(shape, axis=0), tile_expected),
    )


def _robust_ratio(
    residuals: npt.NDArray[np.float64], expected: npt.NDArray[np.float64]
) -> float:
    z = np.abs(residuals) / np.maximum(expected, 1e-12)
    return max(1.0, 1.482602218505602 * float(np.median(z)))


@dataclass(frozen=True)
class _Comparison:
    """Frame ``k`` against the others: its excess per tile and the errors."""

    excess: npt.NDArray[np.float64]  # (2, rows, cols), ADU
    own: npt.NDArray[np.float64]  # statistical error per tile, ADU
    common: npt.NDArray[np.float64]  # (2,) level-model variance per amplifier
    floor: npt.NDArray[np.float64]  # (2, rows, cols), ADU


def _compare(
    k: int,
    block: tuple[
        npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]
    ],
    scale: npt.NDArray[np.float64] | None,
    settings: LeakSettings,
) -> _Comparison:
    """Frame ``k`` against the median of the others, brought to its temperature."""
    levels, errors, offsets = block
    others = np.delete(np.arange(levels.shape[0]), k)
    ratio = np.ones(len(others)) if scale is None else scale[k] / scale[others]
    reference = np.median(levels[others] * ratio[:, None, None, None], axis=0)
    law = LAW_ERROR * float(np.mean(np.abs(np.log(ratio))))
    shrink = _MEDIAN_VARIANCE / len(others)
    return _Comparison(
        excess=levels[k] - reference,
        own=np.sqrt(errors[k] ** 2 + shrink * np.mean(errors[others] ** 2, axis=0)),
        common=offsets[k] ** 2 + shrink * np.mean(offsets[others] ** 2, axis=0),
        floor=(settings.floor + law) * np.abs(reference),
    )


def _judge(
    k: int,
    frame: FrameInspection,
    block: tuple[
        npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]
    ],
    scale: npt.NDArray[np.float64] | None,
    scatter: _Scatter,
    settings: LeakSettings,
) -> _Verdict:
    """Why frame ``k`` is a leak suspect (or ``""``), and the limits used.

    ``block``: every frame's tile levels, their errors and the amplifiers'
    level-model errors (common to all tiles of an amplifier). The uniform
    test is on the mean excess; the structured one on each tile's excess
    over its amplifier's mean excess (the level-model offsets cancel there).
    """
    c = _compare(k, block, scale, settings)
    weights = 1.0 / np.maximum(c.own, 1e-12) ** 2
    mean_excess = float(np.sum(weights * c.excess) / np.sum(weights))
    amp_weight = weights.sum(axis=(1, 2)) / weights.sum()
    mean_sigma = scatter.mean * math.sqrt(
        1.0 / float(np.sum(weights))
        + float(np.sum(amp_weight**2 * c.common))
        + float(np.mean(c.floor)) ** 2
    )
    structure = c.excess - c.excess.mean(axis=(1, 2), keepdims=True)
    tile_sigma = scatter.tile * np.hypot(c.own, c.floor)
    to_rate = _to_rate(frame)
    limits = (
        settings.nsigma * mean_sigma * to_rate,
        settings.tile_nsigma * float(np.median(tile_sigma)) * to_rate,
    )
    at = (
        f" at {frame.temperature:.1f} K"
        if scale is not None and frame.temperature is not None
        else " (temperature unknown: compared without the dark-current law)"
    )
    if mean_excess > settings.nsigma * mean_sigma:
        return _Verdict(
            f"{frame.name}: light leak suspected, {mean_excess * to_rate:.3g} e-/pix/s "
            f"({mean_excess:.3g} ADU) above the other frames over the whole "
            f"detector{at} (limit {limits[0]:.3g} e-/pix/s, {settings.nsigma:g} "
            "sigma of the block's scatter)",
            *limits,
        )
    z = structure / tile_sigma
    worst = np.unravel_index(int(np.argmax(z)), z.shape)
    if z[worst] <= settings.tile_nsigma:
        return _Verdict("", *limits)
    amp, row, col = (int(i) for i in worst)
    return _Verdict(
        f"{frame.name}: light leak suspected, {structure[worst] * to_rate:.3g} "
        f"e-/pix/s ({structure[worst]:.3g} ADU) above the other frames in "
        f"{_tile_name(amp, row, col)}{at} (limit "
        f"{settings.tile_nsigma * tile_sigma[worst] * to_rate:.3g} e-/pix/s, "
        f"{settings.tile_nsigma:g} sigma of the block's scatter)",
        *limits,
    )


def _to_rate(frame: FrameInspection) -> float:
    """ADU of this frame to e-/pix/s (the amplifiers' mean gain)."""
    gain = float(np.mean([amp.gain for amp in AMPLIFIERS]))
    return gain / frame.darktime if frame.darktime > 0 else 0.0


def _tile_name(amp: int, row: int, col: int) -> str:
    n_rows, n_cols = TILE_GRID
    return (
        f"amplifier {amp + 1}, row band {row + 1}/{n_rows}, "
        f"column band {col + 1}/{n_cols}"
    )

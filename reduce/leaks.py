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
scaled up to the block's measured scatter (the median absolute residual of
all tiles of all frames, a robust figure that one leaking frame does not
move); with 3 or 4 frames the statistical model alone is used.

A frame is a leak suspect when

* its mean excess over all tiles (a uniform leak) is above ``leak_nsigma``
  errors of that mean, whose floor term does not average down; or
* one tile's excess (a lit edge, corner or gradient) is above
  ``leak_tile_nsigma`` errors: 5.5 by default, for 64 tiles x N frames tested
  (a false alarm in about 10^-5 blocks of 7 frames of Gaussian noise).

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
    inflation = _block_scatter(levels, errors, scale)
    suspects, uniform, tile = [], [], []
    for k, frame in enumerate(frames):
        verdict = _judge(
            k, frame, (levels, errors, offsets), scale, inflation, settings
        )
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


def _block_scatter(
    levels: npt.NDArray[np.float64],
    errors: npt.NDArray[np.float64],
    scale: npt.NDArray[np.float64] | None,
) -> float:
    """How much the block scatters beyond its statistical errors (>= 1)."""
    n = levels.shape[0]
    if n < SCATTER_FRAMES:
        return 1.0
    norm = levels if scale is None else levels / scale[:, None, None, None]
    centre = np.median(norm, axis=0)
    expected = np.sqrt(errors**2 + _MEDIAN_VARIANCE * np.mean(errors**2, axis=0) / n)
    z = np.abs(norm - centre) / np.maximum(expected, 1e-12)
    return max(1.0, 1.482602218505602 * float(np.median(z)))


def _judge(
    k: int,
    frame: FrameInspection,
    block: tuple[
        npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]
    ],
    scale: npt.NDArray[np.float64] | None,
    inflation: float,
    settings: LeakSettings,
) -> _Verdict:
    """Why frame ``k`` is a leak suspect (or ``""``), and the limits used.

    ``block``: every frame's tile levels, their errors and the amplifiers'
    level-model errors (common to all tiles of an amplifier).
    """
    levels, errors, offsets = block
    others = np.delete(np.arange(levels.shape[0]), k)
    ratio = np.ones(len(others)) if scale is None else scale[k] / scale[others]
    reference = np.median(levels[others] * ratio[:, None, None, None], axis=0)
    law = LAW_ERROR * float(np.mean(np.abs(np.log(ratio))))
    excess = levels[k] - reference
    # per amplifier, the level-model errors: common to all its tiles
    common = offsets[k] ** 2 + _MEDIAN_VARIANCE * np.mean(
        offsets[others] ** 2, axis=0
    ) / len(others)
    own = np.sqrt(
        errors[k] ** 2
        + _MEDIAN_VARIANCE * np.mean(errors[others] ** 2, axis=0) / len(others)
    )
    stat = np.sqrt(own**2 + common[:, None, None])
    floor = (settings.floor + law) * np.abs(reference)
    tile_sigma = inflation * np.hypot(stat, floor)
    weights = 1.0 / np.maximum(own, 1e-12) ** 2
    mean_excess = float(np.sum(weights * excess) / np.sum(weights))
    amp_weight = weights.sum(axis=(1, 2)) / weights.sum()
    mean_sigma = inflation * math.sqrt(
        1.0 / float(np.sum(weights))
        + float(np.sum(amp_weight**2 * common))
        + ((settings.floor + law) * float(np.mean(reference))) ** 2
    )
    to_rate = _to_rate(frame)
    at = (
        f" at {frame.temperature:.1f} K"
        if scale is not None and frame.temperature is not None
        else " (temperature unknown: compared without the dark-current law)"
    )
    limits = (
        settings.nsigma * mean_sigma * to_rate,
        settings.tile_nsigma * float(np.median(tile_sigma)) * to_rate,
    )
    if mean_excess > settings.nsigma * mean_sigma:
        return _Verdict(
            f"{frame.name}: light leak suspected, {mean_excess * to_rate:.3g} e-/pix/s "
            f"({mean_excess:.3g} ADU) above the other frames over the whole "
            f"detector{at} (limit {settings.nsigma * mean_sigma * to_rate:.3g} "
            f"e-/pix/s, {settings.nsigma:g} sigma of the block's scatter)",
            *limits,
        )
    z = excess / tile_sigma
    worst = np.unravel_index(int(np.argmax(z)), z.shape)
    if z[worst] > settings.tile_nsigma:
        amp, row, col = (int(i) for i in worst)
        return _Verdict(
            f"{frame.name}: light leak suspected, "
            f"{excess[worst] * to_rate:.3g} e-/pix/s ({excess[worst]:.3g} ADU) "
            f"above the other frames in {_tile_name(amp, row, col)}{at} (limit "
            f"{settings.tile_nsigma * tile_sigma[worst] * to_rate:.3g} e-/pix/s, "
            f"{settings.tile_nsigma:g} sigma of the block's scatter)",
            *limits,
        )
    return _Verdict("", *limits)


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

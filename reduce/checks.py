"""Checks on the set of frames of a block, before they are combined.

* simulated and real frames are never mixed (``SIMULATE`` keyword);
* frames the sequencer marked invalid (``INTLKOK = F``) are excluded;
* every frame must have the same exposure time (within a tolerance);
* light leak: a dark frame whose signal exceeds the other frames' of its
  block, over the whole detector or in a tile of it, by more than the
  block's scatter allows is excluded (:mod:`reduce.leaks`); a frame that is
  only warmer than the others is not a leak (the dark-current law, doubling
  every ``doubling_k`` kelvin, when the temperatures are known), nor is a
  block that is warm throughout (the QA judges its dark current).

``doubling_k`` defaults to 2.7 K: for silicon at about 163 K the dark current
(proportional to T^1.5 exp(-Eg / 2kT), Eg about 1.16 eV) grows by
d ln D / dT = 1.5 / T + Eg / (2 k T^2), about 0.25 per kelvin, that is twice
every 2.7 K. The 6-7 K rule of thumb holds near room temperature only.

Excluded frames are reported (they make the QA flag PARTIAL), not errors;
too few frames left is an error.
"""

from __future__ import annotations

import enum
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reduce.errors import InputError, SettingsError
from reduce.frames import FrameInspection
from reduce.geometry import AMPLIFIERS
from reduce.leaks import LeakScan, LeakSettings, find_leaks
from reduce.rawframe import CCD_TEMPERATURE_KEYS

log = logging.getLogger(__name__)

_KEYWORD = re.compile(r"[A-Z0-9_-]{1,8}")


class Exclusion(enum.Enum):
    """Why a frame was left out of the combination."""

    INTERLOCK = "interlock"
    LIGHT_LEAK = "light_leak"


@dataclass(frozen=True)
class Excluded:
    """One frame left out, and why (a sentence naming the file)."""

    name: str
    kind: Exclusion
    reason: str


@dataclass(frozen=True, kw_only=True)
class FrameCheckConfig:
    """Settings of the frame-set checks.

    Attributes
    ----------
    exptime_rtol
        Largest relative difference of EXPTIME between frames.
    leak_nsigma
        A frame's mean excess over the other frames above this many errors
        is a uniform leak.
    leak_tile_nsigma
        One tile's excess above this many errors is a structured leak.
    leak_floor
        Fraction of the dark signal that honest frames may differ by
        (temperature jitter, glow), added to the statistical errors.
    reference_k
        Temperature at which the dark-current law is referred, kelvin.
    doubling_k
        Dark current doubles every this many kelvin.
    temperature_keys
        Header keywords of the CCD temperature, searched in order
        (:func:`reduce.rawframe.ccd_temperature`: the unit from the card's
        ``[K]``/``[C]`` comment or the keyword's definition).
    """

    exptime_rtol: float = 1e-3
    leak_nsigma: float = 5.0
    leak_tile_nsigma: float = 5.5
    leak_floor: float = 0.01
    reference_k: float = 163.0
    doubling_k: float = 2.7
    temperature_keys: tuple[str, ...] = CCD_TEMPERATURE_KEYS

    def __post_init__(self) -> None:
        bad = [k for k in self.temperature_keys if not _KEYWORD.fullmatch(k)]
        if bad or not self.temperature_keys:
            raise SettingsError(
                f"checks.temperature_keys {list(self.temperature_keys)}; expected "
                "1 or more FITS keywords (up to 8 of A-Z 0-9 _ -), e.g. ['CCDTEMP0']"
            )
        for name in (
            "exptime_rtol",
            "leak_nsigma",
            "leak_tile_nsigma",
            "leak_floor",
            "doubling_k",
        ):
            if not getattr(self, name) > 0:
                raise SettingsError(
                    f"checks.{name} must be > 0, got {getattr(self, name)}"
                )


def check_provenance(frames: Sequence[FrameInspection], where: str) -> None:
    """Refuse a block mixing simulated and real frames."""
    simulated = [f.name for f in frames if f.simulated]
    if simulated and len(simulated) != len(frames):
        real = [f.name for f in frames if not f.simulated]
        raise InputError(
            where,
            f"mixes simulated frames ({', '.join(simulated)}) with real ones "
            f"({', '.join(real)}); reduce them in separate blocks",
        )


def check_exposure_times(
    frames: Sequence[FrameInspection], config: FrameCheckConfig, where: str
) -> float:
    """All frames must share EXPTIME; returns it, seconds."""
    times = np.array([f.exptime for f in frames])
    ref = float(np.median(times))
    tolerance = config.exptime_rtol * max(ref, 1.0)
    odd = [f for f in frames if abs(f.exptime - ref) > tolerance]
    if odd:
        listing = ", ".join(f"{f.name} ({f.exptime:g} s)" for f in odd)
        raise InputError(
            where,
            f"mixed exposure times: {listing} differ from the block's {ref:g} s; "
            "combine frames of one exposure time only",
        )
    return ref


def block_temperature(frames: Sequence[FrameInspection]) -> float | None:
    """The median CCD temperature of the frames, K; None if one is unknown."""
    temps = [f.temperature for f in frames]
    if not temps or any(t is None for t in temps):
        return None
    return float(np.median([t for t in temps if t is not None]))


def temperature_spread(frames: Sequence[FrameInspection]) -> float | None:
    """The highest less the lowest CCD temperature of the frames, K; None if
    one is unknown."""
    temps = [f.temperature for f in frames]
    if not temps or any(t is None for t in temps):
        return None
    known = [t for t in temps if t is not None]
    return float(max(known) - min(known))


def frame_rate(frame: FrameInspection) -> float:
    """A frame's mean dark rate over both amplifiers, e-/pix/s."""
    rates = [
        level * amp.gain / frame.darktime
        for level, amp in zip(frame.sample_level, AMPLIFIERS, strict=True)
    ]
    return float(np.mean(rates))


def find_exclusions(
    frames: Sequence[FrameInspection], dark: bool, config: FrameCheckConfig
) -> tuple[list[Excluded], LeakScan | None]:
    """Frames to leave out: interlock failures, then (darks) light leaks; and
    the light-leak check's findings (None: not run, a bias or < 3 frames)."""
    excluded = [
        Excluded(
            f.name,
            Exclusion.INTERLOCK,
            f"{f.name}: marked invalid by the sequencer (INTLKOK = F"
            + (f": {f.interlock_reason})" if f.interlock_reason else ")"),
        )
        for f in frames
        if not f.interlock_ok
    ]
    if not dark:
        return excluded, None
    valid = [f for f in frames if f.interlock_ok and f.darktime > 0]
    settings = LeakSettings(
        nsigma=config.leak_nsigma,
        tile_nsigma=config.leak_tile_nsigma,
        floor=config.leak_floor,
        reference_k=config.reference_k,
        doubling_k=config.doubling_k,
    )
    scan = find_leaks(valid, settings)
    if scan is not None:
        excluded += [
            Excluded(s.name, Exclusion.LIGHT_LEAK, s.reason) for s in scan.suspects
        ]
    return excluded, scan


@dataclass(frozen=True, eq=False)  # holds inspections: compare fields explicitly
class Selection:
    """A block's frames sorted by the checks: those combined, those left out.

    Attributes
    ----------
    used
        Frames to combine, in the block's order.
    excluded
        Frames left out, with the reason.
    exptime
        The block's exposure time, seconds (:func:`check_exposure_times`).
    leak_scan
        The light-leak check's findings (None: a bias, or fewer than 3
        frames).
    """

    used: tuple[FrameInspection, ...]
    excluded: tuple[Excluded, ...]
    exptime: float
    leak_scan: LeakScan | None = None

    @property
    def darktime(self) -> float:
        """Median DARKTIME of the frames used, seconds."""
        return float(np.median([f.darktime for f in self.used]))


def select_frames(
    frames: Sequence[FrameInspection],
    dark: bool,
    config: FrameCheckConfig,
    where: str,
) -> Selection:
    """The frame-set checks, in order: provenance, exposure times, exclusions.

    The exposure times are those of the valid frames (all of them when none
    is valid). Too few frames left is the caller's check
    (:func:`require_frames`), once it has recorded the exclusions.

    Raises
    ------
    InputError
        Simulated frames mixed with real ones, or exposure times that differ.
    """
    check_provenance(frames, where)
    valid = [f for f in frames if f.interlock_ok] or list(frames)
    exptime = check_exposure_times(valid, config, where)
    excluded, scan = find_exclusions(frames, dark, config)
    out = {e.name for e in excluded}
    used = tuple(f for f in frames if f.name not in out)
    return Selection(used, tuple(excluded), exptime, scan)


def require_frames(n_used: int, minimum: int, where: str, excluded: int) -> None:
    """Raise unless at least ``minimum`` frames remain to combine."""
    if n_used < minimum or n_used < 1:
        extra = f" after excluding {excluded}" if excluded else ""
        raise InputError(
            where,
            f"{n_used} usable frame(s){extra}, fewer than the minimum "
            f"{max(minimum, 1)}; take more frames or lower --min-frames",
        )


def finite_or_none(value: float) -> float | None:
    """JSON-friendly number: None for NaN/inf."""
    return value if math.isfinite(value) else None

"""Quality-control figures of a master dark (or bias), and the QA verdict.

All figures are per amplifier (amplifier 1 = trimmed rows 0:2056, gain
1.73 e-/ADU; amplifier 2 = rows 2056:4112, 1.6 e-/ADU):

* dark current, e-/pix/h: the amplifier's bulk dark signal, the median of
  its smooth background plus the clipped mean excess of its unflagged pixels
  over that background (:mod:`reduce.hotpixels`), x gain / DARKTIME x 3600;
  the glow near the readout corner is its own figure, not dark current;
* glow, e-/pix/h: the smooth background's highest block above the bulk;
* read noise, e-: robust scatter of the overscan pixels about each row's
  overscan model (median over frames) x gain, or, from two bias frames,
  robust scatter of their difference / sqrt(2) x gain;
* hot pixels, hot columns and cosmic-ray residuals: a data-quality mask
  (:class:`~reduce.hotpixels.DQ` bits), darks only: a master bias has no
  dark rate, and its fixed 2D structure is what it is made to remove;
* overscan level (ADU), drift between frames and slope within a frame (ADU);
* a QA flag GOOD / PARTIAL / BAD with the reasons listed, from limits that
  are multiples of the detector's expected values (:class:`Expected`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from reduce.errors import InputError
from reduce.geometry import AMPLIFIERS, TRIMMED_SHAPE, Amplifier
from reduce.hotpixels import (
    DQ,
    AmpDefects,
    DefectSettings,
    FramePixels,
    Glow,
    find_defects,
    glow_of,
)
from reduce.overscan import OverscanModel, clipped_std
from reduce.qalimits import QAFlag, QALimit, QCThresholds

log = logging.getLogger(__name__)

SECONDS_PER_HOUR = 3600.0

DEFAULT_THRESHOLDS = QCThresholds()
"""The QC's settings and limits when none are given."""


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class HotPixels:
    """The DQ mask of a master and what each amplifier's search found.

    Attributes
    ----------
    mask
        DQ mask, uint8, trimmed shape (bits of :class:`~reduce.hotpixels.DQ`).
    amplifiers
        Per amplifier, :class:`~reduce.hotpixels.AmpDefects` (empty for a
        master bias: nothing is searched).
    """

    mask: npt.NDArray[np.uint8]
    amplifiers: tuple[AmpDefects, ...]

    @property
    def n_hot_pixels(self) -> int:
        """Pixels with the HOT_PIXEL bit."""
        return sum(a.hot_pixels for a in self.amplifiers)

    @property
    def hot_columns(self) -> tuple[tuple[int, int], ...]:
        """``(amplifier, column)`` of the hot columns."""
        return tuple(
            (amp.number, c)
            for amp, a in zip(AMPLIFIERS, self.amplifiers, strict=False)
            for c in a.hot_columns
        )

    @property
    def hot_fraction(self) -> float:
        """Fraction of the pixels flagged hot (pixel or column)."""
        hot = np.uint8(DQ.HOT_PIXEL | DQ.HOT_COLUMN)
        return int(np.count_nonzero(self.mask & hot)) / self.mask.size

    @property
    def flagged_fraction(self) -> float:
        """Fraction of the pixels with any DQ bit."""
        return int(np.count_nonzero(self.mask)) / self.mask.size


def detect_hot_pixels(
    master: npt.NDArray[np.floating],
    thresholds: QCThresholds = DEFAULT_THRESHOLDS,
    npix: npt.NDArray[np.integer] | None = None,
    *,
    darktime_s: float | None = None,
    read_noise_adu: tuple[float, float] = (2.0, 2.0),
    frame_pixels: FramePixels | None = None,
) -> HotPixels:
    """The DQ mask of a master: defects of a dark, NO_DATA of any master.

    Parameters
    ----------
    master
        Trimmed master, bias-subtracted for a dark, ADU.
    thresholds
        The hot cuts.
    npix
        Frames used per pixel (MAP); pixels with 0 get NO_DATA.
    darktime_s
        DARKTIME, seconds; None (a bias) searches no defect.
    read_noise_adu
        Read noise of one frame per amplifier, ADU (the residual test).
    frame_pixels
        The frames' values at pixels (None: no cosmic-ray residual test).
    """
    _check_trimmed(master, "master")
    # Zeroed by each amplifier's thread: writing fresh pages first costs one
    # page fault each (np.zeros' pages would fault twice).
    mask = np.empty(TRIMMED_SHAPE, dtype=np.uint8)

    def one(index: int) -> AmpDefects | None:
        amp = AMPLIFIERS[index]
        amp_mask = mask[amp.trimmed_rows]
        amp_mask.fill(0)
        found = None
        if darktime_s is not None and darktime_s > 0:
            settings = DefectSettings(
                darktime_s=darktime_s,
                hot_rate_e_s=thresholds.hot_rate_e_s,
                hot_column_rate_e_s=thresholds.hot_column_rate_e_s,
                hot_nsigma=thresholds.hot_nsigma,
                read_noise_adu=read_noise_adu[index],
            )
            region = master[amp.trimmed_rows]
            found = find_defects(region, amp_mask, amp, settings, frame_pixels)
        counts = None if npix is None else np.asarray(npix)[amp.trimmed_rows]
        if counts is not None and (any(counts.strides) or counts.flat[0] == 0):
            # (a MAP of one value broadcast, the median's, has no empty pixel
            # unless that value is 0: no 8 MB comparison needed)
            amp_mask[counts == 0] |= np.uint8(DQ.NO_DATA)
        return found

    with ThreadPoolExecutor(len(AMPLIFIERS)) as pool:
        found = list(pool.map(one, range(len(AMPLIFIERS))))
    return HotPixels(mask, tuple(a for a in found if a is not None))


def _check_trimmed(image: npt.NDArray[Any], what: str) -> None:
    if image.shape != TRIMMED_SHAPE:
        raise InputError(what, f"shape {image.shape}, expected {TRIMMED_SHAPE}")


def dark_current(found: AmpDefects, amp: Amplifier, darktime_s: float) -> float:
    """Bulk dark current of one amplifier, e-/pix/h (module docstring)."""
    if not darktime_s > 0:
        raise InputError("master dark", f"DARKTIME={darktime_s} s, expected > 0")
    bulk = found.background.bulk + found.mean_excess_adu
    return bulk * amp.gain / darktime_s * SECONDS_PER_HOUR


def dark_rate_image(
    master: npt.NDArray[np.floating], darktime_s: float
) -> npt.NDArray[np.float32]:
    """Per-pixel dark-current rate, e-/s (gain of each amplifier applied)."""
    _check_trimmed(master, "master dark")
    return dark_rate_rows(master, 0, darktime_s)


def dark_rate_rows(
    rows: npt.NDArray[np.floating], row0: int, darktime_s: float
) -> npt.NDArray[np.float32]:
    """:func:`dark_rate_image` of trimmed rows ``row0:row0 + len(rows)``, e-/s.

    Each row gets the gain of the amplifier that read it (a band may straddle
    the amplifiers' boundary).
    """
    if not darktime_s > 0:
        raise InputError("master dark", f"DARKTIME={darktime_s} s, expected > 0")
    rate = np.empty(rows.shape, dtype=np.float32)
    row1 = row0 + rows.shape[0]
    for amp in AMPLIFIERS:
        lo = max(row0, amp.trimmed_rows.start) - row0
        hi = min(row1, amp.trimmed_rows.stop) - row0
        if lo < hi:
            np.multiply(
                rows[lo:hi],
                np.float32(amp.gain / darktime_s),
                out=rate[lo:hi],
                casting="same_kind",
            )
    return rate


def read_noise_from_overscan(models: Sequence[OverscanModel], amp: Amplifier) -> float:
    """Read noise of one amplifier from overscan residuals, e- (median of frames)."""
    values = [m.residual_rms for m in models if m.amplifier == amp.number]
    if not values:
        raise InputError("frames", f"no overscan model for amplifier {amp.number}")
    return float(np.median(values)) * amp.gain


def read_noise_from_difference(
    frame_a: npt.NDArray[np.floating], frame_b: npt.NDArray[np.floating], amp: Amplifier
) -> float:
    """Read noise from two trimmed bias frames, e-: clipped std(a - b) / sqrt(2)."""
    _check_trimmed(frame_a, "bias frame a")
    _check_trimmed(frame_b, "bias frame b")
    diff = np.asarray(frame_a[amp.trimmed_rows], np.float64) - frame_b[amp.trimmed_rows]
    return clipped_std(diff) / math.sqrt(2.0) * amp.gain


@dataclass(frozen=True)
class OverscanStats:
    """Overscan behaviour of one amplifier over a set of frames, ADU.

    Attributes
    ----------
    level
        Median over frames of the mean overscan level.
    drift
        How much the overscan level's course along the readout changes
        between frames once each frame's own level is removed: the largest,
        over the rows, of the spread across frames of ``level_model - level``
        (0 for one frame). Per-frame offsets, which the overscan correction
        removes exactly, are not drift.
    slope
        The largest excursion of the level within one frame (maximum minus
        minimum of its level model along the rows).
    """

    level: float
    drift: float
    slope: float


def overscan_stats(models: Sequence[OverscanModel], amp: Amplifier) -> OverscanStats:
    """Overscan level, drift between frames and slope within frames."""
    own = [m for m in models if m.amplifier == amp.number]
    if not own:
        raise InputError("frames", f"no overscan model for amplifier {amp.number}")
    levels = np.array([m.level for m in own])
    shapes = np.stack([m.level_model - m.level for m in own])
    return OverscanStats(
        level=float(np.median(levels)),
        drift=float(np.max(shapes.max(axis=0) - shapes.min(axis=0))),
        slope=float(np.max(shapes.max(axis=1) - shapes.min(axis=1))),
    )


@dataclass(frozen=True)
class AmplifierQC:
    """QC figures of one amplifier (None: not measured for this master).

    Attributes
    ----------
    amplifier
        1 or 2.
    dark_current_e_pix_h
        Bulk dark current, e-/pix/h (darks).
    read_noise_e
        Read noise, e-.
    overscan
        Overscan level, drift and slope, ADU.
    hot_pixels, hot_columns
        Pixels flagged hot outside hot columns, and hot columns (darks; 0
        for a bias).
    hot_column_pixels
        Pixels of the hot column segments (darks).
    cosmic_ray_pixels
        Pixels hit by a cosmic ray in some frame (3 frames or more).
    cosmic_residuals
        Pixels whose median was hit (darks of 3 frames or more).
    glow
        The background's peak above the bulk (darks).
    hot_rate_limit_e_s
        The hot cut reached, e-/s (darks).
    """

    amplifier: int
    dark_current_e_pix_h: float | None
    read_noise_e: float
    overscan: OverscanStats
    hot_pixels: int
    hot_columns: int
    cosmic_ray_pixels: int | None = None
    hot_column_pixels: int | None = None
    cosmic_residuals: int | None = None
    glow: Glow | None = None
    hot_rate_limit_e_s: float | None = None


@dataclass(frozen=True)
class QAReport:
    """QC figures and the verdict.

    Attributes
    ----------
    flag
        GOOD, PARTIAL or BAD.
    reasons
        One sentence per failed check (empty when GOOD).
    amplifiers
        Figures per amplifier.
    n_frames
        Frames combined.
    flagged_fraction
        Fraction of pixels with any DQ bit.
    """

    flag: QAFlag
    reasons: tuple[str, ...]
    amplifiers: tuple[AmplifierQC, ...]
    n_frames: int
    flagged_fraction: float
    thresholds: QCThresholds = field(repr=False)
    temperature_k: float | None = None
    hot_fraction: float = 0.0
    cosmic_residual_fraction: float | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready description (for result.json / task.json)."""
        return {
            "flag": self.flag.value,
            "reasons": list(self.reasons),
            "n_frames": self.n_frames,
            "flagged_fraction": self.flagged_fraction,
            "amplifiers": [asdict(a) for a in self.amplifiers],
            "thresholds": asdict(self.thresholds),
        }


def _judge(
    name: str, value: float | None, limit: QALimit, unit: str, scale: float = 1.0
) -> tuple[int, str]:
    """0 = fine, 1 = warn, 2 = bad, with the sentence saying why.

    The limits are ``limit`` x ``scale`` (``scale``: an expected value, or 1).
    """
    if value is None or not math.isfinite(value):
        return 0, ""
    unit = f" {unit}" if unit else ""
    for level, word, factor in ((2, "bad", limit.bad), (1, "warn", limit.warn)):
        if factor is not None and value > factor * scale:
            of = f" ({factor:g} x expected {scale:.4g})" if scale != 1.0 else ""
            bound = f"{factor * scale:.4g}{unit}"
            return level, f"{name} {value:.4g}{unit} > {word} limit {bound}{of}"
    return 0, ""


def _amplifier_verdicts(
    a: AmplifierQC, thresholds: QCThresholds, at: str
) -> list[tuple[int, str]]:
    """The dark current, read noise and drift verdicts of one amplifier."""
    tag = f"amplifier {a.amplifier}"
    expected_rn_adu = thresholds.expected_read_noise / AMPLIFIERS[a.amplifier - 1].gain
    level, text = _judge(
        f"{tag} dark current",
        a.dark_current_e_pix_h,
        thresholds.dark_current,
        "e-/pix/h",
        thresholds.expected_dark_current,
    )
    return [
        (level, text + at if text else text),
        _judge(
            f"{tag} read noise",
            a.read_noise_e,
            thresholds.read_noise,
            "e-",
            thresholds.expected_read_noise,
        ),
        _judge(
            f"{tag} overscan drift",
            a.overscan.drift,
            thresholds.overscan_drift,
            "ADU",
            expected_rn_adu,
        ),
    ]


def assess(
    amplifiers: Sequence[AmplifierQC],
    n_frames: int,
    hot: HotPixels | None = None,
    thresholds: QCThresholds = DEFAULT_THRESHOLDS,
    temperature_k: float | None = None,
    temperature_spread_k: float | None = None,
) -> QAReport:
    """Turn QC figures into a QA flag with its reasons.

    ``hot``: the DQ mask (None: no pixel judged). ``temperature_k``: the
    block's CCD temperature, said with the dark current (a warm detector is
    told from a leak by it), or None: unknown. ``temperature_spread_k``:
    the highest less the lowest frame's (None: not judged).
    """
    at = (
        f" at {temperature_k:.1f} K"
        if temperature_k is not None
        else " (CCD temperature unknown)"
    )
    verdicts = [v for a in amplifiers for v in _amplifier_verdicts(a, thresholds, at)]
    hot_fraction = hot.hot_fraction if hot is not None else 0.0
    residuals = [a.cosmic_residuals for a in amplifiers]
    residual_fraction = (
        sum(r for r in residuals if r is not None)
        / (TRIMMED_SHAPE[0] * TRIMMED_SHAPE[1])
        if any(r is not None for r in residuals)
        else None
    )
    verdicts += [
        _judge("hot pixel fraction", hot_fraction, thresholds.hot_fraction, ""),
        _judge(
            "cosmic-ray residual fraction (median hit; more frames needed)",
            residual_fraction,
            thresholds.cosmic_residual_fraction,
            "",
        ),
        _judge(
            "CCD temperature spread across the frames",
            temperature_spread_k,
            thresholds.temperature_spread,
            "K",
        ),
    ]
    worst = max((level for level, _ in verdicts), default=0)
    return QAReport(
        flag=(QAFlag.GOOD, QAFlag.PARTIAL, QAFlag.BAD)[worst],
        reasons=tuple(text for level, text in verdicts if level > 0),
        amplifiers=tuple(amplifiers),
        n_frames=n_frames,
        flagged_fraction=hot.flagged_fraction if hot is not None else 0.0,
        thresholds=thresholds,
        temperature_k=temperature_k,
        hot_fraction=hot_fraction,
        cosmic_residual_fraction=residual_fraction,
    )


def qc_master(
    master: npt.NDArray[np.floating],
    models: Sequence[OverscanModel],
    n_frames: int,
    darktime_s: float | None,
    thresholds: QCThresholds = DEFAULT_THRESHOLDS,
    npix: npt.NDArray[np.integer] | None = None,
    cosmic_ray_pixels: Sequence[int] | None = None,
    temperature_k: float | None = None,
    frame_pixels: FramePixels | None = None,
    temperature_spread_k: float | None = None,
) -> tuple[QAReport, HotPixels]:
    """All QC figures of a master, and the DQ mask.

    Parameters
    ----------
    master
        Trimmed master, bias-subtracted for a dark, ADU.
    models
        Overscan models of all input frames (both amplifiers).
    n_frames
        Frames combined.
    darktime_s
        DARKTIME, seconds; None (or <= 0, a bias) measures no dark figure.
    thresholds
        Detection settings and limits.
    npix
        MAP, for the NO_DATA bit.
    cosmic_ray_pixels
        Per amplifier, pixels hit by cosmic rays in some frame (counted by
        the master's band sink, :class:`reduce.masterband.MasterBand`);
        None when not measured (fewer than 3 frames).
    temperature_k
        The block's CCD temperature (None: unknown).
    frame_pixels
        The frames' values at pixels, for the cosmic-ray residual test.
    temperature_spread_k
        The frames' CCD temperature spread, K (darks; None: not judged).
    """
    dark = darktime_s is not None and darktime_s > 0
    read_noise_adu = tuple(
        read_noise_from_overscan(models, amp) / amp.gain for amp in AMPLIFIERS
    )
    hot = detect_hot_pixels(
        master,
        thresholds,
        npix,
        darktime_s=darktime_s if dark else None,
        read_noise_adu=(read_noise_adu[0], read_noise_adu[1]),
        frame_pixels=frame_pixels if n_frames >= 3 else None,
    )
    amps = []
    for index, amp in enumerate(AMPLIFIERS):
        found = hot.amplifiers[index] if dark and darktime_s is not None else None
        amps.append(
            AmplifierQC(
                amplifier=amp.number,
                dark_current_e_pix_h=(
                    dark_current(found, amp, darktime_s)
                    if found is not None and darktime_s is not None
                    else None
                ),
                read_noise_e=read_noise_adu[index] * amp.gain,
                overscan=overscan_stats(models, amp),
                hot_pixels=found.hot_pixels if found else 0,
                hot_columns=len(found.hot_columns) if found else 0,
                cosmic_ray_pixels=(
                    None if cosmic_ray_pixels is None else cosmic_ray_pixels[index]
                ),
                hot_column_pixels=found.hot_column_pixels if found else None,
                cosmic_residuals=found.cosmic_residuals if found else None,
                glow=(
                    glow_of(found.background, amp, darktime_s)
                    if found is not None and darktime_s is not None
                    else None
                ),
                hot_rate_limit_e_s=found.hot_rate_limit_e_s if found else None,
            )
        )
    spread = temperature_spread_k if dark else None
    report = assess(
        amps, n_frames, hot if dark else None, thresholds, temperature_k, spread
    )
    return report, hot

"""Quality-control figures of a master dark (or bias), as pure functions.

All figures are per amplifier (amplifier 1 = trimmed rows 0:2056, gain
1.73 e-/ADU; amplifier 2 = rows 2056:4112, 1.6 e-/ADU):

* dark current, e-/pix/h: clipped mean of the bias-subtracted master dark
  over every 4th row (hot pixels and columns excluded) x gain / DARKTIME x 3600;
* read noise, e-: robust scatter of the overscan pixels about each row's
  overscan model (median over frames) x gain, or, from two bias frames,
  robust scatter of their difference / sqrt(2) x gain;
* hot pixels and hot columns: a data-quality mask (:class:`DQ` bits);
* overscan level (ADU), drift between frames and slope within a frame (ADU);
* a QA flag GOOD / PARTIAL / BAD from explicit warn/bad thresholds, with the
  reasons listed.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from reduce.errors import InputError, SettingsError
from reduce.geometry import AMPLIFIERS, TRIMMED_SHAPE, Amplifier
from reduce.overscan import OverscanModel, clipped_std, robust_std

log = logging.getLogger(__name__)

SECONDS_PER_HOUR = 3600.0


class DQ(enum.IntFlag):
    """Bits of the data-quality mask (uint8 image, 0 = good)."""

    HOT_PIXEL = 1
    """Pixel above the amplifier's level by more than ``hot_nsigma`` sigma."""
    HOT_COLUMN = 2
    """Column whose mean (over the amplifier's rows) is anomalously high."""
    NO_DATA = 4
    """No frame contributed to the pixel (MAP == 0)."""


DQ_DESCRIPTIONS = {
    DQ.HOT_PIXEL: "hot pixel: above amplifier level by > hot_nsigma robust sigma",
    DQ.HOT_COLUMN: "hot column: mean of the column's other pixels above the "
    "typical column by > max(hot_nsigma sigma, hot_column_min_adu)",
    DQ.NO_DATA: "no data: no frame used (MAP == 0)",
}


class QAFlag(enum.Enum):
    """Overall verdict on a master, numina's QC values."""

    GOOD = "GOOD"
    PARTIAL = "PARTIAL"
    BAD = "BAD"


@dataclass(frozen=True)
class QALimit:
    """The QA's warn / bad pair of upper limits on one figure (None: not checked).

    Not :class:`sequencer.engineering.limits.Limit`, which bounds a figure of
    `megara-dark verify` from both sides.
    """

    warn: float | None
    bad: float | None

    def __post_init__(self) -> None:
        if self.warn is not None and self.bad is not None and self.warn > self.bad:
            raise SettingsError(f"qc limit warn={self.warn} exceeds bad={self.bad}")


@dataclass(frozen=True, kw_only=True)
class QCThresholds:
    """Detection settings and QA limits.

    Attributes
    ----------
    hot_nsigma
        Hot-pixel / hot-column threshold, robust sigmas above the level.
    hot_column_min_adu
        A hot column's mean must also exceed the amplifier's typical column
        by this much, ADU (column means scatter very little).
    dark_current
        Limits on the dark current, e-/pix/h.
    read_noise
        Limits on the read noise, e-.
    hot_fraction
        Limits on the fraction of pixels flagged (any DQ bit).
    overscan_drift
        Limits on the overscan drift (:class:`OverscanStats`), ADU.

    The minimum frame count is not a QC limit: fewer usable frames than the
    reduction's ``min_frames`` (``--min-frames``, ``[reduce] min_frames`` of
    a run) is an error, and no master is made.
    """

    hot_nsigma: float = 5.0
    hot_column_min_adu: float = 1.0
    dark_current: QALimit = QALimit(warn=5.0, bad=20.0)
    read_noise: QALimit = QALimit(warn=4.5, bad=8.0)
    hot_fraction: QALimit = QALimit(warn=0.001, bad=0.01)
    overscan_drift: QALimit = QALimit(warn=5.0, bad=20.0)

    def __post_init__(self) -> None:
        if self.hot_nsigma <= 0:
            raise SettingsError(f"qc.hot_nsigma must be > 0, got {self.hot_nsigma}")


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class HotPixels:
    """Hot-pixel detection result.

    Attributes
    ----------
    mask
        DQ mask, uint8, trimmed shape (bits of :class:`DQ`).
    n_hot_pixels
        Pixels with the HOT_PIXEL bit.
    hot_columns
        ``(amplifier, column)`` of the hot columns.
    hot_per_amplifier
        Pixels with the HOT_PIXEL bit, per amplifier.
    flagged_pixels
        Pixels with any bit set.
    """

    mask: npt.NDArray[np.uint8]
    n_hot_pixels: int
    hot_columns: tuple[tuple[int, int], ...]
    hot_per_amplifier: tuple[int, ...]
    flagged_pixels: int


def _check_trimmed(image: npt.NDArray[Any], what: str) -> None:
    if image.shape != TRIMMED_SHAPE:
        raise InputError(what, f"shape {image.shape}, expected {TRIMMED_SHAPE}")


CHUNK_ROWS = 128
"""Rows processed at a time by the QC passes (temporaries stay in cache)."""

DARK_ROW_STEP = 4
"""The dark current is the clipped mean over every this-many-th row."""


def _column_median(sample: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Median of each column of ``sample`` (``np.median(sample, axis=0)``).

    For an odd number of rows, one partition of the transposed sample (a
    contiguous copy): the same values as ``np.median``, several times faster.
    """
    rows = sample.shape[0]
    if rows % 2 == 0:
        return np.median(sample, axis=0).astype(np.float32)
    by_column = np.ascontiguousarray(sample.T)
    middle: npt.NDArray[np.float32] = np.partition(by_column, rows // 2, axis=1)[
        :, rows // 2
    ]
    return middle.astype(np.float32)


def _amp_hot_pixels(
    region: npt.NDArray[np.float32],
    amp_mask: npt.NDArray[np.uint8],
    thresholds: QCThresholds,
) -> npt.NDArray[np.intp]:
    """Set HOT_PIXEL and HOT_COLUMN bits of one amplifier; its hot columns."""
    k = thresholds.hot_nsigma
    level = float(np.median(region[::4, ::4]))  # 1/16 of the pixels
    sigma = clipped_std(region[::7, ::7])  # a sample is plenty for the scale
    hot_cut, near_cut = np.float32(level + k * sigma), np.float32(k * sigma)
    # Column means, clipped about each column's own median (so isolated hot
    # pixels drop out but a hot column keeps its pixels): continuous, unlike
    # medians of quantised values, so their scatter is a usable scale.
    col_median = _column_median(region[::8])  # robust
    col_sum = np.zeros(region.shape[1], dtype=np.float64)
    col_count = np.zeros(region.shape[1], dtype=np.int64)
    for r0 in range(0, region.shape[0], CHUNK_ROWS):
        chunk = region[r0 : r0 + CHUNK_ROWS]
        rows_mask = amp_mask[r0 : r0 + CHUNK_ROWS]
        hot = chunk > hot_cut
        np.bitwise_or(rows_mask, hot.view(np.uint8), out=rows_mask)  # HOT_PIXEL=1
        work = np.subtract(chunk, col_median)
        np.abs(work, out=work)
        near = np.less_equal(work, near_cut, out=hot)
        col_count += np.add.reduce(near.view(np.uint8), axis=0, dtype=np.int32)
        np.multiply(chunk, near, out=work)
        col_sum += work.sum(axis=0)
    col_mean = col_sum / np.maximum(col_count, 1)
    col_level = float(np.median(col_mean))
    col_cut = max(k * robust_std(col_mean), thresholds.hot_column_min_adu)
    hot_cols = np.flatnonzero(col_mean > col_level + col_cut)
    amp_mask[:, hot_cols] |= np.uint8(DQ.HOT_COLUMN)
    return hot_cols


def detect_hot_pixels(
    master: npt.NDArray[np.floating],
    thresholds: QCThresholds = QCThresholds(),
    npix: npt.NDArray[np.integer] | None = None,
    threads: int = 2,
) -> HotPixels:
    """Flag hot pixels and hot columns of a bias-subtracted master dark.

    Parameters
    ----------
    master
        Trimmed master dark, ADU.
    thresholds
        ``hot_nsigma`` and ``hot_column_min_adu`` are used.
    npix
        Frames used per pixel (MAP); pixels with 0 get NO_DATA.
    threads
        The amplifiers are processed on this many threads.

    Returns
    -------
    HotPixels
        The DQ mask and counts.
    """
    _check_trimmed(master, "master dark")
    # Zeroed by each amplifier's thread: writing fresh pages first costs one
    # page fault each; np.zeros' pages would be read (the zero page) before
    # being written, a second fault and a TLB flush on every core.
    mask = np.empty(TRIMMED_SHAPE, dtype=np.uint8)
    frames = np.asarray(npix) if npix is not None else None

    def one(amp: Amplifier) -> tuple[list[tuple[int, int]], int, int]:
        """Hot columns, hot pixels and flagged pixels of one amplifier."""
        region = np.asarray(master[amp.trimmed_rows], dtype=np.float32)
        amp_mask = mask[amp.trimmed_rows]
        amp_mask.fill(0)
        cols = _amp_hot_pixels(region, amp_mask, thresholds)
        n_hot = int(np.count_nonzero(amp_mask & np.uint8(DQ.HOT_PIXEL)))
        if frames is not None:
            amp_mask[frames[amp.trimmed_rows] == 0] |= np.uint8(DQ.NO_DATA)
        flagged = int(np.count_nonzero(amp_mask))
        return [(amp.number, int(c)) for c in cols], n_hot, flagged

    with ThreadPoolExecutor(max(1, min(threads, len(AMPLIFIERS)))) as pool:
        found = list(pool.map(one, AMPLIFIERS))
    return HotPixels(
        mask=mask,
        n_hot_pixels=sum(n for _, n, _ in found),
        hot_columns=tuple(c for cols, _, _ in found for c in cols),
        hot_per_amplifier=tuple(n for _, n, _ in found),
        flagged_pixels=sum(f for _, _, f in found),
    )


def dark_current(
    master: npt.NDArray[np.floating],
    darktime_s: float,
    amp: Amplifier,
    mask: npt.NDArray[np.uint8] | None = None,
    nsigma: float = 5.0,
) -> float:
    """Dark current of one amplifier, e-/pix/h.

    The mean of the unflagged pixels within ``nsigma`` robust sigmas of
    their median (median and sigma from a 1/64 sample), x gain / DARKTIME.
    The mean is taken over every :data:`DARK_ROW_STEP`-th row (over half a
    million pixels per amplifier: its statistical error is far below the
    pixel-to-pixel scatter of the dark current, and a quarter of the time).

    Parameters
    ----------
    master
        Trimmed, bias-subtracted master dark, ADU.
    darktime_s
        DARKTIME of the frames, seconds.
    amp
        The amplifier (rows and gain).
    mask
        DQ mask; flagged pixels are excluded.
    nsigma
        Clipping threshold, robust sigmas.
    """
    if not darktime_s > 0:
        raise InputError("master dark", f"DARKTIME={darktime_s} s, expected > 0")
    region = np.asarray(master[amp.trimmed_rows], dtype=np.float32)
    amp_mask = mask[amp.trimmed_rows] if mask is not None else None
    sample = region[::8, ::8]
    if amp_mask is not None:
        sample = sample[amp_mask[::8, ::8] == 0]
    level = float(np.median(sample))
    cut = nsigma * max(robust_std(sample), 1e-12)
    lo, hi = np.float32(level - cut), np.float32(level + cut)
    total, count = 0.0, 0
    rows = region[::DARK_ROW_STEP]
    rows_mask = amp_mask[::DARK_ROW_STEP] if amp_mask is not None else None
    for r0 in range(0, rows.shape[0], CHUNK_ROWS):
        chunk = rows[r0 : r0 + CHUNK_ROWS]
        keep = (chunk >= lo) & (chunk <= hi)
        if rows_mask is not None:
            keep &= rows_mask[r0 : r0 + CHUNK_ROWS] == 0
        total += float(np.sum(np.where(keep, chunk, np.float32(0)), dtype=np.float64))
        count += int(np.count_nonzero(keep))
    mean = total / max(count, 1)
    return mean * amp.gain / darktime_s * SECONDS_PER_HOUR


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
    """QC figures of one amplifier."""

    amplifier: int
    dark_current_e_pix_h: float | None
    read_noise_e: float
    overscan: OverscanStats
    hot_pixels: int
    hot_columns: int
    cosmic_ray_pixels: int | None = None


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
    name: str, value: float | None, limit: QALimit, unit: str
) -> tuple[int, str]:
    """0 = fine, 1 = warn, 2 = bad, with the sentence saying why."""
    if value is None or not math.isfinite(value):
        return 0, ""
    if limit.bad is not None and value > limit.bad:
        return 2, f"{name} {value:.4g} {unit} > bad limit {limit.bad:g} {unit}"
    if limit.warn is not None and value > limit.warn:
        return 1, f"{name} {value:.4g} {unit} > warn limit {limit.warn:g} {unit}"
    return 0, ""


def assess(
    amplifiers: Sequence[AmplifierQC],
    n_frames: int,
    flagged_fraction: float,
    thresholds: QCThresholds = QCThresholds(),
    temperature_k: float | None = None,
) -> QAReport:
    """Turn QC figures into a QA flag with its reasons.

    ``temperature_k``: the block's CCD temperature, said with the dark
    current (a warm detector is told from a leak by it), or None: unknown.
    """
    at = (
        f" at {temperature_k:.1f} K"
        if temperature_k is not None
        else " (CCD temperature unknown)"
    )
    verdicts: list[tuple[int, str]] = []
    for a in amplifiers:
        tag = f"amplifier {a.amplifier}"
        level, text = _judge(
            f"{tag} dark current",
            a.dark_current_e_pix_h,
            thresholds.dark_current,
            "e-/pix/h",
        )
        verdicts += [
            (level, text + at if text else text),
            _judge(f"{tag} read noise", a.read_noise_e, thresholds.read_noise, "e-"),
            _judge(
                f"{tag} overscan drift",
                a.overscan.drift,
                thresholds.overscan_drift,
                "ADU",
            ),
        ]
    verdicts.append(
        _judge("flagged pixel fraction", flagged_fraction, thresholds.hot_fraction, "")
    )
    worst = max((level for level, _ in verdicts), default=0)
    flag = (QAFlag.GOOD, QAFlag.PARTIAL, QAFlag.BAD)[worst]
    reasons = tuple(text for level, text in verdicts if level > 0)
    return QAReport(
        flag, reasons, tuple(amplifiers), n_frames, flagged_fraction, thresholds
    )


def qc_master(
    master: npt.NDArray[np.floating],
    models: Sequence[OverscanModel],
    n_frames: int,
    darktime_s: float | None,
    thresholds: QCThresholds = QCThresholds(),
    npix: npt.NDArray[np.integer] | None = None,
    cosmic_ray_pixels: Sequence[int] | None = None,
    temperature_k: float | None = None,
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
        DARKTIME, seconds; None (or <= 0, a bias) skips the dark current.
    thresholds
        Detection settings and limits.
    npix
        MAP, for the NO_DATA bit.
    cosmic_ray_pixels
        Per amplifier, pixels hit by cosmic rays in some frame (counted by
        the master's band sink, :class:`reduce.masterband.MasterBand`);
        None when not measured (fewer than 3 frames).
    """
    hot = detect_hot_pixels(master, thresholds, npix)

    def current(amp: Amplifier) -> float | None:
        if darktime_s is None or not darktime_s > 0:
            return None
        return dark_current(master, darktime_s, amp, hot.mask)

    with ThreadPoolExecutor(len(AMPLIFIERS)) as pool:
        currents = list(pool.map(current, AMPLIFIERS))
    amps = []
    for index, (amp, current_e, n_hot) in enumerate(
        zip(AMPLIFIERS, currents, hot.hot_per_amplifier, strict=True)
    ):
        amps.append(
            AmplifierQC(
                amplifier=amp.number,
                dark_current_e_pix_h=current_e,
                read_noise_e=read_noise_from_overscan(models, amp),
                overscan=overscan_stats(models, amp),
                hot_pixels=n_hot,
                hot_columns=sum(1 for a, _ in hot.hot_columns if a == amp.number),
                cosmic_ray_pixels=(
                    None if cosmic_ray_pixels is None else cosmic_ray_pixels[index]
                ),
            )
        )
    flagged = hot.flagged_pixels / hot.mask.size
    return assess(amps, n_frames, flagged, thresholds, temperature_k), hot

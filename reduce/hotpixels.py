"""Defects of a master dark, physically: hot pixels, hot columns, glow, and
the cosmic rays the median could not remove.

Per amplifier:

1. **The smooth background** (:class:`Background`): the mean of each
   :data:`BLOCK` x :data:`BLOCK` block of the master (every other row and
   column) within five sigmas of the block's median, interpolated
   bilinearly between block centres. It carries the bulk dark current and
   the amplifier glow near the readout corner, and no pixel-scale defect
   (the clip leaves them out).
2. **Hot pixels** (:attr:`DQ.HOT_PIXEL`): a dark rate above the background
   by more than ``hot_rate_e_s`` e-/s, and by at least ``hot_nsigma`` of the
   master's noise (at short dark times the noise sets the cut: the figure
   ``hot_rate_limit_e_s`` says which rate was reachable). A physical
   threshold, so the count of one detector does not change with the number
   of frames or the dark time, as a multiple of the master's noise would.
3. **Hot columns** (:attr:`DQ.HOT_COLUMN`): a column's mean excess over the
   background (its hot pixels left out) above ``hot_column_rate_e_s``
   e-/s and ``hot_nsigma`` times the scatter of the column means.
4. **Cosmic-ray residuals** (:attr:`DQ.COSMIC_RESIDUAL`): where most frames
   of a pixel were hit, the median is a hit too. Every hot candidate's
   values in the frames are read back (:data:`FramePixels`): a pixel whose
   median stands above its lowest frame by more than five times that
   frame's noise, or whose two lowest frames differ by that much (every
   frame hit, each by its own ray), is a residual, not a steady hot pixel;
   it stays hot as well when its lowest frame is above the cut and agrees
   with the next (a hot pixel that cosmic rays also hit).
5. **Glow** (:class:`Glow`): the background's highest block above the
   bulk, in e-/pix/h, and where it is.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from reduce.geometry import Amplifier
from reduce.hotscan import RowBackground, Scan, blend, chunk_edges, scan_excess
from reduce.overscan import clipped_std, robust_std

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]

BLOCK = 32
"""Side of the background's blocks, pixels (the glow of MEGARA's CCD falls
over a few hundred pixels; a hot-pixel clump spans a few)."""

RESIDUAL_NSIGMA = 5.0
"""A pixel's median above its lowest frame by more than this many of that
frame's noise sigmas was hit in most frames (see the module docstring)."""

FramePixels = Callable[[IntArray, IntArray], Float32Array]
"""``values(rows, cols)``: the frames' values at trimmed pixels ``(rows,
cols)``, overscan-corrected and bias-subtracted as the master was, ADU,
shape ``(frames, pixels)``."""


class DQ(enum.IntFlag):
    """Bits of the data-quality mask (uint8 image, 0 = good)."""

    HOT_PIXEL = 1
    """Dark rate above the smooth background by more than the hot cut."""
    HOT_COLUMN = 2
    """Column whose mean excess over the background is anomalously high."""
    NO_DATA = 4
    """No frame contributed to the pixel (MAP == 0)."""
    COSMIC_RESIDUAL = 8
    """Median hit by cosmic rays (most frames hit): not a detector defect."""


DQ_DESCRIPTIONS = {
    DQ.HOT_PIXEL: "hot pixel: dark rate above the local smooth background by "
    "more than hot_rate_e_s (and hot_nsigma noise sigmas)",
    DQ.HOT_COLUMN: "hot column: mean excess over the background above "
    "hot_column_rate_e_s and hot_nsigma times the scatter of column means",
    DQ.NO_DATA: "no data: no frame used (MAP == 0)",
    DQ.COSMIC_RESIDUAL: "cosmic-ray residual: the median itself was hit "
    "(most frames hit); not a detector defect",
}


@dataclass(frozen=True, kw_only=True)
class DefectSettings:
    """What :func:`find_defects` needs to know.

    Attributes
    ----------
    darktime_s
        DARKTIME of the frames, seconds.
    hot_rate_e_s, hot_column_rate_e_s
        Excess dark rates over the background that make a pixel / a column
        hot, e-/s.
    hot_nsigma
        The cuts are at least this many sigmas of the master's noise.
    read_noise_adu
        Read noise of one frame, ADU (the frames' noise for the residual test).
    """

    darktime_s: float
    hot_rate_e_s: float
    hot_column_rate_e_s: float
    hot_nsigma: float
    read_noise_adu: float


@dataclass(frozen=True, eq=False)  # holds an array
class Background:
    """Smooth background of one amplifier's rows: block medians, ADU.

    Attributes
    ----------
    grid
        ``(block rows, block columns)`` medians, float32.
    row_edges, col_edges
        Edges of the blocks along the amplifier's rows and the columns.
    """

    grid: Float32Array
    row_edges: IntArray
    col_edges: IntArray

    @property
    def bulk(self) -> float:
        """The amplifier's typical level: the median of the blocks, ADU."""
        return float(np.median(self.grid))

    @cached_property
    def by_column(self) -> Float32Array:
        """The grid interpolated along the columns: (block rows, columns)."""
        cols = np.arange(int(self.col_edges[-1]))
        i0, w = _weights(self.col_edges, cols)
        return np.ascontiguousarray(blend(self.grid.T, i0, w).T)

    def at_rows(self, rows: IntArray) -> Float32Array:
        """The background at every column of amplifier rows ``rows``."""
        return blend(self.by_column, *_weights(self.row_edges, rows))

    def of_rows(self) -> RowBackground:
        """The background of every amplifier row, for :func:`scan_excess`."""
        rows = np.arange(int(self.row_edges[-1]))
        return RowBackground(self.by_column, *_weights(self.row_edges, rows))

    def at(self, rows: IntArray, cols: IntArray) -> Float32Array:
        """The background at single pixels ``(rows, cols)`` of the amplifier."""
        r0, rw = _weights(self.row_edges, rows)
        c0, cw = _weights(self.col_edges, cols)
        g = self.grid
        top = g[r0, c0] * (1 - cw) + g[r0, c0 + 1] * cw
        bottom = g[r0 + 1, c0] * (1 - cw) + g[r0 + 1, c0 + 1] * cw
        return np.asarray(top * (1 - rw) + bottom * rw, dtype=np.float32)


def _weights(edges: IntArray, x: IntArray) -> tuple[IntArray, Float32Array]:
    """Lower block index and weight of the next, for positions ``x``."""
    centres = (edges[:-1] + edges[1:] - 1) / 2.0
    f = np.interp(x, centres, np.arange(len(centres), dtype=np.float64))
    i0 = np.minimum(np.floor(f).astype(np.intp), max(len(centres) - 2, 0))
    w = (f - i0).astype(np.float32) if len(centres) > 1 else np.zeros(len(x), "f4")
    return i0, w


def _clipped_means(values: Float32Array, clip: float) -> Float32Array:
    """Mean of each row of ``values`` within ``clip`` of the row's median.

    Not the median itself: the values are quantised (integer ADU less a
    float overscan level per row), and at low signal the median of a block
    sits on a quantisation step, off the mean by up to half an ADU.
    """
    centre = np.median(values, axis=1)[:, np.newaxis]
    keep = np.abs(values - centre) <= np.float32(clip)
    total = np.where(keep, values, np.float32(0)).sum(axis=1, dtype=np.float64)
    means: Float32Array = (total / np.maximum(keep.sum(axis=1), 1)).astype(np.float32)
    return means


def smooth_background(region: npt.NDArray[np.floating]) -> Background:
    """The block background of one amplifier's trimmed rows (module docstring)."""
    row_edges = chunk_edges(region.shape[0], BLOCK)
    col_edges = chunk_edges(region.shape[1], BLOCK)
    clip = 5.0 * max(clipped_std(np.asarray(region[::7, ::7], np.float32)), 1e-6)
    grid = np.empty((len(row_edges) - 1, len(col_edges) - 1), dtype=np.float32)
    starts = (col_edges[:-1] + 1) // 2
    stops = (col_edges[1:] + 1) // 2
    width = int(stops[0] - starts[0])
    equal = bool(np.all(stops - starts == width))
    for i in range(len(row_edges) - 1):
        rows = np.asarray(region[row_edges[i] : row_edges[i + 1] : 2, ::2], "f4")
        if equal:  # every block of the row at once
            blocks = rows[:, : width * len(starts)].reshape(rows.shape[0], -1, width)
            flat = blocks.transpose(1, 0, 2).reshape(len(starts), -1)
            grid[i] = _clipped_means(flat, clip)
        else:
            for j, (a, b) in enumerate(zip(starts, stops, strict=True)):
                grid[i, j] = _clipped_means(rows[:, a:b].reshape(1, -1), clip)[0]
    return Background(grid, row_edges, col_edges)


@dataclass(frozen=True)
class Glow:
    """The background's highest block above the bulk.

    Attributes
    ----------
    peak_e_pix_h
        Its height above the bulk, e-/pix/h.
    row, col
        Trimmed-frame pixel at the block's centre.
    noise_e_pix_h
        Robust scatter of the blocks about the bulk, e-/pix/h: a peak of a
        few times this is no glow at all.
    """

    peak_e_pix_h: float
    row: int
    col: int
    noise_e_pix_h: float


def glow_of(background: Background, amp: Amplifier, darktime_s: float) -> Glow:
    """The amplifier's glow from its background (see :class:`Glow`)."""
    above = background.grid - np.float32(background.bulk)
    i, j = np.unravel_index(int(np.argmax(above)), above.shape)
    to_rate = amp.gain / darktime_s * 3600.0
    r, c = background.row_edges, background.col_edges
    return Glow(
        peak_e_pix_h=float(above[i, j]) * to_rate,
        row=amp.trimmed_rows.start + int((r[i] + r[i + 1] - 1) // 2),
        col=int((c[j] + c[j + 1] - 1) // 2),
        noise_e_pix_h=robust_std(above) * to_rate,
    )


@dataclass(frozen=True)
class AmpDefects:
    """What :func:`find_defects` found on one amplifier.

    Attributes
    ----------
    hot_columns
        Hot columns (trimmed-frame column numbers).
    hot_pixels
        Pixels with the HOT_PIXEL bit (hot pixels outside hot columns).
    hot_column_pixels
        Pixels with the HOT_COLUMN bit.
    cosmic_residuals
        Pixels with the COSMIC_RESIDUAL bit (None: not tested, fewer than
        three frames or no frame values).
    hot_rate_limit_e_s
        The hot cut reached, e-/s (``hot_rate_e_s`` unless the noise set it).
    mean_excess_adu
        Clipped mean of the unflagged pixels' excess over the background.
    background
        The smooth background.
    """

    hot_columns: tuple[int, ...]
    hot_pixels: int
    hot_column_pixels: int
    cosmic_residuals: int | None
    hot_rate_limit_e_s: float
    mean_excess_adu: float
    background: Background


def find_defects(
    region: npt.NDArray[np.floating],
    amp_mask: npt.NDArray[np.uint8],
    amp: Amplifier,
    settings: DefectSettings,
    frame_pixels: FramePixels | None,
) -> AmpDefects:
    """Set the DQ bits of one amplifier's rows of a bias-subtracted master dark.

    Parameters
    ----------
    region
        The amplifier's trimmed rows of the master, ADU.
    amp_mask
        Its rows of the DQ mask (zeroed), written in place.
    amp
        The amplifier (gain, rows).
    settings
        Dark time, cuts and frame noise.
    frame_pixels
        Reads the frames' values at pixels (None: no residual test).
    """
    background = smooth_background(region)
    sample_rows = np.arange(0, region.shape[0], 7)
    sample = np.asarray(region[sample_rows, ::7], np.float32)
    sigma = clipped_std(sample - background.at_rows(sample_rows)[:, ::7])
    to_adu = settings.darktime_s / amp.gain
    cut = max(settings.hot_rate_e_s * to_adu, settings.hot_nsigma * sigma)
    clip = min(cut, 5.0 * sigma)
    scan = scan_excess(region, amp_mask, background.of_rows(), cut, clip)
    hot_cols_found = _mark_columns(amp_mask, scan, settings, to_adu)
    # A hot segment's pixels above the cut beyond its flagged chunks (where
    # the defect starts mid-chunk) belong to the column too.
    in_column = np.isin(scan.cols, hot_cols_found)
    column_hot = (scan.rows[in_column], scan.cols[in_column])
    amp_mask[column_hot] = np.uint8(DQ.HOT_COLUMN) | (
        amp_mask[column_hot] & ~np.uint8(DQ.HOT_PIXEL)
    )
    # Column pixels are column defects whatever their frames say: only the
    # other candidates are read back.
    hot_rows, hot_cols = scan.rows[~in_column], scan.cols[~in_column]
    residuals = None
    if frame_pixels is not None and hot_rows.size:
        candidates = Candidates(hot_rows, hot_cols, background, cut)
        residuals = _mark_residuals(
            region, amp_mask, candidates, amp, settings, frame_pixels
        )
    elif frame_pixels is not None:
        residuals = 0
    return AmpDefects(
        hot_columns=tuple(int(c) for c in hot_cols_found),
        hot_pixels=int(np.count_nonzero(amp_mask & np.uint8(DQ.HOT_PIXEL))),
        hot_column_pixels=int(np.count_nonzero(amp_mask & np.uint8(DQ.HOT_COLUMN))),
        cosmic_residuals=residuals,
        hot_rate_limit_e_s=cut / to_adu,
        mean_excess_adu=scan.mean_excess_adu,
        background=background,
    )


def _mark_columns(
    amp_mask: npt.NDArray[np.uint8],
    scan: Scan,
    settings: DefectSettings,
    to_adu: float,
) -> IntArray:
    """Flag the hot column segments (whole chunks); the hot columns.

    A chunk of a column is hot when its mean excess (hot pixels out) is
    above ``hot_column_rate_e_s`` and ``hot_nsigma`` times the scatter of all
    the chunks' means, or when most of its pixels are hot (a column hotter
    than the hot cut). Its pixels are column defects: their HOT_PIXEL bits go.
    """
    scale = robust_std(scan.segments)
    col_cut = max(settings.hot_column_rate_e_s * to_adu, settings.hot_nsigma * scale)
    chunk, cols = np.nonzero((scan.segments > col_cut) | (scan.hot_share > 0.5))
    for k, c in zip(chunk, cols, strict=True):
        rows = slice(scan.edges[k], scan.edges[k + 1])
        amp_mask[rows, c] = (amp_mask[rows, c] & ~np.uint8(DQ.HOT_PIXEL)) | np.uint8(
            DQ.HOT_COLUMN
        )
    return np.unique(cols)


@dataclass(frozen=True, eq=False)  # holds arrays
class Candidates:
    """Pixels above the hot cut of one amplifier (amplifier rows, columns)."""

    rows: IntArray
    cols: IntArray
    background: Background
    cut: float


def _mark_residuals(
    region: npt.NDArray[np.floating],
    amp_mask: npt.NDArray[np.uint8],
    candidates: Candidates,
    amp: Amplifier,
    settings: DefectSettings,
    frame_pixels: FramePixels,
) -> int:
    """Tell cosmic-ray residuals from hot pixels among the hot candidates."""
    rows, cols = candidates.rows, candidates.cols
    values = frame_pixels(rows + amp.trimmed_rows.start, cols)
    if values.shape[0] < 3:
        return 0
    median = np.asarray(region[rows, cols], np.float64)
    two = np.partition(values, 1, axis=0)[:2].astype(np.float64)
    lowest, second = two[0], two[1]
    sigma = np.sqrt(settings.read_noise_adu**2 + np.maximum(median, 0.0) / amp.gain)
    limit = RESIDUAL_NSIGMA * sigma
    # Every frame hit (three frames in a storm): even the two lowest differ.
    all_hit = second - lowest > limit
    residual = (median - lowest > limit) | all_hit
    under = candidates.background.at(rows, cols).astype(np.float64)
    still_hot = (lowest - under > candidates.cut) & ~all_hit
    r, c = rows[residual], cols[residual]
    amp_mask[r, c] |= np.uint8(DQ.COSMIC_RESIDUAL)
    not_hot = residual & ~still_hot
    amp_mask[rows[not_hot], cols[not_hot]] &= np.uint8(~DQ.HOT_PIXEL & 0xFF)
    return int(np.count_nonzero(residual))

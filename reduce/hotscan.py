"""The hot-pixel search's pass over one amplifier of a master dark.

One pass over the rows (:func:`scan_excess`) finds what
:mod:`reduce.hotpixels` decides from: the pixels above the hot cut (their
HOT_PIXEL bits set), each column's mean excess over each chunk of about
:data:`CHUNK_ROWS` rows, the share of hot pixels there, and the clipped mean
excess of the bulk. The compiled kernel (``reduce/_hotscan.c``) does it in
one pass over the pixels; numpy does the same steps chunk by chunk where the
kernel is not built or the arrays are not float32 and C-contiguous. Both
give the same values bit for bit but for the bulk's mean, which numpy adds
pairwise (it agrees to rounding).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import numpy.typing as npt

from reduce.compiled import KERNELS

Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]

CHUNK_ROWS = 128
"""Rows of a chunk: a column's segments are this long."""


@dataclass(frozen=True, eq=False)  # holds arrays
class Scan:
    """What one pass over an amplifier's rows found.

    Attributes
    ----------
    rows, cols
        Pixels above the hot cut (amplifier rows), in row-major order.
    segments
        ``(chunks, columns)``: each column's mean excess over each chunk of
        about :data:`CHUNK_ROWS` rows, ADU, its pixels beyond the hot cut
        either way left out.
    hot_share
        ``(chunks, columns)``: the share of those pixels above the hot cut.
    edges
        The chunks' first rows, and the last row + 1.
    mean_excess_adu
        Clipped mean excess of the pixels within the clip of the background.
    """

    rows: IntArray
    cols: IntArray
    segments: Float32Array
    hot_share: Float32Array
    edges: IntArray
    mean_excess_adu: float


@dataclass(frozen=True, eq=False)  # holds arrays
class RowBackground:
    """The background of every row: two block rows blended.

    Attributes
    ----------
    by_column
        ``(block rows, columns)``: the block grid interpolated along the
        columns, float32.
    i0, w
        Per amplifier row, the lower block row and the weight of the next
        (``i0`` unused when there is one block row).
    """

    by_column: Float32Array
    i0: IntArray
    w: Float32Array

    def rows(self, r0: int, r1: int) -> Float32Array:
        """The background of rows ``r0:r1``, a new array."""
        return blend(self.by_column, self.i0[r0:r1], self.w[r0:r1])


def blend(grid: Float32Array, i0: IntArray, w: Float32Array) -> Float32Array:
    """Linear interpolation of ``grid``'s rows at ``i0 + w``, a new array."""
    if grid.shape[0] == 1:
        return np.repeat(grid, len(i0), axis=0)
    low = np.asarray(grid[i0], dtype=np.float32)
    out = np.asarray(grid[i0 + 1], dtype=np.float32)
    out -= low  # low + (high - low) * w, in place: the same float32 steps
    out *= w[:, np.newaxis]
    out += low
    return out


def chunk_edges(n: int, size: int) -> IntArray:
    """Edges of about ``size``-long blocks covering ``0:n``."""
    blocks = max(1, round(n / size))
    return np.linspace(0, n, blocks + 1).astype(np.intp)


def scan_excess(
    region: npt.NDArray[np.floating],
    amp_mask: npt.NDArray[np.uint8],
    background: RowBackground,
    cut: float,
    clip: float,
) -> Scan:
    """One pass over an amplifier's rows (see the module docstring).

    Parameters
    ----------
    region
        The amplifier's rows of the bias-subtracted master, ADU.
    amp_mask
        Its rows of the DQ mask: HOT_PIXEL (1) is ored in where hot.
    background
        The background of its rows.
    cut
        Hot cut, ADU above the background.
    clip
        The bulk's clip, ADU either side of the background.
    """
    edges = chunk_edges(region.shape[0], CHUNK_ROWS)
    kernels = KERNELS
    if kernels is not None and _compiled_can(region, amp_mask, background):
        return _scan_compiled(kernels, region, amp_mask, background, edges, cut, clip)
    return _scan_numpy(region, amp_mask, background, edges, cut, clip)


def _compiled_can(
    region: npt.NDArray[np.floating],
    amp_mask: npt.NDArray[np.uint8],
    background: RowBackground,
) -> bool:
    """Whether the arrays are what the kernel takes."""
    return (
        region.dtype == np.float32
        and region.flags.c_contiguous
        and amp_mask.flags.c_contiguous
        and amp_mask.shape == region.shape
        and background.by_column.dtype == np.float32
        and background.by_column.flags.c_contiguous
        and background.by_column.shape[1] == region.shape[1]
    )


def _scan_compiled(
    kernels: ModuleType,
    region: npt.NDArray[np.floating],
    amp_mask: npt.NDArray[np.uint8],
    background: RowBackground,
    edges: IntArray,
    cut: float,
    clip: float,
) -> Scan:
    rows, cols = region.shape
    segments = np.empty((len(edges) - 1, cols), np.float32)
    share = np.empty_like(segments)
    i0 = np.ascontiguousarray(background.i0, dtype=np.intp)
    w = np.ascontiguousarray(background.w, dtype=np.float32)
    found = np.empty(max(4096, region.size // 256), np.int64)
    while True:  # once more with room for all, if more were hot (the mask
        # bits are set again, the sums computed again: the same outputs)
        hot, kept_sum, kept = kernels.scan_excess(
            region, background.by_column, i0, w, edges, amp_mask, found,
            segments, share, rows, cols, float(np.float32(cut)),
            float(np.float32(clip)),
        )  # fmt: skip
        if hot <= found.size:
            break
        found = np.empty(hot, np.int64)
    at = found[:hot]
    return Scan(
        rows=(at // cols).astype(np.intp),
        cols=(at % cols).astype(np.intp),
        segments=segments,
        hot_share=share,
        edges=edges,
        mean_excess_adu=kept_sum / max(kept, 1),
    )


def _scan_numpy(
    region: npt.NDArray[np.floating],
    amp_mask: npt.NDArray[np.uint8],
    background: RowBackground,
    edges: IntArray,
    cut: float,
    clip: float,
) -> Scan:
    kept_sum, kept_count = 0.0, 0
    found_rows: list[IntArray] = []
    found_cols: list[IntArray] = []
    segments: list[Float32Array] = []
    shares: list[Float32Array] = []
    hot_cut, bulk_clip = np.float32(cut), np.float32(clip)
    for r0, r1 in itertools.pairwise(edges):
        excess = background.rows(r0, r1)  # its own array: made the excess
        np.subtract(np.asarray(region[r0:r1], np.float32), excess, out=excess)
        hot = excess > hot_cut
        r, c = np.nonzero(hot)
        found_rows.append(r + r0)
        found_cols.append(c)
        amp_mask[r0:r1] |= hot.view(np.uint8)  # HOT_PIXEL = 1
        size = np.abs(excess)
        near = size <= hot_cut
        count = np.maximum(near.sum(axis=0), 1)
        segments.append(np.where(near, excess, np.float32(0)).sum(axis=0) / count)
        shares.append(hot.sum(axis=0) / np.float32(r1 - r0))
        bulk = size <= bulk_clip
        kept_sum += float(np.sum(excess, where=bulk, dtype=np.float64))
        kept_count += int(np.count_nonzero(bulk))
    return Scan(
        rows=np.concatenate(found_rows),
        cols=np.concatenate(found_cols),
        segments=np.stack(segments).astype(np.float32),
        hot_share=np.stack(shares).astype(np.float32),
        edges=edges,
        mean_excess_adu=kept_sum / max(kept_count, 1),
    )

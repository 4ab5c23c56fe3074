"""The frames' values at chosen pixels, read back from their files.

The defect search asks how a few thousand pixels behaved frame by frame
(:mod:`reduce.hotpixels`); reading them back costs a fraction of a band's
read, where keeping every frame's values would cost N full frames of memory.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from reduce.frames import FrameInspection
from reduce.geometry import AMPLIFIERS, DATA_COLUMNS, RAW_BZERO, RAW_SHAPE

Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]

ROW_BYTES = RAW_SHAPE[1] * 2
"""Bytes per raw row."""


def frame_pixels(
    frames: Sequence[FrameInspection],
    rows: npt.NDArray[np.intp],
    cols: npt.NDArray[np.intp],
) -> Float32Array:
    """The frames' overscan-corrected values at some trimmed pixels, ADU.

    Each file is mapped read-only and only the pages holding the pixels are
    touched (:func:`_raw_pixels`): the few thousand pixels the defect search
    asks about cost a fraction of a band's read. Values are what the combination saw,
    ``float32(float64(counts) - model[row])``.

    Parameters
    ----------
    frames
        The frames combined.
    rows, cols
        Trimmed-frame pixel coordinates.

    Returns
    -------
    numpy.ndarray
        ``(len(frames), len(rows))`` float32.
    """
    out = np.empty((len(frames), len(rows)), dtype=np.float32)
    raw_rows = np.empty(len(rows), dtype=np.intp)
    local = np.empty(len(rows), dtype=np.intp)
    which = np.empty(len(rows), dtype=np.intp)
    for index, amp in enumerate(AMPLIFIERS):
        inside = (rows >= amp.trimmed_rows.start) & (rows < amp.trimmed_rows.stop)
        local[inside] = rows[inside] - amp.trimmed_rows.start
        raw_rows[inside] = local[inside] + amp.data_rows.start
        which[inside] = index
    raw_cols = cols + DATA_COLUMNS.start
    batches = _batches(raw_rows)
    for k, frame in enumerate(frames):
        counts = _raw_pixels(frame, batches, raw_rows, raw_cols)
        model = np.choose(
            which,
            [m.model[np.minimum(local, len(m.model) - 1)] for m in frame.overscan],
        )
        out[k] = counts + RAW_BZERO - model
    return out


PIXEL_BATCH_ROWS = 256
"""Raw rows read before their pages are released (2 MB): the pages mapped
stay few whatever the number of pixels asked for."""

Batch = tuple[int, int, npt.NDArray[np.intp]]
"""First and last + 1 raw rows, and the indices of the pixels in them."""


def _batches(raw_rows: npt.NDArray[np.intp]) -> list[Batch]:
    """The pixels grouped by :data:`PIXEL_BATCH_ROWS` raw rows (empty ones out)."""
    found = []
    for r0 in range(0, RAW_SHAPE[0], PIXEL_BATCH_ROWS):
        r1 = min(r0 + PIXEL_BATCH_ROWS, RAW_SHAPE[0])
        here = np.flatnonzero((raw_rows >= r0) & (raw_rows < r1))
        if here.size:
            found.append((r0, r1, here))
    return found


def _raw_pixels(
    frame: FrameInspection,
    batches: list[Batch],
    raw_rows: npt.NDArray[np.intp],
    raw_cols: npt.NDArray[np.intp],
) -> Float64Array:
    """The stored words at raw pixels, as signed values (BZERO not added).

    The file is mapped once; no read-ahead around the pages touched
    (``MADV_RANDOM``), and each batch's pages are dropped from this
    process's RSS once read (``MADV_DONTNEED``: a file's pages stay in the
    page cache).
    """
    found = np.empty(len(raw_rows), dtype=np.float64)
    size = frame.data_offset + RAW_SHAPE[0] * ROW_BYTES
    with (
        open(frame.path, "rb") as stream,
        mmap.mmap(stream.fileno(), size, prot=mmap.PROT_READ) as mapped,
    ):
        _advise(mapped, mmap.MADV_RANDOM, 0, size)
        stored = np.frombuffer(
            mapped,
            dtype=">i2",
            count=RAW_SHAPE[0] * RAW_SHAPE[1],
            offset=frame.data_offset,
        ).reshape(RAW_SHAPE)
        for r0, r1, here in batches:
            found[here] = stored[raw_rows[here], raw_cols[here]]
            start = frame.data_offset + r0 * ROW_BYTES
            _advise(mapped, mmap.MADV_DONTNEED, start, (r1 - r0) * ROW_BYTES)
        del stored  # the map closes only once no array uses it
    return found


def _advise(mapped: mmap.mmap, advice: int, start: int, length: int) -> None:
    """``madvise`` over the whole pages of ``start:start + length``."""
    first = start - start % mmap.PAGESIZE
    mapped.madvise(advice, first, min(length + start - first, len(mapped) - first))

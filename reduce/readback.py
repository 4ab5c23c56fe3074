"""The frames' values at chosen pixels, read back from their files.

The defect search asks how a few thousand pixels behaved frame by frame
(:mod:`reduce.hotpixels`); reading them back costs a fraction of a band's
read, where keeping every frame's values would cost N full frames of memory.
"""

from __future__ import annotations

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
    touched: the few thousand pixels the defect search asks about cost a
    fraction of a band's read. Values are what the combination saw,
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
    for k, frame in enumerate(frames):
        counts = _raw_pixels(frame, raw_rows, raw_cols)
        model = np.choose(
            which,
            [m.model[np.minimum(local, len(m.model) - 1)] for m in frame.overscan],
        )
        out[k] = counts + RAW_BZERO - model
    return out


PIXEL_BATCH_ROWS = 256
"""Raw rows mapped at a time by :func:`frame_pixels` (2 MB): the pages read
stay few whatever the number of pixels asked for."""


def _raw_pixels(
    frame: FrameInspection,
    raw_rows: npt.NDArray[np.intp],
    raw_cols: npt.NDArray[np.intp],
) -> Float64Array:
    """The stored words at raw pixels, as signed values (BZERO not added)."""
    found = np.empty(len(raw_rows), dtype=np.float64)
    for r0 in range(0, RAW_SHAPE[0], PIXEL_BATCH_ROWS):
        r1 = min(r0 + PIXEL_BATCH_ROWS, RAW_SHAPE[0])
        here = np.flatnonzero((raw_rows >= r0) & (raw_rows < r1))
        if not here.size:
            continue
        stored = np.memmap(
            frame.path,
            dtype=">i2",
            mode="r",
            offset=frame.data_offset + r0 * ROW_BYTES,
            shape=(r1 - r0, RAW_SHAPE[1]),
        )
        found[here] = stored[raw_rows[here] - r0, raw_cols[here]]
        del stored  # unmapped: its pages leave this process's RSS
    return found

"""Second pass: combine raw files band by band, on several threads.

For each band of trimmed rows, every file's raw rows are read with one
``os.preadv`` into a reused buffer (no allocation), the stored big-endian
words are turned into counts by flipping the sign bit in place (BZERO =
32768), the overscan model is subtracted into a float32 stack band, and the
band is combined (:func:`reduce.combine.combine_band`). Bands are independent
and numpy and ``preadv`` release the GIL, so a small thread pool keeps every
core busy; memory is ``threads x N x band_rows x 4196 x 6`` bytes plus the
output arrays.

Two ways to subtract the model:

* ``exact=False`` (default): ``float32(counts) - float32(model)``; differs
  from megaradrp's float64 subtraction by at most one float32 rounding of the
  model (~1.2e-4 ADU at a 2000 ADU bias level), and is ~2x faster;
* ``exact=True``: ``float32(float64(counts) - model)``, megaradrp's rounding,
  bit-identical when the models are (FITPACK backend).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt

from reduce.combine import CombineConfig, Combined, combine_band
from reduce.errors import InputError
from reduce.geometry import AMPLIFIERS, DATA_COLUMNS, RAW_SHAPE, TRIMMED_SHAPE
from reduce.overscan import OverscanModel

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]

ROW_BYTES = RAW_SHAPE[1] * 2
"""Bytes per raw row."""

_SIGN_BIT = np.array([0x8000], dtype=">u2").view(np.uint16)[0]
"""The stored words' top bit, as seen through a native uint16 view."""


def default_threads() -> int:
    """Worker threads: the CPUs this process may use, at most 8."""
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        ncpu = os.cpu_count() or 1
    return max(1, min(ncpu, 8))


def _pieces(r0: int, r1: int) -> list[tuple[slice, int, int]]:
    """``(band rows, raw first row, amplifier index)`` of a trimmed band."""
    pieces = []
    for index, amp in enumerate(AMPLIFIERS):
        lo = max(r0, amp.trimmed_rows.start)
        hi = min(r1, amp.trimmed_rows.stop)
        if lo < hi:
            shift = amp.data_rows.start - amp.trimmed_rows.start
            pieces.append((slice(lo - r0, hi - r0), lo + shift, index))
    return pieces


class BandCombiner:
    """Combine raw files into a trimmed master, band by band.

    Parameters
    ----------
    paths
        Raw frames (already checked by :func:`reduce.frames.inspect_frame`).
    models
        Per file, the overscan models of amplifiers 1 and 2.
    header_bytes
        Per file, the byte offset of the data unit.
    config
        Combination settings (band size, method, noise model).
    exact
        Subtract in float64, as megaradrp (see the module docstring).
    threads
        Worker threads (1: all in the calling thread).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        models: Sequence[tuple[OverscanModel, OverscanModel]],
        header_bytes: Sequence[int],
        config: CombineConfig,
        *,
        exact: bool = False,
        threads: int = 1,
    ) -> None:
        if not paths:
            raise InputError("combine", "no frame to combine; expected at least one")
        self._paths = list(paths)
        self._offsets = list(header_bytes)
        self._model64 = [tuple(m.model for m in pair) for pair in models]
        self._model32 = [
            tuple(m.model.astype(np.float32) for m in pair) for pair in models
        ]
        self._config = config
        self._exact = exact
        self._threads = max(1, threads)
        self._local = threading.local()

    def _buffers(self, rows: int) -> tuple[npt.NDArray[np.uint16], Float32Array]:
        local = self._local
        if getattr(local, "rows", None) != rows:
            n = len(self._paths)
            local.raw = np.empty((rows, RAW_SHAPE[1]), dtype=np.uint16)
            local.stack = np.empty((n, rows, TRIMMED_SHAPE[1]), dtype=np.float32)
            local.rows = rows
        return local.raw, local.stack

    def _load(self, fd: int, k: int, r0: int, r1: int, stack: Float32Array) -> None:
        raw, _ = self._buffers(r1 - r0)
        for rows, raw_row, amp in _pieces(r0, r1):
            target = raw[rows]
            want = target.nbytes
            got = os.preadv(
                fd, [memoryview(target.data)], self._offsets[k] + raw_row * ROW_BYTES
            )
            if got != want:
                raise InputError(
                    str(self._paths[k]), f"short read at raw row {raw_row}"
                )
            np.bitwise_xor(target, _SIGN_BIT, out=target)
            counts = target.view(">u2")[:, DATA_COLUMNS]
            first = raw_row - AMPLIFIERS[amp].data_rows.start
            span = slice(first, first + (rows.stop - rows.start))
            out = stack[k, rows]
            if self._exact:
                model = self._model64[k][amp][span]
                np.subtract(
                    counts, model[:, None], out=out, dtype=np.float64, casting="unsafe"
                )
            else:
                np.subtract(counts, self._model32[k][amp][span, None], out=out)

    def _band(self, fds: Sequence[int], r0: int, r1: int, result: Combined) -> None:
        _, stack = self._buffers(r1 - r0)
        for k, fd in enumerate(fds):
            self._load(fd, k, r0, r1, stack)
        part = combine_band(stack, self._config, r0)
        result.data[r0:r1] = part.data
        result.variance[r0:r1] = part.variance
        result.npix[r0:r1] = part.npix

    def run(self) -> Combined:
        """Combine all bands; returns the trimmed median, variance and MAP."""
        result = Combined(
            np.empty(TRIMMED_SHAPE, np.float32),
            np.empty(TRIMMED_SHAPE, np.float32),
            np.empty(TRIMMED_SHAPE, np.int16),
        )
        fds = [os.open(p, os.O_RDONLY) for p in self._paths]
        try:
            step = self._config.band_rows
            starts = range(0, TRIMMED_SHAPE[0], step)
            if self._threads == 1:
                for r0 in starts:
                    self._band(fds, r0, min(r0 + step, TRIMMED_SHAPE[0]), result)
            else:
                with ThreadPoolExecutor(self._threads) as pool:
                    futures = [
                        pool.submit(
                            self._band,
                            fds,
                            r0,
                            min(r0 + step, TRIMMED_SHAPE[0]),
                            result,
                        )
                        for r0 in starts
                    ]
                    for future in futures:
                        future.result()
        finally:
            for fd in fds:
                os.close(fd)
        return result

"""Second pass: combine frames band by band, on several threads.

A band is ``band_rows`` trimmed rows of every frame, ``(N, band_rows, 4096)``
float32, in a buffer each worker thread reuses. :class:`RawBands` fills it
from archived raw files: each file's raw rows are read with one
``os.preadv`` into a reused buffer, the stored big-endian words become
counts by flipping the sign bit in place (BZERO = 32768 is the top bit),
and the overscan model is subtracted (:func:`subtract_model`);
:func:`combine_files` combines inspected frames that way. (The streaming
reduction combines as frames arrive instead: :mod:`reduce.window`.)

The band is then combined in place (:func:`reduce.combine.combine_band_into`).
Where the compiled band kernel is built (``reduce/_kernels.c``, an
optional extension), a median band takes another route with the same
results bit for bit: the raw words of every frame are read into a reused
buffer and the kernel does the conversion, the overscan subtraction, the
variance's sums and the median network in one pass over them while they are
in the core's cache (:func:`combine_raw_band`), about 5x less CPU than the
numpy steps. Bands are independent and numpy, ``preadv`` and the kernel
release the GIL, so a small thread pool keeps every core busy; memory is
about ``threads x N x band_rows x 4096 x 4`` bytes plus the output arrays,
whatever N.

The model is subtracted as megaradrp does, ``float32(float64(counts) -
model)``: bit-identical to it when the models are (FITPACK backend), and
one float32 rounding step off on a few pixels with our own spline fit.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from reduce.combine import (
    BandSink,
    CombineConfig,
    Combined,
    ShiftedSums,
    combine_band_into,
    median_variance_factor,
    uses_network,
)
from reduce.compiled import KERNELS
from reduce.errors import InputError
from reduce.frames import FrameInspection
from reduce.geometry import (
    AMPLIFIERS,
    DATA_COLUMNS,
    RAW_SHAPE,
    TRIMMED_SHAPE,
)
from reduce.median import schedule_array
from reduce.overscan import OverscanModel

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]

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


def pieces(r0: int, r1: int) -> list[tuple[slice, int, int]]:
    """``(band rows, raw first row, amplifier index)`` of a trimmed band."""
    found = []
    for index, amp in enumerate(AMPLIFIERS):
        lo = max(r0, amp.trimmed_rows.start)
        hi = min(r1, amp.trimmed_rows.stop)
        if lo < hi:
            shift = amp.data_rows.start - amp.trimmed_rows.start
            found.append((slice(lo - r0, hi - r0), lo + shift, index))
    return found


def subtract_model(
    big_endian_counts: npt.NDArray[np.generic], model: Float64Array, out: Float32Array
) -> None:
    """``out = float32(float64(counts) - model[:, None])``, megaradrp's rounding.

    Parameters
    ----------
    big_endian_counts
        ``(rows, 4096)`` counts, ADU, as a big-endian unsigned view.
    model
        Overscan model of those rows, ADU (float64).
    out
        Destination rows, float32.
    """
    np.subtract(
        big_endian_counts,
        model[:, np.newaxis],
        out=out,
        dtype=np.float64,
        casting="unsafe",
    )


def to_counts(stored: npt.NDArray[np.uint16]) -> npt.NDArray[np.generic]:
    """Stored FITS words (read as native uint16) -> big-endian counts view.

    Flips the sign bit in place (adding BZERO = 32768 to a 16-bit two's
    complement value is the same as flipping its top bit).
    """
    np.bitwise_xor(stored, _SIGN_BIT, out=stored)
    return stored.view(">u2")


class BandSource(Protocol):
    """Frame ``k``'s rows ``r0:r1`` of a band, as raw words or preprocessed."""

    n: int

    def open(self) -> None:
        """Acquire file descriptors."""

    def close(self) -> None:
        """Release them."""

    def read(
        self, k: int, r0: int, r1: int, raw: npt.NDArray[np.uint16], model: Float64Array
    ) -> None:
        """Frame ``k``'s raw rows of trimmed rows ``r0:r1`` and their overscan model.

        ``raw`` receives the stored words (``(rows, RAW_SHAPE[1])``, file
        byte order), ``model`` the overscan level of each row (ADU).
        """

    def load(self, k: int, r0: int, r1: int, out: Float32Array) -> None:
        """Write frame ``k``'s trimmed rows ``r0:r1`` into ``out`` (float32, ADU)."""


class RawBands:
    """Bands of raw files, overscan-corrected on the fly.

    Parameters
    ----------
    paths
        Raw frames (already checked by :func:`reduce.frames.inspect_frame`).
    models
        Per file, the overscan models of amplifiers 1 and 2.
    data_offsets
        Per file, the byte offset of the data unit.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        models: Sequence[tuple[OverscanModel, OverscanModel]],
        data_offsets: Sequence[int],
    ) -> None:
        self.n = len(paths)
        self._paths = list(paths)
        self._offsets = list(data_offsets)
        self._models = [tuple(m.model for m in pair) for pair in models]
        self._fds: list[int] = []
        self._local = threading.local()

    def open(self) -> None:
        self._fds = [os.open(p, os.O_RDONLY) for p in self._paths]

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def read(
        self, k: int, r0: int, r1: int, raw: npt.NDArray[np.uint16], model: Float64Array
    ) -> None:
        for rows, raw_row, amp in pieces(r0, r1):
            target = raw[rows]
            got = os.preadv(
                self._fds[k],
                [target.data],
                self._offsets[k] + raw_row * ROW_BYTES,
            )
            if got != target.nbytes:
                raise InputError(
                    str(self._paths[k]), f"short read at raw row {raw_row}"
                )
            first = raw_row - AMPLIFIERS[amp].data_rows.start
            model[rows] = self._models[k][amp][first : first + target.shape[0]]

    def load(self, k: int, r0: int, r1: int, out: Float32Array) -> None:
        rows = r1 - r0
        raw: npt.NDArray[np.uint16] | None = getattr(self._local, "raw", None)
        if raw is None or raw.shape[0] < rows:
            raw = self._local.raw = np.empty((rows, RAW_SHAPE[1]), np.uint16)
            self._local.model = np.empty(rows)
        model: Float64Array = self._local.model
        self.read(k, r0, r1, raw[:rows], model[:rows])
        subtract_model(to_counts(raw[:rows])[:, DATA_COLUMNS], model[:rows], out)


def compiled_kernel() -> bool:
    """Whether the compiled band kernel was built (else numpy combines)."""
    return KERNELS is not None


def combine_raw_band(
    raw: npt.NDArray[np.uint16],
    model: Float64Array,
    data: Float32Array,
    variance: Float32Array,
) -> None:
    """Median and variance of a band of raw frames, by the compiled kernel.

    The same values, bit for bit, as :func:`RawBands.load` followed by
    :func:`reduce.combine.combine_band_into` with the median network
    (``2 <= N <= NETWORK_MAX_N``).

    Parameters
    ----------
    raw
        ``(N, rows, RAW_SHAPE[1])`` stored words of the band's raw rows.
    model
        ``(N, rows)`` overscan model of each frame's rows, ADU.
    data, variance
        ``(rows, 4096)`` C-contiguous destinations, float32.
    """
    if KERNELS is None:
        raise RuntimeError("the compiled band kernel is not built")
    n, rows, raw_columns = raw.shape
    KERNELS.median_raw_band(
        raw,
        model,
        schedule_array(n),
        data,
        variance,
        n,
        rows,
        raw_columns,
        DATA_COLUMNS.start,
        DATA_COLUMNS.stop - DATA_COLUMNS.start,
        float(np.float32(1.0 / n)),
        float(np.float32(median_variance_factor(n) / (n - 1))),
    )


class BandCombiner:
    """Combine frames into a trimmed master, band by band, on threads.

    Parameters
    ----------
    source
        Where the bands come from (:class:`RawBands`).
    config
        Combination settings (band size, method, noise model).
    threads
        Worker threads (1: all in the calling thread).
    on_band
        Called with each band's rows once they are final
        (:data:`~reduce.combine.BandSink`).
    compiled
        Median bands through the compiled kernel (:func:`combine_raw_band`);
        None: when it is built. The results are the same either way.
    """

    def __init__(
        self,
        source: BandSource,
        config: CombineConfig,
        *,
        threads: int = 1,
        on_band: BandSink | None = None,
        compiled: bool | None = None,
    ) -> None:
        if source.n < 1:
            raise InputError("combine", "no frame to combine; expected at least one")
        self._source = source
        self._config = config
        self._threads = max(1, threads)
        self._on_band = on_band
        self._local = threading.local()
        use = compiled_kernel() if compiled is None else compiled
        if use and not compiled_kernel():
            raise RuntimeError("the compiled band kernel is not built")
        self._compiled = use and uses_network(config, source.n)

    def _buffer(
        self, name: str, shape: tuple[int, ...], dtype: type[np.generic]
    ) -> npt.NDArray[Any]:
        """This thread's reused array ``name`` of ``shape``."""
        found: npt.NDArray[Any] | None = getattr(self._local, name, None)
        if found is None or found.shape != shape:
            found = np.empty(shape, dtype=dtype)
            setattr(self._local, name, found)
        return found

    def _band(self, r0: int, r1: int, result: Combined) -> None:
        if self._compiled:
            self._compiled_band(r0, r1, result)
        else:
            self._numpy_band(r0, r1, result)
        if self._on_band is not None:
            self._on_band(r0, r1, result)

    def _compiled_band(self, r0: int, r1: int, result: Combined) -> None:
        n, rows = self._source.n, r1 - r0
        raw = self._buffer("raw", (n, rows, RAW_SHAPE[1]), np.uint16)
        model = self._buffer("model", (n, rows), np.float64)
        for k in range(n):
            self._source.read(k, r0, r1, raw[k], model[k])
        combine_raw_band(raw, model, result.data[r0:r1], result.variance[r0:r1])

    def _numpy_band(self, r0: int, r1: int, result: Combined) -> None:
        n = self._source.n
        stack = self._buffer("stack", (n, r1 - r0, TRIMMED_SHAPE[1]), np.float32)
        network = uses_network(self._config, n)
        sums = ShiftedSums(stack.shape[1:]) if network else None
        for k in range(n):
            self._source.load(k, r0, r1, stack[k])
            if sums is not None:  # while the plane is in the cache
                sums.add(stack[k])
        combine_band_into(
            stack,
            self._config,
            r0,
            result.data[r0:r1],
            result.variance[r0:r1],
            result.npix[r0:r1],
            sums,
        )

    def run(self) -> Combined:
        """Combine all bands; returns the trimmed median, variance and MAP."""
        # The kernel's median keeps every frame: its MAP is N everywhere, a
        # read-only view that holds no memory (34 MB less at the peak).
        npix = (
            np.broadcast_to(np.int16(self._source.n), TRIMMED_SHAPE)
            if self._compiled
            else np.empty(TRIMMED_SHAPE, np.int16)
        )
        result = Combined(
            np.empty(TRIMMED_SHAPE, np.float32),
            np.empty(TRIMMED_SHAPE, np.float32),
            npix,
        )
        step = self._config.band_rows
        bands = [
            (r0, min(r0 + step, TRIMMED_SHAPE[0]))
            for r0 in range(0, TRIMMED_SHAPE[0], step)
        ]
        self._source.open()
        try:
            if self._threads == 1:
                for r0, r1 in bands:
                    self._band(r0, r1, result)
            else:
                with ThreadPoolExecutor(self._threads) as pool:
                    futures = [pool.submit(self._band, *b, result) for b in bands]
                    for future in futures:
                        future.result()
        finally:
            self._source.close()
        return result


def combine_files(
    frames: Sequence[FrameInspection],
    config: CombineConfig,
    on_band: BandSink,
    *,
    threads: int,
) -> Combined:
    """Combine inspected frames band by band from their raw files.

    Parameters
    ----------
    frames
        The frames to combine, as the first pass found them
        (:func:`reduce.frames.inspect_frame`: data offset, overscan models).
    config
        Combination settings.
    on_band
        Called with each band's rows once they are final.
    threads
        Worker threads.
    """
    source = RawBands(
        [f.path for f in frames],
        [f.overscan for f in frames],
        [f.data_offset for f in frames],
    )
    return BandCombiner(source, config, threads=threads, on_band=on_band).run()

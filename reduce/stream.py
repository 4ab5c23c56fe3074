"""Streaming reduction: frames in one at a time, a master frame out.

Two paths give the same numbers:

* :class:`DarkAccumulator`, for the online reduction: ``add()`` overscan-
  corrects and trims each raw frame as it is read out, into a preallocated
  ``(N, 4112, 4096)`` float32 stack (in memory, or a disk-backed memmap to
  bound memory); ``finish()`` combines it in row bands.
* :func:`reduce_files`, for archived frames: a first pass fits every frame's
  overscan (reading only the overscan strips), a second pass reads the same
  band of rows of every file, corrects it and combines it. Memory is about
  ``N x band_rows x 4096 x 4`` bytes plus the output.

The master is the median of the preprocessed frames minus the master bias
when one is given (megaradrp's DarkRecipe; BiasRecipe without a bias).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from reduce.combine import (
    DEFAULT_COMBINE,
    CombineConfig,
    Combined,
    combine_bands,
    combine_stack,
)
from reduce.errors import InputError
from reduce.geometry import AMP1, AMP2, AMPLIFIERS, DATA_COLUMNS, TRIMMED_SHAPE
from reduce.io import RawFrameReader
from reduce.overscan import (
    OverscanModel,
    SplineBackend,
    fit_overscan,
    preprocess,
    subtract_rows,
)

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class FrameInfo:
    """What the reduction kept of one input frame.

    Attributes
    ----------
    source
        File name or label.
    exptime
        EXPTIME, seconds (NaN when absent).
    darktime
        DARKTIME, seconds (EXPTIME when absent, as numina does).
    overscan
        The overscan models of amplifiers 1 and 2.
    """

    source: str
    exptime: float
    darktime: float
    overscan: tuple[OverscanModel, OverscanModel]


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class MasterFrame:
    """A combined master (bias or dark) and its provenance.

    Attributes
    ----------
    data
        Median of the preprocessed frames, minus the master bias if given,
        float32, ADU (megaradrp's PRIMARY).
    variance
        Variance of ``data``, float32, ADU^2 (median's plus the bias's).
    npix
        Frames used per pixel, int16 (MAP).
    frames
        The inputs, in order.
    bias_subtracted
        Whether a master bias was subtracted.
    """

    data: Float32Array
    variance: Float32Array
    npix: npt.NDArray[np.int16]
    frames: tuple[FrameInfo, ...]
    bias_subtracted: bool

    @property
    def darktime(self) -> float:
        """Median DARKTIME of the inputs, seconds."""
        return float(np.median([f.darktime for f in self.frames]))


def _times(header: Mapping[str, Any] | None) -> tuple[float, float]:
    if header is None:
        return float("nan"), float("nan")
    exptime = float(header.get("EXPTIME", float("nan")))
    return exptime, float(header.get("DARKTIME", exptime))


def _check_calibration(array: npt.ArrayLike | None, what: str) -> Float32Array | None:
    if array is None:
        return None
    arr = np.asarray(array, dtype=np.float32)
    if arr.shape != TRIMMED_SHAPE:
        raise InputError(
            what, f"shape {arr.shape}, expected the trimmed {TRIMMED_SHAPE}"
        )
    return arr


def finish_master(
    combined: Combined,
    frames: Sequence[FrameInfo],
    bias: Float32Array | None,
    bias_variance: Float32Array | None,
) -> MasterFrame:
    """Subtract the master bias (float32, as numina's BiasCorrector) and wrap."""
    data, variance = combined.data, combined.variance
    if bias is not None:
        data = data - bias
    if bias_variance is not None:
        variance = variance + bias_variance
    return MasterFrame(
        data=data,
        variance=variance,
        npix=combined.npix,
        frames=tuple(frames),
        bias_subtracted=bias is not None,
    )


class DarkAccumulator:
    """Preprocess frames as they arrive; combine them at the end.

    Parameters
    ----------
    n_frames
        Number of frames that will be added (the stack is preallocated).
    bias, bias_variance
        Master bias and its variance, trimmed, ADU and ADU^2 (optional).
    config
        Combination settings.
    buffer_path
        If given, the stack is a memmap in this file (removed by
        :meth:`close`), so that memory stays bounded for long runs.
    backend
        Overscan spline fitter (see :mod:`reduce.overscan`).
    """

    def __init__(
        self,
        n_frames: int,
        *,
        bias: npt.ArrayLike | None = None,
        bias_variance: npt.ArrayLike | None = None,
        config: CombineConfig = DEFAULT_COMBINE,
        buffer_path: str | Path | None = None,
        backend: SplineBackend = "numpy",
    ) -> None:
        if n_frames < 1:
            raise InputError("accumulator", f"n_frames={n_frames}, expected >= 1")
        self._bias = _check_calibration(bias, "master bias")
        self._bias_variance = _check_calibration(bias_variance, "bias variance")
        self._config = config
        self._backend: SplineBackend = backend
        shape = (n_frames, *TRIMMED_SHAPE)
        self._buffer_path = Path(buffer_path) if buffer_path is not None else None
        self._stack: Float32Array
        if self._buffer_path is None:
            self._stack = np.empty(shape, dtype=np.float32)
        else:
            self._stack = np.lib.format.open_memmap(
                self._buffer_path, mode="w+", dtype=np.float32, shape=shape
            )
        self._frames: list[FrameInfo] = []

    @property
    def n_added(self) -> int:
        """Frames added so far."""
        return len(self._frames)

    def add(
        self,
        raw: npt.NDArray[np.generic],
        header: Mapping[str, Any] | None = None,
        source: str | None = None,
    ) -> FrameInfo:
        """Overscan-correct and trim one raw frame into the stack.

        Parameters
        ----------
        raw
            Raw frame, ``(4212, 4196)``, ADU.
        header
            Its header (EXPTIME, DARKTIME are read), or None.
        source
            Label for messages (default ``frame <k>``).

        Returns
        -------
        FrameInfo
            Exposure times and overscan models of the frame.
        """
        k = len(self._frames)
        label = source if source is not None else f"frame {k}"
        if k >= self._stack.shape[0]:
            raise InputError(
                label, f"accumulator is full ({k} frames); expected n_frames > {k}"
            )
        _, models = preprocess(
            raw, out=self._stack[k], source=label, backend=self._backend
        )
        exptime, darktime = _times(header)
        info = FrameInfo(label, exptime, darktime, models)
        self._frames.append(info)
        log.debug("preprocessed %s into slot %d", label, k)
        return info

    def finish(self) -> MasterFrame:
        """Combine the frames added so far and subtract the bias."""
        if not self._frames:
            raise InputError("accumulator", "no frame was added; nothing to combine")
        stack = self._stack[: len(self._frames)]
        combined = combine_stack(stack, self._config)
        return finish_master(combined, self._frames, self._bias, self._bias_variance)

    def close(self) -> None:
        """Drop the stack and remove its backing file, if any."""
        stack = self._stack
        del self._stack
        mm = getattr(stack, "_mmap", None)
        if mm is not None:
            mm.close()
        if self._buffer_path is not None and self._buffer_path.exists():
            os.remove(self._buffer_path)

    def __enter__(self) -> DarkAccumulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reduce_frames(
    raws: Sequence[npt.NDArray[np.generic]],
    headers: Sequence[Mapping[str, Any] | None] | None = None,
    *,
    bias: npt.ArrayLike | None = None,
    bias_variance: npt.ArrayLike | None = None,
    config: CombineConfig = DEFAULT_COMBINE,
    backend: SplineBackend = "numpy",
) -> MasterFrame:
    """In-memory reduction of a list of raw frames (see :class:`DarkAccumulator`)."""
    hdrs = list(headers) if headers is not None else [None] * len(raws)
    acc = DarkAccumulator(
        len(raws),
        bias=bias,
        bias_variance=bias_variance,
        config=config,
        backend=backend,
    )
    with acc:
        for raw, header in zip(raws, hdrs, strict=True):
            acc.add(raw, header)
        return acc.finish()


def _trimmed_to_raw_rows(r0: int, r1: int) -> list[tuple[slice, slice]]:
    """Pieces ``(trimmed rows, raw rows)`` of a band of trimmed rows."""
    pieces = []
    for amp in AMPLIFIERS:
        lo = max(r0, amp.trimmed_rows.start)
        hi = min(r1, amp.trimmed_rows.stop)
        if lo < hi:
            shift = amp.data_rows.start - amp.trimmed_rows.start
            pieces.append((slice(lo - r0, hi - r0), slice(lo + shift, hi + shift)))
    return pieces


def reduce_files(
    paths: Sequence[str | Path],
    *,
    bias: npt.ArrayLike | None = None,
    bias_variance: npt.ArrayLike | None = None,
    config: CombineConfig = DEFAULT_COMBINE,
    backend: SplineBackend = "numpy",
) -> MasterFrame:
    """Reduce raw FITS files band by band, never holding the whole stack.

    Parameters
    ----------
    paths
        Raw MEGARA frames.
    bias, bias_variance
        Master bias and its variance (trimmed; optional).
    config
        Combination settings (``band_rows`` sets the memory used).
    backend
        Overscan spline fitter.

    Returns
    -------
    MasterFrame
        Identical to :func:`reduce_frames` on the same frames.
    """
    if not paths:
        raise InputError("reduce_files", "no input file; expected at least one")
    bias_arr = _check_calibration(bias, "master bias")
    bias_var = _check_calibration(bias_variance, "bias variance")
    readers = [RawFrameReader(p) for p in paths]
    try:
        frames = []
        for reader in readers:
            models = (
                fit_overscan(reader.read(*AMP1.raw_overscan), AMP1, backend),
                fit_overscan(reader.read(*AMP2.raw_overscan), AMP2, backend),
            )
            exptime, darktime = _times(reader.header)
            frames.append(FrameInfo(str(reader.path), exptime, darktime, models))

        def band(r0: int, r1: int) -> Float32Array:
            out = np.empty((len(readers), r1 - r0, TRIMMED_SHAPE[1]), np.float32)
            for k, (reader, info) in enumerate(zip(readers, frames, strict=True)):
                for trimmed, raw_rows in _trimmed_to_raw_rows(r0, r1):
                    amp = 0 if raw_rows.start < AMP1.data_rows.stop else 1
                    model = info.overscan[amp].model
                    first = raw_rows.start - AMPLIFIERS[amp].data_rows.start
                    rows_model = model[first : first + (raw_rows.stop - raw_rows.start)]
                    subtract_rows(
                        reader.read(raw_rows, DATA_COLUMNS), rows_model, out[k, trimmed]
                    )
            return out

        combined = combine_bands(band, TRIMMED_SHAPE, config)
    finally:
        for reader in readers:
            reader.close()
    return finish_master(combined, frames, bias_arr, bias_var)

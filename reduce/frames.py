"""First pass over a raw frame: read it once, check it, fit its overscan.

:func:`inspect_frame` maps the whole file read-only (or, for the streaming
reduction, reads it into a buffer) and, from that alone: parses the primary
header, checks it against the block (shape, BITPIX/BZERO, OBSMODE/IMAGETYP,
required keywords), verifies DATASUM/CHECKSUM, computes the SHA-256 for the
provenance record, rejects saturated or empty garbage, fits both amplifiers'
overscan models and measures the frame's mean signal on a sample of rows
(for the light-leak check). The second pass (:mod:`reduce.engine`) then
reads only row bands.

Header keywords written by the sequencer and read here:

``INTLKOK``
    Interlock evidence (cover and shutter read back Closed before and after
    the integration). ``F`` marks an invalid frame: it is excluded from the
    combination and reported, not an error.
``INTLKWHY``
    Why the interlock failed (free text, optional).
``SIMULATE``
    ``T`` on frames synthesised by the simulators. Simulated and real frames
    are never combined together.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from reduce.digests import DigestPrefetch
from reduce.errors import InputError
from reduce.fits.checksum import ones_complement_sum, verify_checksums
from reduce.fits.reader import FitsFile, Hdu
from reduce.geometry import AMPLIFIERS, DATA_COLUMNS, RAW_BZERO, RAW_SHAPE
from reduce.overscan import (
    OverscanModel,
    SplineBackend,
    clip_window,
    fit_overscan,
    level_error,
)
from reduce.rawframe import (
    CCD_TEMPERATURE_KEYS,
    INTERLOCK_OK,
    INTERLOCK_WHY,
    REQUIRED_KEYWORDS,
    SIMULATED,
    Mode,
    ccd_temperature,
    check_layout,
)

log = logging.getLogger(__name__)

SATURATION_ADU = 65535
"""Largest raw count: the ADC's full scale."""

MAX_SATURATED_FRACTION = 0.25
"""A frame with more sampled pixels at full scale (or 0) than this is garbage.

Light on the detector or a failed readout puts most pixels there; a dark
with crowded hot pixels, or a cosmic-ray storm, a few percent at most (the
hot pixels are flagged in DQ, not a reason to refuse the frame)."""

SAMPLE_STEP = 16
"""Every SAMPLE_STEP-th row of the frame is checked for saturated garbage."""

LEVEL_STEP = 64
"""Every LEVEL_STEP-th row of each amplifier is sampled for the frame level
(33 rows x 4096 columns; a clipped mean, good to ~1% of the read noise)."""

TILE_GRID = (4, 8)
"""Row bands x column bands of each amplifier's sampled rows: the tiles whose
levels the light-leak check compares between frames (a lit edge, corner or
gradient shows in some tiles before it shows in the mean)."""


@dataclass(frozen=True)
class TileLevels:
    """A frame's sampled level per tile of each amplifier, with its error.

    Attributes
    ----------
    levels
        ``(2, rows, columns)`` of :data:`TILE_GRID`: the clipped mean of the
        tile's sampled pixels, overscan-corrected (bias-subtracted when a
        bias was given), ADU.
    errors
        Same shape: the standard error of each mean (the kept pixels'
        standard deviation over the square root of their number), ADU.
    offset_errors
        ``(2,)``: the error of each amplifier's overscan level model
        (:func:`reduce.overscan.level_error`), ADU, common to all its tiles.
    """

    levels: npt.NDArray[np.float64]
    errors: npt.NDArray[np.float64]
    offset_errors: npt.NDArray[np.float64]


FrameSink = Callable[
    [npt.NDArray[np.uint16], tuple[OverscanModel, OverscanModel]], None
]
"""``sink(stored_words, models)``: see :func:`inspect_frame`."""

BiasSource = Callable[[], npt.NDArray[np.float32] | None]
"""Returns the trimmed master bias when it is needed (it may still be read)."""


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class FrameInspection:
    """What the first pass learnt about one raw frame.

    Attributes
    ----------
    path
        The file.
    header
        Its primary header (:class:`reduce.fits.cards.Header`).
    exptime, darktime
        EXPTIME and DARKTIME (EXPTIME when absent), seconds.
    temperature
        Detector temperature from the header, kelvin (None when absent).
    simulated
        Whether the frame says it was synthesised (``SIMULATE = T``).
    interlock_ok
        False when the sequencer marked the frame invalid (``INTLKOK = F``).
    interlock_reason
        Why (``INTLKWHY``), or ``""``.
    data_offset
        Byte offset of the data unit in the file.
    sha256
        SHA-256 of the whole file, hex.
    checksum
        ``"verified"`` or ``"absent"``.
    overscan
        Overscan models of amplifiers 1 and 2.
    sample_level
        Per amplifier, the overscan-corrected (and bias-subtracted when a
        bias was given) clipped mean of the sampled rows, ADU.
    tiles
        The same per tile (:class:`TileLevels`), for the light-leak check.
    file_id
        ``(st_dev, st_ino)`` of the file read: the same file under two names
        has the same one.
    """

    path: Path
    header: Any
    exptime: float
    darktime: float
    temperature: float | None
    simulated: bool
    interlock_ok: bool
    interlock_reason: str
    data_offset: int
    sha256: str
    checksum: str
    overscan: tuple[OverscanModel, OverscanModel]
    sample_level: tuple[float, float]
    tiles: TileLevels
    file_id: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        """File name, for messages and records."""
        return self.path.name


_BUFFERS = threading.local()
"""One reusable read buffer per thread (no fresh 35 MB allocation per frame)."""


def _read_whole(fits: FitsFile) -> memoryview:
    """The whole file, in this thread's buffer (valid until its next call)."""
    buf: npt.NDArray[np.uint8] | None = getattr(_BUFFERS, "buf", None)
    if buf is None or buf.size < fits.size:
        buf = _BUFFERS.buf = np.empty(fits.size, dtype=np.uint8)  # not zeroed
    view = buf.data[: fits.size]
    fits.read_into(view)
    return view


def _open_primary(path: Path) -> tuple[FitsFile, Hdu]:
    """The frame open (a regular file) and its primary HDU, sizes checked.

    The memory map (or the read) that follows is of a file whose header,
    data unit and padding are known to be there: a truncated file, a FIFO, a
    device or a directory is refused first (:mod:`reduce.fits.reader`). A file
    truncated while it is mapped would make reading past its new end fatal
    (SIGBUS), as in any memory-mapped FITS reader; raw frames are written
    once and renamed into place, never truncated.
    """
    fits = FitsFile(path, "frame file")
    try:
        return fits, fits.primary()
    except BaseException:
        fits.close()
        raise


def _check_keywords(header: Any, mode: Mode, source: str) -> tuple[float, float]:
    for key in REQUIRED_KEYWORDS:
        if key not in header:
            raise InputError(source, f"missing header keyword {key}")
    if header["INSTRUME"] != "MEGARA":
        raise InputError(source, f"INSTRUME={header['INSTRUME']!r}, expected 'MEGARA'")
    if header["OBSMODE"] != mode.value:
        raise InputError(
            source,
            f"OBSMODE={header['OBSMODE']!r}, expected {mode.value!r} for this "
            "block; is the frame in the wrong block?",
        )
    if "IMAGETYP" in header and header["IMAGETYP"] != mode.imagetyp:
        raise InputError(
            source, f"IMAGETYP={header['IMAGETYP']!r}, expected {mode.imagetyp!r}"
        )
    try:
        exptime = float(header["EXPTIME"])
        darktime = float(header.get("DARKTIME", exptime))
    except (TypeError, ValueError):
        raise InputError(
            source,
            f"EXPTIME={header['EXPTIME']!r} DARKTIME={header.get('DARKTIME')!r}; "
            "expected numbers of seconds",
        ) from None
    if not (math.isfinite(exptime) and math.isfinite(darktime)) or exptime < 0:
        raise InputError(
            source, f"EXPTIME={exptime} DARKTIME={darktime}; expected finite >= 0"
        )
    if mode is Mode.DARK and darktime <= 0:
        raise InputError(source, f"DARKTIME={darktime} s; a dark needs > 0")
    return exptime, darktime


def _flag(header: Any, key: str, default: bool) -> bool:
    value = header.get(key, default)
    return bool(value) if isinstance(value, bool) else default


def _check_garbage(stored: npt.NDArray[np.uint16], source: str) -> None:
    # On the stored (signed) words: 0 ADU is -32768, full scale is 32767.
    sample = stored[::SAMPLE_STEP, DATA_COLUMNS]
    bad = np.count_nonzero((sample == 0x7FFF) | (sample == -0x8000))
    fraction = bad / sample.size
    if fraction > MAX_SATURATED_FRACTION:
        raise InputError(
            source,
            f"{fraction:.1%} of sampled pixels are at 0 or full scale "
            f"({SATURATION_ADU} ADU), expected < {MAX_SATURATED_FRACTION:.0%}; "
            "saturated or garbage frame (light, readout fault?)",
        )


def _counts(stored: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """Counts (ADU, float32, exact) of stored big-endian signed words."""
    counts = stored.astype(np.float32)
    counts += np.float32(RAW_BZERO)
    return counts


def _sample_levels(
    stored: npt.NDArray[Any],
    models: tuple[OverscanModel, OverscanModel],
    bias_source: BiasSource | npt.NDArray[np.float32] | None,
) -> tuple[tuple[float, float], TileLevels]:
    """Per amplifier the clipped mean of the sampled rows, and per tile."""
    bias = bias_source() if callable(bias_source) else bias_source
    means, levels, errors = [], [], []
    for amp, model in zip(AMPLIFIERS, models, strict=True):
        rows = np.arange(amp.data_rows.start, amp.data_rows.stop, LEVEL_STEP)
        values = _counts(stored[rows][:, DATA_COLUMNS])
        values -= model.level_model[rows - rows[0], None].astype(np.float32)
        if bias is not None:
            values -= bias[rows - amp.data_rows.start + amp.trimmed_rows.start]
        mean, tile_mean, tile_error = clipped_means(values)
        means.append(mean)
        levels.append(tile_mean)
        errors.append(tile_error)
    offsets = np.array([level_error(model) for model in models])
    tiles = TileLevels(np.stack(levels), np.stack(errors), offsets)
    return (means[0], means[1]), tiles


def clipped_means(
    values: npt.NDArray[np.float32], nsigma: float = 5.0
) -> tuple[float, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The clipped mean of ``values``, and of each tile with its error.

    Within ``nsigma`` robust sigmas of the median: free of hot pixels and
    cosmic rays. Not the median itself: raw counts are integers, and the
    median of a quantised sample snaps towards a quantisation step, a bias
    of up to half an ADU that swamps the ~0.3 ADU of a 900 s dark at 163 K;
    the mean of the clipped sample is unbiased (read noise dithers the
    steps). One clipping window (the whole sample's) serves every tile, so
    that a tile whose level is raised is measured, not clipped towards the
    others.
    """
    median, sigma = clip_window(values)
    kept = np.abs(values - median) <= nsigma * max(sigma, 1e-12)
    x = np.where(kept, values, np.float32(0)).astype(np.float64)
    n_rows, n_cols = TILE_GRID
    starts = np.linspace(0, values.shape[0], n_rows + 1).astype(int)[:-1]

    def tiled(a: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        bands = np.add.reduceat(a, starts, axis=0, dtype=np.float64)
        out: npt.NDArray[np.float64] = bands.reshape(n_rows, n_cols, -1).sum(
            axis=2, dtype=np.float64
        )
        return out

    count = tiled(kept)  # summed as float64 (reduceat's dtype): no cast copy
    total, squares = tiled(x), tiled(x * x)
    safe = np.maximum(count, 1.0)
    tile_mean = total / safe
    var = (
        np.maximum(squares / safe - tile_mean**2, 0.0) * safe / np.maximum(safe - 1, 1)
    )
    overall = float(total.sum() / max(count.sum(), 1.0)) if sigma > 1e-12 else median
    return overall, tile_mean, np.sqrt(var / safe)


def inspect_frame(
    path: str | Path,
    mode: Mode,
    *,
    bias: npt.NDArray[np.float32] | BiasSource | None = None,
    backend: SplineBackend = "numpy",
    sink: FrameSink | None = None,
    digests: DigestPrefetch | None = None,
    temperature_keys: tuple[str, ...] = CCD_TEMPERATURE_KEYS,
) -> FrameInspection:
    """Read, check and characterise one raw frame (see the module docstring).

    Parameters
    ----------
    path
        Raw MEGARA frame.
    mode
        The block's mode (OBSMODE and IMAGETYP must match).
    bias
        Trimmed master bias, ADU, subtracted from the sampled level; or a
        callable returning it, called only then (so that the bias can be
        read while the frame is checked and hashed).
    backend
        Overscan spline fitter.
    sink
        Called, once the frame has passed every check, with the stored words
        of the whole data unit (native uint16 view, ``(4212, 4196)``, which it
        may modify) and the overscan models: the streaming reduction
        preprocesses the frame from there without reading it again.
    digests
        SHA-256 digests hashed ahead (:mod:`reduce.digests`); used when the
        file read here is the one hashed, else the buffer is hashed here.
    temperature_keys
        Keywords of the CCD temperature, searched in order
        (:func:`reduce.rawframe.ccd_temperature`).

    Raises
    ------
    InputError
        For any unusable frame; the message names the file.
    """
    source = str(path)
    fits, hdu = _open_primary(Path(path))
    try:
        header, offset = hdu.header, hdu.data_start
        check_layout(header, source)
        exptime, darktime = _check_keywords(header, mode, source)
        # The streaming reduction's sink modifies the words: they are read
        # into a buffer. Otherwise the file is mapped, not copied.
        buf = _read_whole(fits) if sink is not None else fits.map()
        ident = fits.identity
    finally:
        fits.close()
    nbytes = hdu.data_bytes
    data_bytes = buf[offset : offset + hdu.data_span]
    checksum = verify_checksums(
        header, buf[:offset], ones_complement_sum(data_bytes), source
    )
    sha = digests.take(path, ident) if digests is not None else None
    if sha is None:
        sha = hashlib.sha256(buf).hexdigest()
    stored = np.frombuffer(buf, dtype=">i2", count=nbytes // 2, offset=offset)
    stored = stored.reshape(RAW_SHAPE)
    _check_garbage(stored, source)
    amp1, amp2 = AMPLIFIERS
    models = (
        fit_overscan(_counts(stored[amp1.raw_overscan]), amp1, backend),
        fit_overscan(_counts(stored[amp2.raw_overscan]), amp2, backend),
    )
    levels, tiles = _sample_levels(stored, models, bias)
    interlock_ok = _flag(header, INTERLOCK_OK, True)
    if sink is not None and interlock_ok:
        sink(stored.view(np.uint16), models)
    return FrameInspection(
        file_id=ident[:2],
        path=Path(path),
        header=header,
        exptime=exptime,
        darktime=darktime,
        temperature=ccd_temperature(header, temperature_keys),
        simulated=_flag(header, SIMULATED, False),
        interlock_ok=interlock_ok,
        interlock_reason=str(header.get(INTERLOCK_WHY, "")),
        data_offset=offset,
        sha256=sha,
        checksum=checksum,
        overscan=models,
        sample_level=levels,
        tiles=tiles,
    )

"""Reading raw MEGARA frames and master calibrations, and atomic writes.

:func:`write_raw` (tests, benchmarks) imports astropy when called; the
readers read through :class:`reduce.fitsfile.FitsFile` and
:func:`reduce.masters.load_master`, so that ``megara-dark reduce`` never
imports astropy.

Raw frames are BITPIX=16 with BZERO=32768: unsigned 16-bit counts stored as
big-endian signed integers. :class:`RawFrameReader` hands out row bands and
overscan strips without reading the whole frame: adding 32768 to a 16-bit
two's-complement value is the same as flipping its top bit, so
``stored ^ 0x8000`` gives the counts exactly.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from reduce.checksum import (
    CARD,
    FITS_BLOCK,
    header_length,
    ones_complement_sum,
    verify_checksums,
)
from reduce.errors import InputError
from reduce.fitsfile import FitsFile
from reduce.geometry import RAW_BZERO, RAW_SHAPE
from reduce.masters import load_master

log = logging.getLogger(__name__)

__all__ = [  # checksum helpers re-exported: older imports use reduce.io
    "CARD",
    "FITS_BLOCK",
    "header_length",
    "ones_complement_sum",
    "verify_checksums",
]

UInt16Array = npt.NDArray[np.uint16]


def _check_raw_header(header: Any, source: str) -> None:
    shape = (header.get("NAXIS2"), header.get("NAXIS1"))
    if header.get("NAXIS") != 2 or shape != RAW_SHAPE:
        raise InputError(
            source,
            f"primary HDU has NAXIS={header.get('NAXIS')} shape {shape}; expected "
            f"a 2-D raw frame of {RAW_SHAPE} (rows, columns)",
        )
    if header.get("BITPIX") != 16:
        raise InputError(
            source, f"BITPIX={header.get('BITPIX')}, expected 16 for a raw frame"
        )
    if header.get("BZERO", 0) != RAW_BZERO or header.get("BSCALE", 1) != 1:
        raise InputError(
            source,
            f"BZERO={header.get('BZERO')} BSCALE={header.get('BSCALE', 1)}; expected "
            f"BZERO={RAW_BZERO}, BSCALE=1 (unsigned 16-bit counts)",
        )


class RawFrameReader:
    """Random access to the rows of one raw FITS frame, without loading it.

    The file is opened by the one FITS reader (:class:`reduce.fitsfile.FitsFile`:
    a regular file whose primary data unit is known to be all there). Rows
    are read with positioned reads (``os.pread``), not a memory map, so that
    pages of many open frames do not pile up in the process's memory.

    Parameters
    ----------
    path
        Raw MEGARA FITS file (primary HDU, BITPIX=16, BZERO=32768).

    Raises
    ------
    InputError
        If the file cannot be read or is not a raw MEGARA frame.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        fits = FitsFile(self.path, "raw frame")
        try:
            hdu = fits.primary()  # every size checked against the file's
            _check_raw_header(hdu.header, str(self.path))
        except BaseException:
            fits.close()
            raise
        self.header: Any = hdu.header
        self._offset = hdu.data_start
        self._row_bytes = RAW_SHAPE[1] * 2
        self._fits = fits
        self._fd: int | None = fits.fd

    def read(
        self, rows: slice = slice(None), columns: slice = slice(None)
    ) -> UInt16Array:
        """Counts of a region of the raw frame, ADU, native uint16.

        Parameters
        ----------
        rows, columns
            Contiguous slices (step 1) of the raw frame.
        """
        if self._fd is None:
            raise InputError(str(self.path), "reader is closed")
        r0, r1, step = rows.indices(RAW_SHAPE[0])
        if step != 1:
            raise InputError(str(self.path), f"row step {step}, expected 1")
        nbytes = (r1 - r0) * self._row_bytes
        buf = os.pread(self._fd, nbytes, self._offset + r0 * self._row_bytes)
        if len(buf) != nbytes:
            raise InputError(str(self.path), f"short read at rows {r0}:{r1}")
        stored = np.frombuffer(buf, dtype=">u2").reshape(r1 - r0, RAW_SHAPE[1])
        counts: UInt16Array = (stored[:, columns] ^ np.uint16(0x8000)).astype(np.uint16)
        return counts

    def close(self) -> None:
        """Close the file."""
        self._fits.close()
        self._fd = None


def read_raw(path: str | Path) -> tuple[UInt16Array, Any]:
    """Read a whole raw frame: counts (uint16, ADU) and a copy of its header."""
    reader = RawFrameReader(path)
    try:
        return np.array(reader.read()), reader.header
    finally:
        reader.close()


def read_master(path: str | Path) -> tuple[npt.NDArray[np.float32], Any]:
    """A master calibration's primary image (trimmed, float32, ADU) and header,
    read and validated by :func:`reduce.masters.load_master` (either kind)."""
    master = load_master(path, None)
    return master.data, master.header


def write_raw(path: str | Path, counts: npt.NDArray[np.integer], header: Any) -> None:
    """Write counts as a raw MEGARA frame (BITPIX=16, BZERO=32768).

    Parameters
    ----------
    path
        Destination (overwritten).
    counts
        ``(4212, 4196)`` integer counts in 0..65535, ADU.
    header
        Header cards to copy (an astropy Header or a mapping).
    """
    arr = np.asarray(counts)
    if arr.shape != RAW_SHAPE or arr.min() < 0 or arr.max() > 65535:
        raise InputError(
            str(path), f"counts must be {RAW_SHAPE} in 0..65535, got {arr.shape}"
        )
    from astropy.io import fits  # noqa: PLC0415 (not on the CLI's path)

    hdu = fits.PrimaryHDU(arr.astype(np.uint16), header=fits.Header(header))
    hdu.writeto(path, overwrite=True, checksum=True)


# --- Atomic writes and the processing log ------------------------------------


def write_atomic(path: str | Path, writer: Any) -> None:
    """Write a file atomically: temporary file, fsync, rename, fsync folder.

    Parameters
    ----------
    path
        Destination.
    writer
        Callable taking a binary file object and writing the content.
    """
    dest = Path(path)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            writer(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically (see :func:`write_atomic`)."""
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def padded_size(nbytes: int) -> int:
    """Bytes of ``nbytes`` padded to whole FITS blocks."""
    return -(-nbytes // FITS_BLOCK) * FITS_BLOCK


class ProcessingLog:
    """The text log of one block's reduction (``processing.log``).

    Lines are ``<UTC ISO time> +<seconds since start> <message>``; the log
    is kept in memory and written once, atomically, with the products.

    Parameters
    ----------
    clock
        Returns ``(utc_iso, seconds)``; injectable for tests.
    """

    def __init__(self, clock: Any = None) -> None:
        self._clock = clock or _utc_clock()
        self.lines: list[str] = []

    def add(self, message: str) -> None:
        """Record one step (also sent to the module logger at INFO)."""
        stamp, elapsed = self._clock()
        self.lines.append(f"{stamp} +{elapsed:8.3f}s {message}")
        log.info("%s", message)

    def text(self) -> str:
        """The whole log, one line per step."""
        return "".join(line + "\n" for line in self.lines)

    def write(self, path: str | Path) -> None:
        """Write the log atomically."""
        write_text_atomic(path, self.text())


def _utc_clock() -> Any:
    import datetime  # noqa: PLC0415
    import time  # noqa: PLC0415

    start = time.perf_counter()

    def clock() -> tuple[str, float]:
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
        return now, time.perf_counter() - start

    return clock

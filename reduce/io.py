"""Atomic writes, the processing log, and raw frames written for tests and
benchmarks (:func:`write_raw`, which imports astropy when called).

Raw frames and master calibrations are read elsewhere, through
:class:`reduce.fitsfile.FitsFile`: by :func:`reduce.frames.inspect_frame` and
:func:`reduce.masters.load_master`, so that ``megara-dark reduce`` never
imports astropy.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from reduce.checksum import FITS_BLOCK
from reduce.errors import InputError
from reduce.geometry import RAW_SHAPE

log = logging.getLogger(__name__)


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

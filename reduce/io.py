"""Atomic writes and the processing log.

Raw frames are written and verified by :mod:`reduce.rawframe`; FITS files
are read through :class:`reduce.fits.reader.FitsFile`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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
    fsync_dir(dest.parent)


def fsync_dir(folder: str | Path) -> None:
    """fsync a folder, so that a rename or a new file in it survives a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically (see :func:`write_atomic`)."""
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


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

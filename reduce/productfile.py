"""A master FITS file written while it is being computed.

A master's layout is known before its pixels are: every extension header
and every data unit has a fixed size, and only the primary header waits for
the QC (QAFLAG, QAREASn, DARKCURn, ...). :class:`ProductFile` therefore
creates the file at its final size when the combination starts and takes
the image rows as the combination produces them: each band of rows is
converted to big-endian, added to its HDU's running DATASUM (the FITS
checksum is a sum, so pieces add in any order) and written at its place.
A flusher thread pushes the written pages to the disk (``fdatasync``) while
the combination goes on, so that the final ``fsync`` after QC has little
left to wait for: writing ~250 MB of products had been a third of the run,
mostly waiting for the disk after the last computation.

The primary header gets room for :data:`PRIMARY_SLACK_CARDS` more cards
than its provisional form (QC reasons are added by the QA); the unused room
is blank cards before END, which the FITS standard allows (4.0, section
4.4.2.4) and which astropy reuses when a header is later updated in place.
If the final header does not fit, :meth:`ProductFile.finish` moves
everything after it further into a new file (``copy_file_range``: the
kernel copies, the data sums stay valid) and writes it there.

Until :meth:`ProductFile.finish` succeeds the file is a hidden temporary in
the product folder; it replaces the product atomically (rename, then the
folder's fsync). :meth:`ProductFile.abort` removes it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from reduce.combine import Combined
from reduce.fits.cards import CARD, Header, padded
from reduce.fits.checksum import checksummed_header, ones_complement_sum
from reduce.io import fsync_dir
from reduce.products import ImagePlan
from reduce.qc import dark_rate_rows

log = logging.getLogger(__name__)

PRIMARY_SLACK_CARDS = 72
"""Cards of room left in the primary header for the QA's reasons."""

FLUSH_BYTES = 16 << 20
"""The flusher calls ``fdatasync`` after this many bytes have been written."""

CHUNK_ROWS = 256
"""Rows converted and written at a time by :meth:`ProductFile.write_image`."""


COPY_CHUNK = 64 << 20
"""Bytes per ``copy_file_range`` call when a grown header moves the data."""


class _Image:
    """One image HDU's place in the file and its running data sum."""

    def __init__(
        self, header: Header, dtype: np.dtype[Any], shape: tuple[int, ...]
    ) -> None:
        self.header = header
        self.big = dtype.newbyteorder(">")
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self.nbytes = self.row_bytes * shape[0]
        self.header_size = 0
        self.offset = 0
        self.datasum = 0

    @property
    def data_offset(self) -> int:
        return self.offset + self.header_size


class ProductFile:
    """Write a master FITS file band by band, headers last (see module doc).

    Parameters
    ----------
    path
        The product's final path.
    layout
        The master's HDUs as :func:`reduce.products.master_layout` plans
        them: :class:`~reduce.products.ImagePlan` per image (the first is
        the primary HDU, its header provisional) and whole table HDUs as
        bytes, written as they are.
    """

    def __init__(self, path: Path, layout: Sequence[ImagePlan | bytes]) -> None:
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._images: dict[str, _Image] = {}
        self._tables: list[tuple[int, bytes]] = []
        offset = 0
        for index, plan in enumerate(layout):
            if isinstance(plan, ImagePlan):
                image = _Image(plan.header, plan.dtype, plan.shape)
                if image.row_bytes % 4:
                    raise ValueError(f"{plan.name}: rows of {image.row_bytes} bytes")
                size = len(checksummed_header(plan.header, 0))
                if index == 0:
                    size = padded(size + PRIMARY_SLACK_CARDS * CARD)
                image.offset, image.header_size = offset, size
                self._images[plan.name] = image
                offset += size + padded(image.nbytes)
            else:
                self._tables.append((offset, plan))
                offset += len(plan)
        self.size = offset
        self._lock = threading.Condition()
        self._buffers = threading.local()
        self._unflushed = 0
        self._stopping = False
        self._flush_error: OSError | None = None
        self._fd: int | None = os.open(
            self._tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644
        )
        try:
            os.ftruncate(self._fd, self.size)
        except OSError:
            self.abort()
            raise
        self._flusher = threading.Thread(
            target=self._flush_loop, name="product-flush", daemon=True
        )
        self._flusher.start()

    def _flush_loop(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and self._unflushed < FLUSH_BYTES:
                    self._lock.wait()
                if self._stopping:
                    return
                self._unflushed = 0
                fd = self._fd
            if fd is None:
                return
            try:
                os.fdatasync(fd)
            except OSError as err:  # reported by finish(); its fsync fails too
                self._flush_error = err
                return

    def _open_fd(self) -> int:
        """The open descriptor; ValueError once the file is finished or aborted."""
        if self._fd is None:
            raise ValueError(f"{self.path}: product file already closed")
        return self._fd

    def _pwrite(self, data: memoryview, at: int) -> None:
        fd = self._open_fd()
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], at + done)

    def _big_endian(
        self, rows: npt.NDArray[Any], big: np.dtype[Any]
    ) -> npt.NDArray[Any]:
        """``rows`` converted into this thread's reused buffer (no page faults)."""
        cache: dict[np.dtype[Any], npt.NDArray[Any]] | None = getattr(
            self._buffers, "by_dtype", None
        )
        if cache is None:
            cache = self._buffers.by_dtype = {}
        buf = cache.get(big)
        if buf is None or buf.size < rows.size:
            buf = cache[big] = np.empty(rows.size, dtype=big)
        out = buf[: rows.size].reshape(rows.shape)
        np.copyto(out, rows, casting="same_kind")
        return out

    def write_rows(self, name: str, row0: int, rows: npt.NDArray[Any]) -> None:
        """Write rows ``row0:row0 + len(rows)`` of image ``name`` (any thread)."""
        image = self._images[name]
        raw = self._big_endian(rows, image.big).reshape(-1).view(np.uint8).data
        part = ones_complement_sum(raw)
        self._pwrite(raw, image.data_offset + row0 * image.row_bytes)
        with self._lock:
            image.datasum += part
            self._unflushed += len(raw)
            if self._unflushed >= FLUSH_BYTES:
                self._lock.notify()

    def write_image(self, name: str, data: npt.NDArray[Any]) -> None:
        """Write a whole image, :data:`CHUNK_ROWS` rows at a time."""
        for r0 in range(0, data.shape[0], CHUNK_ROWS):
            self.write_rows(name, r0, data[r0 : r0 + CHUNK_ROWS])

    def _stop_flusher(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()
        self._flusher.join()

    def finish(self, primary_header: Header) -> int:
        """Write the headers, fsync, and put the file in place.

        Parameters
        ----------
        primary_header
            The final primary header, structural cards included (as
            ``master_layout(...)[0].header``).

        Returns
        -------
        int
            Bytes by which the primary header outgrew its room (0 normally:
            otherwise everything after it was moved, see the module doc).
        """
        self._stop_flusher()
        if self._flush_error is not None:
            raise self._flush_error
        images = list(self._images.values())
        primary = images[0]
        datasum = ones_complement_sum(b"", primary.datasum)  # folded
        text = checksummed_header(primary_header, datasum, size=primary.header_size)
        grown = len(text) - primary.header_size
        if grown > 0:
            self._move_after_primary(grown)
        heads = [(primary.offset, text)]
        for image in images[1:]:
            datasum = ones_complement_sum(b"", image.datasum)
            heads.append((image.offset, checksummed_header(image.header, datasum)))
        for at, blob in [*heads, *self._tables]:
            self._pwrite(memoryview(blob), at)
        fd = self._open_fd()
        os.fsync(fd)
        os.close(fd)
        self._fd = None
        os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)
        return max(grown, 0)

    def _move_after_primary(self, shift: int) -> None:
        """Copy everything after the primary header ``shift`` bytes further,
        into a new temporary that replaces the current one."""
        old = self._open_fd()
        primary = next(iter(self._images.values()))
        start = primary.offset + primary.header_size
        moved = self._tmp.with_name(self._tmp.name + ".grown")
        fd = os.open(moved, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, self.size + shift)
            _copy_range(old, fd, start, start + shift, self.size - start)
        except OSError:
            os.close(fd)
            moved.unlink(missing_ok=True)
            raise
        os.close(old)
        self._tmp.unlink(missing_ok=True)
        self._fd, self._tmp = fd, moved
        primary.header_size += shift
        for image in list(self._images.values())[1:]:
            image.offset += shift
        self._tables = [(at + shift, blob) for at, blob in self._tables]
        self.size += shift

    def abort(self) -> None:
        """Close and remove the temporary (idempotent; never raises)."""
        if self._fd is not None:
            if hasattr(self, "_flusher"):
                self._stop_flusher()
            fd, self._fd = self._fd, None
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


def _copy_range(src: int, dst: int, at: int, to: int, count: int) -> None:
    """Copy ``count`` bytes from ``src`` at ``at`` to ``dst`` at ``to``."""
    done = 0
    while done < count:
        size = min(COPY_CHUNK, count - done)
        try:
            got = os.copy_file_range(src, dst, size, at + done, to + done)
        except OSError as err:
            if err.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            data = os.pread(src, size, at + done)
            os.pwrite(dst, data, to + done)
            got = len(data)
        if got <= 0:
            raise OSError(errno.EIO, f"copy stopped at byte {at + done}")
        done += got


class MasterSink:
    """Writes each final band of a master (:data:`~reduce.combine.BandSink`).

    PRIMARY, VARIANCE, MAP and, for a dark, DARKRATE (e-/s from PRIMARY, gain
    and DARKTIME: :func:`reduce.qc.dark_rate_rows`) go to ``file``. The rows
    are final: the master bias is already subtracted
    (:class:`reduce.masterband.MasterBand`).

    Parameters
    ----------
    file
        The product being written.
    darktime_s
        DARKTIME of a dark (None: a bias, no DARKRATE).
    """

    def __init__(self, file: ProductFile, darktime_s: float | None) -> None:
        self._file = file
        self._darktime_s = darktime_s

    def __call__(self, r0: int, r1: int, combined: Combined) -> None:
        data = combined.data[r0:r1]
        self._file.write_rows("PRIMARY", r0, data)
        self._file.write_rows("VARIANCE", r0, combined.variance[r0:r1])
        self._file.write_rows("MAP", r0, combined.npix[r0:r1])
        if self._darktime_s is not None:
            rate = dark_rate_rows(data, r0, self._darktime_s)
            self._file.write_rows("DARKRATE", r0, rate)

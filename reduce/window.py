"""Exact running median of a stream of frames whose count is known in advance.

The streaming reduction knows how many valid frames a block will have (N),
so it can do the median's work while the frames arrive instead of after
the last one. For each pixel it keeps, sorted, only the values that can
still be one of the two middle values of the final N (ranks ``(N-1)//2``
and ``N//2``): after k frames, the values of rank ``max(0, (N-1)//2 -
(N-k))`` to ``min(k-1, N//2)`` among the first k. A new value x turns the
old rank-r values ``o[r]`` into the new ones by an insertion step that is
exact (no arithmetic, only comparisons)::

    new[r] = max(o[r-1], min(x, o[r]))      (o[-1] = -inf, o[k] = +inf)

so after the N-th frame the window holds exactly the two middle order
statistics, the same values a full sort (or megaradrp's ``nth_element``)
selects. The window is widest mid-way (``N//2 + 1`` planes) and shrinks to
two planes at the end: the insertion of the last frame and the final read
are a few passes over the frame.

The variance needs the frames' scatter: the running sums of ``x_k - x_0``
and of its square (float32, frame order; ``x_0`` the first frame), the same
arithmetic :func:`reduce.combine.combine_band_into` uses on a whole stack,
so both paths give identical arrays.

Everything lives in a scratch file (``x_0``, the two sums and the rank
planes), laid out band-major (all planes of a band of rows next to each
other), read and written a band at a time with one ``preadv``/``pwritev``
per group of planes: memory stays a few MiB per thread whatever N.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt

from reduce.combine import BandSink, Combined, finish_variance, middle_mean_into
from reduce.errors import ReductionError
from reduce.geometry import TRIMMED_SHAPE

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]

_FIRST, _SUM1, _SUM2, _RANKS = 0, 1, 2, 3
"""Plane slots of a band: first frame, sum of deviations, of their squares,
then the rank planes (slot ``_RANKS + r`` holds rank r)."""


def window_ranks(n_total: int, k: int) -> tuple[int, int]:
    """Ranks ``(lo, hi)`` kept after ``k`` of ``n_total`` frames (inclusive).

    A value of rank r among the first k ends with a rank between r and
    ``r + n_total - k`` among all of them; only those that can still reach
    a middle rank are kept. ``hi < lo`` for ``k = 0``.
    """
    return max(0, (n_total - 1) // 2 - (n_total - k)), min(k - 1, n_total // 2)


class MedianWindow:
    """Running exact median and variance of up to ``n_total`` frames.

    Parameters
    ----------
    path
        Scratch file to create (removed by :meth:`close`).
    n_total
        Frames that will be added (the medians of fewer can still be read,
        see :meth:`available`; more cannot).
    shape
        ``(rows, columns)`` of a frame.
    band_rows
        Rows per band.
    threads
        Worker threads for the band loop.
    """

    def __init__(
        self,
        path: Path,
        n_total: int,
        *,
        shape: tuple[int, int] = TRIMMED_SHAPE,
        band_rows: int = 32,
        threads: int = 1,
    ) -> None:
        if n_total < 1:
            raise ReductionError(f"median window: n_total={n_total}, expected >= 1")
        self.n_total = n_total
        self.n = 0
        self._shape = shape
        self._rows = band_rows
        self._slots = _RANKS + n_total // 2 + 1
        self._threads = max(1, threads)
        self._local = threading.local()
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        # Nameless from the start: a run killed mid-block (SIGKILL, power)
        # leaves no scratch file of hundreds of MiB behind; the kernel frees
        # the space when the descriptor goes.
        path.unlink()

    def _offset(self, r0: int, slot: int) -> int:
        rows = min(self._rows, self._shape[0] - r0)
        plane = rows * self._shape[1] * 4
        return r0 * self._shape[1] * 4 * self._slots + slot * plane

    def _buffer(self, name: str, planes: int, rows: int) -> Float32Array:
        key = f"{name}{planes}x{rows}"
        buf: Float32Array | None = getattr(self._local, key, None)
        if buf is None:
            buf = np.empty((planes, rows, self._shape[1]), dtype=np.float32)
            setattr(self._local, key, buf)
        return buf

    def _io(self, write: bool, r0: int, slot: int, planes: Float32Array) -> None:
        if self._fd is None:
            raise ReductionError(f"{self.path}: median window is closed")
        views = [p.data for p in planes]
        at = self._offset(r0, slot)
        if write:
            done = os.pwritev(self._fd, views, at)
            if done != planes.nbytes:  # rare: write the rest, and learn why
                self._write_rest(planes.reshape(-1).view(np.uint8).data, at, done)
            return
        done = os.preadv(self._fd, views, at)
        if done != planes.nbytes:
            raise ReductionError(
                f"{self.path}: short read at row {r0} ({done} of {planes.nbytes} "
                "bytes): the scratch file lost data; reduce again"
            )

    def _write_rest(self, data: memoryview, at: int, done: int) -> None:
        """Finish a short write; the write that cannot go on raises its OSError.

        A short write is a full disk or a size limit: writing the rest makes
        the kernel say which (ENOSPC, EFBIG), so the user reads the real cause.
        """
        fd = self._fd
        if fd is None:
            raise ValueError(f"{self.path}: scratch file already closed")
        while done < len(data):
            written = os.pwrite(fd, data[done:], at + done)
            if written == 0:
                raise ReductionError(
                    f"{self.path}: the scratch file takes no more bytes "
                    f"({done} of {len(data)} written); free space in the work "
                    "folder, then reduce again (or finish the run with --resume)"
                )
            done += written

    def _add_band(self, frame: Float32Array, r0: int) -> None:
        k, r1 = self.n, min(r0 + self._rows, self._shape[0])
        x = frame[r0:r1]
        rows = r1 - r0
        if k == 0:
            first = self._buffer("first", 3, rows)
            first[0] = x
            first[1:] = 0.0
            self._io(True, r0, _FIRST, first)
            self._io(True, r0, _RANKS, first[:1])
            return
        sums = self._buffer("sums", 3, rows)
        self._io(False, r0, _FIRST, sums)
        dev = np.subtract(x, sums[0], out=self._buffer("dev", 1, rows)[0])
        sums[1] += dev
        dev *= dev
        sums[2] += dev
        self._io(True, r0, _SUM1, sums[1:])
        lo, hi = window_ranks(self.n_total, k)
        new_lo, new_hi = window_ranks(self.n_total, k + 1)
        old = self._buffer("old", hi - lo + 1, rows)
        self._io(False, r0, _RANKS + lo, old)
        new = self._buffer("new", new_hi - new_lo + 1, rows)
        for r in range(new_lo, new_hi + 1):
            out = new[r - new_lo]
            if r <= hi:  # min(x, o[r]); o[k] = +inf leaves x
                np.minimum(x, old[r - lo], out=out)
            else:
                out[...] = x
            if r - 1 >= lo:  # max(o[r-1], .); o[-1] = -inf leaves it
                np.maximum(out, old[r - 1 - lo], out=out)
        self._io(True, r0, _RANKS + new_lo, new)

    def _bands(self) -> list[int]:
        return list(range(0, self._shape[0], self._rows))

    def _run(self, band: Callable[[int], None]) -> None:
        if self._threads == 1:
            for r0 in self._bands():
                band(r0)
            return
        with ThreadPoolExecutor(self._threads) as pool:
            for future in [pool.submit(band, r0) for r0 in self._bands()]:
                future.result()

    def add(self, frame: Float32Array) -> None:
        """Insert one preprocessed frame (float32, ``shape``, ADU)."""
        if self.n >= self.n_total:
            raise ReductionError(
                f"median window: frame {self.n + 1} of a window for {self.n_total}"
            )
        if frame.shape != self._shape or frame.dtype != np.float32:
            raise ReductionError(
                f"median window: frame {frame.dtype}{frame.shape}, expected "
                f"float32{self._shape}"
            )
        self._run(lambda r0: self._add_band(frame, r0))
        self.n += 1

    def available(self) -> bool:
        """Whether the median of the frames added so far can be read (n >= 2)."""
        lo, hi = window_ranks(self.n_total, self.n)
        return self.n >= 2 and lo <= (self.n - 1) // 2 and self.n // 2 <= hi

    def _result_band(
        self, out: Combined, r0: int, on_band: BandSink | None = None
    ) -> None:
        n, r1 = self.n, min(r0 + self._rows, self._shape[0])
        rows = r1 - r0
        sums = self._buffer("sums", 2, rows)
        self._io(False, r0, _SUM1, sums)
        mid = self._buffer("mid", 2 - n % 2, rows)
        self._io(False, r0, _RANKS + (n - 1) // 2, mid)
        if n % 2:
            out.data[r0:r1] = mid[0]
        else:
            middle_mean_into(mid[0], mid[1], out.data[r0:r1])
        finish_variance(sums[0], sums[1], n, out.variance[r0:r1])
        if on_band is not None:
            on_band(r0, r1, out)

    def result(self, on_band: BandSink | None = None) -> Combined:
        """Median, variance of the median and MAP of the frames added.

        ``on_band`` is called with each band once its rows are final
        (:data:`~reduce.combine.BandSink`).
        """
        if not self.available():
            raise ReductionError(
                f"median window: the median of {self.n} frames is not available"
            )
        out = Combined(
            np.empty(self._shape, np.float32),
            np.empty(self._shape, np.float32),
            np.full(self._shape, self.n, np.int16),
        )
        self._run(lambda r0: self._result_band(out, r0, on_band))
        return out

    @property
    def scratch_bytes(self) -> int:
        """Size of the (nameless) scratch file, bytes; 0 once closed."""
        return 0 if self._fd is None else os.fstat(self._fd).st_size

    def close(self) -> None:
        """Release the scratch file (idempotent).

        Its name went when it was made; the descriptor is closed on a helper thread,
        because the kernel frees the file's pages (hundreds of MiB) at the
        last close, which takes a tenth of a second nobody needs to wait for.
        """
        if self._fd is not None:
            fd, self._fd = self._fd, None
            threading.Thread(target=os.close, args=(fd,), name="window-close").start()

"""The simulated Archon's frame buffers: what ``FRAME``, ``LOCKn`` and ``FETCH`` see.

Three buffers (two with ``BIGBUF=1``) at the bases of
:mod:`drivers.protocol.archon`. A readout writes the next buffer after the
last one written (1, 2, 3, 1, ...), skipping the one locked with ``LOCKn``;
``WBUF`` names the buffer being (or last) written, 0 before the first readout.
While it is written, ``BUFnCOMPLETE=0`` and ``BUFnLINES``/``BUFnPIXELS`` count
what the readout has done; at its end ``BUFnCOMPLETE=1``. ``BUFnTIMESTAMP`` is
the controller clock (``TIMER``, ticks of 10 ns of simulated time) when the
readout started, ``BUFnRETIMESTAMP``/``BUFnFETIMESTAMP`` the start and end of
the integration it digitises.

``FETCH`` of ``n`` blocks from an address inside a buffer whose frame is
complete sends ``n`` binary blocks of the frame's little-endian pixels from
that address on, the bytes past the frame filled with 0xFF.

Ours, not confirmed by a public source: ``RBUF`` shows the locked buffer
(0: none); one buffer is locked at a time (``LOCKn`` moves the lock,
``LOCK0`` removes it); a ``FETCH`` outside a complete frame buffer (a buffer
being written, never written, or an address in no buffer) is refused with
``?xx`` where the real controller would send whatever its memory holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drivers.protocol.archon import BLOCK_SIZE, TIMER_HZ, encode_binary_reply
from drivers.protocol.archon_status import BufferStatus, FrameStatus
from simulators.archon_config import Geometry
from simulators.archon_timing import Exposure

log = logging.getLogger(__name__)

#: Blocks sent per chunk written to the link (64 KiB of pixels).
_CHUNK_BLOCKS = 64


class Refused(Exception):
    """The controller answers ``?xx`` (the text says why, for the log)."""


def ticks(t: float) -> int:
    """Simulated seconds as ``TIMER`` ticks (10 ns)."""
    return max(round(t * TIMER_HZ), 0)


@dataclass(frozen=True)
class FrameRecord:
    """What one frame holds, for tests and engineering checks.

    ``number`` is ``BUFnFRAME`` (1 for the first readout, also the frame's
    noise seed); ``exposure`` the charge its readout digitised.
    """

    number: int
    buffer: int
    geometry: Geometry
    exposure: Exposure


@dataclass
class _Buffer:
    number: int
    base: int
    complete: bool = False
    record: FrameRecord | None = None
    pixels: Future[npt.NDArray[np.generic]] | None = None
    timestamp: int = 0


class FrameBuffers:
    """The controller's frame buffers and the frame counter."""

    def __init__(self, geometry: Geometry, *, first_frame: int = 0) -> None:
        self.frame_count = first_frame
        self.wbuf = 0
        self.locked = 0
        self.writing = False
        self._geometry = geometry
        self._buffers = [_Buffer(n, base) for n, base in enumerate(geometry.bases, 1)]

    def configure(self, geometry: Geometry) -> None:
        """New geometry; a change of ``BIGBUF`` empties every buffer."""
        if geometry.bigbuf != self._geometry.bigbuf:
            self._buffers = [
                _Buffer(n, base) for n, base in enumerate(geometry.bases, 1)
            ]
            self.wbuf = self.locked = 0
            self.writing = False
        self._geometry = geometry

    def lock(self, number: int) -> None:
        """``LOCKn`` (0: unlock)."""
        if number > len(self._buffers):
            raise Refused(f"LOCK{number}: there are {len(self._buffers)} buffers")
        self.locked = number

    def begin(
        self,
        t: float,
        exposure: Exposure,
        make: Callable[[FrameRecord], Future[npt.NDArray[np.generic]]],
    ) -> FrameRecord:
        """A readout starts at ``t`` into the next free buffer.

        ``make`` starts making the frame's pixels (they are needed by the
        first ``FETCH`` of the buffer once it is complete).
        """
        count = len(self._buffers)
        number = self.wbuf % count + 1
        if number == self.locked:
            number = number % count + 1
        self.frame_count += 1
        record = FrameRecord(self.frame_count, number, self._geometry, exposure)
        buffer = self._buffers[number - 1]
        buffer.complete = False
        buffer.record = record
        buffer.pixels = make(record)
        buffer.timestamp = ticks(t)
        self.wbuf = number
        self.writing = True
        log.info("archon: reading frame %d into buffer %d", record.number, number)
        return record

    def end(self) -> None:
        """The readout under way is done: its buffer is complete."""
        if self.writing:
            self._buffers[self.wbuf - 1].complete = True
            self.writing = False

    def drop(self) -> None:
        """The readout under way was dropped: its buffer stays incomplete."""
        if self.writing:
            buffer = self._buffers[self.wbuf - 1]
            buffer.pixels = None
            self.writing = False

    def record(self, number: int) -> FrameRecord | None:
        """The frame last written to buffer ``number``, complete or not."""
        return self._buffers[number - 1].record

    def status(self, now: float, progress: float) -> FrameStatus:
        """The ``FRAME`` reply at ``now``; ``progress`` of the readout under way."""
        return FrameStatus(
            rbuf=self.locked,
            wbuf=self.wbuf,
            buffers=tuple(self._status(b, progress) for b in self._buffers),
            timer=ticks(now),
        )

    def _status(self, buffer: _Buffer, progress: float) -> BufferStatus:
        record = buffer.record
        if record is None:
            return BufferStatus(
                number=buffer.number,
                complete=False,
                sample=self._geometry.sample,
                base=buffer.base,
                frame=0,
                width=0,
                height=0,
                timestamp=0,
            )
        geometry = record.geometry
        width, height = geometry.width, geometry.height
        lines, pixels = height, width
        if not buffer.complete:
            done = int((progress if self._writing(buffer) else 0.0) * width * height)
            lines, pixels = divmod(done, width)
        integration = record.exposure.integration or (0.0, 0.0)
        return BufferStatus(
            number=buffer.number,
            complete=buffer.complete,
            sample=geometry.sample,
            base=buffer.base,
            frame=record.number,
            width=width,
            height=height,
            timestamp=buffer.timestamp,
            pixels=pixels,
            lines=lines,
            re_timestamp=ticks(integration[0]),
            fe_timestamp=ticks(integration[1]),
        )

    def _writing(self, buffer: _Buffer) -> bool:
        return self.writing and buffer.number == self.wbuf

    def fetch(
        self, reply_id: int, address: int, nblocks: int
    ) -> tuple[FrameRecord, Iterator[bytes]]:
        """The frame record and the binary blocks of ``FETCH`` (lazily).

        Raises
        ------
        Refused
            The address is in no complete buffer, or the blocks run past it.
        """
        for buffer in self._buffers:
            span = self._geometry.buffer_span
            if buffer.base <= address < buffer.base + span:
                break
        else:
            raise Refused(f"FETCH at {address:08X}: no frame buffer there")
        offset = address - buffer.base
        if offset + nblocks * BLOCK_SIZE > span:
            raise Refused(f"FETCH of {nblocks} blocks runs past buffer {buffer.number}")
        if not buffer.complete or buffer.pixels is None or buffer.record is None:
            raise Refused(f"FETCH of buffer {buffer.number}: no complete frame in it")
        pixels = buffer.pixels.result()  # made while the CCD was read out
        return buffer.record, _blocks(reply_id, pixels, offset, nblocks)


def _blocks(
    reply_id: int, pixels: npt.NDArray[np.generic], offset: int, nblocks: int
) -> Iterator[bytes]:
    """``nblocks`` binary replies of the frame's bytes from ``offset``."""
    with pixels.data.cast("B") as data:
        for first in range(0, nblocks, _CHUNK_BLOCKS):
            count = min(_CHUNK_BLOCKS, nblocks - first)
            start = offset + first * BLOCK_SIZE
            chunk = bytes(data[start : start + count * BLOCK_SIZE])
            yield encode_binary_reply(reply_id, chunk, nblocks=count)

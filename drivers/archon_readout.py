"""Reading one frame buffer of the Archon: the transfer and the pixels it makes.

Functions over :class:`~drivers.archon_link.ArchonLink` (which owns the
exchange), used by :meth:`drivers.archon.ArchonCcdController.read_frame`:
the controller module imports this one, never the other way round. The
stream is read by the kernel straight into one row per block (``<xx:`` +
1024 bytes); a transfer cut short is resumed with a ``FETCH`` from the first
block missing, up to ``CcdConfig.retries`` times, and the pixels are made
from the rows in one copy that also swaps them to big-endian for FITS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drivers.archon_link import ArchonLink, TransferCut
from drivers.errors import DeviceError
from drivers.interfaces import Progress
from drivers.protocol import archon as protocol
from drivers.protocol.archon import BINARY_HEADER_SIZE
from drivers.protocol.archon_status import BufferStatus

log = logging.getLogger(__name__)

#: Bytes of one binary block on the wire: ``<xx:`` + payload.
ROW = BINARY_HEADER_SIZE + protocol.BLOCK_SIZE
#: MEGARA's raw frame: lines and pixels per line.
ROWS, COLS = 4212, 4196


@dataclass(frozen=True)
class Transfer:
    """A buffer's blocks as received, and what it took to get them.

    ``rows``: one ``<xx:`` + 1024 bytes per block, headers checked;
    ``rounds``: the ``FETCH`` transfers needed; ``again``: the blocks asked
    for by the transfers after the first.
    """

    rows: npt.NDArray[np.uint8]
    rounds: int
    again: int

    def pixels(self, rows: int, cols: int) -> npt.NDArray[np.uint16]:
        """The frame, ``rows`` x ``cols`` big-endian 16-bit pixels (one copy)."""
        swapped = np.empty((len(self.rows), protocol.BLOCK_SIZE // 2), dtype=">u2")
        swapped[...] = self.rows[:, BINARY_HEADER_SIZE:].view("<u2")
        return swapped.reshape(-1)[: rows * cols].reshape(rows, cols)


def fetch_buffer(
    archon: ArchonLink, buffer: BufferStatus, progress: Progress | None = None
) -> Transfer:
    """Every block of ``buffer`` (locked by the caller), resumed if cut short.

    Raises
    ------
    DeviceError
        Blocks still missing after ``retries`` resumed transfers.
    """
    nblocks = protocol.blocks_for(buffer.nbytes)
    rows = np.empty((nblocks, ROW), dtype=np.uint8)
    have = rounds = again = 0
    while have < nblocks:
        rounds += 1
        again += (nblocks - have) if rounds > 1 else 0

        def report(blocks: int, have: int = have) -> None:
            if progress is not None:
                done = (have + blocks) * protocol.BLOCK_SIZE
                progress(min(done, buffer.nbytes), buffer.nbytes)

        try:
            archon.fetch(buffer.base + have * protocol.BLOCK_SIZE, rows[have:], report)
            have = nblocks
        except TransferCut as cut:
            have += cut.blocks
            _resume(archon, buffer, cut, (have, nblocks, rounds))
    archon.retries_used += rounds - 1
    if progress is not None:
        progress(buffer.nbytes, buffer.nbytes)
    return Transfer(rows, rounds, again)


def _resume(
    archon: ArchonLink,
    buffer: BufferStatus,
    cut: TransferCut,
    counts: tuple[int, int, int],
) -> None:
    """Log a transfer cut short and get ready for the next, or give up."""
    have, nblocks, rounds = counts
    if rounds > archon.config.retries:
        raise DeviceError(
            f"ccd: {nblocks - have} of {nblocks} blocks of frame {buffer.frame}"
            f" still missing after {rounds} transfers on {archon.url} (last:"
            f" {cut.cause}); the frame is lost: check the network, then take"
            " the exposure again"
        ) from cut.cause
    log.warning(
        "ccd: transfer of frame %d cut after %d of %d blocks (%s); resuming",
        buffer.frame,
        have,
        nblocks,
        cut.cause,
    )
    archon.recover(cut.cause)
    archon.command(protocol.lock_command(buffer.number))


def check_geometry(buffer: BufferStatus, url: str) -> None:
    """Refuse a buffer that does not hold MEGARA's raw frame."""
    shape = (buffer.height, buffer.width, buffer.sample)
    if shape != (ROWS, COLS, protocol.SampleMode.BITS16):
        raise DeviceError(
            f"ccd: frame {buffer.frame} on {url} is {buffer.width} x {buffer.height}"
            f" pixels of {buffer.sample.name}; expected {COLS} x {ROWS} of 16 bits"
            " (MEGARA raw): check the controller's ACF (LINECOUNT, PIXELCOUNT,"
            " FRAMEMODE, SAMPLEMODE)"
        )

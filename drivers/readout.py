"""Pixel transfer from the CCD controller: CRC-checked blocks, re-fetched if bad.

The whole frame is requested once (``READ``); the blocks stream back to
back, each checked against its CRC-32 as it lands in a preallocated buffer.
Blocks that arrive corrupted, or never arrive because the link dropped, are
fetched again one run at a time (``READ first count``), up to
``CcdConfig.retries`` rounds. Finally the CRC of the whole frame, which the
controller announced in its FRAME reply, is checked too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from drivers.errors import DeviceError, DeviceTimeout, ProtocolError
from drivers.protocol import ccd as proto
from drivers.transport import LinkError

if TYPE_CHECKING:
    from drivers.ccd import SerialCcdController

log = logging.getLogger(__name__)

#: Called during a readout with (bytes received, bytes expected).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Readout:
    """One frame as transferred from the controller.

    Attributes
    ----------
    info
        The controller's description of the frame (exposure, temperatures,
        shutter evidence, whole-frame CRC).
    pixels
        ``rows x cols`` big-endian uint16 ADU, ready for a BITPIX=16 FITS file.
    bad_blocks
        Blocks that arrived with a wrong CRC and were fetched again (in the
        order they arrived; a block corrupted twice appears twice).
    refetched
        Distinct blocks requested more than once (bad CRC, or lost to a
        stalled or dropped link).
    rounds
        Rounds of READ requests needed (1 when nothing went wrong): the
        first READ of the whole frame, then one round of ``READ first count``
        runs per re-fetch.
    """

    info: proto.FrameInfo
    pixels: npt.NDArray[np.uint16]
    bad_blocks: tuple[int, ...]
    refetched: int
    rounds: int


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Sorted block indices as (first, count) runs."""
    runs: list[tuple[int, int]] = []
    for index in sorted(indices):
        if runs and runs[-1][0] + runs[-1][1] == index:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((index, 1))
    return runs


class _Transfer:
    def __init__(self, ccd: SerialCcdController, info: proto.FrameInfo) -> None:
        self.ccd = ccd
        self.info = info
        self.buffer = bytearray(info.nbytes)
        self.missing = set(range(info.blocks))
        self.received = 0
        self.bad: list[int] = []
        self.refetched: set[int] = set()

    def stream(
        self, first: int | None, count: int | None, progress: Progress | None
    ) -> None:
        """One READ request; store every good block until its end or a stall."""
        ccd = self.ccd
        command = proto.Read(ccd.next_mid(), first, count)
        ccd.link.discard_input()
        ccd.framer = proto.Framer()
        ccd.link.write(proto.encode_command(command))
        timeout = ccd.config.block_timeout_s
        deadline = time.monotonic() + max(timeout, ccd.config.reply_timeout_s)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeviceTimeout(
                    f"ccd: readout stalled on {ccd.url}: nothing for {timeout:g} s "
                    f"with {len(self.missing)} of {self.info.blocks} blocks missing"
                )
            data = ccd.link.read_some(wait_s=min(left, 0.5))
            if not data:
                continue
            deadline = time.monotonic() + timeout
            for reply in ccd.framer.feed_decoded(data):
                if isinstance(reply, proto.ErrorReply) and reply.mid is None:
                    raise ProtocolError(
                        f"ccd: controller on {ccd.url} could not read the message "
                        f"id of {proto.encode_command(command)!r} (error "
                        f"{reply.code}: {reply.message}); garbled on the line"
                    )
                if reply.mid != command.mid:
                    continue  # the tail of an earlier, abandoned stream
                if isinstance(reply, proto.DataBlock):
                    self._store(reply, progress)
                elif isinstance(reply, proto.ReadDone):
                    return
                elif isinstance(reply, proto.ErrorReply):
                    raise DeviceError(
                        f"ccd: controller on {ccd.url} refused the readout of frame "
                        f"{self.info.frame} with error {reply.code}: {reply.message}"
                        "; expected a frame READY in memory: EXPOSE, wait for "
                        "STATE=READY, then read"
                    )
                else:
                    raise ProtocolError(
                        f"ccd: unexpected {type(reply).__name__} inside a readout"
                    )

    def _store(self, block: proto.DataBlock, progress: Progress | None) -> None:
        index = block.index
        if not 0 <= index < self.info.blocks:
            raise ProtocolError(
                f"ccd: block {index} is outside the frame's {self.info.blocks} blocks"
            )
        start, stop = self.info.block_span(index)
        if len(block.payload) != stop - start:
            raise ProtocolError(
                f"ccd: block {index} carries {len(block.payload)} bytes; "
                f"expected {stop - start}"
            )
        if not block.crc_ok:
            self.bad.append(index)
            log.warning(
                "ccd: block %d failed its CRC check; it will be re-fetched", index
            )
            return
        if index in self.missing:
            self.buffer[start:stop] = block.payload
            self.missing.discard(index)
            self.received += stop - start
            if progress is not None:
                progress(self.received, self.info.nbytes)


def _describe(indices: set[int]) -> str:
    """Block indices as short runs: ``3, 270-539`` (at most five runs shown)."""
    runs = _runs(list(indices))
    text = ", ".join(
        str(first) if count == 1 else f"{first}-{first + count - 1}"
        for first, count in runs[:5]
    )
    return text + (f" and {len(runs) - 5} more runs" if len(runs) > 5 else "")


def check_frame_info(info: proto.FrameInfo, url: str) -> None:
    """Refuse a frame that is not MEGARA raw, or whose numbers disagree.

    Raises
    ------
    DeviceError
        The controller holds a frame of another geometry (wrong readout mode).
    ProtocolError
        Byte count, block size and block count do not add up.
    """
    geometry = (info.rows, info.cols, info.bitpix)
    if geometry != (proto.ROWS, proto.COLS, proto.BITPIX):
        raise DeviceError(
            f"ccd: frame {info.frame} on {url} is {info.rows}x{info.cols} pixels of "
            f"{info.bitpix} bits; expected {proto.ROWS}x{proto.COLS} of "
            f"{proto.BITPIX} bits (MEGARA raw): check the controller's readout "
            "mode (binning, region of interest)"
        )
    consistent = (
        info.nbytes == proto.FRAME_BYTES
        and 0 < info.block_size <= proto.MAX_BLOCK_SIZE
        and info.blocks == proto.block_count(info.nbytes, info.block_size)
    )
    if not consistent:
        raise ProtocolError(
            f"ccd: frame {info.frame} on {url} announces {info.nbytes} bytes in "
            f"{info.blocks} blocks of {info.block_size}; expected "
            f"{proto.FRAME_BYTES} bytes in ceil(bytes / block size) blocks of 1 to "
            f"{proto.MAX_BLOCK_SIZE} bytes"
        )


def read_frame(ccd: SerialCcdController, progress: Progress | None = None) -> Readout:
    """Transfer the frame in the controller's memory, every block CRC-checked.

    Parameters
    ----------
    ccd
        The controller, with a frame READY in its memory.
    progress
        Called with (bytes stored, bytes expected) after each good block.

    Raises
    ------
    DeviceError
        Blocks still missing or corrupt after ``retries`` re-fetch rounds, the
        assembled frame fails its whole-frame CRC, or the frame is not MEGARA
        raw.
    ProtocolError
        The frame description does not add up.
    """
    info = ccd.frame_info()
    check_frame_info(info, ccd.url)
    transfer = _Transfer(ccd, info)
    rounds = 0
    requests: list[tuple[int | None, int | None]] = [(None, None)]
    while True:
        rounds += 1
        for first, count in requests:
            try:
                transfer.stream(first, count, progress)
            except (DeviceTimeout, LinkError, ProtocolError) as err:
                log.warning("ccd: readout round %d interrupted: %s", rounds, err)
                if isinstance(err, LinkError):
                    ccd.reconnect()
                elif isinstance(err, ProtocolError):
                    ccd.drain()  # the rest of the garbled stream is still coming
                break
        if not transfer.missing:
            break
        if rounds > ccd.config.retries:
            raise DeviceError(
                f"ccd: {len(transfer.missing)} of {info.blocks} readout blocks of "
                f"frame {info.frame} still missing or corrupt after {rounds} rounds "
                f"on {ccd.url} (blocks {_describe(transfer.missing)}); the frame is "
                "lost: check the link, then take the exposure again"
            )
        requests = [(first, count) for first, count in _runs(list(transfer.missing))]
        transfer.refetched.update(transfer.missing)
        log.warning(
            "ccd: re-fetching %d block(s) in %d run(s)",
            len(transfer.missing),
            len(requests),
        )
    if proto.crc32(transfer.buffer) != info.crc:
        raise DeviceError(
            f"ccd: assembled frame {info.frame} fails its whole-frame CRC on "
            f"{ccd.url} (got {proto.crc32(transfer.buffer):08X}, announced "
            f"{info.crc:08X}) although every block passed; the controller's memory "
            "may be corrupt: take the exposure again"
        )
    ccd.retries_used += rounds - 1
    pixels = np.frombuffer(transfer.buffer, dtype=">u2").reshape(info.rows, info.cols)
    return Readout(
        info=info,
        pixels=pixels,
        bad_blocks=tuple(transfer.bad),
        refetched=len(transfer.refetched),
        rounds=rounds,
    )

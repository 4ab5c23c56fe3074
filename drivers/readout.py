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
        Blocks that arrived with a wrong CRC and were fetched again.
    refetched
        Blocks fetched more than once (bad CRC or lost to a dropped link).
    rounds
        READ requests needed (1 when nothing went wrong).
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
        self.fetches = 0

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
                if reply.mid != command.mid:
                    continue  # the tail of an earlier, abandoned stream
                if isinstance(reply, proto.DataBlock):
                    self._store(reply, progress)
                elif isinstance(reply, proto.ReadDone):
                    return
                elif isinstance(reply, proto.ErrorReply):
                    raise DeviceError(
                        f"ccd: controller on {ccd.url} refused the readout with "
                        f"error {reply.code}: {reply.message}"
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
        self.fetches += 1
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


def read_frame(ccd: SerialCcdController, progress: Progress | None = None) -> Readout:
    """Transfer the frame in the controller's memory, every block CRC-checked.

    Raises
    ------
    DeviceError
        Blocks still missing or corrupt after ``retries`` re-fetch rounds, or
        the assembled frame fails its whole-frame CRC.
    """
    info = ccd.frame_info()
    if (info.rows, info.cols, info.bitpix) != (proto.ROWS, proto.COLS, proto.BITPIX):
        raise ProtocolError(
            f"ccd: frame is {info.rows}x{info.cols}x{info.bitpix} bits; expected "
            f"{proto.ROWS}x{proto.COLS}x{proto.BITPIX} (MEGARA raw)"
        )
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
                break
        if not transfer.missing:
            break
        if rounds > ccd.config.retries:
            raise DeviceError(
                f"ccd: {len(transfer.missing)} of {info.blocks} readout blocks still "
                f"missing or corrupt after {rounds} rounds on {ccd.url} "
                f"(first: {sorted(transfer.missing)[:5]}); the frame is lost: check "
                "the link, then take the exposure again"
            )
        requests = [(first, count) for first, count in _runs(list(transfer.missing))]
        log.warning(
            "ccd: re-fetching %d block(s) in %d run(s)",
            len(transfer.missing),
            len(requests),
        )
    if proto.crc32(transfer.buffer) != info.crc:
        raise DeviceError(
            f"ccd: assembled frame {info.frame} fails its whole-frame CRC on "
            f"{ccd.url} although every block passed; the controller's memory may "
            "be corrupt: take the exposure again"
        )
    ccd.retries_used += rounds - 1
    pixels = np.frombuffer(transfer.buffer, dtype=">u2").reshape(info.rows, info.cols)
    return Readout(
        info=info,
        pixels=pixels,
        bad_blocks=tuple(transfer.bad),
        refetched=transfer.fetches - info.blocks,
        rounds=rounds,
    )

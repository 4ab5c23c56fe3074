"""Cutting the Archon's byte stream into replies and commands (both sides).

Binary ``FETCH`` blocks carry no terminator: the driver's :class:`Framer` is
told how many to expect; the simulator's :class:`CommandFramer` cuts command
lines. See :mod:`drivers.protocol.archon` for the grammar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drivers.errors import ProtocolError, shown
from drivers.protocol.archon import (
    _DEVICE,
    BINARY_HEADER_SIZE,
    BLOCK_SIZE,
    MAX_TEXT_FRAME,
    TERMINATOR,
    Reply,
    _check_id,
    decode_reply,
)

_BLOCK_FRAME = BINARY_HEADER_SIZE + BLOCK_SIZE
_HEAD_RE = re.compile(rb"[<?](?:[0-9A-F](?:[0-9A-F][\x00-\xff]?)?)?")


@dataclass
class _Transfer:
    """A ``FETCH`` under way: its blocks' payloads are copied into ``data``."""

    nblocks: int
    data: npt.NDArray[np.uint8]
    received: int = 0


class Framer:
    """The driver's side: bytes from the controller in, :class:`Reply` out.

    Binary blocks carry no terminator, so the driver announces each ``FETCH``
    with :meth:`expect_binary` before sending it; its blocks then come out as
    one :class:`Reply` holding all their payloads once the last has arrived
    (or as ``?xx`` if the controller refuses). After a :class:`ProtocolError`
    the stream has lost its place: the framer is emptied, reconnect.
    """

    def __init__(self, *, max_text: int = MAX_TEXT_FRAME) -> None:
        self._buffer = bytearray()
        self._transfers: dict[int, _Transfer] = {}
        self._max_text = max_text

    def expect_binary(self, reply_id: int, nblocks: int) -> None:
        """Read ``<xx:`` from ``reply_id`` as ``nblocks`` binary blocks."""
        _check_id(reply_id)
        if nblocks < 1 or reply_id in self._transfers:
            raise ProtocolError(
                f"{_DEVICE}: cannot expect {nblocks!r} blocks for id {reply_id:02X};"
                " expected 1.. blocks and no other transfer with that id"
            )
        data = np.empty((nblocks, BLOCK_SIZE), dtype=np.uint8)
        self._transfers[reply_id] = _Transfer(nblocks, data)

    def blocks_received(self, reply_id: int) -> int:
        """Blocks of the transfer ``reply_id`` received so far (0 if none)."""
        transfer = self._transfers.get(reply_id)
        return 0 if transfer is None else transfer.received

    def cancel_binary(self, reply_id: int) -> int:
        """Give up the transfer ``reply_id``; returns the blocks it had received."""
        transfer = self._transfers.pop(reply_id, None)
        return 0 if transfer is None else transfer.received

    @property
    def buffered(self) -> int:
        """Bytes held back until the rest of their frame arrives."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget buffered bytes and announced transfers (after a reconnect)."""
        self._buffer.clear()
        self._transfers.clear()

    def feed(self, data: bytes) -> list[Reply]:
        """The replies completed by ``data``."""
        self._buffer += data
        replies: list[Reply] = []
        start = 0
        try:
            with memoryview(self._buffer) as view:
                while (end := self._take(view, start, replies)) != start:
                    start = end
        except ProtocolError:
            self.reset()
            raise
        del self._buffer[:start]
        return replies

    def _take(self, view: memoryview, start: int, replies: list[Reply]) -> int:
        """Take one frame at ``start``; returns where the next one begins."""
        head = bytes(view[start : start + BINARY_HEADER_SIZE])
        if not head:
            return start
        if _HEAD_RE.fullmatch(head) is None:
            raise ProtocolError(
                f"{_DEVICE}: unparseable reply {shown(bytes(view[start:][:40]))};"
                " expected b'<xx...\\n' or b'?xx\\n'"
            )
        if len(head) < BINARY_HEADER_SIZE:
            return start
        transfer = self._transfers.get(int(head[1:3], 16))
        if transfer is not None and head.startswith(b"<"):
            return self._take_block(view, start, head, transfer, replies)
        newline = self._buffer.find(TERMINATOR, start)
        if newline < 0:
            if len(view) - start > self._max_text:
                raise ProtocolError(
                    f"{_DEVICE}: reply {shown(head)}... runs past {self._max_text}"
                    " bytes without a terminator; expected b'<xx...\\n'"
                )
            return start
        reply = decode_reply(bytes(view[start : newline + 1]))
        self._transfers.pop(reply.id, None)  # a FETCH refused with ?xx
        replies.append(reply)
        return newline + 1

    def _take_block(
        self,
        view: memoryview,
        start: int,
        head: bytes,
        transfer: _Transfer,
        replies: list[Reply],
    ) -> int:
        reply_id = int(head[1:3], 16)
        if head[3:] != b":":
            raise ProtocolError(
                f"{_DEVICE}: text reply {shown(head)}... to FETCH {reply_id:02X};"
                f" expected b'<{reply_id:02X}:' + {BLOCK_SIZE} bytes"
                f" or b'?{reply_id:02X}\\n'"
            )
        # All the whole blocks at hand at once, in C: a frame is 35 000 blocks.
        count = min(
            (len(view) - start) // _BLOCK_FRAME, transfer.nblocks - transfer.received
        )
        if count == 0:
            return start
        blocks = np.frombuffer(
            view, dtype=np.uint8, count=count * _BLOCK_FRAME, offset=start
        ).reshape(count, _BLOCK_FRAME)
        headed = (blocks[:, :BINARY_HEADER_SIZE] == np.frombuffer(head, np.uint8)).all(
            axis=1
        )
        if not headed.all():  # ?xx or garbage: the next call looks at it
            count = int(headed.argmin())
        done = transfer.received
        transfer.data[done : done + count] = blocks[:count, BINARY_HEADER_SIZE:]
        transfer.received += count
        if transfer.received == transfer.nblocks:
            del self._transfers[reply_id]
            replies.append(Reply(reply_id, binary=transfer.data.tobytes()))
        return start + count * _BLOCK_FRAME


class CommandFramer:
    """The simulator's side: bytes from the host in, command lines out.

    A line longer than ``max_text`` comes out cut short and without its
    terminator (so that :func:`decode_command` rejects it); the rest of it, up
    to the next terminator, is dropped.
    """

    def __init__(self, *, max_text: int = MAX_TEXT_FRAME) -> None:
        self._buffer = bytearray()
        self._max_text = max_text
        self._dropping = False

    def feed(self, data: bytes) -> list[bytes]:
        """The command lines completed by ``data``, terminators included."""
        self._buffer += data
        frames: list[bytes] = []
        start = 0
        while (newline := self._buffer.find(TERMINATOR, start)) >= 0:
            if not self._dropping:
                # However the bytes came in, a line over the limit is cut.
                end = min(newline + 1, start + self._max_text)
                frames.append(bytes(self._buffer[start:end]))
            self._dropping = False
            start = newline + 1
        del self._buffer[:start]
        if len(self._buffer) > self._max_text and not self._dropping:
            frames.append(bytes(self._buffer[: self._max_text]))
            self._dropping = True
        if self._dropping:
            self._buffer.clear()
        return frames

"""The exchange with an STA Archon controller: commands, replies, FETCH, retries.

One place sends a command line and waits for the reply carrying its message
id (:meth:`ArchonLink.command`, :meth:`ArchonLink.fetch`, and the pipelined
:meth:`ArchonLink.command_many` all end in :meth:`ArchonLink._await`). Replies
with another id (late answers to an attempt given up on) are dropped.

Every command this driver sends is idempotent (parameters are set to values,
not stepped; ``HOLDTIMING``/``RELEASETIMING``/``RESETTIMING`` leave the core in
the same state when repeated; ``FETCH`` reads a locked buffer), so a lost,
late or garbled reply is retried by sending the command again, up to
``CcdConfig.retries`` times. ``?xx`` is the controller refusing the command:
it is raised at once as :class:`ArchonRefused`, never retried.

What the protocol cannot detect: a binary block carries no checksum, so a
byte changed inside a block's payload on the line arrives unnoticed. TCP's
own checksum covers the loopback and network path; what we check on top is
every block's ``<xx:`` header (a slipped or garbled stream fails it), the
exact block count, the buffer's geometry and frame number before and after
the transfer (a buffer overwritten during it is refused), and the buffer is
locked (``LOCKn``) while it is read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from drivers.config import CcdConfig
from drivers.errors import DeviceError, DeviceTimeout, ProtocolError
from drivers.protocol import archon as protocol
from drivers.protocol.archon import BINARY_HEADER_SIZE
from drivers.protocol.archon_framer import Framer
from drivers.transport import LinkError, SerialLink

log = logging.getLogger(__name__)

R = TypeVar("R")

#: Faults worth another attempt: the line, not the controller, misbehaved.
TRANSIENT = (DeviceTimeout, ProtocolError, LinkError)
#: Longest single wait on the line, seconds (deadlines are checked between).
_SLICE_S = 0.5
#: Bytes of one binary block on the wire: ``<xx:`` + payload.
_ROW = BINARY_HEADER_SIZE + protocol.BLOCK_SIZE


class ArchonRefused(DeviceError):
    """The controller answered ``?xx``: it could not carry the command out."""

    def __init__(self, message: str, command: str) -> None:
        super().__init__(message)
        self.command = command


class TransferCut(Exception):
    """A ``FETCH`` ended early by ``cause``; ``blocks``: the leading ones good."""

    def __init__(self, cause: Exception, blocks: int) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.blocks = blocks


def _headed(rows: npt.NDArray[np.uint8], header: npt.NDArray[np.uint8]) -> int:
    """How many leading rows of ``rows`` begin with ``header``."""
    if not len(rows):
        return 0
    ok = (rows[:, :BINARY_HEADER_SIZE] == header).all(axis=1)
    return len(rows) if ok.all() else int(ok.argmin())


class ArchonLink:
    """Message ids, the reply loop and retries over one pyserial ``socket://`` line.

    Parameters
    ----------
    link
        The line (opened on first use).
    config
        Reply and block timeouts, retries.
    """

    def __init__(self, link: SerialLink, config: CcdConfig) -> None:
        self.link = link
        self.config = config
        self.framer = Framer()
        self._id = protocol.MAX_ID  # the first command gets id 00
        #: Ids sent and not yet answered, with replies that came before their turn.
        self._outstanding: set[int] = set()
        self._early: dict[int, protocol.Reply] = {}
        #: Transient faults recovered from since this link was made.
        self.retries_used = 0

    @property
    def url(self) -> str:
        return self.link.url

    # -- public exchanges --------------------------------------------------------

    def command(self, text: str) -> str:
        """Send ``text``; its reply's payload (retried after transient faults)."""
        return self.retrying(text, lambda: self._once(text))

    def query(self, text: str, parse: Callable[[str], R]) -> R:
        """Send ``text``; ``parse`` of its reply's payload, both in one attempt.

        A payload ``parse`` rejects (ProtocolError) is retried like a lost
        reply, within the same ``retries + 1`` attempts.
        """
        return self.retrying(text, lambda: parse(self._once(text)))

    def command_many(self, texts: Iterable[str], window: int = 64) -> list[str]:
        """Send ``texts`` ``window`` at a time without waiting; their payloads.

        A failure anywhere sends the unanswered ones again one by one.
        """
        texts = list(texts)
        payloads: list[str] = []
        window = max(1, min(window, protocol.MAX_ID))
        while len(payloads) < len(texts):
            batch = texts[len(payloads) : len(payloads) + window]
            try:
                self.link.discard_input()
                ids = [self._send(text) for text in batch]
                for reply_id, text in zip(ids, batch, strict=True):
                    payloads.append(self._text(self._await(reply_id, text), text))
            except TRANSIENT as err:
                self.recover(err)
                self.retries_used += 1
                for text in texts[len(payloads) :]:
                    payloads.append(self.command(text))
        return payloads

    def fetch(
        self,
        base: int,
        out: npt.NDArray[np.uint8],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """``FETCH`` ``len(out)`` blocks from ``base`` once, straight into ``out``.

        ``out`` holds one row of ``<xx:`` + 1024 bytes per block: the kernel
        copies the stream into it with nothing in between, and the headers
        are checked together at the end. The stream must begin within
        ``reply_timeout_s`` and then flow with no gap of ``block_timeout_s``;
        ``progress`` gets the whole blocks received. Not retried here: on a
        transient fault :class:`TransferCut` says how many leading blocks
        arrived whole and well headed, so the caller fetches only the rest.
        """
        nblocks = len(out)
        text = protocol.fetch_command(base, nblocks)
        if self.framer.buffered:
            self.drain()  # the raw read must begin at this reply
        self.link.discard_input()
        reply_id = self._send(text)
        self._outstanding.discard(reply_id)
        header = np.frombuffer(f"<{reply_id:02X}:".encode("ascii"), np.uint8)
        self._stream_into(out, reply_id, text, header, progress)
        good = _headed(out, header)
        if good < nblocks:
            raise TransferCut(
                ProtocolError(
                    f"ccd: block {good} of {text} on {self.url} has the header"
                    f" {bytes(out[good, :4])!r}; expected {bytes(header)!r}"
                ),
                good,
            )

    def _stream_into(
        self,
        out: npt.NDArray[np.uint8],
        reply_id: int,
        text: str,
        header: npt.NDArray[np.uint8],
        progress: Callable[[int], None] | None,
    ) -> None:
        """Read the reply to ``text`` into ``out`` until it is full."""
        flat = memoryview(out.reshape(-1))  # type: ignore[arg-type]
        filled = 0
        timeout = self.config.reply_timeout_s
        deadline = time.monotonic() + timeout
        try:
            while filled < len(flat):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeviceTimeout(
                        f"ccd: no reply to {text} within {timeout:g} s on {self.url}"
                        if filled == 0
                        else f"ccd: transfer stalled on {self.url}: nothing for"
                        f" {timeout:g} s after {filled // _ROW} blocks of {text}"
                    )
                count = self.link.read_into(flat[filled:], wait_s=min(left, _SLICE_S))
                if not count:
                    continue
                if filled < BINARY_HEADER_SIZE <= filled + count:
                    self._check_start(flat, text, header)
                filled += count
                timeout = self.config.block_timeout_s
                deadline = time.monotonic() + timeout
                if progress is not None:
                    progress(filled // _ROW)
        except TRANSIENT as err:
            if filled == 0 and isinstance(err, DeviceTimeout):
                # Perhaps only late: its blocks are read and dropped by id.
                self.framer.expect_binary(reply_id, len(out))
            raise TransferCut(err, _headed(out[: filled // _ROW], header)) from err

    def _check_start(
        self, flat: memoryview, text: str, header: npt.NDArray[np.uint8]
    ) -> None:
        """Refusal (``?xx``) or a first header that is not ours."""
        head = bytes(flat[:BINARY_HEADER_SIZE])
        if head == b"?" + head[1:3] + b"\n" and head[1:3] == bytes(header[1:3]):
            raise ArchonRefused(
                f"ccd: the controller on {self.url} refused {text} ({head!r})", text
            )
        if head != bytes(header):
            raise ProtocolError(
                f"ccd: reply {head!r} to {text} on {self.url}; expected"
                f" {bytes(header)!r} + {protocol.BLOCK_SIZE} bytes per block"
            )

    # -- retries -----------------------------------------------------------------

    def retrying(self, what: str, attempt: Callable[[], R]) -> R:
        """``attempt()`` until it succeeds, at most ``retries + 1`` times.

        Raises
        ------
        ArchonRefused
            The controller refused (not retried).
        DeviceTimeout, LinkError, ProtocolError
            Every attempt failed; the error names the last failure.
        """
        attempts = self.config.retries + 1
        last: Exception | None = None
        for number in range(1, attempts + 1):
            try:
                result = attempt()
            except TRANSIENT as err:
                last = err
                log.warning("ccd: attempt %d/%d failed: %s", number, attempts, err)
                self.recover(err)
                continue
            if number > 1:
                self.retries_used += number - 1
                log.warning("ccd: recovered after %d failed attempt(s)", number - 1)
            return result
        if last is None:  # attempts >= 1: only when retries < 0
            raise ValueError(f"ccd: {attempts} attempts configured; expected >= 1")
        raise _give_up(last, what, attempts, self.url, self.config.reply_timeout_s)

    def recover(self, err: Exception) -> None:
        """Get the line back to a known place after ``err``."""
        self._outstanding.clear()
        self._early.clear()
        if isinstance(err, LinkError):
            self.reconnect()
        elif isinstance(err, ProtocolError):
            self.drain()
        # After a timeout the stream is still in step: a late reply is dropped
        # by its id when it comes.

    def reconnect(self) -> None:
        """Reopen the line after a dropped link (a failure is logged)."""
        self.framer.reset()
        try:
            self.link.reconnect()
        except LinkError as err:
            log.warning("ccd: reconnect failed: %s", err)

    def drain(self, quiet_s: float = 0.2, limit_s: float = 30.0) -> int:
        """Drop bytes until the line has been quiet ``quiet_s``; the bytes dropped.

        A garbled reply may be the head of a FETCH whose blocks still flow: a
        new command sent at once would have its reply queued behind them.
        """
        self.framer.reset()
        dropped = 0
        end = time.monotonic() + limit_s
        try:
            while time.monotonic() < end:
                data = self.link.read_some(wait_s=quiet_s)
                if not data:
                    break
                dropped += len(data)
        except LinkError as err:
            log.warning("ccd: line failed while draining: %s", err)
            self.reconnect()
        if dropped:
            log.warning("ccd: dropped %d bytes of an abandoned reply", dropped)
        return dropped

    # -- the one reply loop ------------------------------------------------------

    def _once(self, text: str) -> str:
        self.link.discard_input()
        return self._text(self._await(self._send(text), text), text)

    def _send(self, text: str, *, nblocks: int | None = None) -> int:
        self._id = protocol.next_id(self._id)
        command = protocol.Command(self._id, text)
        self.framer.cancel_binary(self._id)  # a transfer abandoned 256 ids ago
        self._early.pop(self._id, None)
        self._outstanding.add(self._id)
        if nblocks is not None:
            self.framer.expect_binary(self._id, nblocks)
        self.link.write(protocol.encode_command(command))
        return self._id

    def _await(self, reply_id: int, text: str) -> protocol.Reply:
        """Read until the reply to ``reply_id`` (within ``reply_timeout_s``).

        Replies to other commands still outstanding (pipelined) are kept for
        their turn; any other id is a late answer, dropped as stale.
        """
        timeout = self.config.reply_timeout_s
        deadline = time.monotonic() + timeout
        early = self._early.pop(reply_id, None)
        if early is not None:
            return self._answer(early, text)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeviceTimeout(
                    f"ccd: no reply to {text} within {timeout:g} s on {self.url}"
                )
            data = self.link.read_some(wait_s=min(left, _SLICE_S))
            if not data:
                continue
            found: protocol.Reply | None = None
            for reply in self.framer.feed(data):
                if reply.id == reply_id and found is None:
                    found = reply
                elif reply.id in self._outstanding and reply.id != reply_id:
                    self._early[reply.id] = reply  # pipelined: its turn comes
                else:
                    log.warning("ccd: dropping a stale reply (id %02X)", reply.id)
            if found is not None:
                return self._answer(found, text)

    def _answer(self, reply: protocol.Reply, text: str) -> protocol.Reply:
        self._outstanding.discard(reply.id)
        if not reply.ok:
            raise ArchonRefused(
                f"ccd: the controller on {self.url} refused {text} (?{reply.id:02X})",
                text,
            )
        log.debug("ccd <- %02X %s", reply.id, reply.text[:80])
        return reply

    def _text(self, reply: protocol.Reply, text: str) -> str:
        if reply.binary is not None:
            raise ProtocolError(
                f"ccd: binary data in reply to {text} on {self.url}; expected text"
            )
        return reply.text


def _give_up(
    last: Exception, what: str, attempts: int, url: str, timeout_s: float
) -> Exception:
    """The error that ends ``attempts`` failed attempts, typed after the last one."""
    if isinstance(last, DeviceTimeout):
        error: Exception = DeviceTimeout(
            f"ccd: no valid reply to {what} on {url} after {attempts} attempts"
            f" ({last}); is the controller powered, the network up and the URL"
            " right?"
        )
    elif isinstance(last, LinkError):
        error = LinkError(
            f"ccd: connection {url} failed {attempts} times during {what} ({last});"
            " check the network, whether the controller (or its simulator) is"
            " still running, and that no other program is connected to it (the"
            " controller serves one client: with its port already in use it"
            " drops a second one at once)"
        )
    else:
        error = ProtocolError(
            f"ccd: {attempts} unusable replies to {what} on {url} (last: {last});"
            " check that the device at that address is an Archon controller"
        )
    error.__cause__ = last
    return error

"""The focal-plane cover: two halves, each an Alnitak controller on its own line.

The Alnitak protocol has no message ids, so a late reply to an earlier
command could be mistaken for the answer to the current one. The driver
therefore discards unread input before every attempt and only accepts a
reply whose letter matches the command sent; a stale reply of the same kind
(a status for a status) is as good as a fresh one for our purposes.

Moves are commanded here and watched from the sequencer (see
:func:`sequencer.motion.wait_for_cover`): drivers never poll.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TypeVar

from drivers.config import CoverConfig
from drivers.errors import DeviceError, DeviceTimeout, ProtocolError
from drivers.identity import DeviceIdentity
from drivers.protocol import cover as proto
from drivers.transport import LinkError, SerialLink

log = logging.getLogger(__name__)

_R = TypeVar("_R", proto.Ack, proto.Firmware, proto.Status)
"""The reply a command expects."""


class SerialCoverHalf:
    """One cover half's Alnitak controller (product 98) on a serial line.

    Parameters
    ----------
    link
        The serial line (opened on first use).
    config
        Timeouts, retries and the half's name.
    """

    def __init__(self, link: SerialLink, config: CoverConfig) -> None:
        self._link = link
        self.config = config
        self.name = f"cover {config.name}"
        self._framer = proto.Framer()
        self._connected = False
        self._identity: DeviceIdentity | None = None
        #: Transient faults recovered from since this driver was made.
        self.retries_used = 0

    @classmethod
    def from_config(cls, config: CoverConfig) -> SerialCoverHalf:
        """A driver for the half at ``config.url``."""
        device = f"cover {config.name}"
        return cls(
            SerialLink(config.url, device=device, baudrate=config.baudrate), config
        )

    @property
    def url(self) -> str:
        return self._link.url

    def connect(self) -> None:
        """Open the line and check that a product-98 dust cover answers."""
        self._connected = False
        self._identity = None
        self._link.open()
        self.ping()
        self._connected = True

    def close_link(self) -> None:
        """Release the serial line."""
        self._link.close()

    # -- commands ------------------------------------------------------------

    def ping(self) -> None:
        """Check that the controller answers and is a dust cover without light."""
        reply = self._transact(proto.Command.PING, proto.Ack)
        if reply.product_id != proto.PRODUCT_ID:
            raise DeviceError(
                f"{self.name}: controller on {self.url} is Alnitak product "
                f"{reply.product_id:02d}; expected {proto.PRODUCT_ID} (dust cover "
                "without light); check the cabling and the configured URL"
            )

    def firmware(self) -> int:
        """The controller's firmware version (three digits)."""
        reply = self._transact(proto.Command.FIRMWARE, proto.Firmware)
        return reply.version

    def identity(self) -> DeviceIdentity:
        """This half's controller: Alnitak product id and firmware version.

        The product (98) was checked by :meth:`connect`; the first call after
        it asks the firmware (``>V000``, one command), later calls repeat
        that answer. The Alnitak protocol has no word by which a simulator
        could say what it is, so ``simulated`` is always False here: the CCD
        controller's identity is what marks a simulator set (see
        :mod:`drivers.identity`).

        Raises
        ------
        DeviceError
            :meth:`connect` has not succeeded yet.
        """
        if not self._connected:
            raise DeviceError(
                f"{self.name}: no identity for {self.url} yet; call connect() first"
            )
        if self._identity is None:
            self._identity = DeviceIdentity(
                device=f"cover_{self.config.name}",
                url=self.url,
                product=f"ALNITAK-{proto.PRODUCT_ID:02d}",
                firmware=f"{self.firmware():03d}",
                simulated=False,
            )
        return self._identity

    def open(self) -> None:
        """Start opening this half (returns once the controller acknowledged)."""
        self._transact(proto.Command.OPEN, proto.Ack)

    def close(self) -> None:
        """Start closing this half (returns once the controller acknowledged)."""
        self._transact(proto.Command.CLOSE, proto.Ack)

    def status(self) -> proto.Status:
        """Motor, light and cover state, read from the controller."""
        return self._transact(proto.Command.STATUS, proto.Status)

    # -- the exchange --------------------------------------------------------

    def _transact(self, command: proto.Command, kind: type[_R]) -> _R:
        frame = proto.encode_command(command)
        attempts = self.config.retries + 1
        last: Exception | None = None
        for attempt in range(1, attempts + 1):
            try:
                reply = self._attempt(frame, command, kind)
            except (DeviceTimeout, ProtocolError, LinkError) as err:
                last = err
                log.warning(
                    "%s: attempt %d/%d of %r failed: %s",
                    self.name,
                    attempt,
                    attempts,
                    frame,
                    err,
                )
                if isinstance(err, LinkError):
                    self._reconnect()
                continue
            if attempt > 1:
                self.retries_used += attempt - 1
                log.warning("%s: %r recovered on attempt %d", self.name, frame, attempt)
            return reply
        if isinstance(last, DeviceTimeout):
            raise DeviceTimeout(
                f"{self.name}: no valid reply to {frame!r} on {self.url} after "
                f"{attempts} attempts of {self.config.reply_timeout_s:g} s; is the "
                "controller powered and the cable connected?"
            ) from last
        if isinstance(last, LinkError):
            raise LinkError(
                f"{self.name}: serial line {self.url} failed {attempts} times "
                f"({last}); check the cable or the terminal server, and that no "
                "other program is connected to it (a network port serves one "
                "client)"
            ) from last
        raise ProtocolError(
            f"{self.name}: {attempts} unusable replies to {frame!r} on {self.url} "
            f"(last: {last}); check the line settings (9600 8N1) and the cabling"
        ) from last

    def _reconnect(self) -> None:
        try:
            self._link.reconnect()
        except LinkError as err:
            log.warning("%s: reconnect failed: %s", self.name, err)

    def _attempt(self, frame: bytes, command: proto.Command, kind: type[_R]) -> _R:
        self._link.discard_input()
        self._framer = proto.Framer()
        self._link.write(frame)
        deadline = time.monotonic() + self.config.reply_timeout_s
        while time.monotonic() < deadline:
            data = self._link.read_some()
            for reply_frame in self._framer.feed(data):
                log.debug("%s <- %r", self.name, reply_frame)
                reply = proto.decode_reply(reply_frame)
                if isinstance(reply, proto.ErrorReply):
                    raise DeviceError(
                        f"{self.name}: controller on {self.url} refused {frame!r} "
                        f"with error {reply.code.value:03d} "
                        f"({reply.code.name.lower().replace('_', ' ')}); this is a "
                        "driver/firmware mismatch: report it with the log"
                    )
                if _answers(reply, command):
                    if not isinstance(reply, kind):
                        raise ProtocolError(
                            f"{self.name}: got {reply_frame!r} in answer to "
                            f"{frame!r}; expected a {kind.__name__} reply"
                        )
                    return reply
                log.warning(
                    "%s: ignoring stale reply %r to an earlier command",
                    self.name,
                    reply_frame,
                )
        raise DeviceTimeout(
            f"{self.name}: no reply to {frame!r} within "
            f"{self.config.reply_timeout_s:g} s on {self.url}"
        )


def _answers(reply: proto.CoverReply, command: proto.Command) -> bool:
    match reply:
        case proto.Ack() | proto.Brightness():
            return reply.command is command
        case proto.Status():
            return command is proto.Command.STATUS
        case proto.Firmware():
            return command is proto.Command.FIRMWARE
    return False


@dataclass(frozen=True)
class CoverStatus:
    """Both halves as read back from their controllers."""

    left: proto.Status
    right: proto.Status

    @property
    def fully_closed(self) -> bool:
        """Both halves report closed with their motors stopped."""
        return self.left.is_closed and self.right.is_closed

    def words(self) -> tuple[str, str]:
        """Each half in one word (``CLOSED``, ``OPEN``, ``MOVING``...), left first."""
        return (_word(self.left), _word(self.right))

    def describe(self) -> str:
        """``left=CLOSED right=OPEN`` style summary for logs and headers."""
        left, right = self.words()
        return f"left={left} right={right}"


def _word(status: proto.Status) -> str:
    if status.motor is proto.Motor.RUNNING:
        return "MOVING"
    return status.cover.name


class SerialFocalPlaneCover:
    """The focal-plane cover: the left and right halves commanded together."""

    def __init__(self, left: SerialCoverHalf, right: SerialCoverHalf) -> None:
        self.left = left
        self.right = right

    @property
    def halves(self) -> tuple[SerialCoverHalf, SerialCoverHalf]:
        return (self.left, self.right)

    def connect(self) -> None:
        for half in self.halves:
            half.connect()

    def identities(self) -> tuple[DeviceIdentity, DeviceIdentity]:
        """Each half's identity, left then right (see SerialCoverHalf.identity)."""
        return (self.left.identity(), self.right.identity())

    def close_link(self) -> None:
        for half in self.halves:
            half.close_link()

    def close(self) -> None:
        """Start closing both halves."""
        for half in self.halves:
            half.close()

    def open(self) -> None:
        """Start opening both halves."""
        for half in self.halves:
            half.open()

    def status(self) -> CoverStatus:
        """Both halves, read back now."""
        return CoverStatus(self.left.status(), self.right.status())

"""The CCD controller (and the shutter it drives) on a serial line.

Every command carries a message id (MID) that the reply echoes, so a late
reply to an earlier attempt is recognised and dropped instead of being taken
for the current answer. Transient faults (no reply, a garbled reply, a
dropped link) are retried up to ``CcdConfig.retries`` times; commands that
must not run twice (EXPOSE) are retried only after reading the controller's
status shows the first attempt did not take effect. The readout lives in
:mod:`drivers.readout`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from drivers.config import CcdConfig
from drivers.errors import DeviceError, DeviceTimeout, ProtocolError
from drivers.protocol import ccd as proto
from drivers.readout import Progress, Readout, read_frame
from drivers.transport import LinkError, SerialLink

log = logging.getLogger(__name__)

R = TypeVar("R")

#: Faults worth another attempt: the line, not the controller, misbehaved.
TRANSIENT = (DeviceTimeout, ProtocolError, LinkError)


class ControllerError(DeviceError):
    """The controller answered with an error reply."""

    def __init__(self, message: str, reply: proto.ErrorReply) -> None:
        super().__init__(message)
        self.reply = reply


class SerialCcdController:
    """The MEGARA CCD controller on a serial line (see ``docs/protocols.md``).

    Parameters
    ----------
    link
        The serial line (opened on first use).
    config
        Timeouts, retries and the allowed CCD temperature range.
    """

    name = "ccd"

    def __init__(self, link: SerialLink, config: CcdConfig) -> None:
        self.link = link
        self.config = config
        self.framer = proto.Framer()
        self._mid = 0
        #: Transient faults recovered from since this driver was made.
        self.retries_used = 0

    @classmethod
    def from_config(cls, config: CcdConfig) -> SerialCcdController:
        """A driver for the controller at ``config.url``."""
        return cls(
            SerialLink(config.url, device="ccd", baudrate=config.baudrate), config
        )

    @property
    def url(self) -> str:
        return self.link.url

    def connect(self) -> str:
        """Open the line, check the controller's identity; return its firmware."""
        self.link.open()
        reply = self.transact(proto.Ping, proto.Identity)
        if reply.product != proto.PRODUCT:
            raise DeviceError(
                f"ccd: the device on {self.url} says it is {reply.product!r}; "
                f"expected {proto.PRODUCT!r}; check the configured URL"
            )
        return reply.firmware

    def close_link(self) -> None:
        """Release the serial line."""
        self.link.close()

    # -- commands ------------------------------------------------------------

    def status(self) -> proto.Status:
        """State, exposure progress, shutter and temperature, read now."""
        return self.transact(proto.GetStatus, proto.Status)

    def shutter(self) -> proto.ShutterState:
        """The shutter position, read back from the controller."""
        return self.transact(proto.GetShutter, proto.ShutterPosition).shutter

    def temperature(self) -> float:
        """The CCD temperature, kelvin."""
        return self.transact(proto.GetTemperature, proto.Temperature).temperature_k

    def check_temperature(self) -> float:
        """The CCD temperature (K), or DeviceError if outside the allowed range."""
        temperature = self.temperature()
        low, high = self.config.temperature_range_k
        if not low <= temperature <= high:
            raise DeviceError(
                f"ccd: CCD temperature {temperature:.2f} K on {self.url}; expected "
                f"{low:.2f} to {high:.2f} K; check the cryostat and wait for the "
                "detector to settle before exposing"
            )
        return temperature

    def close_shutter(self) -> None:
        """Command the shutter shut and check that it reads back CLOSED."""
        self.transact(
            lambda mid: proto.MoveShutter(mid, proto.ShutterTarget.CLOSE), proto.Ack
        )
        position = self.shutter()
        if position is not proto.ShutterState.CLOSED:
            raise DeviceError(
                f"ccd: shutter reads {position.value} on {self.url} after the close "
                "command; expected CLOSED; do not take darks: check the shutter "
                "mechanism and its controller"
            )

    def expose(self, exptime_s: float, *, dark: bool = True) -> None:
        """Start an exposure of ``exptime_s`` seconds (shutter kept shut if dark).

        EXPOSE is not repeated blindly: after a lost or garbled reply the
        controller's status says whether the exposure started.
        """
        before = self.status()
        kind = proto.ExposureKind.DARK if dark else proto.ExposureKind.LIGHT

        def started() -> proto.Ack | None:
            now = self.status()
            took = (
                now.frame > before.frame
                and now.state is not proto.ControllerState.IDLE
                and now.dark == dark
                and abs(now.exptime_s - exptime_s) < 1e-3
            )
            return proto.Ack(now.mid) if took else None

        self.transact(
            lambda mid: proto.Expose(mid, exptime_s, kind), proto.Ack, done=started
        )
        log.info("ccd: %s exposure of %.3f s started", kind.value.lower(), exptime_s)

    def abort(self) -> None:
        """Stop any exposure or readout; the controller closes the shutter."""
        try:
            self.transact(proto.Abort, proto.Ack)
        except ControllerError as err:
            if err.reply.code != proto.ErrorCode.NOTHING_TO_ABORT:
                raise
            log.info("ccd: nothing to abort")

    def clear(self) -> None:
        """Drop the frame in the controller's memory (back to IDLE)."""
        self.transact(proto.Clear, proto.Ack)

    def frame_info(self) -> proto.FrameInfo:
        """Describe the frame ready in the controller's memory."""
        return self.transact(proto.GetFrame, proto.FrameInfo)

    def read_frame(self, progress: Progress | None = None) -> Readout:
        """Transfer the frame in memory, every block CRC-checked (see readout)."""
        return read_frame(self, progress)

    # -- the exchange --------------------------------------------------------

    def next_mid(self) -> int:
        self._mid = proto.next_mid(self._mid)
        return self._mid

    def transact(
        self,
        make: Callable[[int], proto.Command],
        expect: type[R],
        *,
        done: Callable[[], R | None] | None = None,
    ) -> R:
        """Send a command and return its reply of type ``expect``, with retries.

        ``done``, for commands that must not run twice, is asked after a failed
        attempt whether the controller executed it anyway: it returns the reply
        to stand for the lost one, or None to send the command again.
        """
        attempts = self.config.retries + 1
        last: Exception | None = None
        for attempt in range(1, attempts + 1):
            if attempt > 1 and done is not None:
                try:
                    substitute = done()
                except TRANSIENT as err:
                    last = err
                    continue
                if substitute is not None:
                    log.warning("ccd: the command took effect; its reply was lost")
                    self.retries_used += attempt - 1
                    return substitute
            command = make(self.next_mid())
            try:
                reply = self._attempt(proto.encode_command(command), command.mid)
            except TRANSIENT as err:
                last = err
                log.warning("ccd: attempt %d/%d failed: %s", attempt, attempts, err)
                if isinstance(err, LinkError):
                    self.reconnect()
                continue
            if not isinstance(reply, expect):
                raise ProtocolError(
                    f"ccd: reply {reply!r} to {proto.encode_command(command)!r}; "
                    f"expected {expect.__name__}"
                )
            if attempt > 1:
                self.retries_used += attempt - 1
                log.warning("ccd: recovered on attempt %d", attempt)
            return reply
        assert last is not None
        raise _give_up(last, attempts, self.url, self.config.reply_timeout_s)

    def reconnect(self) -> None:
        """Reopen the line after a dropped link (failures are logged)."""
        try:
            self.link.reconnect()
        except LinkError as err:
            log.warning("ccd: reconnect failed: %s", err)
        self.framer = proto.Framer()

    def _attempt(self, frame: bytes, mid: int) -> proto.DeviceReply:
        self.link.discard_input()
        self.framer = proto.Framer()
        self.link.write(frame)
        deadline = time.monotonic() + self.config.reply_timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeviceTimeout(
                    f"ccd: no reply to {frame!r} within "
                    f"{self.config.reply_timeout_s:g} s on {self.url}"
                )
            for reply in self.framer.feed_decoded(self.link.read_some(wait_s=left)):
                if reply.mid != mid:
                    log.warning("ccd: dropping a stale reply (MID %s)", reply.mid)
                    continue
                if isinstance(reply, proto.ErrorReply):
                    raise ControllerError(
                        f"ccd: controller on {self.url} refused {frame!r} with "
                        f"error {reply.code} ({reply.category}): {reply.message}",
                        reply,
                    )
                log.debug("ccd <- %r", reply)
                return reply


def _give_up(last: Exception, attempts: int, url: str, timeout_s: float) -> Exception:
    if isinstance(last, DeviceTimeout):
        error: Exception = DeviceTimeout(
            f"ccd: no valid reply on {url} after {attempts} attempts of "
            f"{timeout_s:g} s; is the controller powered and the cable connected?"
        )
    elif isinstance(last, LinkError):
        error = LinkError(
            f"ccd: serial line {url} failed {attempts} times ({last}); check the "
            "cable or the terminal server"
        )
    else:
        error = ProtocolError(
            f"ccd: {attempts} unusable replies on {url} (last: {last}); check the "
            "line settings and that the controller runs a compatible firmware"
        )
    error.__cause__ = last
    return error

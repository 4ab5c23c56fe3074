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
import math
import time
from collections.abc import Callable
from typing import TypeVar

from drivers.config import CcdConfig
from drivers.errors import ConfigError, DeviceError, DeviceTimeout, ProtocolError
from drivers.identity import DeviceIdentity
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
        self._identity: DeviceIdentity | None = None
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
        """Open the line, check the controller's identity; return its firmware.

        The whole identity, simulator or not, is then :meth:`identity`.
        """
        self.link.open()
        reply = self.transact(proto.Ping, proto.Identity)
        if reply.product != proto.PRODUCT:
            raise DeviceError(
                f"ccd: the device on {self.url} says it is {reply.product!r}; "
                f"expected {proto.PRODUCT!r}; check the configured URL"
            )
        self._identity = DeviceIdentity(
            device=self.name,
            url=self.url,
            product=reply.product,
            firmware=reply.firmware,
            simulated=reply.simulated,
        )
        if reply.simulated:
            log.info("ccd: %s is a simulator (firmware %s)", self.url, reply.firmware)
        return reply.firmware

    def identity(self) -> DeviceIdentity:
        """The controller as it identified itself to the last :meth:`connect`.

        ``simulated`` is True when it answered PING as a simulator (the word
        ``SIMULATOR`` after its firmware, see :mod:`drivers.protocol.ccd`).

        Raises
        ------
        DeviceError
            :meth:`connect` has not succeeded yet.
        """
        if self._identity is None:
            raise DeviceError(
                f"ccd: no identity for {self.url} yet; call connect() first"
            )
        return self._identity

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
        controller's status says whether the exposure started, and the command
        is sent again only if it did not.

        Raises
        ------
        ConfigError
            ``exptime_s`` is negative or not finite (nothing is sent).
        ControllerError
            The controller refused the exposure (busy, too warm, ...).
        DeviceTimeout, LinkError, ProtocolError
            No usable reply and no sign of the exposure after every retry.
        """
        if not (math.isfinite(exptime_s) and exptime_s >= 0):
            raise ConfigError(
                f"ccd: exposure time must be a finite number of seconds >= 0, got "
                f"{exptime_s!r}"
            )
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

        Each attempt gets a fresh message id, so a late reply to an earlier
        attempt is dropped. ``done``, for commands that must not run twice, is
        asked after every failed attempt (before a re-send, and once more
        before giving up) whether the controller executed the command anyway:
        it returns the reply to stand for the lost one, or None when the
        command did not take effect. ``retries_used`` grows by the number of
        failed attempts recovered from.

        Raises
        ------
        ControllerError
            The controller answered with an error reply (not retried).
        DeviceTimeout, LinkError, ProtocolError
            Every one of ``retries + 1`` attempts failed.
        """
        attempts = self.config.retries + 1
        failures = 0
        unknown = False  # a failed attempt may have executed; ask ``done``
        last: Exception | None = None
        verb = "command"
        for attempt in range(1, attempts + 1):
            if unknown and done is not None:
                try:
                    substitute = done()
                except TRANSIENT as err:
                    last = err
                    continue
                unknown = False
                if substitute is not None:
                    return self._took_effect(substitute, failures)
            command = make(self.next_mid())
            frame = proto.encode_command(command)
            verb = command.verb.value
            try:
                reply = self._attempt(frame, command.mid)
            except ControllerError:
                self._recovered(failures)
                raise
            except TRANSIENT as err:
                last, failures, unknown = err, failures + 1, True
                log.warning("ccd: attempt %d/%d failed: %s", attempt, attempts, err)
                if isinstance(err, LinkError):
                    self.reconnect()
                continue
            if not isinstance(reply, expect):
                raise ProtocolError(
                    f"ccd: {type(reply).__name__} reply to {frame!r} on {self.url}; "
                    f"expected {expect.__name__}"
                )
            self._recovered(failures)
            return reply
        if unknown and done is not None:
            try:
                substitute = done()
            except TRANSIENT as err:
                last = err
            else:
                if substitute is not None:
                    return self._took_effect(substitute, failures)
        assert last is not None
        raise _give_up(last, verb, attempts, self.url, self.config.reply_timeout_s)

    def _recovered(self, failures: int) -> None:
        if failures:
            self.retries_used += failures
            log.warning("ccd: recovered after %d failed attempt(s)", failures)

    def _took_effect(self, substitute: R, failures: int) -> R:
        log.warning("ccd: the command took effect; its reply was lost")
        self._recovered(failures)
        return substitute

    def reconnect(self) -> None:
        """Reopen the line after a dropped link (failures are logged)."""
        try:
            self.link.reconnect()
        except LinkError as err:
            log.warning("ccd: reconnect failed: %s", err)
        self.framer = proto.Framer()

    def drain(self, quiet_s: float = 0.2, limit_s: float = 30.0) -> int:
        """Read and drop bytes until the line has been quiet for ``quiet_s``.

        A readout abandoned mid-stream (its block headers garbled) is still
        being sent by the controller: a new request made at once would have
        its reply queued behind the rest of the old stream, and the framer
        would start inside a block's binary payload. Stops after ``limit_s``
        seconds even if bytes still flow; returns the bytes dropped.
        """
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
        self.framer = proto.Framer()
        if dropped:
            log.warning("ccd: dropped %d bytes of an abandoned reply", dropped)
        return dropped

    def _attempt(self, frame: bytes, mid: int) -> proto.DeviceReply:
        """Send ``frame`` once; return the reply carrying ``mid``.

        Replies with another MID (late answers to earlier attempts) are
        dropped. A frame that breaks the grammar is most likely our reply,
        garbled on the line: once the frames already received are looked
        through, it ends the attempt, to be retried at once.
        """
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
            garbled: ProtocolError | None = None
            for raw in self.framer.feed(self.link.read_some(wait_s=left)):
                try:
                    reply = proto.decode_reply(raw)
                except ProtocolError as err:
                    garbled = err
                    continue
                if reply.mid is None and isinstance(reply, proto.ErrorReply):
                    garbled = ProtocolError(
                        f"ccd: controller on {self.url} could not read the message "
                        f"id of {frame!r} (error {reply.code}: {reply.message}); "
                        "the command was garbled on the line"
                    )
                    continue
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
            if garbled is not None:
                raise garbled


def _give_up(
    last: Exception, verb: str, attempts: int, url: str, timeout_s: float
) -> Exception:
    """The error that ends ``attempts`` failed attempts, typed after the last one."""
    if isinstance(last, DeviceTimeout):
        error: Exception = DeviceTimeout(
            f"ccd: no valid reply to {verb} on {url} after {attempts} attempts of "
            f"{timeout_s:g} s; is the controller powered, the cable connected and "
            "the URL right?"
        )
    elif isinstance(last, LinkError):
        error = LinkError(
            f"ccd: serial line {url} failed {attempts} times during {verb} ({last}); "
            "check the cable, the terminal server, whether the controller (or "
            "its simulator) is still running, and that no other program is "
            "connected to it (a network port serves one client)"
        )
    else:
        error = ProtocolError(
            f"ccd: {attempts} unusable replies to {verb} on {url} (last: {last}); "
            "check the line settings and that the controller runs a compatible "
            "firmware"
        )
    error.__cause__ = last
    return error

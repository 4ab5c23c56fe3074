"""One simulated half of the focal-plane cover: an Alnitak product-98 dust cover.

The model speaks the protocol of :mod:`drivers.protocol.cover` and keeps the
half's position, 0.0 (closed) .. 1.0 (open), linear in simulated time. State
is computed from timestamps on the :class:`~simulators.clock.SimClock`: the
model never sleeps, so a status poll at any moment sees where the half is.

Cover faults are consulted when an open or close command starts a motion
(``commands`` includes that command): ``cover_jam`` (the half stops at
fraction ``at`` of this move, default 0.5, and reports C=0 with the motor
stopped until the next move command), ``cover_slow`` (the move takes
``factor`` times longer, default 5) and ``cover_timeout`` (the half stalls at
fraction ``at`` of this move, default 0.9; the motor keeps driving until the
whole travel should have ended, then the status reads C=3 with the half left
where it stalled). A jam takes precedence over a timeout; a slow move combines
with either.

Known limitations:

* Motion is linear, with no acceleration or settling; both halves are
  independent (no mechanical interlock between them).
* There is no halt (the protocol has none): only the opposite command stops
  a move, by reversing it from the current position.
* An open while opening (or a close while closing) is acknowledged and
  ignored, as is a move towards the end the half already rests at; neither
  consults the fault book, so a scheduled fault waits for a real motion.
* The light commands are acknowledged and do nothing: a product-98 unit has
  no light, so the status light field stays 0 and the brightness reads 000.
  What real product-98 firmware answers to them is not documented publicly.
* Unknown and malformed commands get our error reply ``*?98ccc`` (see the
  codec); the real firmware's behaviour there is not documented.
* Position is not kept across simulator restarts.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Literal

from drivers.errors import ConfigError, ProtocolError
from drivers.protocol import cover as protocol
from drivers.protocol.cover import (
    Ack,
    BadCommand,
    Brightness,
    Command,
    CoverReply,
    CoverState,
    ErrorReply,
    Firmware,
    Light,
    Motor,
    Request,
    Status,
)
from simulators.clock import SimClock
from simulators.device import Framer, Reply
from simulators.faults import Fault, FaultBook, FaultKind

log = logging.getLogger(__name__)

NAMES = ("cover_left", "cover_right")

_CLOSED_POS = 0.0
_OPEN_POS = 1.0


@dataclass(frozen=True)
class _Move:
    """One motion segment, or a half at rest (``start == stop``, ``t_end == t0``)."""

    t0: float  # simulated seconds when the move began
    start: float  # position at t0
    stop: float  # position where the half comes to rest (or stalls)
    speed: float  # position units per simulated second, > 0
    t_end: float  # simulated seconds when the motor stops
    heading: CoverState  # OPEN or CLOSED: where the command sent the half
    end_state: CoverState  # status field C once the motor has stopped
    fault: FaultKind | None = None

    def position(self, now: float) -> float:
        span = abs(self.stop - self.start)
        travelled = self.speed * max(now - self.t0, 0.0)
        if travelled >= span:
            return self.stop  # exactly: a closed half lets no light through
        return self.start + math.copysign(travelled, self.stop - self.start)

    def running(self, now: float) -> bool:
        return now < self.t_end


@dataclass(frozen=True)
class CoverSnapshot:
    """Everything a test may want to know about a half at one instant."""

    sim_time: float
    position: float  # 0.0 closed .. 1.0 open
    status: Status
    heading: CoverState  # OPEN or CLOSED: the last accepted move's direction
    fault: FaultKind | None  # the fault shaping the current or last move


class CoverModel:
    """A simulated cover half (Alnitak product 98) behind the shared codec.

    Parameters
    ----------
    name
        ``cover_left`` or ``cover_right``: the name faults address.
    clock
        The simulators' clock; all timing is in its simulated seconds.
    faults
        The fault book consulted when a move starts.
    motion_s
        Time of a full open or close, simulated seconds (> 0).
    initial
        Where the half rests at start.
    firmware
        Version reported by ``>V000``, 0..999.
    """

    def __init__(
        self,
        name: str,
        clock: SimClock,
        faults: FaultBook,
        *,
        motion_s: float = 6.0,
        initial: Literal["open", "closed"] = "open",
        firmware: int = 213,
    ) -> None:
        if name not in NAMES:
            raise ConfigError(
                f"cover simulator name {name!r} is unknown; expected one of "
                f"{', '.join(NAMES)}"
            )
        if not (math.isfinite(motion_s) and motion_s > 0):
            raise ConfigError(
                f"{name}: motion_s must be a finite number > 0, got {motion_s!r}"
            )
        if initial not in ("open", "closed"):
            raise ConfigError(
                f"{name}: initial must be 'open' or 'closed', got {initial!r}"
            )
        if not 0 <= firmware <= 999:
            raise ConfigError(f"{name}: firmware must be 0..999, got {firmware!r}")
        self.name = name
        self.commands = 0
        self.motion_s = float(motion_s)
        self.firmware = firmware
        self._clock = clock
        self._faults = faults
        self._lock = threading.Lock()
        now = clock.now()
        rest = CoverState.OPEN if initial == "open" else CoverState.CLOSED
        pos = _OPEN_POS if initial == "open" else _CLOSED_POS
        self._move = _Move(now, pos, pos, 1.0 / self.motion_s, now, rest, rest)

    # -- DeviceModel -------------------------------------------------------------

    def new_framer(self) -> Framer:
        """A framer for the command stream (CR, LF or CRLF terminators)."""
        return protocol.Framer()

    def handle(self, frame: bytes) -> Reply:
        """Execute one command frame; never raises for bad input."""
        with self._lock:
            self.commands += 1
            try:
                request = protocol.decode_command(frame)
            except BadCommand as err:
                log.warning("%s: %s; answering with an error reply", self.name, err)
                reply: CoverReply = ErrorReply(err.code)
            except ProtocolError as err:  # defensive: every decode error is one
                log.warning("%s: %s", self.name, err)
                reply = ErrorReply(protocol.ErrorCode.MALFORMED)
            else:
                self._faults.received(self.name, request.command.name)
                reply = self._execute(request)
        return Reply([protocol.encode_reply(reply)])

    # -- observation ---------------------------------------------------------------

    def open_fraction(self) -> float:
        """Current position: 0.0 fully closed .. 1.0 fully open."""
        with self._lock:
            return self._move.position(self._clock.now())

    def status(self) -> Status:
        """What ``>S000`` would answer now."""
        with self._lock:
            return self._status(self._clock.now())

    def state(self) -> CoverSnapshot:
        """A consistent snapshot of position, status and fault (for tests)."""
        with self._lock:
            now = self._clock.now()
            move = self._move
            return CoverSnapshot(
                now, move.position(now), self._status(now), move.heading, move.fault
            )

    # -- internals (called with the lock held) --------------------------------------

    def _status(self, now: float) -> Status:
        move = self._move
        if move.running(now):
            return Status(Motor.RUNNING, Light.OFF, CoverState.NEITHER)
        return Status(Motor.STOPPED, Light.OFF, move.end_state)

    def _execute(self, request: Request) -> CoverReply:
        command = request.command
        match command:
            case Command.OPEN | Command.CLOSE:
                self._start_move(
                    CoverState.OPEN if command is Command.OPEN else CoverState.CLOSED
                )
                return Ack(command, filler=request.filler)
            case Command.PING | Command.LIGHT_ON | Command.LIGHT_OFF:
                return Ack(command, filler=request.filler)
            case Command.SET_BRIGHTNESS | Command.GET_BRIGHTNESS:
                return Brightness(command, 0)  # no light: brightness stays 0
            case Command.STATUS:
                return self._status(self._clock.now())
            case Command.FIRMWARE:
                return Firmware(self.firmware)

    def _start_move(self, heading: CoverState) -> None:
        now = self._clock.now()
        old = self._move
        here = old.position(now)
        target = _OPEN_POS if heading is CoverState.OPEN else _CLOSED_POS
        if old.running(now) and old.heading is heading:
            log.info("%s: already moving %s; command ignored", self.name, heading.name)
            return
        if here == target:
            self._move = _Move(
                now, here, here, 1.0 / self.motion_s, now, heading, heading
            )
            return
        self._move = self._plan(now, here, target, heading)
        move = self._move
        log.info(
            "%s: %s from %.2f, motor stops at t=%.1f s (%s)",
            self.name,
            "opening" if heading is CoverState.OPEN else "closing",
            here,
            move.t_end,
            move.fault.value if move.fault else "no fault",
        )

    def _plan(
        self, now: float, here: float, target: float, heading: CoverState
    ) -> _Move:
        """The segment of a real motion, shaped by any fault firing now."""
        fault_kind: FaultKind | None = None
        duration = self.motion_s
        slow = self._fire(FaultKind.COVER_SLOW, now)
        if slow is not None:
            factor = slow.param("factor", 5.0)
            if factor > 0:
                duration *= factor
                fault_kind = FaultKind.COVER_SLOW
            else:
                log.warning(
                    "%s: cover_slow factor %r ignored (<= 0)", self.name, factor
                )
        speed = 1.0 / duration
        travel_s = abs(target - here) / speed
        jam = self._fire(FaultKind.COVER_JAM, now)
        stall = None if jam is not None else self._fire(FaultKind.COVER_TIMEOUT, now)
        if jam is not None:
            at = _fraction(jam.param("at", 0.5))
            stop = here + at * (target - here)
            return _Move(
                now,
                here,
                stop,
                speed,
                now + at * travel_s,
                heading,
                CoverState.NEITHER,
                FaultKind.COVER_JAM,
            )
        if stall is not None:
            at = _fraction(stall.param("at", 0.9))
            stop = here + at * (target - here)
            return _Move(
                now,
                here,
                stop,
                speed,
                now + travel_s,
                heading,
                CoverState.TIMED_OUT,
                FaultKind.COVER_TIMEOUT,
            )
        return _Move(
            now, here, target, speed, now + travel_s, heading, heading, fault_kind
        )

    def _fire(self, kind: FaultKind, now: float) -> Fault | None:
        fault = self._faults.fire(self.name, kind, commands=self.commands, sim_time=now)
        if fault is not None:
            log.warning("%s: injecting %s", self.name, kind.value)
        return fault


def _fraction(value: float) -> float:
    """Clamp a fault's ``at`` parameter to 0..1."""
    return min(max(value, 0.0), 1.0)

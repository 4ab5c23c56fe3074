"""The simulated STA Archon CCD controller of MEGARA (and the shutter it drives).

Speaks :mod:`drivers.protocol.archon` (command lines in through the codec's
``CommandFramer``, replies out through its encoders). The parts:

* configuration memory and what applying it means (frame geometry, declared
  timing parameters): :mod:`simulators.archon_config`;
* the timing script run on the simulated clock (integration, readout,
  flushing, the shutter it drives): :mod:`simulators.archon_timing`;
* the three frame buffers, ``FRAME``, ``LOCKn`` and ``FETCH``:
  :mod:`simulators.archon_frames`;
* ``SYSTEM`` and ``STATUS`` (power, temperatures; the CCD temperature is
  ``MOD2/TEMPA`` in degrees Celsius, the shutter's switches ``MOD2/DINPUTS``):
  :mod:`simulators.archon_hardware`;
* the detector, cryostat and light around it, with the faults that shape
  them, and the frame synthesis: :mod:`simulators.archon_world`;
* ``python -m simulators.archon``, the TCP server: :mod:`simulators.archon_serve`.

It powers up as a controller whose host has loaded and applied
``simulators/megara.acf`` and switched the CCD on (``blank=True``: empty
memory, ``POWER=1`` not configured). Pixels come from the frame synthesis of
:mod:`simulators.synthesis` (frame ``n`` of the controller is synthesised with
``frame_seed=n`` and the run key), made on a thread while the CCD is read
out and laid out in the buffer as the configured taps say.

Answers, as the real controller gives them: ``<xx`` (+ text) on success,
``?xx`` for a command it cannot carry out (a bad argument, an undeclared
parameter, a ``FETCH`` of no complete frame, an unsupported configuration),
nothing at all for a line it cannot read or a verb it does not know.

Faults (from :class:`~simulators.faults.FaultBook`): ``shutter_stuck_open``
(fires at the first instant its trigger holds; the shutter is open from then
on, ``MOD2/DINPUTS`` reads 8 and light reaches the CCD), ``temperature_
excursion`` (``MOD2/TEMPA`` and the dark current follow it) and
``light_leak`` (light reaches the CCD whatever the shutter); the link faults
are the server's (:mod:`simulators.server`). :attr:`ArchonModel.power_good`
is a hook for tests of power-not-good.

Known limitations: the power state does not change the pixels; binning, skip
and window parameters change nothing but ``LINECOUNT``/``PIXELCOUNT`` do (see
:mod:`simulators.archon_config`); the timing script in the ACF is not
interpreted (the model runs its own, :mod:`simulators.archon_timing`); a frame's
dark time is capped at 10**6 s.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from drivers.errors import ConfigError, ProtocolError
from drivers.protocol import archon as protocol
from drivers.protocol.archon import Command, Power, Verb
from drivers.protocol.archon_acf import (
    declared_parameters,
    encode_config_entry,
    parse_config_line,
    parse_rconfig,
)
from drivers.protocol.archon_framer import CommandFramer
from drivers.protocol.archon_status import encode_key_values
from simulators.archon_config import (
    ConfigMemory,
    Geometry,
    geometry_from,
)
from simulators.archon_frames import FrameBuffers, FrameRecord, Refused, ticks
from simulators.archon_hardware import Readings, status_values, system_values
from simulators.archon_timing import (
    Activity,
    Event,
    ReadoutDropped,
    ReadoutEnded,
    ReadoutStarted,
    TimingCore,
)
from simulators.archon_world import FrameMaker, FrameSource, World
from simulators.clock import SimClock
from simulators.device import Reply
from simulators.faults import FaultBook

log = logging.getLogger(__name__)

#: The ACF the controller powers up with.
MEGARA_ACF = Path(__file__).with_name("megara.acf")


class ArchonModel:
    """Simulated Archon controller: configuration, timing core, buffers, sensors.

    Parameters
    ----------
    clock
        Simulated clock (times below in simulated seconds).
    detector
        Makes the raw frames.
    faults
        Fault book (see the module notes for the kinds read here).
    acf
        Text of the ACF to power up with; default ``simulators/megara.acf``.
    blank
        Power up with an empty configuration memory instead.
    readout_s
        Time to read MEGARA's whole frame, seconds.
    flush_s
        Time of one clearing of the CCD, seconds.
    temperature_k
        CCD temperature without faults, kelvin.
    light_at_shutter
        Light reaching the shutter now, e-/s/pixel (0: the cover is shut).
    run_key
        Keys the frames' noise to a run (as ``megara-dark simulate``).
    first_frame
        Frame counter at power-up: the first readout makes frame
        ``first_frame + 1``.
    """

    name = "ccd"

    def __init__(
        self,
        clock: SimClock,
        detector: FrameSource,
        *,
        faults: FaultBook | None = None,
        acf: str | None = None,
        blank: bool = False,
        readout_s: float = 40.0,
        flush_s: float = 1.0,
        temperature_k: float = 163.15,
        light_at_shutter: Callable[[], float] = lambda: 0.0,
        run_key: int = 0,
        first_frame: int = 0,
    ) -> None:
        if not 0 <= run_key < 2**64 or first_frame < 0:
            raise ConfigError(
                f"archon: run key {run_key}, first frame {first_frame}; expected"
                " 0 <= key < 2**64 and a first frame >= 0"
            )
        self.clock = clock
        self.commands = 0
        #: Test hook: False makes ``STATUS`` report ``POWERGOOD=0``.
        self.power_good = True
        self.power = Power.NOT_CONFIGURED
        self.memory = ConfigMemory()
        self.geometry = Geometry()
        self.world = World(
            faults if faults is not None else FaultBook(),
            temperature_k=temperature_k,
            light_at_shutter=light_at_shutter,
            commands=lambda: self.commands,
            exposing=self._exposing,
        )
        self.core = TimingCore(self.world, readout_s=readout_s, flush_s=flush_s)
        self.frames = FrameBuffers(self.geometry, first_frame=first_frame)
        self.maker = FrameMaker(detector, run_key=run_key)
        self._configured = False
        self._status_count = 0
        self._lock = threading.Lock()
        if not blank:
            self.memory.load_acf(MEGARA_ACF.read_text() if acf is None else acf)
            self._apply_all()
            self.power = Power.ON
            self.core.release(clock.now())

    # -- DeviceModel ---------------------------------------------------------

    def new_framer(self) -> CommandFramer:
        """A framer for the command lines this controller receives."""
        return CommandFramer()

    def handle(self, frame: bytes) -> Reply:
        """Execute one command line; never raises (see the module notes)."""
        with self._lock:
            self.commands += 1
            try:
                command = protocol.decode_command(frame)
            except ProtocolError as err:
                log.debug("archon: no reply to %r: %s", frame, err)
                return Reply()
            try:
                verb, argument = protocol.split_command(command.text)
            except ProtocolError as err:
                if not any(command.text.startswith(v.value) for v in Verb):
                    log.debug("archon: no reply to unknown %r", command.text)
                    return Reply()
                return self._refuse(command, err)
            self.world.faults.received(self.name, verb.value)
            now = self.clock.now()
            try:
                self._advance(now)
                reply = self._dispatch(verb, command, argument, now)
                self._advance(now)
            except (Refused, ProtocolError, ConfigError) as err:
                return self._refuse(command, err)
            except Exception as err:  # a simulator bug must not kill the line
                log.exception("archon: internal error on %r", frame)
                return self._refuse(command, err)
            return reply

    def _refuse(self, command: Command, why: Exception) -> Reply:
        log.info("archon: ?%02X to %r: %s", command.id, command.text, why)
        return Reply(chunks=[protocol.encode_reply(protocol.Reply(command.id, False))])

    # -- for tests and tools ---------------------------------------------------

    def advance(self) -> None:
        """Bring the model up to the clock's now (as a command would)."""
        with self._lock:
            self._advance(self.clock.now())

    def record(self, buffer: int) -> FrameRecord | None:
        """The frame last written to ``buffer`` (1..3), complete or not."""
        return self.frames.record(buffer)

    def wait_synthesis(self, timeout_s: float | None = None) -> None:
        """Wait until every frame being made is made."""
        self.maker.wait(timeout_s)

    def _exposing(self) -> int | None:
        """The 1-based number of the frame being integrated, if one is."""
        integrating = self.core.activity is Activity.INTEGRATING
        return self.frames.frame_count + 1 if integrating else None

    # -- time and frames -------------------------------------------------------

    def _advance(self, now: float) -> None:
        self._handle_events(self.core.advance(now))

    def _handle_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, ReadoutStarted):
                self.frames.begin(event.t, event.exposure, self.maker.make)
            elif isinstance(event, ReadoutEnded):
                self.frames.end()
            elif isinstance(event, ReadoutDropped):
                self.frames.drop()

    # -- commands --------------------------------------------------------------

    def _dispatch(
        self, verb: Verb, command: Command, argument: str, now: float
    ) -> Reply:
        text: str | None = ""
        match verb:
            case Verb.SYSTEM:
                text = encode_key_values(system_values()) + " "
            case Verb.STATUS:
                text = self._status(now)
            case Verb.FRAME:
                status = self.frames.status(now, self.core.progress(now))
                text = encode_key_values(status.to_key_values())
            case Verb.TIMER:
                text = f"TIMER={ticks(now):016X}"
            case Verb.FETCHLOG:
                text = "(null)"
            case Verb.LOCK:
                self.frames.lock(protocol.parse_lock(command.text))
            case Verb.FETCH:
                address, nblocks = protocol.parse_fetch(command.text)
                record, blocks = self.frames.fetch(command.id, address, nblocks)
                return Reply(chunks=blocks, readout=record.number)
            case Verb.RCONFIG:
                entry = self.memory.read(parse_rconfig(command.text))
                text = encode_config_entry(entry)
            case Verb.WCONFIG:
                self.memory.write(parse_config_line(command.text))
            case Verb.CLEARCONFIG:
                self.memory.clear()
            case Verb.APPLYALL:
                self._apply_all()
            case Verb.APPLYCDS:
                self._apply_geometry()
            case Verb.APPLYMOD | Verb.APPLYDIO:
                _check_module(argument)
            case Verb.LOADTIMING | Verb.LOADPARAMS:
                self._load_parameters(reset=verb is Verb.LOADTIMING)
            case _:
                text = self._timing_or_power(verb, command, argument, now)
        if text is None:
            return Reply()
        return Reply(
            chunks=[protocol.encode_reply(protocol.Reply(command.id, text=text))]
        )

    def _timing_or_power(
        self, verb: Verb, command: Command, argument: str, now: float
    ) -> str | None:
        """Parameters, timing core, power, polling, boot; None: no reply."""
        match verb:
            case Verb.FASTLOADPARAM | Verb.FASTPREPPARAM:
                _, name, value = protocol.parse_param(command.text)
                self._known(name)
                if verb is Verb.FASTLOADPARAM:
                    self.core.params[name.upper()] = value
            case Verb.LOADPARAM | Verb.PREPPARAM:
                name, _, given = argument.strip().partition(" ")
                declared = declared_parameters(self.memory.values())
                if name.upper() not in declared:
                    raise Refused(f"{name} is declared by no PARAMETERn line")
                if verb is Verb.LOADPARAM:
                    number = _value(given) if given else declared[name.upper()]
                    self.core.params[name.upper()] = min(number, protocol.MAX_PARAMETER)
            case Verb.HOLDTIMING:
                self.core.hold(now)
            case Verb.RELEASETIMING:
                self.core.release(now)
            case Verb.RESETTIMING:
                self._handle_events(self.core.reset(now))
            case Verb.POWERON:
                if not self._configured:
                    raise Refused("POWERON before any APPLYALL")
                self.power = Power.ON
            case Verb.POWEROFF:
                self.power = Power.OFF if self._configured else Power.NOT_CONFIGURED
            case Verb.WARMBOOT | Verb.REBOOT:
                self._boot(now)
                return None
        return ""  # APPLYSYSTEM, POLLON, POLLOFF and the above: accepted

    def _known(self, name: str) -> None:
        if name.upper() not in self.core.params:
            raise Refused(f"parameter {name} is not loaded (no PARAMETERn declares it)")

    def _status(self, now: float) -> str:
        self._status_count += 1
        readings = Readings(
            power=self.power,
            power_good=self.power_good,
            ccd_k=self.world.temperature_k(now),
            shutter_open=self.core.shutter_open,
            count=self._status_count,
        )
        return encode_key_values(status_values(readings))

    # -- configuration -----------------------------------------------------------

    def _apply_geometry(self) -> None:
        geometry = geometry_from(self.memory.values())
        self.geometry = geometry
        self.frames.configure(geometry)
        self.core.read_fraction = geometry.read_fraction
        log.info(
            "archon: frames of %d x %d pixels, %d taps, FRAMEMODE=%d",
            geometry.width,
            geometry.height,
            len(geometry.taps),
            geometry.framemode,
        )

    def _load_parameters(self, *, reset: bool) -> None:
        self.core.params = declared_parameters(self.memory.values())
        if reset:
            self._handle_events(self.core.reset(self.clock.now()))

    def _apply_all(self) -> None:
        self._apply_geometry()
        self._load_parameters(reset=True)
        self._configured = True
        if self.power is Power.NOT_CONFIGURED:
            self.power = Power.OFF

    def _boot(self, now: float) -> None:
        """``WARMBOOT``/``REBOOT``: buffers emptied, configuration re-applied."""
        log.warning("archon: rebooting")
        self.frames = FrameBuffers(self.geometry, first_frame=self.frames.frame_count)
        self._handle_events(self.core.reset(now))
        self.core.params = {}
        self.power = Power.NOT_CONFIGURED
        self._configured = False
        try:
            self._apply_all()
        except ConfigError as err:
            log.warning("archon: configuration not applied at boot: %s", err)


def _value(digits: str) -> int:
    """The value of decimal ``digits``; above ``MAX_PARAMETER``, one past it
    (so that no run of digits is too long for ``int()``, which reads 4300)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 7 else protocol.MAX_PARAMETER + 1


def _check_module(argument: str) -> None:
    """``APPLYMODxx``: a module number 1..12 (sdss-archon) or index 00..0B (camerad)."""
    decimal = argument.isdigit() and 1 <= int(argument) <= 12
    index = len(argument) == 2 and int(argument, 16) <= 11
    if not (decimal or index):
        raise Refused(f"APPLYMOD{argument}: no such module")


if __name__ == "__main__":  # python -m simulators.archon
    import sys

    from simulators.archon_serve import main

    sys.exit(main())

"""MEGARA's CCD controller, an STA Archon, and the shutter its timing script drives.

An Archon client written here (facts from sdss-archon and the Archon manual as
it quotes them; see ``docs/protocols.md``), over pyserial ``socket://``,
behind :class:`~drivers.interfaces.CcdController`. The exchange (ids,
replies, retries, ``FETCH``) is :mod:`drivers.archon_link`; the transfer of
a buffer :mod:`drivers.archon_readout`; the record of an exposure under way
:mod:`drivers.archon_exposure` (this module imports those, none imports it).

How an exposure is run (as SDSS-V's clients run BOSS's controller):
``HOLDTIMING``, the parameters ``Exposures``/``ReadOut``/``AbortExposure``/
``DoFlush``/``WaitCount`` reset to 0, ``AutoFlush`` 1 (the CCD is cleared
while idle), ``OpenShutter`` (0 for a dark), ``IntCS``/``IntMS`` (the
integration time), ``ReadOut`` 1 and ``Exposures`` 1, then ``RELEASETIMING``:
the timing script integrates and reads the CCD into the next frame buffer.

The Archon keeps no state of "the exposure": the driver does. The state
:meth:`ArchonCcdController.status` reports is derived from ``FRAME``: the
frame the exposure makes is the first numbered above every frame in the
buffers when it started; while no buffer holds it, EXPOSING (elapsed time
from ``TIMER``); while its buffer is written, READING; once complete, READY.

The shutter: a real Archon camera keeps it shut for darks through a
timing-script parameter (``OpenShutter`` 0: the script never raises the DIO
line that opens it) and reads its position back from two microswitches wired
to digital inputs of a HeaterX module. In MEGARA's controller those are
``MOD2/DINPUTS`` bit 2 (closed) and bit 3 (open), and the CCD temperature is
``MOD2/TEMPA`` (degrees Celsius) on the same module. The Archon latches
nothing: the per-frame evidence (``shutter_max``) is the most open of the
positions this driver read from ``STATUS`` while the frame integrated, at the
sequencer's polling rate, with the number of readings it rests on.

A connection starts as sdss-archon's ``start()`` does: ``SYSTEM`` (identity),
``STATUS`` (power), the configuration read back with ``RCONFIG`` and
checked (MEGARA's frame geometry, the timing parameters above declared), and
the timing core reset to idle (an exposure left running by a killed run ends
there).
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

from drivers.archon_exposure import Exposure, holding, integrated, shutter_from
from drivers.archon_link import ArchonLink, ArchonRefused
from drivers.archon_readout import COLS, ROWS, check_geometry, fetch_buffer
from drivers.config import CcdConfig
from drivers.errors import ConfigError, DeviceError, ProtocolError
from drivers.identity import DeviceIdentity
from drivers.interfaces import (
    CcdStatus,
    ControllerState,
    FrameInfo,
    Progress,
    Readout,
    ShutterState,
)
from drivers.protocol import archon as protocol
from drivers.protocol.archon_acf import (
    check_megara_config,
    parse_config_entry,
    rconfig_command,
)
from drivers.protocol.archon_status import FrameStatus, parse_key_values
from drivers.transport import SerialLink

log = logging.getLogger(__name__)

#: Kelvin at 0 degrees Celsius (the Archon reports Celsius).
ZERO_CELSIUS_K = 273.15
#: The HeaterX module of MEGARA's controller, its CCD sensor and shutter inputs.
HEATERX_SLOT = 2
TEMPERATURE_KEY = f"MOD{HEATERX_SLOT}/TEMPA"
SHUTTER_KEY = f"MOD{HEATERX_SLOT}/DINPUTS"
#: sdss-archon's module type code of a HeaterX.
HEATERX_TYPE = 11
#: ``BACKPLANE_ID`` of our simulator ("SIMULATE" in hexadecimal ASCII).
SIMULATOR_BACKPLANE = "53494D554C415445"
#: ``POWER`` when the CCD's supplies are on.
POWER_ON = protocol.Power.ON.value
#: Configuration lines read per round trip; reading stops at an empty window.
CONFIG_WINDOW = 64


class ArchonCcdController:
    """MEGARA's Archon controller on ``socket://host:4242`` (see the module notes).

    Parameters
    ----------
    link
        The TCP line, a pyserial ``socket://`` URL (opened on first use).
    config
        Timeouts, retries and the allowed CCD temperature range.
    """

    name = "ccd"

    def __init__(self, link: SerialLink, config: CcdConfig) -> None:
        self.archon = ArchonLink(link, config)
        self.config = config
        self._identity: DeviceIdentity | None = None
        self._exposure: Exposure | None = None

    @classmethod
    def from_config(cls, config: CcdConfig) -> ArchonCcdController:
        """A driver for the controller at ``config.url``."""
        return cls(SerialLink(config.url, device="ccd"), config)

    @property
    def url(self) -> str:
        return self.archon.url

    @property
    def retries_used(self) -> int:
        """Transient faults recovered from (retried commands, resumed transfers)."""
        return self.archon.retries_used

    # -- connection ----------------------------------------------------------

    def connect(self) -> str:
        """Identify the controller, check power and configuration, reset timing.

        Returns the backplane's firmware version.

        Raises
        ------
        DeviceError
            Not MEGARA's controller (no HeaterX in slot 2, another frame
            geometry, timing parameters missing) or its power is not good.
        """
        self.archon.link.open()
        system = self._values("SYSTEM")
        slot_type = system.get(f"MOD{HEATERX_SLOT}_TYPE")
        if slot_type != str(HEATERX_TYPE):
            raise DeviceError(
                f"ccd: the controller on {self.url} has module type {slot_type!r} in"
                f" slot {HEATERX_SLOT}; expected a HeaterX ({HEATERX_TYPE}), which"
                " reads MEGARA's CCD temperature and shutter: check the URL"
            )
        firmware = system.get("BACKPLANE_VERSION", "unknown")
        simulated = system.get("BACKPLANE_ID") == SIMULATOR_BACKPLANE
        self._identity = DeviceIdentity(
            device=self.name,
            url=self.url,
            product=f"STA-ARCHON-{system.get('BACKPLANE_TYPE', '?')}",
            firmware=firmware,
            simulated=simulated,
        )
        self._readings()  # power
        self.read_config()
        self.abort()
        if simulated:
            log.info("ccd: %s is a simulator (firmware %s)", self.url, firmware)
        return firmware

    def identity(self) -> DeviceIdentity:
        """The controller as the last :meth:`connect` identified it."""
        if self._identity is None:
            raise DeviceError(
                f"ccd: no identity for {self.url} yet; call connect() first"
            )
        return self._identity

    def read_config(self) -> dict[str, str]:
        """The configuration lines, read back and checked to be MEGARA's."""
        values: dict[str, str] = {}
        start = 0
        while start < protocol.MAX_CONFIG_LINES:
            stop = min(start + CONFIG_WINDOW, protocol.MAX_CONFIG_LINES)
            texts = [rconfig_command(index) for index in range(start, stop)]
            entries = [parse_config_entry(p) for p in self.archon.command_many(texts)]
            for entry in filter(None, entries):
                values[entry[0].upper()] = entry[1]
            if not any(entries):
                break
            start = stop
        try:
            check_megara_config(values, rows=ROWS, cols=COLS)
        except ConfigError as err:
            raise DeviceError(
                f"ccd: the controller on {self.url} holds another configuration:"
                f" {err}; load MEGARA's ACF (APPLYALL) before observing"
            ) from err
        return values

    def close_link(self) -> None:
        """Release the connection."""
        self.archon.link.close()

    # -- readings --------------------------------------------------------------

    def _values(self, text: str) -> dict[str, str]:
        return self.archon.query(text, parse_key_values)

    def _readings(self) -> tuple[ShutterState, float]:
        """Shutter and CCD temperature from ``STATUS``, with power checked."""
        values = self._values("STATUS")
        power, good = values.get("POWER"), values.get("POWERGOOD")
        if power != str(POWER_ON) or good != "1":
            raise DeviceError(
                f"ccd: the controller on {self.url} reports POWER={power},"
                f" POWERGOOD={good}; expected POWER={POWER_ON} (on) and POWERGOOD=1:"
                " the CCD's supplies are off or out of range; check the controller"
                " before exposing (no frame taken now can be trusted)"
            )
        try:
            dinputs = int(values[SHUTTER_KEY])
            temperature = float(values[TEMPERATURE_KEY]) + ZERO_CELSIUS_K
        except (KeyError, ValueError) as err:
            raise ProtocolError(
                f"ccd: STATUS on {self.url} lacks a usable {SHUTTER_KEY} or"
                f" {TEMPERATURE_KEY} ({err}); expected an integer and degrees Celsius"
            ) from err
        return shutter_from(dinputs), temperature

    def _frame(self) -> FrameStatus:
        status = self.archon.query(
            "FRAME", lambda text: FrameStatus.from_key_values(parse_key_values(text))
        )
        if status.timer is None:  # a FRAME without TIMER: ask for it
            timer = self.archon.query("TIMER", _timer)
            status = replace(status, timer=timer)
        return status

    def shutter(self) -> ShutterState:
        """The shutter position, from its switches."""
        return self._readings()[0]

    def temperature(self) -> float:
        """The CCD temperature, kelvin."""
        return self._readings()[1]

    def check_temperature(self) -> float:
        """The CCD temperature (K), or DeviceError if outside the allowed range."""
        return self._in_range(self.temperature())

    def _in_range(self, temperature: float) -> float:
        low, high = self.config.temperature_range_k
        if not low <= temperature <= high:
            raise DeviceError(
                f"ccd: CCD temperature {temperature:.2f} K on {self.url}; expected "
                f"{low:.2f} to {high:.2f} K; check the cryostat and wait for the "
                "detector to settle before exposing"
            )
        return temperature

    def status(self) -> CcdStatus:
        """The exposure this driver started, as ``FRAME`` and ``STATUS`` say now."""
        shutter, temperature = self._readings()
        frame = self._frame()
        latest = max((b.frame for b in frame.buffers), default=0)
        exposure = self._exposure
        if exposure is None:
            return CcdStatus(
                state=ControllerState.IDLE,
                exptime_s=0.0,
                elapsed_s=0.0,
                shutter=shutter,
                temperature_k=temperature,
                frame=latest,
                dark=True,
            )
        buffer = holding(frame, exposure.after)
        if buffer is None:
            state = ControllerState.EXPOSING
            elapsed = ((frame.timer or 0) - exposure.timer_start) / protocol.TIMER_HZ
            exposure.saw(shutter, temperature, integrating=True)
        else:
            state = (
                ControllerState.READY if buffer.complete else ControllerState.READING
            )
            elapsed = integrated(buffer, exposure)
            if not buffer.complete:
                exposure.saw(shutter, temperature, integrating=False)
        return CcdStatus(
            state=state,
            exptime_s=exposure.exptime_s,
            elapsed_s=min(max(elapsed, 0.0), exposure.exptime_s)
            if buffer is None
            else elapsed,
            shutter=shutter,
            temperature_k=temperature,
            frame=latest,
            dark=exposure.dark,
        )

    # -- the shutter and exposures -----------------------------------------------

    def close_shutter(self) -> None:
        """Keep the shutter shut (``OpenShutter`` 0) and check its switches."""
        self._param("OpenShutter", 0)
        position = self.shutter()
        if position is not ShutterState.CLOSED:
            raise DeviceError(
                f"ccd: shutter reads {position.value} on {self.url} with OpenShutter"
                f" 0 ({SHUTTER_KEY}); expected CLOSED; do not take darks: check the"
                " shutter mechanism and its switches"
            )

    def expose(self, exptime_s: float, *, dark: bool = True) -> None:
        """Start an exposure of ``exptime_s`` seconds, read out when it ends.

        Raises
        ------
        ConfigError
            ``exptime_s`` is negative, not finite or longer than ``IntCS`` can
            hold (nothing is sent).
        DeviceError
            The CCD temperature is outside ``temperature_range_k`` (the
            controller would expose at any temperature: the driver refuses).
        ArchonRefused
            The controller refused a command (a parameter its ACF lacks).
        """
        if not (math.isfinite(exptime_s) and 0 <= exptime_s <= MAX_EXPTIME_S):
            raise ConfigError(
                f"ccd: exposure time must be a finite number of seconds from 0 to"
                f" {MAX_EXPTIME_S} (IntCS at its largest), got {exptime_s!r}"
            )
        centiseconds = int(exptime_s * 100)
        milliseconds = round((exptime_s - centiseconds / 100) * 1000)
        shutter, temperature = self._readings()
        self._in_range(temperature)  # the Archon itself would expose at any
        latest = max((b.frame for b in self._frame().buffers), default=0)
        self._hold_and_reset()
        for name, value in (
            *(() if dark else (("OpenShutter", 1),)),  # reset to 0 just above
            ("IntCS", centiseconds),
            ("IntMS", milliseconds),
            ("ReadOut", 1),
            ("Exposures", 1),
        ):
            self._param(name, value)
        self.archon.command("RELEASETIMING")
        timer = self._frame().timer or 0
        self._exposure = Exposure(
            after=latest,
            exptime_s=exptime_s,
            dark=dark,
            timer_start=timer,
            temp_start_k=temperature,
            temp_end_k=temperature,
            shutter_max=shutter,
        )
        kind = "dark" if dark else "light"
        log.info("ccd: %s exposure of %.3f s started", kind, exptime_s)

    def abort(self) -> None:
        """End any integration or readout: the timing core back to idle, shut."""
        self._hold_and_reset()
        self.archon.command("RESETTIMING")
        self.archon.command("RELEASETIMING")
        self._exposure = None

    def clear(self) -> None:
        """Done with the last frame: buffers unlocked, no exposure pending."""
        self.archon.command(protocol.lock_command(0))
        self._exposure = None

    def _hold_and_reset(self) -> None:
        self.archon.command("HOLDTIMING")
        for name in ("Exposures", "ReadOut", "AbortExposure", "DoFlush", "WaitCount"):
            self._param(name, 0)
        self._param("OpenShutter", 0)
        self._param("AutoFlush", 1)

    def _param(self, name: str, value: int) -> None:
        text = protocol.param_command(protocol.Verb.FASTLOADPARAM, name, value)
        try:
            self.archon.command(text)
        except ArchonRefused as err:
            raise DeviceError(
                f"ccd: the controller on {self.url} refused {text}: its ACF declares"
                f" no parameter {name}; load MEGARA's ACF"
            ) from err

    # -- readout -----------------------------------------------------------------

    def read_frame(self, progress: Progress | None = None) -> Readout:
        """Fetch the frame the last exposure made from its locked buffer.

        A transfer cut short (stalled, garbled, dropped connection) is resumed
        from the first block missing, up to ``retries`` more times.

        Raises
        ------
        DeviceError
            No exposure started, its frame not complete, not MEGARA's geometry,
            the buffer overwritten during the transfer, or blocks still missing
            after every retry.
        """
        exposure = self._exposure
        if exposure is None:
            raise DeviceError(
                f"ccd: no exposure started on {self.url} to read; expose first"
            )
        buffer = holding(self._frame(), exposure.after)
        if buffer is None or not buffer.complete:
            raise DeviceError(
                f"ccd: the frame of the last exposure is not complete in any buffer"
                f" of the controller on {self.url}; expected READY before the"
                " transfer"
            )
        check_geometry(buffer, self.url)
        self.archon.command(protocol.lock_command(buffer.number))
        transfer = fetch_buffer(self.archon, buffer, progress)
        after = self._frame().buffer(buffer.number)
        if (after.frame, after.timestamp) != (buffer.frame, buffer.timestamp):
            raise DeviceError(
                f"ccd: buffer {buffer.number} on {self.url} held frame {after.frame}"
                f" after the transfer of frame {buffer.frame}: it was overwritten"
                " although locked; take the exposure again"
            )
        self.archon.command(protocol.lock_command(0))
        info = FrameInfo(
            frame=buffer.frame,
            rows=ROWS,
            cols=COLS,
            exptime_s=integrated(buffer, exposure),
            dark=exposure.dark,
            temp_start_k=exposure.temp_start_k,
            temp_end_k=exposure.temp_end_k,
            shutter_max=exposure.shutter_max,
            shutter_readings=exposure.readings,
        )
        return Readout(
            info=info,
            pixels=transfer.pixels(ROWS, COLS),
            refetched=transfer.again,
            rounds=transfer.rounds,
        )


#: Longest exposure the timing parameters can hold, seconds.
MAX_EXPTIME_S = protocol.MAX_INTEGRATION_S


def _timer(text: str) -> int:
    """The ticks of a ``TIMER=<16 hex digits>`` reply."""
    value = parse_key_values(text).get("TIMER", "")
    try:
        return int(value, 16)
    except ValueError as err:
        raise ProtocolError(
            f"ccd: TIMER reply {text[:40]!r}; expected TIMER=<hexadecimal ticks>"
        ) from err

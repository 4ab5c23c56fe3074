"""The hardware as the sequencer holds it, how patient to be, and what "safe" is.

One definition of safe for every path that decides it (the state machine's
``reset`` edge, ``megara-dark reset``, the read-back after a stop): both
cover halves closed and at rest, the shutter closed, and no exposure or
readout running in the controller (:attr:`SafetyReading.safe`). One
procedure makes it so (:func:`make_safe`): the machine's ``reset`` edge and
``megara-dark reset`` both run it, then judge the read-back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.cover import CoverStatus
from drivers.errors import MegaraDarkError
from drivers.interfaces import (
    CcdController,
    CcdStatus,
    ControllerState,
    FocalPlaneCover,
    ShutterState,
)
from sequencer.config import RunSettings
from sequencer.motion import wait_for_cover

log = logging.getLogger(__name__)

#: Controller states in which the CCD is busy (not safe to leave).
CCD_BUSY = (ControllerState.EXPOSING, ControllerState.READING)
#: Shortest wall-clock interval between two status polls, seconds.
MIN_POLL_S = 0.005


@dataclass
class Devices:
    """The hardware the sequence commands, as typed interfaces."""

    ccd: CcdController
    cover: FocalPlaneCover
    cover_urls: tuple[str, str] = ("left", "right")


@dataclass
class Pacing:
    """How long to wait for what, in wall seconds (device time / time scale)."""

    settings: RunSettings
    time_scale: float = 1.0
    cover_motion_timeout_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def wall(self, device_s: float) -> float:
        return device_s / self.time_scale

    @property
    def poll_s(self) -> float:
        """Wall seconds between status polls: at most 1 s, at least 5 ms.

        The floor matters at large time scales (1 device second is 1 ms at
        x1000): polling faster would only load the line and both CPUs.
        """
        return min(max(self.wall(self.settings.poll_s), MIN_POLL_S), 1.0)


@dataclass(frozen=True)
class SafetyReading:
    """The cover and the controller, read back together."""

    cover: CoverStatus
    ccd: CcdStatus

    @property
    def safe(self) -> bool:
        """Cover closed and at rest, shutter closed, controller not busy."""
        return (
            self.cover.fully_closed
            and self.ccd.shutter is ShutterState.CLOSED
            and self.ccd.state not in CCD_BUSY
        )

    def describe(self) -> str:
        """One line: ``cover left=CLOSED right=CLOSED, shutter CLOSED, ...``."""
        temp = self.ccd.temperature_k
        shown = f", CCD {temp:.2f} K" if temp else ""
        return (
            f"cover {self.cover.describe()}, shutter {self.ccd.shutter.value}, "
            f"controller {self.ccd.state.value}{shown}"
        )


def read_safety(devices: Devices) -> SafetyReading:
    """Read the cover and the controller back now (device errors propagate)."""
    return SafetyReading(devices.cover.status(), devices.ccd.status())


def stop_exposure(ccd: CcdController, where: str) -> None:
    """Abort whatever the controller does and close the shutter; log failures.

    The first thing done after a fault or a stop, when nothing may raise.
    """
    for step in (ccd.abort, ccd.close_shutter):
        try:
            step()
        except MegaraDarkError as err:
            log.error("%s: while making safe: %s", where, err)


@dataclass
class SafeReport:
    """What :func:`make_safe` did, and what it read back at the end."""

    steps: list[str] = field(default_factory=list)
    error: MegaraDarkError | None = None
    reading: SafetyReading | None = None

    @property
    def safe(self) -> bool:
        """Every step succeeded and the read-back is safe."""
        return self.error is None and self.reading is not None and self.reading.safe

    def summary(self) -> str:
        """One line: the state read back (or that it could not be read)."""
        return self.reading.describe() if self.reading else "not read back"


def make_safe(devices: Devices, pacing: Pacing) -> SafeReport:
    """Abort an exposure, close the shutter, close the cover, read back.

    A frame already in the controller's memory is kept (the next exposure
    drops it). The cover is watched until both halves are closed and at
    rest, with the run's jam and timeout messages.
    """
    report = SafeReport()
    ccd, cover = devices.ccd, devices.cover
    try:
        status = ccd.status()
        ccd.abort()  # also when idle: the controller may run what it cannot show
        if status.state in CCD_BUSY:
            report.steps.append(f"aborted the {status.state.value.lower()} frame")
        else:
            report.steps.append("stopped any exposure or readout (timing reset)")
        if status.state is ControllerState.READY:
            report.steps.append(
                "a frame is in the controller's memory (kept; the next "
                "exposure drops it)"
            )
        ccd.close_shutter()
        report.steps.append("shutter closed")
        cover.close()
        wait_for_cover(
            cover,
            "closed",
            timeout_s=pacing.cover_motion_timeout_s,
            poll_s=min(0.2, pacing.poll_s),
            urls=devices.cover_urls,
            sleep=pacing.sleep,
        )
        report.steps.append("both cover halves closed")
    except MegaraDarkError as err:
        report.error = err
    try:
        report.reading = read_safety(devices)
    except MegaraDarkError as err:
        log.error("reading back after making safe: %s", err)
        report.error = report.error or err
    return report

"""``megara-dark reset``: bring the instrument to a safe, dark state after a fault.

A run that ends in FAULT leaves the hardware as the fault found it: a cover
half jammed part-way, an exposure still running, the shutter not reading
closed. Before the next run, an engineer checks the mechanism and then runs
this command, which

1. reads the CCD controller; an exposure or readout in progress is aborted
   (a frame already in the controller's memory is kept: the next exposure
   drops it);
2. closes the shutter and reads it back CLOSED;
3. closes both cover halves and waits until both report closed and at rest
   (the same watcher as a run, with its jam and timeout messages);
4. reads everything back and prints it.

It exits 0 when the instrument is safe (cover closed, shutter closed, no
exposure running), 1 when a step failed (the message says which and what to
do). With the built-in simulators (no ``[devices]`` in the configuration) the
simulators are started for the occasion, so the command only shows the
procedure: simulated hardware does not outlive the run that faulted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from drivers.errors import MegaraDarkError
from drivers.motion import wait_for_cover
from drivers.protocol import ccd as proto_ccd
from sequencer.config import InstrumentConfig
from sequencer.machine import Devices, Pacing
from sequencer.run import devices_for

log = logging.getLogger(__name__)

_BUSY = (proto_ccd.ControllerState.EXPOSING, proto_ccd.ControllerState.READING)


@dataclass
class ResetReport:
    """What the reset did and what it read back at the end."""

    steps: list[str] = field(default_factory=list)
    error: MegaraDarkError | None = None
    cover: str = "unknown"
    cover_closed: bool = False
    shutter: str = "unknown"
    ccd_state: str = "unknown"
    temperature_k: float | None = None

    @property
    def safe(self) -> bool:
        """Cover closed, shutter closed, no exposure or readout running."""
        return (
            self.error is None
            and self.cover_closed
            and self.shutter == proto_ccd.ShutterState.CLOSED.value
            and self.ccd_state not in {s.value for s in _BUSY}
        )

    def summary(self) -> str:
        """One line: the state read back."""
        temp = f", CCD {self.temperature_k:.2f} K" if self.temperature_k else ""
        return (
            f"cover {self.cover}, shutter {self.shutter}, "
            f"controller {self.ccd_state}{temp}"
        )


def make_safe(devices: Devices, pacing: Pacing) -> ResetReport:
    """Abort, close the shutter, close the cover, read back (see module doc)."""
    report = ResetReport()
    ccd, cover = devices.ccd, devices.cover
    try:
        status = ccd.status()
        if status.state in _BUSY:
            ccd.abort()
            report.steps.append(f"aborted the {status.state.value.lower()} frame")
        elif status.state is proto_ccd.ControllerState.READY:
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
    _read_back(devices, report)
    return report


def _read_back(devices: Devices, report: ResetReport) -> None:
    """Fill in the final state; a failed read leaves 'unknown' (and not safe)."""
    try:
        cover = devices.cover.status()
        report.cover, report.cover_closed = cover.describe(), cover.fully_closed
        status = devices.ccd.status()
        report.shutter = status.shutter.value
        report.ccd_state = status.state.value
        report.temperature_k = status.temperature_k
    except MegaraDarkError as err:
        log.error("reading back after the reset: %s", err)
        if report.error is None:
            report.error = err


def reset_instrument(config: InstrumentConfig) -> ResetReport:
    """Connect to the configured devices and make them safe."""
    pacing = Pacing(
        config.run,
        time_scale=config.time_scale,
        cover_motion_timeout_s=config.cover_config("x", "left").motion_timeout_s,
    )
    with devices_for(config) as (devices, _sim):
        return make_safe(devices, pacing)

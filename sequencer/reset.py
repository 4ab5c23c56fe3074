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
do). It acts only on devices it is told about (:func:`reset_target`): those
of an instrument configuration (``--config``), those a run folder recorded
(``--workdir``, the folder's lock taken so that no run is disturbed), or,
with ``--simulators``, built-in simulators started for the occasion (the
procedure shown: simulated hardware does not outlive the run that faulted).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from drivers.errors import ConfigError, MegaraDarkError
from drivers.protocol import ccd as proto_ccd
from sequencer.config import InstrumentConfig, load_config
from sequencer.devices import Connected, devices_for
from sequencer.machine import Devices, Pacing
from sequencer.motion import wait_for_cover
from sequencer.runfolder import JOURNAL_FILE, RunLock, quoted, recorded_record

log = logging.getLogger(__name__)

_BUSY = (proto_ccd.ControllerState.EXPOSING, proto_ccd.ControllerState.READING)


@dataclass
class ResetReport:
    """What the reset did and what it read back at the end."""

    steps: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)  # each device as read
    error: MegaraDarkError | None = None
    cover: str = "unknown"
    halves: tuple[str, str] = ("unknown", "unknown")
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
        report.halves = cover.words()
        status = devices.ccd.status()
        report.shutter = status.shutter.value
        report.ccd_state = status.state.value
        report.temperature_k = status.temperature_k
    except MegaraDarkError as err:
        log.error("reading back after the reset: %s", err)
        if report.error is None:
            report.error = err


@dataclass(frozen=True)
class ResetTarget:
    """The devices a reset acts on, and how they were named."""

    config: InstrumentConfig
    how: str
    workdir: Path | None = None  # a run folder: its lock is held

    def describe(self) -> str:
        return self.how


def reset_target(
    *, config: Path | None, workdir: Path | None, simulators: bool
) -> ResetTarget:
    """The devices named by exactly one of --config, --workdir, --simulators.

    Raises
    ------
    ConfigError
        None or more than one was given, or the run folder records no devices
        that outlive its run (the built-in simulators).
    """
    given = [n for n, v in (("--config", config), ("--workdir", workdir)) if v]
    given += ["--simulators"] if simulators else []
    if len(given) != 1:
        raise ConfigError(
            "reset acts only on devices it is told about; give one of: --config "
            "CONFIG (the instrument configuration the run used), --workdir "
            "WORKDIR (the devices a run folder recorded), or --simulators (built-in "
            f"simulators started for the occasion); got {', '.join(given) or 'none'}"
        )
    if config is not None:
        loaded = load_config(config)
        return ResetTarget(loaded, f"devices of {quoted(config)}")
    if workdir is not None:
        return _recorded_target(workdir)
    return ResetTarget(load_config(None), "the built-in simulators, started for this")


def _recorded_target(workdir: Path) -> ResetTarget:
    from sequencer.journal import read_records  # noqa: PLC0415

    path = workdir / JOURNAL_FILE
    if not path.is_file():
        raise ConfigError(
            f"{workdir}: no {JOURNAL_FILE}; not a run folder. Give the folder of "
            "the run that faulted, or --config CONFIG"
        )
    records, _ = read_records(path)
    record = recorded_record(workdir, records[0]) if records else None
    if record is None:
        raise ConfigError(
            f"{workdir}: the run folder does not record its instrument "
            "configuration (an older run); give --config CONFIG"
        )
    config = record.inputs.instrument()
    if config.devices is None:
        raise ConfigError(
            f"{workdir}: that run used the built-in simulators, which stopped "
            "with it: there is no hardware to make safe (--simulators shows the "
            "procedure)"
        )
    return ResetTarget(config, f"devices recorded in {quoted(workdir)}", workdir)


def reset_instrument(target: ResetTarget | InstrumentConfig) -> ResetReport:
    """Connect to the devices and make them safe.

    A run folder's lock is held meanwhile, so that no run of that folder
    commands the devices at the same time.
    """
    config = target.config if isinstance(target, ResetTarget) else target
    pacing = Pacing(
        config.run,
        time_scale=config.time_scale,
        cover_motion_timeout_s=config.cover_config("x", "left").motion_timeout_s,
    )
    workdir = target.workdir if isinstance(target, ResetTarget) else None
    with (
        RunLock(workdir, "reset") if workdir is not None else contextlib.nullcontext(),
        devices_for(config) as connected,
    ):
        report = make_safe(connected.devices, pacing)
        report.devices = _device_lines(connected, report)
        return report


def _device_lines(connected: Connected, report: ResetReport) -> list[str]:
    """Each device: URL, identity, what was read back."""
    lines = connected.describe()
    reads = {
        "ccd": f"controller {report.ccd_state}, shutter {report.shutter}",
        "cover_left": f"half {report.halves[0]}",
        "cover_right": f"half {report.halves[1]}",
    }
    return [
        f"{line}: {reads.get(name, '')}"
        for name, line in zip(connected.identities, lines, strict=True)
    ]

"""``megara-dark reset``: bring the instrument to a safe, dark state after a fault.

A run that ends in FAULT leaves the hardware as the fault found it: a cover
half jammed part-way, an exposure still running, the shutter not reading
closed. Before the next run, an engineer checks the mechanism and then runs
this command, which runs the one procedure of :func:`sequencer.hardware.make_safe`:

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

from drivers.errors import ConfigError
from sequencer.config import InstrumentConfig, load_config
from sequencer.devices import Connected, devices_for
from sequencer.hardware import Pacing, SafeReport, make_safe
from sequencer.runfolder import JOURNAL_FILE, RunLock, quoted, recorded_record

log = logging.getLogger(__name__)


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


@dataclass
class ResetOutcome:
    """The reset's report, and each device as identified and read back."""

    report: SafeReport
    devices: list[str] = field(default_factory=list)


def reset_instrument(target: ResetTarget | InstrumentConfig) -> ResetOutcome:
    """Connect to the devices and make them safe (:func:`hardware.make_safe`).

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
        return ResetOutcome(report, _device_lines(connected, report))


def _device_lines(connected: Connected, report: SafeReport) -> list[str]:
    """Each device: URL, identity, what was read back."""
    reading = report.reading
    reads = (
        {
            "ccd": f"controller {reading.ccd.state.value}, "
            f"shutter {reading.ccd.shutter.value}",
            "cover_left": f"half {reading.cover.words()[0]}",
            "cover_right": f"half {reading.cover.words()[1]}",
        }
        if reading is not None
        else {}
    )
    return [
        f"{line}: {reads.get(name, 'not read back')}"
        for name, line in zip(connected.identities, connected.describe(), strict=True)
    ]

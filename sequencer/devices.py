"""Connecting to the instrument: the configured ports, or the built-in simulators.

:func:`devices_for` starts the built-in simulators when the configuration has
no ``[devices]`` table, opens every device, identifies it, and yields the
typed devices with their identities: what the run folder records and what a
resumed run is compared with (:func:`sequencer.runfolder.check_same_devices`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from drivers.archon import ArchonCcdController
from drivers.cover import SerialCoverHalf, SerialFocalPlaneCover
from sequencer.config import InstrumentConfig
from sequencer.hardware import Devices
from sequencer.simlaunch import SimulatorProcess, start_simulators

log = logging.getLogger(__name__)


@dataclass
class Connected:
    """The devices of a run, as connected and identified."""

    devices: Devices
    simulator: SimulatorProcess | None
    identities: dict[str, dict[str, Any]]

    @property
    def simulated(self) -> bool:
        """Any device said it is a simulator (or the run started them)."""
        return self.simulator is not None or any(
            bool(i.get("simulated")) for i in self.identities.values()
        )

    def describe(self) -> list[str]:
        """One line per device: name, URL, what it said it is."""
        return [
            f"{name} {i['url']}: {i['product']} firmware {i['firmware']}"
            + (" (simulator)" if i.get("simulated") else "")
            for name, i in self.identities.items()
        ]


def simulator_argv(
    config: InstrumentConfig,
    *,
    first_frame: int = 0,
    run_key: int | None = None,
    scenario: bool = True,
) -> list[str]:
    """The options the built-in simulators are started with.

    ``scenario`` False leaves the fault scenario out: a resumed run finishes
    on healthy simulators (the faults were the first start's test).
    """
    options = config.simulator
    if not scenario:
        options = dataclasses.replace(options, scenario=None)
    argv = [*options.argv()]
    if first_frame:
        argv += ["--first-frame", str(first_frame)]
    if run_key is not None:
        argv += ["--run-key", str(run_key)]
    return argv


@contextlib.contextmanager
def devices_for(
    config: InstrumentConfig,
    *,
    first_frame: int = 0,
    run_key: int | None = None,
    scenario: bool = True,
) -> Iterator[Connected]:
    """Connect to the devices (starting the simulators if configured).

    ``first_frame``: the simulated CCD's frame counter at start (a resumed run
    continues at the number of exposures it finished); ``run_key``: the
    simulated CCD's noise key (the run's own, so that a resumed run gets the
    pixels it would have had, and another run other noise).
    """
    sim: SimulatorProcess | None = None
    if config.devices is None:
        sim = start_simulators(
            simulator_argv(
                config, first_frame=first_frame, run_key=run_key, scenario=scenario
            )
        )
        urls = sim.urls
    else:
        urls = dict(config.devices)
    ccd = ArchonCcdController.from_config(config.ccd_config(urls["ccd"]))
    left = SerialCoverHalf.from_config(config.cover_config(urls["cover_left"], "left"))
    right = SerialCoverHalf.from_config(
        config.cover_config(urls["cover_right"], "right")
    )
    cover = SerialFocalPlaneCover(left, right)
    try:
        ccd.connect()
        cover.connect()
        identities = {
            "ccd": ccd.identity().to_dict(),
            "cover_left": left.identity().to_dict(),
            "cover_right": right.identity().to_dict(),
        }
        for identity in identities.values():
            identity["builtin"] = sim is not None
        connected = Connected(
            Devices(ccd, cover, (left.url, right.url)), sim, identities
        )
        log.info("connected: %s", "; ".join(connected.describe()))
        yield connected
    finally:
        ccd.close_link()
        cover.close_link()
        if sim is not None:
            sim.close()

"""A simulated Archon on a loopback port, for the Archon driver's unit tests.

A :class:`Rig` serves an in-process :class:`~simulators.archon.ArchonModel`
(pixels from the seeded synthesis) with the real
:class:`~simulators.server.DeviceServer` over TCP; the tests drive it with
:class:`~drivers.archon.ArchonCcdController` over pyserial's ``socket://``.
The simulated clock stands still unless a test advances it, so every state
the driver derives from ``FRAME`` is seen when the test says, whatever the
machine's speed. Faults go into the model's fault book just before the
command meant to trigger them (:meth:`Rig.arm`). The command lines the model
receives are recorded (:attr:`Rig.sent`), so a test can say what was sent,
and how often.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from drivers.archon import COLS, ROWS, ArchonCcdController
from drivers.config import CcdConfig
from drivers.interfaces import ControllerState
from drivers.protocol import archon as protocol
from drivers.protocol.archon_status import FrameStatus, parse_key_values
from simulators.archon import ArchonModel
from simulators.clock import SimClock
from simulators.device import Reply
from simulators.faults import Fault, FaultBook, FaultKind
from simulators.server import DeviceServer
from simulators.synthesis import Detector

IDLE, EXPOSING, READING, READY = (
    ControllerState.IDLE,
    ControllerState.EXPOSING,
    ControllerState.READING,
    ControllerState.READY,
)
RUN_KEY = 20261128
READOUT_S = 40.0
NOMINAL_K = 163.15
#: Buffer 1, where the first frame goes, and MEGARA's frame in bytes and blocks.
BASE = protocol.BUFFER_BASES[0]
NBYTES = ROWS * COLS * 2
NBLOCKS = protocol.blocks_for(NBYTES)
#: Longest wait for a frame's synthesis (a bound, never a measurement).
SYNTHESIS_S = 60.0
#: What ``connect()`` sends after reading the configuration: timing reset.
RESET = [
    "HOLDTIMING",
    *(f"FASTLOADPARAM {name} 0" for name in ("Exposures", "ReadOut", "AbortExposure")),
    *(f"FASTLOADPARAM {name} 0" for name in ("DoFlush", "WaitCount", "OpenShutter")),
    "FASTLOADPARAM AutoFlush 1",
    "RESETTIMING",
    "RELEASETIMING",
]


@dataclass
class Rig:
    """One simulated controller on a loopback port, and what it received."""

    clock: SimClock
    faults: FaultBook
    model: ArchonModel
    server: DeviceServer
    sent: list[str] = field(default_factory=list)
    drivers: list[ArchonCcdController] = field(default_factory=list)

    @classmethod
    def serve(cls, detector: Detector, **model: Any) -> Rig:
        """A controller made with ``model`` settings, served and recorded."""
        clock = SimClock(scale=1e-9)  # stands still: the tests advance it
        faults = FaultBook()
        archon = ArchonModel(
            clock, detector, faults=faults, readout_s=READOUT_S, run_key=RUN_KEY,
            **model,
        )  # fmt: skip
        server = DeviceServer(archon, clock, faults, transport="tcp", seed=5)
        rig = cls(clock, faults, archon, server)
        handle = archon.handle

        def recording(frame: bytes) -> Reply:
            rig.sent.append(frame[3:].decode("ascii", "replace").strip())
            return handle(frame)

        archon.handle = recording  # type: ignore[method-assign]
        server.start()
        return rig

    def close(self) -> None:
        for ccd in self.drivers:
            ccd.close_link()
        self.server.close()
        self.model.wait_synthesis(SYNTHESIS_S)

    def controller(self, **settings: Any) -> ArchonCcdController:
        values = {"reply_timeout_s": 0.5, "block_timeout_s": 0.5, "retries": 2}
        config = CcdConfig(url=self.server.url, **(values | settings))
        self.drivers.append(ArchonCcdController.from_config(config))
        return self.drivers[-1]

    def connected(self, **settings: Any) -> ArchonCcdController:
        ccd = self.controller(**settings)
        ccd.connect()
        return ccd

    def arm(self, kind: FaultKind, *, skip: int = 0, **fault: Any) -> None:
        """Arm ``kind``; by default for the command after the next ``skip``."""
        fault.setdefault("after_commands", self.model.commands + skip)
        self.faults.add(Fault(device="ccd", kind=kind, **fault))

    def fired(self, kind: FaultKind) -> int:
        return sum(1 for _, fault in self.faults.fired if fault.kind is kind)

    def since(self, mark: int) -> list[str]:
        return self.sent[mark:]

    def fetches(self, mark: int = 0) -> list[tuple[int, int]]:
        """(address, blocks) of each ``FETCH`` since ``mark``."""
        return [protocol.parse_fetch(t) for t in self.since(mark) if "FETCH" in t]

    def expected_pixels(self, detector: Detector) -> npt.NDArray[np.uint16]:
        """Frame 1 (buffer 1) as the synthesis makes it: MEGARA's raw layout."""
        record = self.model.record(1)
        assert record is not None
        exposure = record.exposure
        return detector.frame(
            exptime_s=exposure.dark_s,
            temperature_k=exposure.temperature_k,
            light_e_per_s=exposure.light_e_per_s,
            frame_seed=record.number,
            run_key=RUN_KEY,
        )


def take(
    rig: Rig, ccd: ArchonCcdController, exptime_s: float = 10.0
) -> list[ControllerState]:
    """Expose, poll mid-integration, mid-readout and once READY; the states seen.

    Returns once the frame's pixels are made, so that a ``FETCH`` is answered
    at once.
    """
    ccd.expose(exptime_s)
    seen = [ccd.status()]
    for step in (exptime_s / 2, exptime_s / 2 + READOUT_S / 2, READOUT_S):
        rig.clock.advance(step)
        seen.append(ccd.status())
    rig.model.wait_synthesis(SYNTHESIS_S)
    return [status.state for status in seen]


def frame_status(ccd: ArchonCcdController) -> FrameStatus:
    """``FRAME`` as the controller answers it now."""
    return FrameStatus.from_key_values(parse_key_values(ccd.archon.command("FRAME")))

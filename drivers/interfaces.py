"""The device interfaces the sequencer depends on.

The sequencer holds these Protocols, never a concrete driver, so that tests
can pass fakes and a new controller needs only a new implementation.
"""

from __future__ import annotations

from typing import Protocol

from drivers.cover import CoverStatus
from drivers.identity import DeviceIdentity
from drivers.protocol import ccd as proto_ccd
from drivers.readout import Progress, Readout

__all__ = [
    "CcdController",
    "CoverStatus",
    "DeviceIdentity",
    "FocalPlaneCover",
    "Identified",
    "Progress",
    "Readout",
]


class Identified(Protocol):
    """A device driver that can say what it connected to.

    ``SerialCcdController`` and ``SerialCoverHalf`` implement it; the CCD's
    identity (``simulated``) is what tells a simulator set from the hardware.
    """

    def identity(self) -> DeviceIdentity:
        """The device as identified after ``connect()``."""
        ...


class FocalPlaneCover(Protocol):
    """Both halves of the focal-plane cover, as the Dark mode holds them.

    It can close them and read them back, and nothing else: there is no way
    to open the cover through this interface, so no code that holds it (the
    state machine, ``megara-dark reset``) can, and mypy says so. The driver
    (:class:`drivers.cover.SerialFocalPlaneCover`) can open; engineering
    tools that need that hold the driver, not this.
    """

    def close(self) -> None:
        """Start closing both halves; returns once both acknowledged."""
        ...

    def status(self) -> CoverStatus:
        """Each half as read back from its controller now."""
        ...


class CcdController(Protocol):
    """The CCD controller and the shutter it drives."""

    @property
    def url(self) -> str: ...

    def status(self) -> proto_ccd.Status:
        """State, exposure progress, shutter and temperature, read now."""
        ...

    def expose(self, exptime_s: float, *, dark: bool = True) -> None:
        """Start an exposure; a dark keeps the shutter shut throughout."""
        ...

    def abort(self) -> None:
        """Stop any exposure or readout; the shutter closes."""
        ...

    def close_shutter(self) -> None:
        """Close the shutter and check that it reads back closed."""
        ...

    def shutter(self) -> proto_ccd.ShutterState:
        """The shutter position, read back from the controller."""
        ...

    def temperature(self) -> float:
        """The CCD temperature, kelvin."""
        ...

    def check_temperature(self) -> float:
        """The CCD temperature (K), or DeviceError if out of the allowed range."""
        ...

    def read_frame(self, progress: Progress | None = None) -> Readout:
        """Transfer the frame in the controller's memory, CRC-checked."""
        ...

    def clear(self) -> None:
        """Drop the frame in the controller's memory."""
        ...

"""The device interfaces the sequencer depends on.

The sequencer holds these Protocols, never a concrete driver, so that tests
can pass fakes and a new controller needs only a new implementation.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from drivers.cover import CoverStatus
from drivers.identity import DeviceIdentity

__all__ = [
    "CcdController",
    "CcdStatus",
    "ControllerState",
    "CoverStatus",
    "DeviceIdentity",
    "FocalPlaneCover",
    "FrameInfo",
    "Identified",
    "Progress",
    "Readout",
    "ShutterState",
]

#: Called during a readout with (bytes received, bytes expected).
Progress = Callable[[int, int], None]


class ControllerState(enum.Enum):
    """What the CCD controller is doing with the exposure the driver started."""

    IDLE = "IDLE"
    EXPOSING = "EXPOSING"
    READING = "READING"
    READY = "READY"
    ERROR = "ERROR"


class ShutterState(enum.Enum):
    """Where the shutter is, as its switches read back."""

    CLOSED = "CLOSED"
    OPEN = "OPEN"
    MOVING = "MOVING"
    FAULT = "FAULT"


#: Shutter states from least to most open (``FAULT``: both switches or neither
#: for long, which may be open): the order of a frame's ``shutter_max``.
SHUTTER_ORDER = (
    ShutterState.CLOSED,
    ShutterState.MOVING,
    ShutterState.FAULT,
    ShutterState.OPEN,
)


@dataclass(frozen=True, kw_only=True)
class CcdStatus:
    """The controller read now.

    Attributes
    ----------
    state
        What it is doing with the exposure the driver started.
    exptime_s
        Requested exposure time of that exposure, seconds (0 when IDLE).
    elapsed_s
        Seconds of it integrated so far, by the controller's clock.
    shutter
        Shutter position now.
    temperature_k
        CCD temperature now, kelvin.
    frame
        The controller's number of the frame last read out or being read.
    dark
        Whether that exposure keeps the shutter shut.
    """

    state: ControllerState
    exptime_s: float
    elapsed_s: float
    shutter: ShutterState
    temperature_k: float
    frame: int
    dark: bool


@dataclass(frozen=True, kw_only=True)
class FrameInfo:
    """One frame as the driver saw it taken and read.

    Attributes
    ----------
    frame
        The controller's frame number.
    rows, cols
        Geometry (4212 x 4196 for MEGARA raw).
    exptime_s
        Integration time by the controller's clock, seconds.
    dark
        Whether the shutter was commanded shut.
    temp_start_k, temp_end_k
        CCD temperature at the first reading while the frame integrated (or,
        without one, just before the exposure started) and at the last
        reading before it was read out, K.
    shutter_max
        The most open shutter state read back while the frame integrated
        (:data:`SHUTTER_ORDER`): ``CLOSED`` only if every reading was shut.
    shutter_readings
        How many shutter readings that is: one just before the exposure,
        then one per status poll while it integrated or was read out.
    """

    frame: int
    rows: int
    cols: int
    exptime_s: float
    dark: bool
    temp_start_k: float
    temp_end_k: float
    shutter_max: ShutterState
    shutter_readings: int


@dataclass(frozen=True)
class Readout:
    """One frame as transferred from the controller.

    Attributes
    ----------
    info
        What the driver saw of the frame (exposure, temperatures, shutter).
    pixels
        ``rows x cols`` big-endian uint16 ADU, ready for a BITPIX=16 FITS file.
    refetched
        Blocks fetched by a later transfer, after one was cut short.
    rounds
        Transfers needed (1 when nothing went wrong).
    """

    info: FrameInfo
    pixels: npt.NDArray[np.uint16]
    refetched: int
    rounds: int


class Identified(Protocol):
    """A device driver that can say what it connected to.

    ``ArchonCcdController`` and ``SerialCoverHalf`` implement it; the CCD's
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

    def status(self) -> CcdStatus:
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

    def shutter(self) -> ShutterState:
        """The shutter position, read back from the controller."""
        ...

    def temperature(self) -> float:
        """The CCD temperature, kelvin."""
        ...

    def check_temperature(self) -> float:
        """The CCD temperature (K), or DeviceError if out of the allowed range."""
        ...

    def read_frame(self, progress: Progress | None = None) -> Readout:
        """Transfer the frame the last exposure made, checked as it arrives."""
        ...

    def clear(self) -> None:
        """Done with the frame in the controller's memory (read or not)."""
        ...

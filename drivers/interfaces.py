"""The device interfaces the sequencer depends on.

The sequencer holds these Protocols, never a concrete driver, so that tests
can pass fakes and a new controller needs only a new implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from drivers.cover import CoverStatus

#: Called during a readout with (bytes received, bytes expected).
Progress = Callable[[int, int], None]


class FocalPlaneCover(Protocol):
    """Both halves of the focal-plane cover."""

    def close(self) -> None:
        """Start closing both halves; returns once both acknowledged."""
        ...

    def open(self) -> None:
        """Start opening both halves; returns once both acknowledged."""
        ...

    def halt(self) -> None:
        """Stop both halves where the device can (raises DeviceError if not)."""
        ...

    def status(self) -> CoverStatus:
        """Each half as read back from its controller now."""
        ...

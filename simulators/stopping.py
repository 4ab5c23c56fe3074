"""SIGINT and SIGTERM as a stop request that a simulator's main loop polls.

A Python signal handler runs in the main thread between two bytecodes,
which may be inside ``threading.Event.wait()`` just after it took the
event's lock back: a handler that calls ``Event.set()`` then waits for a
lock its own thread holds, forever. That hang was seen when a parent run
was killed: the watched pipe's end of file and the kernel's parent-death
SIGTERM arrive together, and the simulators outlived the run. So the
handler here only records the signal (no lock, no logging) and the loop
looks at it between waits.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)

POLL_S = 0.2
"""How often the main loop looks for a signal (its stop latency)."""


class StopSignals:
    """Wait for SIGINT, SIGTERM or an event set by another thread."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.received: int | None = None

    def install(self) -> None:
        """Handle SIGINT and SIGTERM (call from the main thread)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.note)

    def note(self, signum: int, frame: FrameType | None) -> None:
        """The handler: records the signal and nothing else."""
        self.received = signum

    def wait(self) -> None:
        """Return once a signal came or the event was set."""
        while self.received is None and not self.stop.wait(POLL_S):
            pass
        if self.received is not None:
            log.info("signal %s: stopping", signal.Signals(self.received).name)

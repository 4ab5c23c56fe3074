"""The simulators' virtual clock.

Simulated time runs ``scale`` times faster than the wall clock, so a
3600 s dark with ``scale=1000`` takes 3.6 s. All device timing (exposure,
readout, cover motion) is expressed in simulated seconds.
"""

from __future__ import annotations

import math
import threading
import time

from drivers.errors import ConfigError


class SimClock:
    """Monotonic simulated clock, in seconds since the simulator started.

    Parameters
    ----------
    scale
        Simulated seconds per wall-clock second (> 0). ``1.0`` is real time.
    """

    def __init__(self, scale: float = 1.0) -> None:
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigError(f"time scale must be a finite number > 0, got {scale!r}")
        self.scale = float(scale)
        self._t0 = time.monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Simulated seconds elapsed since the clock started."""
        with self._lock:
            return (time.monotonic() - self._t0) * self.scale + self._offset

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward (for tests of long waits)."""
        with self._lock:
            self._offset += seconds

    def to_wall(self, sim_seconds: float) -> float:
        """Wall-clock seconds that ``sim_seconds`` of simulated time take."""
        return sim_seconds / self.scale

    def sleep(self, sim_seconds: float) -> None:
        """Block for ``sim_seconds`` of simulated time."""
        if sim_seconds > 0:
            time.sleep(sim_seconds / self.scale)

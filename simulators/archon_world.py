"""What surrounds the simulated Archon: the detector, the cryostat, the light.

:class:`World` answers the timing core's questions about an instant (CCD
temperature, light at the shutter, a light leak, a shutter stuck open) from
the settings and the fault book; :class:`FrameMaker` turns the charge a
readout digitises into the frame buffer's pixels, on a thread, with the frame
synthesis of :mod:`simulators.synthesis`.

Faults read here, by the device name ``ccd``: ``temperature_excursion``
(``delta_k``, default 10 K, for ``duration_s``), ``light_leak`` (``flux``,
default 5 e-/s/pixel, for ``duration_s``) and ``shutter_stuck_open`` (fires at
the first instant its trigger holds; the shutter stays open from then on).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol

import numpy as np
import numpy.typing as npt

from simulators.archon_config import assemble
from simulators.archon_frames import FrameRecord
from simulators.faults import FaultBook, FaultKind

log = logging.getLogger(__name__)

#: Longest dark time a frame is synthesised with, seconds (the synthesis' limit).
MAX_DARK_S = 1.0e6


class FrameSource(Protocol):
    """Makes raw frames (``simulators.synthesis.Detector`` is the real one)."""

    def frame(
        self,
        *,
        exptime_s: float,
        temperature_k: float,
        light_e_per_s: float,
        frame_seed: int,
        run_key: int,
    ) -> npt.NDArray[np.uint16]:
        """MEGARA's raw frame, (4212, 4196) uint16 ADU."""
        ...


class World:
    """The timing core's :class:`~simulators.archon_timing.Surroundings`.

    Parameters
    ----------
    faults
        The fault book.
    temperature_k
        CCD temperature without faults, kelvin.
    light_at_shutter
        Light reaching the shutter now, e-/s/pixel.
    commands
        Commands the controller has received (for ``after_commands`` triggers).
    exposing
        The 1-based number of the frame being integrated, or None.
    """

    name = "ccd"

    def __init__(
        self,
        faults: FaultBook,
        *,
        temperature_k: float,
        light_at_shutter: Callable[[], float],
        commands: Callable[[], int],
        exposing: Callable[[], int | None],
    ) -> None:
        self.faults = faults
        self.base_temperature_k = temperature_k
        self._light = light_at_shutter
        self._commands = commands
        self._exposing = exposing
        self._stuck = False

    def _active(self, kind: FaultKind, t: float, param: str, default: float) -> float:
        fault = self.faults.active(
            self.name,
            kind,
            commands=self._commands(),
            sim_time=t,
            readout=self._exposing(),
        )
        return fault.param(param, default) if fault else 0.0

    def temperature_k(self, t: float) -> float:
        """CCD temperature at ``t``, kelvin (a temperature excursion included)."""
        excursion = self._active(FaultKind.TEMPERATURE_EXCURSION, t, "delta_k", 10.0)
        return self.base_temperature_k + excursion

    def light_at_shutter(self, t: float) -> float:
        """Light at the shutter, e-/s/pixel."""
        return self._light()

    def leak_e_per_s(self, t: float) -> float:
        """Light reaching the CCD past the shutter (fault), e-/s/pixel."""
        return self._active(FaultKind.LIGHT_LEAK, t, "flux", 5.0)

    def shutter_stuck(self, t: float) -> bool:
        """Whether the shutter is, or now gets, stuck open."""
        if not self._stuck and self.faults.fire(
            self.name,
            FaultKind.SHUTTER_STUCK_OPEN,
            commands=self._commands(),
            sim_time=t,
        ):
            log.warning("archon: injecting shutter_stuck_open")
            self._stuck = True
        return self._stuck


class FrameMaker:
    """Makes each frame's pixels on a thread while the CCD is read out.

    Frame ``n`` is synthesised with ``frame_seed=n`` and the run key, so the
    same seed, run key and frame counter give the same pixels (see
    ``megara-dark simulate --run-key``).
    """

    def __init__(self, detector: FrameSource, *, run_key: int) -> None:
        self.detector = detector
        self.run_key = run_key
        self._lock = threading.Lock()  # one frame at a time
        self._threads: list[threading.Thread] = []

    def make(self, record: FrameRecord) -> Future[npt.NDArray[np.generic]]:
        """Start making the pixels of ``record``; the future holds them."""
        future: Future[npt.NDArray[np.generic]] = Future()
        thread = threading.Thread(
            target=self._synthesise,
            args=(record, future),
            name=f"archon-frame-{record.number}",
            daemon=True,
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return future

    def wait(self, timeout_s: float | None = None) -> None:
        """Wait until every frame being made is made."""
        for thread in self._threads:
            thread.join(timeout_s)

    def _synthesise(
        self, record: FrameRecord, future: Future[npt.NDArray[np.generic]]
    ) -> None:
        exposure = record.exposure
        try:
            with self._lock:
                raw = self.detector.frame(
                    exptime_s=min(exposure.dark_s, MAX_DARK_S),
                    temperature_k=exposure.temperature_k,
                    light_e_per_s=exposure.light_e_per_s,
                    frame_seed=record.number,
                    run_key=self.run_key,
                )
            future.set_result(assemble(raw, record.geometry))
        except BaseException as err:  # handed to the FETCH that waits for it
            log.exception("archon: frame %d could not be made", record.number)
            future.set_exception(err)

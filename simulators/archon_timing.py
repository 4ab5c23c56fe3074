"""The simulated Archon's timing core: what the timing script does, on a clock.

A real Archon runs the timing script of its ACF; this model runs the script of
``simulators/megara.acf`` (the same as SDSS-V BOSS's, whose script sdss-archon
drives) as Python, on the parameters the host sets. Its main loop, each time
round, in this order:

* ``Exposures`` > 0: integrate ``IntMS`` milliseconds + ``IntCS`` centiseconds,
  with the shutter open if ``OpenShutter`` > 0; an ``AbortExposure`` > 0 ends
  the integration at once (and is decremented); then ``Exposures`` - 1;
* else ``ReadOut`` > 0: ``ReadOut`` - 1, wait ``WaitCount`` seconds, read the
  CCD into the next frame buffer (``readout_s`` for MEGARA's whole frame,
  proportionally less for a smaller window);
* else ``DoFlush`` > 0: ``DoFlush`` - 1, clear the CCD ``FlushCount`` times;
* else idle, clearing the CCD continuously while ``AutoFlush`` > 0.

``HOLDTIMING`` stops the core where it is (an integration or readout in
progress resumes, with the time it had left, at ``RELEASETIMING``);
``RESETTIMING`` sends it back to the top of the loop, dropping whatever it was
doing. Charge collects in the image area from the moment it was last cleared
(a flush, the start of an integration, the end of a readout, idle
auto-flushing) until a readout starts, so
that a frame read long after its integration carries the dark current of the
wait as well: the :class:`Exposure` handed to the readout says so.

The shutter is driven by the script (a DIO output during integration when
``OpenShutter`` > 0) and moves instantly; a shutter stuck open (fault) is
open all the time.
"""

from __future__ import annotations

import enum
import itertools
import logging
from dataclasses import dataclass, field
from typing import Protocol

from drivers.protocol.archon import TIMER_HZ

log = logging.getLogger(__name__)

#: Fraction of the light at the shutter that passes it closed (as the
#: simulated CCD of the previous protocol always had).
CLOSED_TRANSMISSION = 1e-4


class Surroundings(Protocol):
    """What the core reads of the world at a simulated instant ``t``."""

    def temperature_k(self, t: float) -> float:
        """CCD temperature, kelvin."""
        ...

    def light_at_shutter(self, t: float) -> float:
        """Light reaching the shutter, e-/s/pixel."""
        ...

    def leak_e_per_s(self, t: float) -> float:
        """Light reaching the CCD past the shutter (a leak), e-/s/pixel."""
        ...

    def shutter_stuck(self, t: float) -> bool:
        """Whether the shutter is (or now gets) stuck open."""
        ...


class Activity(enum.Enum):
    """What the timing script is doing."""

    IDLE = "idle"
    INTEGRATING = "integrating"
    READING = "reading"
    FLUSHING = "flushing"


@dataclass(frozen=True)
class Exposure:
    """The charge a readout digitises (times in simulated seconds).

    ``dark_s`` runs from the last clearing of the CCD to the readout;
    ``light_e_per_s`` is the light collected in that time (shutter, leaks)
    divided by it; ``temperature_k`` its time average. ``integration`` is the
    last integration's start and end, if there was one.
    """

    dark_s: float
    light_e_per_s: float
    temperature_k: float
    integration: tuple[float, float] | None
    shutter_opened: bool


@dataclass(frozen=True)
class ReadoutStarted:
    """The core began reading the CCD at ``t`` for ``duration`` seconds."""

    t: float
    duration: float
    exposure: Exposure


@dataclass(frozen=True)
class ReadoutEnded:
    """The readout that was under way ended at ``t`` (the frame is complete)."""

    t: float


@dataclass(frozen=True)
class ReadoutDropped:
    """The readout under way was dropped at ``t`` (its frame stays incomplete)."""

    t: float


Event = ReadoutStarted | ReadoutEnded | ReadoutDropped


@dataclass
class _Charge:
    """Charge collecting since ``start``: samples of (t, K, e-/s/pix at the CCD)."""

    start: float
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    integration: tuple[float, float] | None = None
    shutter_opened: bool = False


def _area(samples: list[tuple[float, float, float]], column: int) -> float:
    """Trapezoidal integral of one sampled column over time."""
    return sum(
        (b[0] - a[0]) * (a[column] + b[column]) / 2
        for a, b in itertools.pairwise(samples)
    )


def _mean(samples: list[tuple[float, float, float]], column: int) -> float:
    """Time average of one sampled column; exactly its value if it never changed.

    A frame must not depend on when the host happened to poll: a constant
    temperature averages to itself, not to a sum rounded differently.
    """
    values = {sample[column] for sample in samples}
    span = samples[-1][0] - samples[0][0]
    if len(values) == 1:
        return values.pop()
    if span <= 0:
        return sum(sample[column] for sample in samples) / len(samples)
    return _area(samples, column) / span


class TimingCore:
    """The timing script's state on the simulated clock.

    Parameters
    ----------
    surroundings
        Temperature, light and shutter faults at an instant.
    readout_s
        Time to read MEGARA's whole frame, simulated seconds (scaled by the
        window's size, see :attr:`read_fraction`).
    flush_s
        Time of one clearing of the CCD, simulated seconds.
    """

    def __init__(
        self, surroundings: Surroundings, *, readout_s: float, flush_s: float
    ) -> None:
        self.surroundings = surroundings
        self.readout_s = readout_s
        self.flush_s = flush_s
        #: Fraction of MEGARA's whole frame the configured window reads.
        self.read_fraction = 1.0
        self.params: dict[str, int] = {}
        self.held = False
        self.activity = Activity.IDLE
        self.shutter_open = False
        self._last = 0.0
        self._end = 0.0
        self._started = 0.0
        self._left: float | None = None  # time left when held mid-activity
        self._charge = _Charge(0.0)

    # -- the host's commands ------------------------------------------------

    def param(self, name: str) -> int:
        """A parameter's value (0 if it is not declared)."""
        return self.params.get(name.upper(), 0)

    def hold(self, now: float) -> None:
        """``HOLDTIMING`` (after :meth:`advance` to ``now``)."""
        if not self.held and self.activity is not Activity.IDLE:
            self._left = max(self._end - now, 0.0)
        self.held = True

    def release(self, now: float) -> None:
        """``RELEASETIMING``: the core runs again from ``now``."""
        if self.held and self._left is not None:
            self._end = now + self._left
        self._left = None
        self.held = False
        self._last = now

    def reset(self, now: float) -> list[Event]:
        """``RESETTIMING``: back to the top of the loop; a readout is dropped."""
        dropped = self.activity is Activity.READING
        if self.activity is Activity.INTEGRATING:
            self._end_integration(now)
        self.activity = Activity.IDLE
        self._left = None
        self._last = now
        if dropped:
            self._charge = _Charge(now)
            self._sample(now)
        return [ReadoutDropped(now)] if dropped else []

    def progress(self, now: float) -> float:
        """Fraction of the readout under way done at ``now`` (1 when none is)."""
        if self.activity is not Activity.READING:
            return 1.0
        if self._left is not None:
            done = self._end - self._started - self._left
        else:
            done = now - self._started
        span = self._end - self._started
        return min(max(done / span, 0.0), 1.0) if span > 0 else 1.0

    # -- time --------------------------------------------------------------

    def advance(self, now: float) -> list[Event]:
        """Run the script up to ``now``; the readouts that started or ended."""
        events: list[Event] = []
        while not self._step(now, events):
            pass
        return events

    def _step(self, now: float, events: list[Event]) -> bool:
        """One step of the script; True when it has reached ``now``."""
        if self.held:
            if self.activity is not Activity.READING:
                self._sample(now)
            self._last = now
            return True
        if self.activity is Activity.IDLE:
            return self._idle(now, events)
        if self.activity is Activity.INTEGRATING:
            if self.param("AbortExposure") > 0:
                self._set("AbortExposure", self.param("AbortExposure") - 1)
                log.info("archon: integration aborted at %.3f s", self._last)
                self._finish_integration(self._last)
                return False
            if now < self._end:
                self._sample(now)
                self._last = now
                return True
            self._finish_integration(self._end)
            return False
        if now < self._end:
            self._last = now
            return True
        if self.activity is Activity.READING:
            events.append(ReadoutEnded(self._end))
        self._clear(self._end)
        self.activity = Activity.IDLE
        self._last = self._end
        return False

    def _idle(self, now: float, events: list[Event]) -> bool:
        t = self._last
        if self.param("Exposures") > 0:
            self._start_integration(t)
        elif self.param("ReadOut") > 0:
            self._set("ReadOut", self.param("ReadOut") - 1)
            duration = self.param("WaitCount") + self.readout_s * self.read_fraction
            events.append(ReadoutStarted(t, duration, self._close_charge(t)))
            self._begin(Activity.READING, t, duration)
        elif self.param("DoFlush") > 0:
            self._set("DoFlush", self.param("DoFlush") - 1)
            count = max(self.param("FlushCount"), 1)
            self._begin(Activity.FLUSHING, t, self.flush_s * count)
        else:
            if self.param("AutoFlush") > 0:
                self._clear(now)
            else:
                self._sample(now)
            self._last = now
            return True
        return False

    def _begin(self, activity: Activity, t: float, duration: float) -> None:
        self.activity = activity
        self._started = t
        self._end = t + duration

    def _set(self, name: str, value: int) -> None:
        self.params[name.upper()] = max(value, 0)  # parameters are unsigned

    # -- integration and charge ------------------------------------------------

    def _start_integration(self, t: float) -> None:
        seconds = self.param("IntMS") / 1000 + self.param("IntCS") / 100
        self._clear(t)  # the exposure routine flushes the CCD first
        self.shutter_open = self.param("OpenShutter") > 0 or self.shutter_open
        self._sample(t)
        self._charge.integration = (t, t)
        self._charge.shutter_opened |= self.shutter_open
        self._begin(Activity.INTEGRATING, t, seconds)
        log.info("archon: integrating %.3f s from %.3f s", seconds, t)

    def _end_integration(self, t: float) -> None:
        """Close the shutter (unless stuck) and note when integration ended."""
        self._sample(t)
        if not self.surroundings.shutter_stuck(t):
            self.shutter_open = False
        self._sample(t)
        if self._charge.integration is not None:
            self._charge.integration = (self._charge.integration[0], t)

    def _finish_integration(self, t: float) -> None:
        self._end_integration(t)
        self._set("Exposures", self.param("Exposures") - 1)
        self.activity = Activity.IDLE
        self._last = t

    def _sample(self, t: float) -> None:
        if self.surroundings.shutter_stuck(t):
            self.shutter_open = True
        light = self.surroundings.light_at_shutter(t)
        passed = light if self.shutter_open else light * CLOSED_TRANSMISSION
        flux = passed + self.surroundings.leak_e_per_s(t)
        charge = self._charge
        charge.shutter_opened |= self.shutter_open
        charge.samples.append((t, self.surroundings.temperature_k(t), flux))

    def _clear(self, t: float) -> None:
        """The image area is empty at ``t``; charge collects from then on."""
        self._charge = _Charge(t)
        self._sample(t)

    def _close_charge(self, t: float) -> Exposure:
        """The charge a readout starting at ``t`` digitises."""
        self._sample(t)
        charge = self._charge
        samples = charge.samples
        # On the controller's 10 ns ticks, and a constant flux exactly itself:
        # a frame must not depend on the float steps the clock was read in.
        span = round((t - charge.start) * TIMER_HZ) / TIMER_HZ
        temperature = _mean(samples, 1)
        light = _mean(samples, 2) if span > 0 else 0.0
        self._charge = _Charge(t)  # what the readout leaves behind starts now
        return Exposure(
            dark_s=span,
            light_e_per_s=light,
            temperature_k=temperature,
            integration=charge.integration,
            shutter_opened=charge.shutter_opened,
        )

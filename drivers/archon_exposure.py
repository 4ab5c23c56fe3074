"""What the Archon driver knows of the exposure it started, and reads from ``FRAME``.

The Archon keeps no exposure state: :class:`Exposure` is the driver's
record of one (when it started by the controller's clock, the highest frame
number then, the temperature and shutter readings since), :func:`holding`
finds its frame among the buffers, :func:`integrated` its integration time
from the buffer's timestamps, and :func:`shutter_from` reads the shutter's
two switches (see :mod:`drivers.archon`).
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.interfaces import SHUTTER_ORDER, ShutterState
from drivers.protocol import archon as protocol
from drivers.protocol.archon_status import BufferStatus, FrameStatus

#: ``MOD2/DINPUTS`` bits of the shutter's switches: closed, open.
SHUTTER_CLOSED_BIT, SHUTTER_OPEN_BIT = 1 << 2, 1 << 3


@dataclass
class Exposure:
    """The exposure this driver started, as it saw it."""

    after: int  # the highest frame number in the buffers when it started
    exptime_s: float
    dark: bool
    timer_start: int
    temp_start_k: float
    temp_end_k: float
    shutter_max: ShutterState
    readings: int = 1
    integrating_seen: bool = False

    def saw(
        self, shutter: ShutterState, temperature_k: float, *, integrating: bool
    ) -> None:
        """One ``STATUS`` reading; the first while integrating is the start's."""
        if SHUTTER_ORDER.index(shutter) > SHUTTER_ORDER.index(self.shutter_max):
            self.shutter_max = shutter
        self.readings += 1
        self.temp_end_k = temperature_k
        if integrating and not self.integrating_seen:
            self.integrating_seen = True
            self.temp_start_k = temperature_k


def shutter_from(dinputs: int) -> ShutterState:
    """The shutter position the two switches on ``DINPUTS`` say."""
    closed = bool(dinputs & SHUTTER_CLOSED_BIT)
    opened = bool(dinputs & SHUTTER_OPEN_BIT)
    if closed and opened:
        return ShutterState.FAULT
    if closed:
        return ShutterState.CLOSED
    return ShutterState.OPEN if opened else ShutterState.MOVING


def holding(frame: FrameStatus, after: int) -> BufferStatus | None:
    """The buffer holding (or being written with) the first frame after ``after``.

    The controller numbers frames on from its own counter, which buffers do
    not show until a frame is read (a controller restarted at frame N makes
    frame N + 1 first, with all buffers at 0).
    """
    newer = [buffer for buffer in frame.buffers if buffer.frame > after]
    return min(newer, key=lambda buffer: buffer.frame) if newer else None


def integrated(buffer: BufferStatus, exposure: Exposure) -> float:
    """The integration the buffer's timestamps record, else the one requested."""
    span = buffer.fe_timestamp - buffer.re_timestamp
    return span / protocol.TIMER_HZ if span > 0 else exposure.exptime_s

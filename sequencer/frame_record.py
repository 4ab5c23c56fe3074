"""One exposure's record, where the sequence sends it, and what a sequence reports.

The state machine (:mod:`sequencer.machine`) fills a :class:`FrameRecord`
per attempt and hands it to a :class:`FrameSink` (the run's writer and
reduction); :class:`Outcome` is what a finished or failed sequence reports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from drivers.errors import MegaraDarkError, SequenceError
from drivers.interfaces import Readout
from sequencer.blocks import ObservingBlock
from sequencer.interlock import COVER_CLOSED, CoverReading, InterlockEvidence, Reading

log = logging.getLogger(__name__)


@dataclass
class FrameRecord:
    """Everything known about one exposure, for the writer."""

    block: ObservingBlock
    attempt: int
    index: int
    date_obs: datetime
    darktime_s: float
    before: Reading
    after: Reading | None = None
    cover_worst: CoverReading = COVER_CLOSED
    readout: Readout | None = None
    cover_close_s: float | None = None  # device seconds the close took, at most
    cover_close_min_s: float | None = None  # ... and at least

    @property
    def evidence(self) -> InterlockEvidence:
        """The frame's interlock evidence, once it has been read out."""
        if self.after is None or self.readout is None:
            raise SequenceError(f"attempt {self.attempt}: not read out, no evidence")
        info = self.readout.info
        return InterlockEvidence(
            before=self.before,
            after=self.after,
            cover_worst=self.cover_worst,
            shutter_max=info.shutter_max,
            shutter_readings=info.shutter_readings,
        )


class FrameSink(Protocol):
    """Writes frames and hands them to the reduction (supplied by the run)."""

    def write(self, record: FrameRecord, valid: bool, reason: str) -> str:
        """Write the frame (now or soon, in order); return its file name.

        The sink reports ``frame_written`` or ``frame_invalid`` once the file
        is on disk.
        """
        ...

    def reduce(self) -> None: ...


@dataclass
class Outcome:
    """What a finished (or failed) sequence reports."""

    valid_frames: int = 0
    attempts: int = 0
    retaken: int = 0
    error: MegaraDarkError | None = None
    aborted: bool = False
    invalid_reasons: list[str] = field(default_factory=list)
    safe_state: str = ""  # cover and shutter read back after an abort

"""How long a run has left, worked out from its progress events alone.

:class:`RunClock` is fed every event the :class:`sequencer.progress.Reporter`
sends (the same the live display and ``--json`` receive) and estimates, at a
given moment, the wall seconds left in the current block and in the whole run.
It is pure: no clock, no I/O; the moment is the events' ``t`` (wall seconds
since the run started).

A frame is expected to take its exposure time plus the controller's readout
time (``run.readout_s``), both device seconds, divided by the time scale (the
simulators run at x1000, real hardware at x1), plus the overhead measured on
the frames seen so far (transfer, writing, polling: wall time the device time
does not account for). Once a frame of a block has been measured, the
block's own mean wall duration per frame replaces that guess. A frame is
measured from its ``frame_started`` to the next one, or to the block's
``REDUCING`` state for the last; a retake is one more frame. A block's
preparation (``block_started`` to its first frame) and reduction (``REDUCING``
to ``block_done``) are measured too and expected again for the blocks to come.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

log = logging.getLogger(__name__)

#: Events after which nothing more is expected of the run.
STOPPING = frozenset({"aborted", "fault", "run_done"})


@dataclass(frozen=True)
class BlockPlan:
    """One observing block as planned: its id, frames and exposure (device s)."""

    block: str
    nframes: int
    exptime_s: float


@dataclass(frozen=True)
class Estimate:
    """Wall seconds left, in the current block and in the run (None: unknown)."""

    block_s: float | None
    run_s: float | None


@dataclass
class _Block:
    """What is known of the block in progress."""

    plan: BlockPlan
    started_t: float
    valid_before: int = 0  # valid frames on disk when it started (resume)
    frame: int = 0  # index of the frame in progress (0: none yet)
    frame_t: float | None = None  # when that frame started
    first_frame_t: float | None = None
    exposure_left_s: float = 0.0  # device seconds, from the last exposure event
    exposing: bool = False
    durations: list[float] = field(default_factory=list)  # wall s per frame
    reducing_t: float | None = None
    done: bool = False


class RunClock:
    """Estimates the time left from the run's events (see the module notes).

    Parameters
    ----------
    readout_s
        Expected controller readout time, device seconds (``run_started``
        overrides it when it carries ``readout_s``).
    time_scale
        Device seconds per wall second (``run_started`` overrides it).
    """

    def __init__(self, *, readout_s: float = 40.0, time_scale: float = 1.0) -> None:
        self.readout_s = readout_s
        self.time_scale = time_scale
        self.plan: list[BlockPlan] = []
        self.current: _Block | None = None
        self.stopped = False
        self._position = -1  # index in the plan of the latest block started
        self._overheads: list[float] = []  # measured minus predicted, wall s
        self._prep_s: list[float] = []
        self._reduce_s: list[float] = []

    # -- feeding ---------------------------------------------------------------

    def feed(self, event: Mapping[str, Any]) -> None:
        """Take one event into account (unknown kinds are ignored)."""
        kind, t = event["event"], float(event.get("t", 0.0))
        if kind in STOPPING:
            self.stopped = True
        elif kind == "run_started":
            self._run_started(event)
        elif kind == "block_started":
            self._block_started(event, t)
        elif kind == "frame_started":
            self._frame_started(event, t)
        elif kind == "exposure" and self.current is not None:
            self.current.exposure_left_s = float(event.get("remaining_s", 0.0))
            self.current.exposing = self.current.exposure_left_s > 0
        elif kind == "readout" and self.current is not None:
            self.current.exposing = False
        elif kind == "state" and event.get("state") == "REDUCING":
            self._reducing(t)
        elif kind == "block_done":
            self._block_done(t)

    def _run_started(self, event: Mapping[str, Any]) -> None:
        self.readout_s = float(event.get("readout_s", self.readout_s))
        self.time_scale = float(event.get("time_scale", self.time_scale))
        self.plan = [
            BlockPlan(str(b["block"]), int(b["nframes"]), float(b["exptime_s"]))
            for b in event.get("plan", [])
        ]

    def _block_started(self, event: Mapping[str, Any], t: float) -> None:
        plan = BlockPlan(
            str(event["block"]), int(event["nframes"]), float(event["exptime_s"])
        )
        self.current = _Block(plan, t, valid_before=int(event.get("valid", 0)))
        ids = [p.block for p in self.plan]
        if plan.block in ids:
            self._position = ids.index(plan.block)

    def _frame_started(self, event: Mapping[str, Any], t: float) -> None:
        block = self.current
        if block is None or block.done:
            return
        self._close_frame(t)
        if block.first_frame_t is None:
            block.first_frame_t = t
        block.frame = int(event["frame"])
        block.frame_t = t
        block.exposure_left_s = block.plan.exptime_s
        block.exposing = block.plan.exptime_s > 0

    def _close_frame(self, t: float) -> None:
        """The frame in progress has ended at ``t``: measure it."""
        block = self.current
        if block is None or block.frame_t is None:
            return
        took = max(t - block.frame_t, 0.0)
        block.durations.append(took)
        self._overheads.append(took - self.predicted_frame_s(block.plan))
        block.frame_t = None
        block.exposing = False

    def _reducing(self, t: float) -> None:
        block = self.current
        if block is None or block.reducing_t is not None:
            return
        self._close_frame(t)
        block.reducing_t = t

    def _block_done(self, t: float) -> None:
        block = self.current
        if block is None:
            return
        if block.first_frame_t is not None:
            self._prep_s.append(max(block.first_frame_t - block.started_t, 0.0))
        if block.reducing_t is not None:
            self._reduce_s.append(max(t - block.reducing_t, 0.0))
        block.done = True

    # -- estimating ------------------------------------------------------------

    def predicted_frame_s(self, plan: BlockPlan) -> float:
        """Wall seconds a frame should take from the device times alone."""
        return (plan.exptime_s + self.readout_s) / self.time_scale

    def frame_s(self, plan: BlockPlan) -> float:
        """Wall seconds expected per frame of ``plan`` (measured once possible)."""
        block = self.current
        if block is not None and block.plan.block == plan.block and block.durations:
            return fmean(block.durations)
        overhead = fmean(self._overheads) if self._overheads else 0.0
        return max(self.predicted_frame_s(plan) + overhead, 0.0)

    def estimate(self, t: float) -> Estimate:
        """The time left at ``t`` (None once the run stopped or if unknown)."""
        if self.stopped:
            return Estimate(None, None)
        block = self.current
        block_s = self._block_left(block, t) if block is not None else None
        if not self.plan:
            return Estimate(block_s, None)
        later = self.plan[self._position + 1 :]
        run_s = (block_s or 0.0) + sum(self._whole_block_s(p) for p in later)
        return Estimate(block_s, run_s)

    def _block_left(self, block: _Block, t: float) -> float:
        if block.done:
            return 0.0
        reduce_s = _mean(self._reduce_s)
        if block.reducing_t is not None:
            return max(reduce_s - (t - block.reducing_t), 0.0)
        per_frame = self.frame_s(block.plan)
        if block.frame_t is None:  # preparing: no frame yet
            prep = max(_mean(self._prep_s) - (t - block.started_t), 0.0)
            left = max(block.plan.nframes - block.valid_before, 0)
            return prep + left * per_frame + reduce_s
        this = max(per_frame - (t - block.frame_t), self._floor(block))
        later = max(block.plan.nframes - block.frame, 0)
        return this + later * per_frame + reduce_s

    def _floor(self, block: _Block) -> float:
        """Least wall time the frame in progress still needs (device-reported)."""
        if not block.exposing:
            return 0.0
        return (block.exposure_left_s + self.readout_s) / self.time_scale

    def _whole_block_s(self, plan: BlockPlan) -> float:
        return (
            _mean(self._prep_s)
            + plan.nframes * self.frame_s(plan)
            + _mean(self._reduce_s)
        )


def _mean(values: Sequence[float]) -> float:
    return fmean(values) if values else 0.0

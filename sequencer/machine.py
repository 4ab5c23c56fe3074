"""The Dark observing mode as a state machine (the ``transitions`` library).

The states are an Enum and the transition table is module-level data, so it
can be read aloud, drawn (``megara-dark diagram``) and walked by a test::

    IDLE -start-> PREPARING -prepared-> EXPOSING -exposed-> READING
         -read_out-> WRITING -written-> EXPOSING (more frames) | REDUCING
         -reduced-> DONE -finish-> IDLE
    every busy state -abort-> ABORTING -aborted-> IDLE
    every busy state and ABORTING -fail-> FAULT -reset-> IDLE (hardware safe)

Each state's work runs in its ``on_enter`` callback, which fires the next
trigger; with ``queued=True`` the whole run unrolls inside ``start()``. No
transition of the Dark or Bias mode opens the shutter or the cover: the
devices this machine holds offer no command to do so (see
:class:`drivers.interfaces.CcdController`), and a test checks the table.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from transitions import EventData, Machine

from drivers.errors import DeviceError, MegaraDarkError, SequenceError
from drivers.interfaces import CcdStatus, ControllerState
from sequencer.blocks import ObservingBlock
from sequencer.frame_record import FrameRecord, FrameSink, Outcome
from sequencer.hardware import (
    CCD_BUSY,
    Devices,
    Pacing,
    make_safe,
    read_safety,
    stop_exposure,
)
from sequencer.interlock import (
    COVER_CLOSED,
    CoverReading,
    Reading,
)
from sequencer.motion import wait_for_cover
from sequencer.progress import Reporter

log = logging.getLogger(__name__)


class Step(enum.Enum):
    """States of one Dark (or Bias) observation."""

    IDLE = enum.auto()
    PREPARING = enum.auto()
    EXPOSING = enum.auto()
    READING = enum.auto()
    WRITING = enum.auto()
    REDUCING = enum.auto()
    DONE = enum.auto()
    ABORTING = enum.auto()
    FAULT = enum.auto()


BUSY = [Step.PREPARING, Step.EXPOSING, Step.READING, Step.WRITING, Step.REDUCING]


def edge(
    trigger: str, source: Step | list[Step], dest: Step, **callbacks: str
) -> dict[str, Any]:
    """One row of the transition table."""
    return {"trigger": trigger, "source": source, "dest": dest, **callbacks}


TRANSITIONS = [
    edge("start", Step.IDLE, Step.PREPARING),
    edge("prepared", Step.PREPARING, Step.EXPOSING),
    edge("exposed", Step.EXPOSING, Step.READING),
    edge("read_out", Step.READING, Step.WRITING),
    edge("written", Step.WRITING, Step.EXPOSING, unless="plan_complete"),
    edge("written", Step.WRITING, Step.REDUCING, conditions="plan_complete"),
    edge("reduced", Step.REDUCING, Step.DONE),
    edge("finish", Step.DONE, Step.IDLE),
    edge("abort", BUSY, Step.ABORTING),
    edge("aborted", Step.ABORTING, Step.IDLE),
    edge("fail", [*BUSY, Step.ABORTING], Step.FAULT),
    edge(
        "reset", Step.FAULT, Step.IDLE, prepare="run_reset", conditions="hardware_safe"
    ),
]

#: The work each state does on entry (method names of :class:`DarkSequence`).
STATES: list[dict[str, Any]] = [
    {"name": Step.IDLE},
    {"name": Step.PREPARING, "on_enter": "prepare"},
    {"name": Step.EXPOSING, "on_enter": "integrate"},
    {"name": Step.READING, "on_enter": "read_frame"},
    {"name": Step.WRITING, "on_enter": "write_frame"},
    {"name": Step.REDUCING, "on_enter": "reduce"},
    {"name": Step.DONE, "on_enter": "report_done"},
    {"name": Step.ABORTING, "on_enter": "make_safe_after_abort"},
    {"name": Step.FAULT, "on_enter": "make_safe_after_fault"},
]


class AbortRequested(SequenceError):
    """The operator asked to stop (Ctrl-C or SIGTERM)."""


class DarkSequence:
    """Runs one Dark or Bias block: cover and shutter closed, N frames, reduced.

    Parameters
    ----------
    devices
        The CCD controller and the cover, as interfaces.
    block
        The observing block (mode, exposure time, frames).
    sink
        Writes each frame and runs the reduction.
    pacing
        Timeouts, poll intervals and the devices' time scale.
    first_attempt
        Attempts already made for this block (when resuming a killed run).
    valid_so_far
        Valid frames already written for this block (when resuming).
    reporter
        Where progress events go (none: nowhere).
    """

    # Bound by the Machine from TRANSITIONS (annotations only, for mypy).
    state: Step
    start: Callable[[], bool]
    prepared: Callable[[], bool]
    exposed: Callable[[], bool]
    read_out: Callable[[], bool]
    written: Callable[[], bool]
    reduced: Callable[[], bool]
    finish: Callable[[], bool]
    abort: Callable[[], bool]
    aborted: Callable[[], bool]
    fail: Callable[[], bool]
    reset: Callable[[], bool]

    def __init__(
        self,
        devices: Devices,
        block: ObservingBlock,
        sink: FrameSink,
        pacing: Pacing,
        *,
        first_attempt: int = 0,
        valid_so_far: int = 0,
        reporter: Reporter | None = None,
    ) -> None:
        self.devices = devices
        self.block = block
        self.sink = sink
        self.pacing = pacing
        self.attempt = first_attempt
        self.outcome = Outcome(valid_frames=valid_so_far)
        self.abort_requested = False
        self.abort_reason = "stop requested"
        self.report = reporter if reporter is not None else Reporter()
        self.current: FrameRecord | None = None
        self.cover_close_s: float | None = None
        self.cover_close_min_s: float | None = None
        self._seen: dict[str, Any] = {}  # the last read-back reported
        self.machine = Machine(
            model=self,
            states=STATES,
            transitions=TRANSITIONS,
            initial=Step.IDLE,
            queued=True,
            send_event=True,
            auto_transitions=False,
            before_state_change="report_state",
            on_exception="on_error",
        )

    # -- conditions ----------------------------------------------------------

    def plan_complete(self, event: EventData) -> bool:
        return self.outcome.valid_frames >= self.block.nframes

    def run_reset(self, event: EventData) -> None:
        """The reset edge runs ``megara-dark reset``'s own procedure."""
        report = make_safe(self.devices, self.pacing)
        for step in report.steps:
            log.info("%s: reset: %s", self.block.id, step)
        if report.error is not None:
            log.error("%s: reset: %s", self.block.id, report.error)

    def hardware_safe(self, event: EventData) -> bool:
        """The one safety predicate (:attr:`sequencer.hardware.SafetyReading.safe`)."""
        try:
            return read_safety(self.devices).safe
        except MegaraDarkError as err:
            log.error("%s: reading back for the reset: %s", self.block.id, err)
            return False

    # -- helpers -------------------------------------------------------------

    def check_abort(self) -> None:
        if self.abort_requested:
            raise AbortRequested(
                f"{self.block.id}: stopped at the operator's request "
                f"({self.abort_reason})"
            )

    def interlock(self) -> Reading:
        """Read the cover halves and the shutter back from the hardware now."""
        now = Reading(
            CoverReading.of(self.devices.cover.status()), self.devices.ccd.shutter()
        )
        self._readback(
            always=True,
            cover=now.cover.render(),
            cover_closed=now.cover.closed,
            shutter=now.shutter.value,
        )
        return now

    # -- progress events -----------------------------------------------------

    def report_state(self, event: EventData) -> None:
        """Before each transition: say which state the machine enters."""
        if event.transition is None:
            return
        dest = str(event.transition.dest)
        extra = {"reason": self.abort_reason} if dest == Step.ABORTING.name else {}
        self.report.emit("state", block=self.block.id, state=dest, **extra)

    def _readback(self, *, always: bool = False, **seen: Any) -> None:
        """Report what was just read from the hardware.

        Throttled like the other progress events, but a cover or shutter
        reading that changed always goes, and so does one marked ``always``.
        """
        changed = any(
            self._seen.get(key) != value
            for key, value in seen.items()
            if key != "temperature_k"
        )
        self._seen.update(seen)
        self.report.progress(
            "readback", edge=always or changed, block=self.block.id, **seen
        )

    def _polled(self, status: CcdStatus) -> None:
        self._readback(
            shutter=status.shutter.value, temperature_k=round(status.temperature_k, 2)
        )

    def _wait(self, seconds: float) -> None:
        end = self.pacing.clock() + seconds
        while True:
            self.check_abort()
            left = end - self.pacing.clock()
            if left <= 0:
                return
            self.pacing.sleep(min(left, 0.2))

    # -- the work of each state ----------------------------------------------

    def prepare(self, event: EventData) -> None:
        """Close both cover halves and the shutter; verify all three."""
        self.check_abort()
        log.info("%s: closing the cover and the shutter", self.block.id)
        temperature_k = self.devices.ccd.check_temperature()
        self._readback(always=True, temperature_k=round(temperature_k, 2))
        self._end_leftover_exposure()
        self.devices.ccd.close_shutter()
        marks: list[float] = []  # wait_for_cover's start, then each poll's reply

        def clock() -> float:
            marks.append(self.pacing.clock())
            return marks[-1]

        closing_since = self.pacing.clock()
        self.devices.cover.close()
        wait_for_cover(
            self.devices.cover,
            "closed",
            timeout_s=self.pacing.cover_motion_timeout_s,
            poll_s=min(0.2, self.pacing.poll_s),
            urls=self.devices.cover_urls,
            sleep=self._wait,
            clock=clock,
        )
        # The close time in device seconds, bracketed for the engineering
        # verification: at most until the reply that read closed; at least
        # until the reply before the last poll that read not closed (that poll
        # was sent after it). Latency widens the bracket (x the time scale on
        # the simulators), never moves the lower end above the truth.
        scale = self.pacing.time_scale
        self.cover_close_s = (marks[-1] - closing_since) * scale
        lower = marks[-3] - marks[0] if len(marks) >= 4 else 0.0
        self.cover_close_min_s = max(0.0, lower) * scale
        now = self.interlock()
        if not now.closed:
            raise DeviceError(
                f"{self.block.id}: after closing, read back {now.cover.render()} and "
                f"shutter {now.shutter.value}; expected both cover halves and the "
                "shutter CLOSED; check the mechanisms before taking darks"
            )
        log.info("%s: cover and shutter closed and verified", self.block.id)
        self.prepared()

    def integrate(self, event: EventData) -> None:
        """Read the interlock, expose, watch the cover, read the interlock again."""
        self.check_abort()
        self.attempt += 1
        self.outcome.attempts += 1
        before = self.interlock()
        record = FrameRecord(
            block=self.block,
            attempt=self.attempt,
            index=self.outcome.valid_frames + 1,
            date_obs=datetime.now(UTC),
            darktime_s=self.block.exptime,
            before=before,
            cover_close_s=self.cover_close_s,
            cover_close_min_s=self.cover_close_min_s,
        )
        self.current = record
        log.info(
            "%s: frame %d/%d (attempt %d): exposing %.1f s",
            self.block.id,
            record.index,
            self.block.nframes,
            record.attempt,
            self.block.exptime,
        )
        self.report.emit(
            "frame_started",
            block=self.block.id,
            frame=record.index,
            nframes=self.block.nframes,
            attempt=record.attempt,
            exptime_s=self.block.exptime,
        )
        self.devices.ccd.expose(self.block.exptime, dark=True)
        self._exposure_progress(0.0, edge=True)
        status, worst = self._watch_exposure()
        self._exposure_progress(self.block.exptime, edge=True)
        record.after = self.interlock()
        record.cover_worst = worst
        record.darktime_s = max(self.block.exptime, status.elapsed_s)
        self.exposed()

    def _watch_exposure(self) -> tuple[CcdStatus, CoverReading]:
        """Poll the controller until the exposure ends, the cover on its own
        interval; the final status and the worst cover reading."""
        start = self.pacing.clock()
        limit = (
            self.pacing.wall(self.block.exptime) + self.pacing.settings.timeout_margin_s
        )
        next_cover = start + self.pacing.wall(self.pacing.settings.cover_poll_s)
        worst = COVER_CLOSED
        while True:
            status = self.devices.ccd.status()
            self._polled(status)
            if status.state is not ControllerState.EXPOSING:
                break
            self._exposure_progress(status.elapsed_s)
            if self.pacing.clock() >= next_cover:
                cover = CoverReading.of(self.devices.cover.status())
                self._readback(cover=cover.render(), cover_closed=cover.closed)
                if not cover.closed:
                    worst = cover
                    log.warning(
                        "%s: cover read %s during integration",
                        self.block.id,
                        cover.render(),
                    )
                next_cover += self.pacing.wall(self.pacing.settings.cover_poll_s)
            if self.pacing.clock() - start > limit:
                raise DeviceError(
                    f"ccd: still exposing {self.pacing.clock() - start:.1f} s after a "
                    f"{self.block.exptime:g} s exposure started on "
                    f"{self.devices.ccd.url}; expected it to end; the controller may "
                    "be hung: abort and power-cycle it"
                )
            self._wait(self.pacing.poll_s)
        if status.state is ControllerState.ERROR:
            raise DeviceError(
                f"ccd: controller on {self.devices.ccd.url} went to ERROR during the "
                "exposure; expected READING; send CLEAR and check its log"
            )
        return status, worst

    def _current(self) -> FrameRecord:
        """The frame being taken; SequenceError between frames."""
        if self.current is None:
            raise SequenceError(f"{self.block.id}: no frame is being taken")
        return self.current

    def _exposure_progress(self, elapsed_s: float, *, edge: bool = False) -> None:
        record = self._current()
        elapsed_s = min(max(elapsed_s, 0.0), self.block.exptime)
        self.report.progress(
            "exposure",
            edge=edge,
            block=self.block.id,
            frame=record.index,
            elapsed_s=round(elapsed_s, 3),
            exptime_s=self.block.exptime,
            remaining_s=round(self.block.exptime - elapsed_s, 3),
        )

    def _readout_progress(self, percent: float, *, edge: bool = False) -> None:
        """The controller's readout into its memory (an estimate from the time)."""
        record = self._current()
        self.report.progress(
            "readout",
            edge=edge,
            block=self.block.id,
            frame=record.index,
            phase="ccd",
            percent=round(percent, 1),
        )

    def read_frame(self, event: EventData) -> None:
        """Wait for the controller's readout into memory, then transfer the frame."""
        start = self.pacing.clock()
        expected = max(self.pacing.wall(self.pacing.settings.readout_s), 1e-9)
        limit = expected * 3 + self.pacing.settings.timeout_margin_s
        self._readout_progress(0.0, edge=True)
        while True:
            status = self.devices.ccd.status()
            self._polled(status)
            if status.state is ControllerState.READY:
                self._readout_progress(100.0, edge=True)
                break
            if status.state is not ControllerState.READING:
                raise DeviceError(
                    f"ccd: controller reads {status.state.value} on "
                    f"{self.devices.ccd.url} after the exposure; expected READING "
                    "then READY; the frame is lost"
                )
            if self.pacing.clock() - start > limit:
                raise DeviceError(
                    f"ccd: readout not finished after {limit:.0f} s on "
                    f"{self.devices.ccd.url}; the controller may be hung"
                )
            self._readout_progress(
                min(99.0, 100.0 * (self.pacing.clock() - start) / expected)
            )
            self._wait(self.pacing.poll_s)
        record = self._current()
        record.readout = self.devices.ccd.read_frame(
            self.report.readout_callback(self.block.id, record.index)
            if self.report.active
            else None
        )
        self.read_out()

    def write_frame(self, event: EventData) -> None:
        """Hand the frame to the writer; count it valid or retake it."""
        record = self._current()
        problems = record.evidence.problems()
        valid = not problems
        reason = "; ".join(problems)
        self.sink.write(record, valid, reason)
        self.devices.ccd.clear()
        if valid:
            self.outcome.valid_frames += 1
        else:
            self.outcome.retaken += 1
            self.outcome.invalid_reasons.append(reason)
            log.warning(
                "%s: attempt %d is not a valid dark (%s); kept, marked invalid",
                self.block.id,
                record.attempt,
                reason,
            )
            if self.outcome.retaken > self.pacing.settings.retake_limit:
                raise SequenceError(
                    f"{self.block.id}: {self.outcome.retaken} frames were invalid "
                    f"(last: {reason}); the retake limit is "
                    f"{self.pacing.settings.retake_limit}; the instrument is not dark: "
                    "check the cover and the shutter"
                )
            self.report.emit(
                "frame_retaken",
                block=self.block.id,
                frame=record.index,
                attempt=record.attempt + 1,
                retaken=self.outcome.retaken,
            )
            if not record.before.closed or (record.after and not record.after.closed):
                self._reclose()
        self.written()

    def _reclose(self) -> None:
        """Try to close what was found open before the retake."""
        self.devices.ccd.close_shutter()
        self.devices.cover.close()
        wait_for_cover(
            self.devices.cover,
            "closed",
            timeout_s=self.pacing.cover_motion_timeout_s,
            poll_s=min(0.2, self.pacing.poll_s),
            urls=self.devices.cover_urls,
            sleep=self._wait,
        )

    def _end_leftover_exposure(self) -> None:
        """Abort an exposure or readout this run did not start.

        A run killed mid-exposure leaves hardware (not the built-in
        simulators) exposing or reading; the port is ours alone, so what
        runs there is that run's, and its frame is taken again.
        """
        status = self.devices.ccd.status()
        if status.state in CCD_BUSY:
            log.warning(
                "%s: the controller was %s a frame left by an earlier run; aborting it",
                self.block.id,
                status.state.value.lower(),
            )
            self.devices.ccd.abort()

    def reduce(self, event: EventData) -> None:
        self.sink.reduce()
        self.reduced()

    def report_done(self, event: EventData) -> None:
        log.info(
            "%s: done: %d valid frames, %d retaken",
            self.block.id,
            self.outcome.valid_frames,
            self.outcome.retaken,
        )

    def make_safe_after_abort(self, event: EventData) -> None:
        self.outcome.aborted = True
        self._make_safe()
        try:
            now = self.interlock()
            self.outcome.safe_state = now.describe()
            log.warning(
                "%s: stopped; read back %s", self.block.id, self.outcome.safe_state
            )
        except MegaraDarkError as err:
            log.error("%s: reading back after the abort: %s", self.block.id, err)
        self.report.emit(
            "aborted",
            block=self.block.id,
            signal=self.abort_reason,
            read_back=self.outcome.safe_state,
        )
        self.aborted()

    def make_safe_after_fault(self, event: EventData) -> None:
        self._make_safe()

    def _make_safe(self) -> None:
        """Stop the controller and close the shutter, whatever state it is in.

        The cover is left as it is: after a fault it may be jammed, and
        closing it is the reset's work, once an engineer has looked.
        """
        stop_exposure(self.devices.ccd, self.block.id)

    def on_error(self, event: EventData) -> None:
        """Route any failure: an abort request to ABORTING, the rest to FAULT."""
        error = event.error
        state = self.state
        if isinstance(error, AbortRequested) and state in BUSY:
            log.warning("%s", error)
            self.abort()
            return
        if not isinstance(error, MegaraDarkError):
            error = SequenceError(f"{self.block.id}: internal error: {error!r}")
            error.__cause__ = event.error
            log.exception("%s: unexpected failure", self.block.id, exc_info=event.error)
        self.outcome.error = error
        log.error("%s", error)
        self.report.emit(
            "fault", block=self.block.id, state=state.name, message=str(error)
        )
        if state in BUSY or state is Step.ABORTING:
            self.fail()

    def run(self) -> Outcome:
        """Run the block from IDLE to DONE (or FAULT, or back to IDLE on abort)."""
        self.start()
        return self.outcome

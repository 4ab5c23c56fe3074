"""The Dark-mode state machine: the table itself, and runs on fake devices."""

from __future__ import annotations

import typing
from collections import deque
from typing import Any

import numpy as np

from drivers import interfaces as pc
from drivers.cover import CoverStatus
from drivers.errors import DeviceError, SequenceError
from drivers.interfaces import FocalPlaneCover
from drivers.protocol import cover as pv
from sequencer.blocks import Mode, ObservingBlock
from sequencer.config import RunSettings
from sequencer.frame_record import FrameRecord
from sequencer.hardware import Devices, Pacing
from sequencer.machine import (
    BUSY,
    STATES,
    TRANSITIONS,
    DarkSequence,
    Step,
)
from sequencer.progress import Reporter

CLOSED = pv.Status(pv.Motor.STOPPED, pv.Light.OFF, pv.CoverState.CLOSED)
OPEN = pv.Status(pv.Motor.STOPPED, pv.Light.OFF, pv.CoverState.OPEN)


class FakeCcd:
    """An in-process controller: every call is recorded."""

    url = "fake://ccd"

    def __init__(self, *, shutter_stuck_open: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.shutter_state = pc.ShutterState.OPEN
        self.stuck = shutter_stuck_open
        self.polls: deque[pc.ControllerState] = deque()
        self.frame = 0
        self.on_status: Any = None

    def status(self) -> pc.CcdStatus:
        self.calls.append(("status", None))
        if self.on_status is not None:
            self.on_status()
        state = self.polls.popleft() if self.polls else pc.ControllerState.IDLE
        return pc.CcdStatus(
            state=state,
            exptime_s=1.0,
            elapsed_s=1.0,
            shutter=self.shutter_state,
            temperature_k=163.15,
            frame=self.frame,
            dark=True,
        )

    def expose(self, exptime_s: float, *, dark: bool = True) -> None:
        self.calls.append(("expose", (exptime_s, dark)))
        self.frame += 1
        self.polls.extend([pc.ControllerState.EXPOSING] * 2)
        self.polls.extend([pc.ControllerState.READING, pc.ControllerState.READY])

    def abort(self) -> None:
        self.calls.append(("abort", None))

    def close_shutter(self) -> None:
        self.calls.append(("close_shutter", None))
        if not self.stuck:
            self.shutter_state = pc.ShutterState.CLOSED

    def shutter(self) -> pc.ShutterState:
        return self.shutter_state

    def temperature(self) -> float:
        return 163.15

    def check_temperature(self) -> float:
        return 163.15

    def read_frame(self, progress: Any = None) -> pc.Readout:
        self.calls.append(("read_frame", None))
        info = pc.FrameInfo(
            frame=self.frame,
            rows=4212,
            cols=4196,
            exptime_s=1.0,
            dark=True,
            temp_start_k=163.15,
            temp_end_k=163.15,
            shutter_max=self.shutter_state,
            shutter_readings=2,
        )
        return pc.Readout(info, np.zeros((2, 2), ">u2"), 0, 1)

    def clear(self) -> None:
        self.calls.append(("clear", None))


class FakeCover:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.halves = (OPEN, OPEN)

    def close(self) -> None:
        self.calls.append("close")
        self.halves = (CLOSED, CLOSED)

    def status(self) -> CoverStatus:
        return CoverStatus(*self.halves)


class Sink:
    """Records the frames; reports them written, as the run's sink does."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bool, str]] = []
        self.reduced = 0
        self.report = Reporter()

    def write(self, record: FrameRecord, valid: bool, reason: str) -> str:
        self.frames.append((record.attempt, valid, reason))
        name = f"frame_{record.attempt:04d}.fits"
        self.report.emit(
            "frame_written" if valid else "frame_invalid",
            frame=record.index,
            file=name,
            reason=reason,
        )
        return name

    def reduce(self) -> None:
        self.reduced += 1


BLOCK = ObservingBlock(id="d1", mode=Mode.DARK, exptime=900.0, nframes=3, bias_from="b")


def sequence(ccd: FakeCcd | None = None, **settings: Any) -> tuple[DarkSequence, Sink]:
    sink = Sink()
    pacing = Pacing(RunSettings(**settings), time_scale=1e6, sleep=lambda s: None)
    devices = Devices(ccd or FakeCcd(), FakeCover())  # type: ignore[arg-type]
    return DarkSequence(devices, BLOCK, sink, pacing), sink


# -- the table -------------------------------------------------------------------


def test_every_callback_named_in_the_table_exists() -> None:
    seq, _ = sequence()
    names = [
        row[key]
        for row in TRANSITIONS
        for key in ("conditions", "unless", "before", "after")
        if key in row
    ] + [s["on_enter"] for s in STATES if "on_enter" in s]
    assert names
    for name in names:
        assert callable(getattr(seq, name)), name


def test_every_busy_state_can_abort_and_fail() -> None:
    for state in BUSY:
        triggers = {row["trigger"] for row in TRANSITIONS if state in _sources(row)}
        assert {"abort", "fail"} <= triggers, state


def _sources(row: dict[str, Any]) -> list[Step]:
    source = row["source"]
    return source if isinstance(source, list) else [source]


def test_every_state_reaches_idle() -> None:
    graph: dict[Step, set[Step]] = {s: set() for s in Step}
    for row in TRANSITIONS:
        for source in _sources(row):
            graph[source].add(row["dest"])
    for start in Step:
        seen, todo = {start}, [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        assert Step.IDLE in seen, start


def test_fault_is_left_only_by_an_explicit_reset() -> None:
    exits = [row for row in TRANSITIONS if Step.FAULT in _sources(row)]
    assert [(r["trigger"], r["dest"], r.get("conditions")) for r in exits] == [
        ("reset", Step.IDLE, "hardware_safe")
    ]
    reset = exits[0]
    assert reset["prepare"] == "run_reset"  # megara-dark reset's own procedure


def test_the_cover_the_machine_holds_cannot_open() -> None:
    """The promise is in the type: FocalPlaneCover has close and status only."""
    members = {
        name
        for name in vars(FocalPlaneCover)
        if not name.startswith("_") and callable(getattr(FocalPlaneCover, name))
    }
    assert members == {"close", "status"}
    hints = typing.get_type_hints(Devices)
    assert hints["cover"] is FocalPlaneCover


# -- runs on fake devices --------------------------------------------------------


def test_a_clean_run_takes_n_dark_frames_and_never_opens() -> None:
    seq, sink = sequence()
    outcome = seq.run()
    assert seq.state is Step.DONE
    assert outcome.valid_frames == 3
    assert outcome.retaken == 0
    assert [valid for _, valid, _ in sink.frames] == [True, True, True]
    assert sink.reduced == 1
    ccd = seq.devices.ccd
    assert all(args == (900.0, True) for name, args in ccd.calls if name == "expose")  # type: ignore[attr-defined]
    assert "open" not in seq.devices.cover.calls  # type: ignore[attr-defined]
    assert ccd.calls.index(("close_shutter", None)) < ccd.calls.index(  # type: ignore[attr-defined]
        ("expose", (900.0, True))
    )


def test_shutter_stuck_open_is_caught_in_preparing() -> None:
    seq, sink = sequence(FakeCcd(shutter_stuck_open=True))
    outcome = seq.run()
    assert seq.state is Step.FAULT
    assert isinstance(outcome.error, DeviceError)
    assert "shutter OPEN" in str(outcome.error)
    assert sink.frames == []
    assert ("abort", None) in seq.devices.ccd.calls  # type: ignore[attr-defined]


def test_cover_opening_mid_run_marks_frames_invalid_and_retakes() -> None:
    seq, sink = sequence(retake_limit=5, cover_poll_s=1e-9)
    cover = seq.devices.cover
    ccd: FakeCcd = seq.devices.ccd  # type: ignore[assignment]
    opened = {"done": False}

    def open_once() -> None:
        if ccd.frame == 2 and not opened["done"]:
            opened["done"] = True
            cover.halves = (OPEN, CLOSED)  # type: ignore[attr-defined]

    ccd.on_status = open_once
    outcome = seq.run()
    assert seq.state is Step.DONE
    assert outcome.valid_frames == 3
    assert outcome.retaken == 1
    assert [valid for _, valid, _ in sink.frames] == [True, False, True, True]
    assert "left=OPEN" in sink.frames[1][2]


def test_retake_limit_faults_the_run() -> None:
    seq, sink = sequence(retake_limit=1, cover_poll_s=1e-9)
    ccd: FakeCcd = seq.devices.ccd  # type: ignore[assignment]

    def always_open() -> None:
        if ccd.polls and ccd.polls[0] is pc.ControllerState.EXPOSING:
            seq.devices.cover.halves = (CLOSED, OPEN)  # type: ignore[attr-defined]

    ccd.on_status = always_open
    outcome = seq.run()
    assert seq.state is Step.FAULT
    assert isinstance(outcome.error, SequenceError)
    assert "retake limit is 1" in str(outcome.error)
    assert [valid for _, valid, _ in sink.frames] == [False, False]


def test_abort_request_goes_through_aborting_to_idle() -> None:
    seq, sink = sequence()
    ccd: FakeCcd = seq.devices.ccd  # type: ignore[assignment]

    def request_abort() -> None:
        if ccd.frame == 2:
            seq.abort_requested = True

    ccd.on_status = request_abort
    outcome = seq.run()
    assert seq.state is Step.IDLE
    assert outcome.aborted
    assert outcome.error is None
    assert ("abort", None) in ccd.calls
    assert sink.reduced == 0


def test_reset_needs_the_hardware_safe() -> None:
    seq, _ = sequence(FakeCcd(shutter_stuck_open=True))
    seq.run()
    assert seq.state is Step.FAULT
    seq.reset()  # shutter still open: stays in FAULT
    assert seq.state is Step.FAULT
    seq.devices.ccd.shutter_state = pc.ShutterState.CLOSED  # type: ignore[attr-defined]
    seq.reset()
    assert seq.state is Step.IDLE


# -- progress events -------------------------------------------------------------


class Events:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def handle(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def news(self) -> list[tuple[str, int]]:
        """(event, frame) for everything but the progress events."""
        return [
            (e["event"], e.get("frame", 0))
            for e in self.events
            if e["event"] not in ("exposure", "readout", "readback", "state")
        ]

    def states(self) -> list[str]:
        return [e["state"] for e in self.events if e["event"] == "state"]


def with_events(seq: DarkSequence) -> Events:
    events = Events()
    seq.report = Reporter(events, interval_s=0.0)
    seq.sink.report = seq.report  # type: ignore[attr-defined]
    return events


def test_events_follow_each_frame_from_start_to_written() -> None:
    seq, _ = sequence()
    events = with_events(seq)
    seq.run()
    assert events.news() == [
        ("frame_started", 1), ("frame_written", 1),
        ("frame_started", 2), ("frame_written", 2),
        ("frame_started", 3), ("frame_written", 3),
    ]  # fmt: skip
    first = [e for e in events.events if e.get("frame") == 1]
    exposure = [e for e in first if e["event"] == "exposure"]
    assert exposure[0]["remaining_s"] == 900.0
    assert exposure[-1]["remaining_s"] == 0.0
    readout = [(e["phase"], e["percent"]) for e in first if e["event"] == "readout"]
    assert readout[0] == ("ccd", 0.0)
    assert ("ccd", 100.0) in readout
    assert first[-1]["file"] == "frame_0001.fits"


def test_events_name_the_invalid_frame_and_its_retake() -> None:
    seq, _ = sequence(retake_limit=5, cover_poll_s=1e-9)
    events = with_events(seq)
    ccd: FakeCcd = seq.devices.ccd  # type: ignore[assignment]
    cover = seq.devices.cover

    def open_once() -> None:
        if ccd.frame == 2 and cover.halves == (CLOSED, CLOSED):  # type: ignore[attr-defined]
            cover.halves = (OPEN, CLOSED)  # type: ignore[attr-defined]
            ccd.on_status = None

    ccd.on_status = open_once
    seq.run()
    assert events.news() == [
        ("frame_started", 1), ("frame_written", 1),
        ("frame_started", 2), ("frame_invalid", 2), ("frame_retaken", 2),
        ("frame_started", 2), ("frame_written", 2),
        ("frame_started", 3), ("frame_written", 3),
    ]  # fmt: skip
    invalid = next(e for e in events.events if e["event"] == "frame_invalid")
    assert "left=OPEN" in invalid["reason"]


def test_abort_and_fault_are_events() -> None:
    seq, _ = sequence()
    events = with_events(seq)
    ccd: FakeCcd = seq.devices.ccd  # type: ignore[assignment]

    def request_abort() -> None:
        if ccd.frame == 2:
            seq.abort_reason = "SIGTERM"
            seq.abort_requested = True

    ccd.on_status = request_abort
    seq.run()
    assert events.news()[-1] == ("aborted", 0)
    aborted = next(e for e in events.events if e["event"] == "aborted")
    assert aborted["signal"] == "SIGTERM"
    assert aborted["read_back"] == "left=CLOSED right=CLOSED, shutter CLOSED"
    assert events.states()[-2:] == ["ABORTING", "IDLE"]
    aborting = next(e for e in events.events if e.get("state") == "ABORTING")
    assert aborting["reason"] == "SIGTERM"

    seq, _ = sequence(FakeCcd(shutter_stuck_open=True))
    events = with_events(seq)
    seq.run()
    assert events.news() == [("fault", 0)]
    fault = next(e for e in events.events if e["event"] == "fault")
    assert fault["state"] == "PREPARING"
    assert events.states() == ["PREPARING", "FAULT"]


def test_each_state_is_an_event_as_it_is_entered() -> None:
    seq, _ = sequence()
    events = with_events(seq)
    seq.run()
    frame = ["EXPOSING", "READING", "WRITING"]
    assert events.states() == ["PREPARING", *frame * 3, "REDUCING", "DONE"]
    started = [i for i, e in enumerate(events.events) if e["event"] == "frame_started"]
    exposing = [i for i, e in enumerate(events.events) if e.get("state") == "EXPOSING"]
    assert all(s < f for s, f in zip(exposing, started, strict=True))


def test_read_backs_are_events() -> None:
    seq, _ = sequence(cover_poll_s=1e-9)
    events = with_events(seq)
    cover = seq.devices.cover
    ccd: FakeCcd = seq.devices.ccd  # type: ignore[assignment]

    def open_once() -> None:
        if ccd.frame == 2 and cover.halves == (CLOSED, CLOSED):  # type: ignore[attr-defined]
            cover.halves = (OPEN, CLOSED)  # type: ignore[attr-defined]
            ccd.on_status = None

    ccd.on_status = open_once
    seq.run()
    seen = [e for e in events.events if e["event"] == "readback"]
    assert seen[0]["temperature_k"] == 163.15  # checked before closing
    assert {"cover": "left=CLOSED right=CLOSED", "shutter": "CLOSED"}.items() <= seen[
        1
    ].items()
    assert any(e.get("cover") == "left=OPEN right=CLOSED" for e in seen)
    assert all(e["block"] == "d1" for e in seen)

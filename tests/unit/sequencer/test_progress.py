"""Progress events: the reporter's throttling, JSON lines and the live display."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console

from sequencer.display import duration
from sequencer.progress import JsonLines, LiveDisplay, Reporter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Collect:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def handle(self, event: dict[str, Any]) -> None:
        self.events.append(event)


def test_progress_events_are_throttled_but_edges_always_pass() -> None:
    clock, sink = Clock(), Collect()
    reporter = Reporter(sink, interval_s=0.25, clock=clock)
    reporter.progress("exposure", edge=True, elapsed_s=0.0)
    for step in range(1, 10):  # 9 polls, 0.1 s apart: only every third passes
        clock.now += 0.1
        reporter.progress("exposure", elapsed_s=step)
    reporter.progress("exposure", edge=True, elapsed_s=10.0)
    assert [e["elapsed_s"] for e in sink.events] == [0.0, 3, 6, 9, 10.0]
    assert sink.events[-1]["t"] == 0.9  # seconds since the reporter was made


def test_throttling_is_per_kind() -> None:
    clock, sink = Clock(), Collect()
    reporter = Reporter(sink, interval_s=1.0, clock=clock)
    reporter.progress("exposure", x=1)
    reporter.progress("readout", x=2)
    reporter.progress("exposure", x=3)
    assert [(e["event"], e["x"]) for e in sink.events] == [
        ("exposure", 1),
        ("readout", 2),
    ]


def test_readout_callback_reports_transfer_percent() -> None:
    clock, sink = Clock(), Collect()
    reporter = Reporter(sink, interval_s=10.0, clock=clock)
    callback = reporter.readout_callback("d1", 2)
    for done in (100, 200, 300, 400):
        callback(done, 400)
    assert [(e["phase"], e["percent"]) for e in sink.events] == [
        ("transfer", 25.0),  # the first of its kind
        ("transfer", 100.0),  # the last always passes
    ]
    assert all(e["block"] == "d1" and e["frame"] == 2 for e in sink.events)


def test_json_lines_are_one_object_per_line() -> None:
    out = io.StringIO()
    reporter = Reporter(JsonLines(out), clock=Clock())
    reporter.emit("frame_written", block="d1", frame=1, file="d1_0001.fits")
    reporter.emit("run_done", status="ok", exit=0)
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["event"] for line in lines] == [
        "frame_written",
        "run_done",
    ]
    assert json.loads(lines[0])["file"] == "d1_0001.fits"


def test_a_broken_output_stops_the_events_not_the_run() -> None:
    out = io.StringIO()
    reporter = Reporter(JsonLines(out), clock=Clock())
    out.close()
    reporter.emit("frame_written", block="d1")  # ValueError inside: swallowed
    assert not reporter.active


def terminal() -> Console:
    return Console(
        file=io.StringIO(),
        record=True,
        force_terminal=True,
        width=100,
        color_system=None,
    )


def test_live_display_shows_block_frame_countdown_and_readout() -> None:
    console = terminal()
    display = LiveDisplay(console)
    reporter = Reporter(display, interval_s=0.0, clock=Clock())
    reporter.emit(
        "block_started", block="dark900", mode="MegaraDarkImage", nframes=5,
        exptime_s=900.0,
    )  # fmt: skip
    reporter.emit("frame_started", block="dark900", frame=2, nframes=5, attempt=3)
    reporter.progress("exposure", block="dark900", frame=2, elapsed_s=600.0)
    console.print(display.render())
    text = console.export_text()
    assert "dark900" in text
    assert "frame 2/5 (attempt 3)" in text
    assert "300 s left of 900 s" in text
    assert "exposing" in text

    reporter.progress("readout", phase="transfer", percent=42.0)
    console.print(display.render())
    text = console.export_text()
    assert "42% transfer" in text
    assert "reading out" in text


def test_live_display_prints_lasting_news_above_the_live_lines() -> None:
    console = terminal()
    with LiveDisplay(console) as display:
        reporter = Reporter(display, clock=Clock())
        reporter.emit(
            "frame_invalid", block="d1", frame=1, attempt=1, file="d1_0001.fits",
            reason="shutter OPEN",
        )  # fmt: skip
        reporter.emit("reduction_done", block="d1", qa="GOOD", folder="obsidd1_results")
        reporter.emit("fault", block="d1", state="EXPOSING", message="ccd: no reply")
    text = console.export_text()
    assert "d1: frame 1 INVALID (d1_0001.fits): shutter OPEN" in text
    assert "d1: reduced, QA GOOD (obsidd1_results)" in text
    assert "d1: FAULT: ccd: no reply" in text


# -- what the operator sees over a whole run ---------------------------------------

START = datetime(2025, 6, 1, 21, 0, 0, tzinfo=UTC)
PLAN = [
    {"block": "bias3", "nframes": 3, "exptime_s": 0.0},
    {"block": "dark900", "nframes": 5, "exptime_s": 900.0},
]


class Operator:
    """A reporter feeding a live display; ``look()`` is the text on screen now."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.console = terminal()
        self.display = LiveDisplay(self.console, clock=self.clock, utc=lambda: START)
        self.reporter = Reporter(
            self.display, interval_s=0.0, clock=self.clock, utc=lambda: START
        )

    def emit(self, kind: str, **fields: Any) -> None:
        self.reporter.emit(kind, **fields)

    def look(self) -> str:
        self.console.export_text()  # drop the news printed so far
        self.console.print(self.display.render())
        return self.console.export_text()

    def frame(
        self, block: str, k: int, nframes: int, exptime: float, attempt: int
    ) -> None:
        self.emit("state", block=block, state="EXPOSING")
        self.emit(
            "frame_started", block=block, frame=k, nframes=nframes, attempt=attempt,
            exptime_s=exptime,
        )  # fmt: skip


def run_started(op: Operator) -> None:
    op.emit(
        "run_started", workdir="work", blocks=["bias3", "dark900"], resume=False,
        plan=PLAN, time_scale=1.0, readout_s=40.0,
    )  # fmt: skip
    op.emit("devices", ccd="/dev/pts/5", cover=["a", "b"], simulator_pid=1)


def bias_block(op: Operator) -> None:
    op.emit(
        "block_started", block="bias3", mode="MegaraBiasImage", nframes=3,
        exptime_s=0.0, valid=0,
    )  # fmt: skip
    op.emit("state", block="bias3", state="PREPARING")
    op.emit("readback", block="bias3", temperature_k=163.15)
    for k in (1, 2, 3):
        op.clock.now += 45.0
        op.frame("bias3", k, 3, 0.0, k)
    op.emit("state", block="bias3", state="REDUCING")
    op.clock.now += 5.0
    op.emit("block_done", block="bias3", valid=3, retaken=0)


def test_the_start_shows_no_frame_count_and_a_bias_no_countdown() -> None:
    op = Operator()
    run_started(op)
    text = op.look()
    assert "devices connected" in text
    assert "0/0" not in text
    assert "frame" not in text

    op.emit(
        "block_started", block="bias3", mode="MegaraBiasImage", nframes=3,
        exptime_s=0.0, valid=0,
    )  # fmt: skip
    op.emit("state", block="bias3", state="PREPARING")
    text = op.look()
    assert "block 1 of 2" in text
    assert "3 frames" in text
    assert "PREPARING" in text
    assert "0/" not in text

    op.frame("bias3", 1, 3, 0.0, 1)
    op.emit("readout", block="bias3", frame=1, phase="ccd", percent=30.0)
    text = op.look()
    assert "frame 1/3" in text
    assert "EXPOSING" in text
    assert "exposure" not in text  # a bias has nothing to count down
    assert "s left of" not in text
    assert "30% CCD readout" in text
    assert "attempt" not in text


def test_a_dark_frame_shows_countdown_read_backs_and_the_end_time() -> None:
    op = Operator()
    run_started(op)
    bias_block(op)
    op.emit(
        "block_started", block="dark900", mode="MegaraDarkImage", nframes=5,
        exptime_s=900.0, valid=0,
    )  # fmt: skip
    op.emit("state", block="dark900", state="PREPARING")
    op.emit(
        "readback", block="dark900", cover="left=CLOSED right=CLOSED",
        cover_closed=True, shutter="CLOSED",
    )  # fmt: skip
    for k in (1, 2, 3):
        op.clock.now += 1000.0
        op.frame("dark900", k, 5, 900.0, k)
    op.emit("exposure", block="dark900", frame=3, elapsed_s=600.0, exptime_s=900.0)
    op.emit("readback", block="dark900", shutter="CLOSED", temperature_k=163.21)
    text = op.look()
    assert "block 2 of 2" in text
    assert "dark900" in text
    assert "frame 3/5" in text
    assert "attempt" not in text  # attempt 3 of frame 3: no retake
    assert "EXPOSING" in text
    assert "300 s left of 900 s" in text
    assert "cover left=CLOSED right=CLOSED" in text
    assert "shutter CLOSED" in text
    assert "CCD 163.2 K" in text
    # 3 frames of 1000 s measured left: this one, 2 more, and 5 s of reduction
    assert "block 50 min 05 s" in text
    assert "run 50 min 05 s" in text
    end = START + timedelta(seconds=3140 + 3005)  # t of the estimate + time left
    assert f"ends {end:%H:%M:%S} UTC" in text

    op.clock.now += 65.0  # no event for a while: the time left still counts down
    assert "block 49 min 00 s" in op.look()


def test_attempt_is_shown_only_for_a_retake() -> None:
    op = Operator()
    run_started(op)
    op.emit(
        "block_started", block="dark900", mode="MegaraDarkImage", nframes=5,
        exptime_s=900.0, valid=0,
    )  # fmt: skip
    op.frame("dark900", 1, 5, 900.0, 1)
    op.frame("dark900", 2, 5, 900.0, 2)
    assert "attempt" not in op.look()
    op.emit("frame_retaken", block="dark900", frame=2, attempt=3, retaken=1)
    op.frame("dark900", 2, 5, 900.0, 3)
    text = op.look()
    assert "frame 2/5 (attempt 3)" in text


def test_after_an_abort_the_display_says_aborted_not_a_frozen_bar() -> None:
    op = Operator()
    run_started(op)
    op.emit(
        "block_started", block="dark900", mode="MegaraDarkImage", nframes=5,
        exptime_s=900.0, valid=0,
    )  # fmt: skip
    op.frame("dark900", 1, 5, 900.0, 1)
    op.emit("exposure", block="dark900", frame=1, elapsed_s=100.0, exptime_s=900.0)
    assert "800 s left of 900 s" in op.look()

    op.emit("state", block="dark900", state="ABORTING", reason="SIGINT")
    text = op.look()
    assert "aborting (SIGINT)" in text
    assert "s left of" not in text
    assert "time left" not in text

    op.emit(
        "readback", block="dark900", cover="left=CLOSED right=CLOSED",
        cover_closed=True, shutter="CLOSED",
    )  # fmt: skip
    op.emit(
        "aborted", block="dark900", signal="SIGINT",
        read_back="left=CLOSED right=CLOSED, shutter CLOSED",
    )  # fmt: skip
    op.emit("state", block="dark900", state="IDLE")
    text = op.look()
    assert (
        "aborted (SIGINT); read back left=CLOSED right=CLOSED, shutter CLOSED" in text
    )
    assert "exposure" not in text
    assert "readout" not in text
    assert "time left" not in text


def test_a_fault_replaces_the_bars() -> None:
    op = Operator()
    run_started(op)
    op.emit(
        "block_started", block="dark900", mode="MegaraDarkImage", nframes=5,
        exptime_s=900.0, valid=0,
    )  # fmt: skip
    op.frame("dark900", 1, 5, 900.0, 1)
    op.emit("fault", block="dark900", state="EXPOSING", message="ccd: no reply")
    text = op.look()
    assert "FAULT in EXPOSING: ccd: no reply" in text
    assert "s left of" not in text


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.4, "0 s"), (59.4, "59 s"), (60.0, "1 min 00 s"), (3725.0, "1 h 02 min")],
)
def test_durations_read_as_a_person_would(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown

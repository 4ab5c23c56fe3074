"""Progress events: the reporter's throttling, JSON lines and the live display."""

from __future__ import annotations

import io
import json
from typing import Any

from rich.console import Console

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

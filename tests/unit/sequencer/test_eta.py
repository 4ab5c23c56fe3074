"""The time-left estimate, driven by a scripted run's events."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from sequencer.eta import RunClock
from sequencer.progress import JsonLines, Reporter

PLAN = [
    {"block": "bias3", "nframes": 3, "exptime_s": 0.0},
    {"block": "dark900", "nframes": 5, "exptime_s": 900.0},
]


def event(kind: str, t: float, **fields: Any) -> dict[str, Any]:
    return {"event": kind, "t": t, **fields}


def started() -> RunClock:
    """A run of a bias block then a dark block, on simulators at x1000."""
    clock = RunClock()
    clock.feed(
        event(
            "run_started", 0.0, blocks=["bias3", "dark900"], plan=PLAN,
            time_scale=1000.0, readout_s=40.0,
        )
    )  # fmt: skip
    return clock


def block(clock: RunClock, t: float, name: str, nframes: int, exptime: float) -> None:
    clock.feed(
        event("block_started", t, block=name, nframes=nframes, exptime_s=exptime)
    )


def frame(clock: RunClock, t: float, k: int, attempt: int | None = None) -> None:
    clock.feed(event("frame_started", t, frame=k, attempt=attempt or k))


def bias_done(clock: RunClock) -> None:
    """The bias block: prepared in 0.5 s, 0.5 s per frame, reduced in 1 s."""
    block(clock, 0.5, "bias3", 3, 0.0)
    for k in (1, 2, 3):
        frame(clock, 0.5 + 0.5 * k, k)
    clock.feed(event("state", 2.5, state="REDUCING"))
    clock.feed(event("block_done", 3.5, block="bias3"))


def test_before_anything_is_measured_device_times_are_scaled_to_wall() -> None:
    clock = started()
    # bias: 3 x (0 + 40) device s; dark: 5 x (900 + 40): / 1000 to wall seconds
    assert clock.estimate(0.0).run_s == pytest.approx(0.12 + 4.7)
    assert clock.estimate(0.0).block_s is None  # no block yet
    block(clock, 0.5, "bias3", 3, 0.0)
    frame(clock, 1.0, 1)
    now = clock.estimate(1.0)
    assert now.block_s == pytest.approx(3 * 0.04)
    assert now.run_s == pytest.approx(0.12 + 4.7)


def test_a_measured_frame_replaces_the_guess_and_its_overhead_carries_on() -> None:
    clock = started()
    block(clock, 0.5, "bias3", 3, 0.0)
    frame(clock, 1.0, 1)
    frame(clock, 1.5, 2)  # frame 1 took 0.5 s wall: 0.46 s more than predicted
    now = clock.estimate(1.5)
    assert now.block_s == pytest.approx(0.5 + 0.5)
    # the dark frames: 0.94 s predicted + 0.46 s measured overhead each
    assert now.run_s == pytest.approx(1.0 + 5 * 1.4)
    assert clock.estimate(1.7).block_s == pytest.approx(0.3 + 0.5)  # counts down


def test_preparation_and_reduction_are_measured_for_the_next_blocks() -> None:
    clock = started()
    bias_done(clock)
    assert clock.estimate(3.5).block_s == 0.0
    block(clock, 4.0, "dark900", 5, 900.0)
    # 0.5 s preparing, 5 x 1.4 s frames, 1 s reducing
    assert clock.estimate(4.0).block_s == pytest.approx(0.5 + 7.0 + 1.0)
    assert clock.estimate(4.0).run_s == pytest.approx(8.5)
    frame(clock, 4.5, 1)
    clock.feed(event("state", 9.5, state="REDUCING"))
    assert clock.estimate(9.7).block_s == pytest.approx(0.8)


def test_a_frame_cannot_end_before_its_exposure_and_readout() -> None:
    clock = started()
    bias_done(clock)
    block(clock, 4.0, "dark900", 5, 900.0)
    frame(clock, 4.5, 1)
    # 1.4 s expected, 1.3 s gone, but the controller says 500 s (0.5 s wall) to go
    clock.feed(event("exposure", 5.8, remaining_s=500.0, exptime_s=900.0))
    assert clock.estimate(5.8).block_s == pytest.approx(0.54 + 4 * 1.4 + 1.0)
    clock.feed(event("readout", 6.5, phase="ccd", percent=0.0))
    assert clock.estimate(6.5).block_s == pytest.approx(0.0 + 4 * 1.4 + 1.0)


def test_a_retake_is_one_more_frame() -> None:
    clock = started()
    bias_done(clock)
    block(clock, 4.0, "dark900", 5, 900.0)
    frame(clock, 4.5, 1)
    frame(clock, 6.0, 2, attempt=2)  # invalid: retaken as attempt 3
    frame(clock, 7.5, 2, attempt=3)
    # frames 2 (again) to 5 left, at the block's own 1.5 s per frame
    assert clock.estimate(7.5).block_s == pytest.approx(4 * 1.5 + 1.0)


def test_a_resumed_block_counts_only_the_frames_it_lacks() -> None:
    clock = started()
    clock.feed(
        event(
            "block_started", 0.5, block="dark900", nframes=5, exptime_s=900.0, valid=3
        )
    )
    assert clock.estimate(0.5).block_s == pytest.approx(2 * 0.94)
    assert clock.estimate(0.5).run_s == pytest.approx(2 * 0.94)  # bias skipped


@pytest.mark.parametrize("stop", ["aborted", "fault", "run_done"])
def test_nothing_is_left_to_estimate_once_the_run_stops(stop: str) -> None:
    clock = started()
    bias_done(clock)
    clock.feed(event(stop, 4.0))
    assert (clock.estimate(4.0).block_s, clock.estimate(4.0).run_s) == (None, None)


def test_without_a_plan_only_the_block_is_estimated() -> None:
    clock = RunClock(readout_s=10.0, time_scale=1.0)
    block(clock, 0.0, "d1", 2, 50.0)
    assert (clock.estimate(0.0).block_s, clock.estimate(0.0).run_s) == (120.0, None)


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_the_reporter_adds_the_time_left_and_the_end_in_utc() -> None:
    out, clock = io.StringIO(), Clock()
    start = datetime(2025, 6, 1, 21, 0, 0, tzinfo=UTC)
    reporter = Reporter(JsonLines(out), clock=clock, utc=lambda: start)
    reporter.emit(
        "run_started", blocks=["bias3", "dark900"], plan=PLAN, time_scale=1.0,
        readout_s=40.0,
    )  # fmt: skip
    clock.now += 10.0
    reporter.emit("block_started", block="bias3", nframes=3, exptime_s=0.0)
    reporter.emit("frame_written", block="bias3", frame=1, file="x.fits")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["run_remaining_s"] == 3 * 40.0 + 5 * 940.0
    assert "block_remaining_s" not in lines[0]  # no block yet
    timed = lines[1]
    # 3 x 40 s of bias readouts, then 5 x 940 s of darks, from 21:00:10
    assert timed["block_remaining_s"] == 120.0
    assert timed["run_remaining_s"] == 120.0 + 4700.0
    assert timed["eta_utc"] == "2025-06-01T22:20:30Z"
    assert "eta_utc" not in lines[2]  # news carries no estimate

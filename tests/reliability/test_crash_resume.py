"""SIGKILL ``megara-dark run`` at seeded random moments, then ``--resume`` it.

Each trial starts a real run (built-in simulators on pseudo-terminals), kills
it with SIGKILL in one phase of the run, and checks what the crash left: every
raw frame on disk either absent or complete with valid CHECKSUM/DATASUM (the
writer's partial files are hidden ``.partial`` names, never frames), the
journal readable (a torn last line is reported, not fatal), the run's
simulators gone. Then ``--resume`` must finish the run: exactly N valid
frames, frame indices 1..N once each, and a master dark whose PRIMARY array
equals that of an uninterrupted run with the same seed. DATE-OBS and the UUIDs
differ between the two runs and are not compared: only pixels must match.

Phases and how they are hit:

* preparing, integrating, reading out, reducing: a seeded delay after the
  run's JSON event that opens the phase (``block_started``, ``frame_started``,
  ``readout``, the last ``frame_written``);
* writing a FITS file: the writer's fault-injection hook
  (``MEGARA_DARK_FAULT_KILL_FITS``) kills the run after a seeded number of
  bytes of the temporary file;
* appending to the journal: the journal's hook
  (``MEGARA_DARK_FAULT_KILL_JOURNAL``) kills it after a seeded number of bytes
  of a chosen record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from sequencer.rawfits import file_name
from tests.killpoints import FITS_ENV as FITS_HOOK
from tests.killpoints import JOURNAL_ENV as JOURNAL_HOOK
from tests.reliability.conftest import Reference
from tests.reliability.harness import (
    BIAS_BLOCK,
    BLOCK,
    NFRAMES,
    Event,
    RunProcess,
    check_after_crash,
    check_complete,
    run_to_end,
    wait_until_gone,
)

pytestmark = pytest.mark.e2e

SEED = 20261129
#: Trials per phase (20 in all; with the two-block and double-kill tests below,
#: 24 kills).
PHASES = {
    "preparing": 3,
    "integrating": 3,
    "reading": 3,
    "writing": 4,
    "journal": 4,
    "reducing": 3,
}
#: Journal records a crash may tear, in the order the trials use them.
JOURNAL_EVENTS = ("frame_written", "block_started", "reduction_done", "block_done")


@dataclass(frozen=True)
class Trial:
    """Where and when to kill one run."""

    phase: str
    frame: int  # the frame (1..N) whose phase is hit
    delay_s: float  # wall seconds after the opening event (timed phases)
    fraction: float  # of the bytes of the file or record (hooks), or readout
    event: str = ""  # journal record torn, or readout stage ("ccd", "transfer")

    @property
    def id(self) -> str:
        what = self.event or f"frame{self.frame}"
        if self.phase == "reading":
            what = f"{self.event}-frame{self.frame}"
        return f"{self.phase}-{what}-{self.delay_s:.2f}s-{self.fraction:.2f}"


def make_trials() -> list[Trial]:
    rng = np.random.default_rng(SEED)
    trials = []
    for phase, count in PHASES.items():
        for i in range(count):
            event = ""
            if phase == "journal":
                event = JOURNAL_EVENTS[i % len(JOURNAL_EVENTS)]
            elif phase == "reading":  # the CCD's readout, then the transfer
                event = ("ccd", "transfer")[i % 2]
            frame = int(rng.integers(1, NFRAMES + 1))
            if phase in ("preparing", "reducing"):  # before the first, after the last
                frame = 1 if phase == "preparing" else NFRAMES
            trials.append(
                Trial(
                    phase=phase,
                    frame=frame,
                    delay_s=round(float(rng.uniform(0.0, 0.45)), 3),
                    fraction=round(float(rng.uniform(0.0, 1.0)), 3),
                    event=event,
                )
            )
    return trials


TRIALS = make_trials()


def opening(trial: Trial, event: Event) -> bool:
    """Whether ``event`` opens the phase ``trial`` aims at."""
    kind = event.get("event")
    frame = event.get("frame")
    if trial.phase == "preparing":
        return kind == "block_started"
    if trial.phase == "integrating":
        return kind == "frame_started" and frame == trial.frame
    if trial.phase == "reading":
        # The CCD's readout into the controller, or the transfer once it has
        # reached a seeded share of the frame.
        if kind != "readout" or frame != trial.frame or event["phase"] != trial.event:
            return False
        return trial.event == "ccd" or float(event["percent"]) >= trial.fraction * 100
    if trial.phase == "reducing":
        return kind == "frame_written" and frame == NFRAMES
    raise AssertionError(trial.phase)


def hook_env(trial: Trial, reference: Reference) -> dict[str, str]:
    if trial.phase == "writing":
        size = int(trial.fraction * reference.frame_bytes)
        return {FITS_HOOK: f"{file_name(BLOCK, trial.frame)}:{size}"}
    if trial.phase == "journal":
        size = int(trial.fraction * reference.line_bytes[trial.event])
        count = trial.frame if trial.event == "frame_written" else 1
        return {JOURNAL_HOOK: f"{trial.event}:{count}:{size}"}
    return {}


def phase_seen(events: list[Event]) -> str:
    """The phase the run was in when it died, from the events it sent."""
    phase = "starting"
    for event in events:
        kind = event.get("event")
        if kind == "block_started":
            phase = "preparing"
        elif kind == "frame_started":
            phase = "integrating"
        elif kind == "readout":
            phase = "reading"
        elif kind == "frame_written":
            phase = "reducing" if event.get("frame") == NFRAMES else "integrating"
        elif kind in ("reduction_done", "block_done", "run_done"):
            phase = "finished"
    return phase


@pytest.mark.parametrize("trial", TRIALS, ids=[t.id for t in TRIALS])
def test_killed_run_resumes_to_the_same_master_dark(
    trial: Trial, reference: Reference, tmp_path: Path
) -> None:
    setup = reference.setup
    work = tmp_path / "work"
    run = RunProcess.start(
        setup.argv(work), cwd=setup.folder, env=hook_env(trial, reference)
    )
    if trial.phase in ("writing", "journal"):
        status = run.finish()  # the hook kills the run
        seen = trial.phase
    else:
        found = run.wait_for(lambda event: opening(trial, event))
        assert found is not None, f"the run ended without reaching {trial.phase}"
        # A transfer trial is placed by its share of the frame: no delay.
        time.sleep(0.0 if trial.event == "transfer" else trial.delay_s)
        run.kill()
        status = run.proc.returncode
        seen = phase_seen(run.events)
    assert status == -9, f"exit {status}: {run.stderr[-2000:]}"

    crash = check_after_crash(work)
    if trial.phase == "writing":
        assert crash.partials == [f".{file_name(BLOCK, trial.frame)}.partial"]
        assert file_name(BLOCK, trial.frame) not in crash.frames
    pid = run.simulator_pid()
    assert pid is not None
    assert wait_until_gone(pid), f"simulators (pid {pid}) outlived the killed run"

    again = run_to_end(setup, work, resume=True)
    assert again.proc.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    if crash.torn:
        assert "torn final record" in again.stderr
    assert check_complete(work, reference.master) == list(range(1, NFRAMES + 1))
    print(
        f"crash trial {trial.id}: killed in {seen}, left {len(crash.frames)} "
        f"frame(s), {len(crash.partials)} partial(s), torn journal line "
        f"{len(crash.torn)} bytes; resumed to {NFRAMES} frames, master identical"
    )


#: Kills in a bias-then-dark run: the resumed simulators must count the
#: exposures of both blocks (bias frames 1..3, then dark frames 4..6).
TWO_BLOCK_TRIALS = {
    "dark-integrating-frame2": {},
    "bias-reduction_done-torn": {JOURNAL_HOOK: "reduction_done:1:40"},
}


@pytest.mark.parametrize("name", list(TWO_BLOCK_TRIALS))
def test_killed_two_block_run_resumes_to_the_same_master_dark(
    name: str, two_blocks: Reference, reference: Reference, tmp_path: Path
) -> None:
    # Frame numbers decide the pixels: the dark frames 4..6 of this plan give
    # another master dark than frames 1..3 of the dark-only plan. So an equal
    # master after the resume proves the frames were numbered right.
    assert not np.array_equal(two_blocks.master, reference.master)
    setup = two_blocks.setup
    work = tmp_path / "work"
    env = TWO_BLOCK_TRIALS[name]
    run = RunProcess.start(setup.argv(work), cwd=setup.folder, env=env)
    if env:
        run.finish()
    else:
        found = run.wait_for(
            lambda e: (
                e.get("event") == "frame_started"
                and e.get("block") == BLOCK
                and e.get("frame") == 2
            )
        )
        assert found is not None, "the run ended before its second dark frame"
        time.sleep(0.25)
        run.kill()
    assert run.proc.returncode == -9, run.stderr[-2000:]
    crash = check_after_crash(work)
    again = run_to_end(setup, work, resume=True)
    assert again.proc.returncode == 0, again.stderr[-3000:]
    if env:
        assert "torn final record" in again.stderr
    blocks = (BIAS_BLOCK, BLOCK)
    assert check_complete(work, two_blocks.master, blocks) == [1, 2, 3]
    print(
        f"crash trial two-block {name}: killed in {phase_seen(run.events)}, left "
        f"{len(crash.frames)} frame(s); resumed, both blocks complete, master "
        "identical"
    )


def test_a_resume_killed_in_its_turn_still_resumes(
    reference: Reference, tmp_path: Path
) -> None:
    """Killed mid-write of frame 2; the resume killed as it journals frame 2."""
    setup = reference.setup
    work = tmp_path / "work"
    first = RunProcess.start(
        setup.argv(work),
        cwd=setup.folder,
        env={FITS_HOOK: f"{file_name(BLOCK, 2)}:{reference.frame_bytes // 3}"},
    )
    assert first.finish() == -9
    assert check_after_crash(work).frames == [file_name(BLOCK, 1)]
    second = RunProcess.start(
        setup.argv(work, resume=True),
        cwd=setup.folder,
        env={JOURNAL_HOOK: "frame_written:1:30"},
    )
    assert second.finish() == -9
    crash = check_after_crash(work)
    assert crash.frames == [file_name(BLOCK, 1), file_name(BLOCK, 2)]
    assert len(crash.torn) == 30  # frame 2 renamed, its record torn
    third = run_to_end(setup, work, resume=True)
    assert third.proc.returncode == 0, third.stderr[-3000:]
    assert "adopting" in third.stderr
    assert check_complete(work, reference.master) == [1, 2, 3]
    print("crash trial double: killed writing, resume killed journaling; resumed")

"""Run ``megara-dark run`` as a real process, watch its events, kill it, check it.

Shared by the crash-and-resume and the disk-fault tests. A run here is one
dark block of ``NFRAMES`` frames on the built-in simulators (pseudo-terminals)
at a time scale where the cover closes, a frame integrates and the CCD reads
out in about half a second each, with a master bias made once beforehand; its
JSON events (``--json``) tell the tests where it is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from sequencer.engineering.trial import (
    Inputs,
    check_raw_files,
    run_argv,
    write_inputs,
)
from sequencer.journal import read_records, replay
from sequencer.rawfits import parse_file_name, verify_raw_frame
from tests import killpoints

NFRAMES = 3
BLOCK = "dark50"
BIAS_BLOCK = "bias3"
#: At time scale 100: cover close, a 50 s dark and the readout take 0.5 s each.
#: ``run_key``: the reference run and the killed one make the same pixels.
TABLES = {
    "simulator": {"time_scale": 100.0, "seed": 11, "run_key": 11,
                  "readout_s": 50.0, "cover_motion_s": 50.0},
    "run": {"readout_s": 50.0},
    "cover": {"motion_timeout_s": 200.0},
}  # fmt: skip
BIAS_PLAN = {
    "id": BIAS_BLOCK, "instrument": "MEGARA", "mode": "MegaraBiasImage",
    "exptime": 0.0, "nframes": 3,
}  # fmt: skip
DARK_PLAN = {
    "id": BLOCK, "instrument": "MEGARA", "mode": "MegaraDarkImage",
    "exptime": 50.0, "nframes": NFRAMES,
}  # fmt: skip
#: Upper bound for any one run, so that a hung run fails the test, not CI.
RUN_TIMEOUT_S = 300.0

Event = dict[str, Any]
Preexec = Callable[[], None]
#: Runs started and not yet finished (killed at each test's end if a check failed).
LIVE: list[RunProcess] = []


@dataclass
class Setup:
    """The files a run needs (observing blocks, configuration), written by the
    campaign's trial (:func:`sequencer.engineering.trial.write_inputs`)."""

    folder: Path
    inputs: Inputs

    @classmethod
    def both(cls, folder: Path) -> Setup:
        """A bias block, then a dark block that uses its master bias."""
        return cls.write(folder, [BIAS_PLAN, DARK_PLAN])

    @classmethod
    def dark(cls, folder: Path, master_bias: Path) -> Setup:
        bias = {"requirements": {"master_bias": str(master_bias)}}
        return cls.write(folder, [{**DARK_PLAN, **bias}])

    @classmethod
    def write(cls, folder: Path, blocks: list[dict[str, Any]]) -> Setup:
        return cls(folder, write_inputs(folder, blocks=blocks, tables=TABLES))

    @property
    def plan(self) -> Path:
        return self.inputs.blocks

    @property
    def config(self) -> Path:
        return self.inputs.config

    def argv(self, workdir: Path, *, resume: bool = False) -> list[str]:
        return run_argv(self.inputs, workdir, "--json", *(["--resume"] * resume))


@dataclass(eq=False)
class RunProcess:
    """A running ``megara-dark run --json`` whose events are read by a thread."""

    proc: subprocess.Popen[str]
    events: list[Event] = field(default_factory=list)
    stderr: str = ""
    ended: bool = False  # the run closed its stdout (it exited)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None

    @classmethod
    def start(
        cls,
        argv: list[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        preexec: Preexec | None = None,
    ) -> RunProcess:
        if env:  # kill points: the run is started through tests.killpoints
            argv = killpoints.command(*argv[argv.index("run") :])
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=killpoints.environment(env or {}),
            preexec_fn=preexec,  # noqa: PLW1509 - only setrlimit/prctl calls
        )
        run = cls(proc)
        run._reader = threading.Thread(target=run._read, daemon=True)
        run._reader.start()
        LIVE.append(run)
        return run

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        self.proc.stdout.close()
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    def wait_for(self, match: Callable[[Event], bool]) -> Event | None:
        """The first event that matches, or None if the run ended without one."""
        deadline = time.monotonic() + RUN_TIMEOUT_S
        seen = 0
        with self._changed:
            while time.monotonic() < deadline:
                for event in self.events[seen:]:
                    if match(event):
                        return event
                seen = len(self.events)
                if self.ended:
                    return None
                self._changed.wait(0.5)
        raise AssertionError(f"no matching event within {RUN_TIMEOUT_S} s")

    def kill(self) -> None:
        """SIGKILL the run (if still running) and collect what it said."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.finish()

    def finish(self) -> int:
        """Wait for the end; return the exit status."""
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        self.proc.wait(timeout=RUN_TIMEOUT_S)
        self.proc.stderr.close()
        if self._reader is not None:
            self._reader.join(RUN_TIMEOUT_S)
        if self in LIVE:
            LIVE.remove(self)
        return self.proc.returncode

    def simulator_pid(self) -> int | None:
        for event in self.events:
            if event.get("event") == "devices":
                pid = event.get("simulator_pid")
                return int(pid) if pid is not None else None
        return None


def run_to_end(
    setup: Setup,
    workdir: Path,
    *,
    resume: bool = False,
    env: Mapping[str, str] | None = None,
    preexec: Preexec | None = None,
) -> RunProcess:
    """Run (or resume) to its end; the caller checks the exit status."""
    run = RunProcess.start(
        setup.argv(workdir, resume=resume), cwd=setup.folder, env=env, preexec=preexec
    )
    run.finish()
    return run


def process_gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie waiting to be reaped counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_until_gone(pid: int, within_s: float = 30.0) -> bool:
    """Poll until ``pid`` exits (a bound against hanging, not a measurement)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process_gone(pid):
            return True
        time.sleep(0.05)
    return process_gone(pid)


@dataclass(frozen=True)
class CrashState:
    """What a killed run left: complete frames, partial files, the journal."""

    frames: list[str]
    partials: list[str]
    records: list[dict[str, Any]]
    torn: bytes


def check_after_crash(workdir: Path) -> CrashState:
    """No file looks whole but is not; the journal reads (torn tail aside)."""
    files = check_raw_files(workdir)  # every .fits file through the verifier
    assert not files.damaged, f"damaged (complete-looking) frames: {files.damaged}"
    partials = [
        name
        for name in files.leftovers
        if name.startswith(".") and name.endswith(".partial")
    ]
    frames = sorted(files.valid + files.invalid)
    for name in [n for n in files.leftovers if n not in partials] + frames:
        assert parse_file_name(name) is not None, f"stray file {name}"
    journal = workdir / "run.journal"
    records, torn = read_records(journal) if journal.exists() else ([], b"")
    state = replay(records)
    for block in state.blocks.values():
        written = set(block.valid_files + block.invalid_files)
        assert written <= set(frames), (
            f"journaled frames missing: {written - set(frames)}"
        )
    return CrashState(frames, partials, records, torn)


def check_complete(
    workdir: Path, reference: npt.NDArray[Any], blocks: tuple[str, ...] = (BLOCK,)
) -> list[int]:
    """Per block exactly NFRAMES valid frames, indices 1..N once; master dark equal.

    Returns the frame indices found for the dark block (FRAMEIDX of its valid
    frames, sorted).
    """
    data = workdir / "data"
    assert not [p.name for p in data.iterdir() if p.name.endswith(".partial")]
    records, torn = read_records(workdir / "run.journal")
    assert torn == b""
    state = replay(records)
    assert state.done
    found: dict[str, list[int]] = {}
    for block in blocks:
        indices, valid = [], []
        for path in sorted(data.glob(f"{block}_*.fits")):
            header = verify_raw_frame(path)
            if header["INTLKOK"]:
                indices.append(int(header["FRAMEIDX"]))
                valid.append(path.name)
        assert sorted(indices) == list(range(1, NFRAMES + 1)), (block, indices)
        journaled = state.block(block).valid_files
        assert sorted(journaled) == valid, (journaled, valid)
        assert len(set(journaled)) == len(journaled) == NFRAMES
        found[block] = sorted(indices)
    assert master_dark(workdir).shape == reference.shape
    assert np.array_equal(master_dark(workdir), reference)
    return found[BLOCK]


def master_dark(workdir: Path) -> npt.NDArray[Any]:
    """The PRIMARY array of the run's master dark."""
    path = workdir / f"obsid{BLOCK}_results" / "master_dark.fits"
    with fits.open(path, checksum=True) as hdul:
        return np.array(hdul[0].data)

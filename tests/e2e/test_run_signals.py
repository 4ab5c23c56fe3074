"""``megara-dark run`` stopped by a signal, against the real simulator processes.

SIGKILL: the simulators the run started must not outlive it. SIGINT and
SIGTERM: the run stops safely (exposure aborted, cover left closed, frames
kept), exits 130 / 143 and says so in one line; the devices are read back
afterwards through the same drivers, from the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import IO, Any

import pytest

from drivers import interfaces as pc
from drivers.archon import ArchonCcdController
from drivers.config import CcdConfig, CoverConfig
from drivers.cover import SerialCoverHalf, SerialFocalPlaneCover
from sequencer.journal import Journal
from sequencer.rawfits import verify_raw_frame
from sequencer.simlaunch import megara_dark
from tests.simproc import start_simulators

pytestmark = pytest.mark.e2e

#: Generous bound for a poll to fail the test, not a performance requirement.
POLL_TIMEOUT_S = 60.0

BLOCKS = """\
id: bias3
instrument: MEGARA
mode: MegaraBiasImage
exptime: 0.0
nframes: 3
---
id: dark3600
instrument: MEGARA
mode: MegaraDarkImage
exptime: 3600.0
nframes: 3
"""


def start_run(tmp_path: Path, config: str) -> tuple[subprocess.Popen[str], Path]:
    (tmp_path / "ob.yaml").write_text(BLOCKS)
    (tmp_path / "instrument.toml").write_text(config)
    work = tmp_path / "work"
    proc = subprocess.Popen(
        [
            *megara_dark(),
            "run",
            "ob.yaml",
            "--config",
            "instrument.toml",
            "--workdir",
            "work",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    return proc, work


def events(stream: IO[str]) -> Iterator[dict[str, Any]]:
    """The run's JSON events as they come (blocking reads; pytest-timeout guards)."""
    for line in stream:
        yield json.loads(line)


def wait_for_exposure(
    stream: IO[str], block: str, frame: int, seen: list[dict[str, Any]]
) -> None:
    """Read events until ``block`` frame ``frame`` is exposing (elapsed > 0)."""
    for event in events(stream):
        seen.append(event)
        if (
            event["event"] == "exposure"
            and event["block"] == block
            and event["frame"] == frame
            and 0 < event["elapsed_s"] < event["exptime_s"]
        ):
            return
    raise AssertionError(f"the run ended before {block} frame {frame} exposed: {seen}")


def gone(pid: int) -> bool:
    """No such process, or only its zombie (it has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_sigkill_mid_exposure_leaves_no_simulator_behind(tmp_path: Path) -> None:
    config = "[simulator]\ntime_scale = 1000.0\nreadout_s = 10.0\n"
    proc, _ = start_run(tmp_path, config)
    assert proc.stdout is not None
    seen: list[dict[str, Any]] = []
    try:
        wait_for_exposure(proc.stdout, "dark3600", 1, seen)
        devices = next(e for e in seen if e["event"] == "devices")
        sim_pid = devices["simulator_pid"]
        assert isinstance(sim_pid, int)
        assert not gone(sim_pid)  # the simulators serve the exposure in progress
    finally:
        proc.kill()  # SIGKILL: no handler, no cleanup code of ours runs
        proc.communicate(timeout=POLL_TIMEOUT_S)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while not gone(sim_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(sim_pid), f"simulator pid {sim_pid} outlived the killed run"


@pytest.mark.parametrize(
    ("sig", "status"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
)
def test_signal_stops_safely_and_keeps_the_frames(
    tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    sim = start_simulators(
        "--time-scale", "1000", "--readout-s", "10", "--cover-motion-s", "4"
    )
    with closing(sim):
        config = (
            "[devices]\n"
            + "".join(f'{name} = "{url}"\n' for name, url in sim.urls.items())
            + "[run]\npoll_s = 0.01\ncover_poll_s = 0.05\nreadout_s = 10.0\n"
            + "[ccd]\nreply_timeout_s = 2.0\n[cover]\nmotion_timeout_s = 5.0\n"
        )
        proc, work = start_run(tmp_path, config)
        assert proc.stdout is not None
        seen: list[dict[str, Any]] = []
        try:
            wait_for_exposure(proc.stdout, "dark3600", 2, seen)
            proc.send_signal(sig)
            rest, err = proc.communicate(timeout=POLL_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        seen += [json.loads(line) for line in rest.splitlines()]

        assert proc.returncode == status, err[-2000:]
        assert "Traceback" not in err
        stopped = [line for line in err.splitlines() if "stopped by" in line]
        assert len(stopped) == 1
        assert stopped[0].startswith(f"megara-dark: stopped by {sig.name} in block ")
        assert "dark3600 at 1/3 valid frames" in stopped[0]
        assert "read back left=CLOSED right=CLOSED, shutter CLOSED" in stopped[0]
        assert "--resume" in stopped[0]

        aborted = [e for e in seen if e["event"] == "aborted"]
        assert [(e["block"], e["signal"]) for e in aborted] == [("dark3600", sig.name)]
        done = seen[-1]
        assert (done["event"], done["status"], done["exit"]) == (
            "run_done",
            "aborted",
            status,
        )

        # Written frames are kept, whole and valid; nothing half-written.
        names = sorted(p.name for p in (work / "data").iterdir())
        assert names == [
            "bias3_0001.fits", "bias3_0002.fits", "bias3_0003.fits",
            "dark3600_0001.fits",
        ]  # fmt: skip
        for name in names:
            assert verify_raw_frame(work / "data" / name)["INTLKOK"] is True

        # The devices, read back by the test through the same drivers.
        ccd = ArchonCcdController.from_config(
            CcdConfig(url=sim.urls["ccd"], reply_timeout_s=2.0)
        )
        left = SerialCoverHalf.from_config(
            CoverConfig(url=sim.urls["cover_left"], name="left")
        )
        right = SerialCoverHalf.from_config(
            CoverConfig(url=sim.urls["cover_right"], name="right")
        )
        cover = SerialFocalPlaneCover(left, right)
        try:
            ccd.connect()
            cover.connect()
            now = ccd.status()
            assert now.state is pc.ControllerState.IDLE  # the exposure was aborted
            assert now.frame == 4  # 3 biases, 1 dark read out; the 2nd never read
            assert now.shutter is pc.ShutterState.CLOSED
            assert cover.status().fully_closed
        finally:
            ccd.close_link()
            cover.close_link()


FAST = "[simulator]\ntime_scale = 1000.0\nreadout_s = 10.0\n[run]\nreadout_s = 10.0\n"


@pytest.mark.timeout(300)
def test_a_stop_after_the_last_readout_keeps_the_products_and_says_so(
    tmp_path: Path,
) -> None:
    proc, work = start_run(tmp_path, FAST)
    assert proc.stdout is not None
    for event in events(proc.stdout):
        if (event["event"], event.get("state"), event.get("block")) == (
            "state",
            "REDUCING",
            "dark3600",
        ):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=POLL_TIMEOUT_S)
    assert proc.returncode == 143, err[-2000:]
    assert "SIGTERM received after the last readout" in err
    assert "Traceback" not in err
    result = json.loads((work / "obsiddark3600_results" / "result.json").read_text())
    assert result["qc"] == "GOOD", result
    names = [r["event"] for r in Journal(work / "run.journal").records()]
    assert "stopped" in names
    assert names[-1] == "run_done"


@pytest.mark.timeout(300)
def test_a_closed_stdout_ends_the_news_not_the_run(tmp_path: Path) -> None:
    """``megara-dark run --json | head -1``: the run finishes, quietly."""
    proc, work = start_run(tmp_path, FAST)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert json.loads(first)["event"] == "run_started"
    proc.stdout.close()  # the reader goes away
    assert proc.stderr is not None
    with proc.stderr:
        err = proc.stderr.read()
    assert proc.wait(timeout=POLL_TIMEOUT_S) == 0, err[-2000:]
    assert "Traceback" not in err
    assert "BrokenPipe" not in err
    assert (work / "obsiddark3600_results" / "master_dark.fits").is_file()


PHASES = [
    ("PREPARING", signal.SIGINT),
    ("EXPOSING", signal.SIGTERM),
    ("READING", signal.SIGHUP),
    ("WRITING", signal.SIGINT),
    ("REDUCING", signal.SIGTERM),
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("phase", "sig"), PHASES, ids=[p for p, _ in PHASES])
def test_a_signal_in_any_phase_stops_cleanly_and_resumes(
    tmp_path: Path, phase: str, sig: signal.Signals
) -> None:
    """A stop in each state of the first dark frame's block, then --resume."""
    proc, work = start_run(tmp_path, FAST)
    assert proc.stdout is not None
    for event in events(proc.stdout):
        if (event["event"], event.get("state"), event.get("block")) == (
            "state",
            phase,
            "dark3600",
        ):
            break
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=POLL_TIMEOUT_S)
    assert proc.returncode == 128 + sig, err[-2000:]
    assert "Traceback" not in err
    said = [line for line in err.splitlines() if line.startswith("megara-dark: ")]
    assert len(said) == 1, err[-2000:]
    assert sig.name in said[0]
    again = subprocess.run(
        [*megara_dark(), "run", "--resume", str(work)],
        capture_output=True,
        text=True,
        timeout=POLL_TIMEOUT_S * 4,
        check=False,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Traceback" not in again.stderr
    if phase == "REDUCING":  # stopped after the last readout: finished already
        assert "nothing to resume" in again.stdout
    else:
        assert "dark3600: 3/3 valid frames" in again.stdout

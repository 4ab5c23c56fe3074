"""Start ``megara-dark simulate`` as a subprocess and read the URLs it prints.

:func:`control` talks to its control port with the token of its token file.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from sequencer.simlaunch import SimulatorProcess, megara_dark
from sequencer.simlaunch import start_simulators as _start
from simulators.control import send_request
from simulators.control_token import read_token

SimProcess = SimulatorProcess

#: A bias block and a dark block of three frames each: the tests' usual run.
BIAS3_DARK60 = """\
id: bias3
instrument: MEGARA
mode: MegaraBiasImage
exptime: 0.0
nframes: 3
---
id: dark60
instrument: MEGARA
mode: MegaraDarkImage
exptime: 60.0
nframes: 3
"""


def megara(
    *args: str, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``megara-dark ARGS`` in ``cwd`` to its end; output captured as text."""
    return subprocess.run(
        [*megara_dark(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stop_when(
    args: list[str],
    *,
    cwd: Path,
    frames: Path,
    pattern: str,
    sig: int = signal.SIGINT,
) -> subprocess.CompletedProcess[str]:
    """Run ``megara-dark ARGS``; send ``sig`` once a file matching ``pattern``
    is in ``frames`` (at most two minutes later); its end, output captured."""
    proc = subprocess.Popen(
        [*megara_dark(), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(frames.glob(pattern)):
        time.sleep(0.01)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def start_simulators(*args: str) -> SimProcess:
    """Start ``megara-dark simulate ARGS`` and wait until it announces its URLs."""
    return _start(args, command=[*megara_dark(), "simulate"])


def control_token(sim: SimProcess) -> str:
    """The token the simulators wrote for their control port."""
    return read_token(sim.info["token_file"])


def control(sim: SimProcess, request: dict[str, Any]) -> Any:
    """Send one authenticated request to the simulators' control port."""
    return send_request(sim.control, request, token=control_token(sim))

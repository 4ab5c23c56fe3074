"""Start ``megara-dark simulate`` as a subprocess and read the URLs it prints.

:func:`control` talks to its control port with the token of its token file.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from sequencer.simlaunch import SimulatorProcess
from sequencer.simlaunch import start_simulators as _start
from simulators.control import send_request
from simulators.control_token import read_token

SimProcess = SimulatorProcess


def megara_dark() -> list[str]:
    """The installed ``megara-dark`` command beside this interpreter."""
    beside = Path(sys.executable).with_name("megara-dark")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("megara-dark")
    if found is None:
        raise RuntimeError("megara-dark is not installed: pip install -e '.[test]'")
    return [found]


def start_simulators(*args: str) -> SimProcess:
    """Start ``megara-dark simulate ARGS`` and wait until it announces its URLs."""
    return _start(args, command=[*megara_dark(), "simulate"])


def control_token(sim: SimProcess) -> str:
    """The token the simulators wrote for their control port."""
    return read_token(sim.info["token_file"])


def control(sim: SimProcess, request: dict[str, Any]) -> Any:
    """Send one authenticated request to the simulators' control port."""
    return send_request(sim.control, request, token=control_token(sim))

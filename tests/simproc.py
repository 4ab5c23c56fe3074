"""Start ``megara-dark simulate`` as a subprocess and read the URLs it prints."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from sequencer.simlaunch import SimulatorProcess
from sequencer.simlaunch import start_simulators as _start

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

"""The uninterrupted runs every reliability test compares against (made once)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy.typing as npt
import pytest

from tests.reliability.harness import (
    BIAS_BLOCK,
    BIAS_PLAN,
    BLOCK,
    CONFIG,
    RunProcess,
    Setup,
    master_dark,
    run_to_end,
)
from tests.simproc import megara_dark


@dataclass(frozen=True)
class Reference:
    """An uninterrupted run: its setup, master dark and a raw frame's size."""

    setup: Setup
    workdir: Path
    master: npt.NDArray[Any]
    frame_bytes: int
    line_bytes: dict[str, int]  # longest journal line per event, bytes


@pytest.fixture(scope="session")
def master_bias(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A master bias from an uninterrupted bias block on the simulators."""
    folder = tmp_path_factory.mktemp("bias")
    (folder / "bias.yaml").write_text(BIAS_PLAN)
    (folder / "instrument.toml").write_text(CONFIG)
    argv = [*megara_dark(), "run", "bias.yaml", "--config", "instrument.toml"]
    run = RunProcess.start([*argv, "--workdir", "work", "--json"], cwd=folder)
    assert run.finish() == 0, run.stderr[-3000:]
    return folder / "work" / f"obsid{BIAS_BLOCK}_results" / "master_bias.fits"


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, master_bias: Path) -> Reference:
    """The dark block run once without interruption, same seed."""
    setup = Setup.dark(tmp_path_factory.mktemp("reference"), master_bias)
    work = setup.folder / "work"
    run = run_to_end(setup, work)
    assert run.proc.returncode == 0, run.stderr[-3000:]
    frames = sorted((work / "data").glob(f"{BLOCK}_*.fits"))
    sizes = {path.stat().st_size for path in frames}
    assert len(sizes) == 1
    lines: dict[str, int] = {}
    for line in (work / "run.journal").read_bytes().splitlines(keepends=True):
        event = line.split(b'"event": "', 1)[1].split(b'"', 1)[0].decode()
        lines[event] = max(lines.get(event, 0), len(line))
    return Reference(setup, work, master_dark(work), sizes.pop(), lines)

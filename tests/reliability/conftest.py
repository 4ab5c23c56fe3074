"""The uninterrupted runs every reliability test compares against (made once)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy.typing as npt
import pytest

from tests.reliability.harness import (
    BIAS_BLOCK,
    BLOCK,
    LIVE,
    Setup,
    master_dark,
    run_to_end,
)


@dataclass(frozen=True)
class Reference:
    """An uninterrupted run: its setup, master dark and a raw frame's size."""

    setup: Setup
    workdir: Path
    master: npt.NDArray[Any]
    frame_bytes: int
    line_bytes: dict[str, int]  # longest journal line per event, bytes


@pytest.fixture(scope="session")
def two_blocks(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """A bias block then a dark block, uninterrupted; its bias serves the others."""
    setup = Setup.both(tmp_path_factory.mktemp("two_blocks"))
    work = setup.folder / "work"
    run = run_to_end(setup, work)
    assert run.proc.returncode == 0, run.stderr[-3000:]
    return Reference(setup, work, master_dark(work), 0, {})


@pytest.fixture(scope="session")
def master_bias(two_blocks: Reference) -> Path:
    """The master bias of the uninterrupted two-block run."""
    return two_blocks.workdir / f"obsid{BIAS_BLOCK}_results" / "master_bias.fits"


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


@pytest.fixture(autouse=True)
def no_run_left() -> Iterator[None]:
    """Kill any run a failed check left running (its simulators die with it)."""
    yield
    for run in list(LIVE):
        run.kill()

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.simproc import SimProcess, start_simulators


@pytest.fixture
def simulators() -> Iterator[Callable[..., SimProcess]]:
    """Factory: start ``megara-dark simulate`` with the given options."""
    started: list[SimProcess] = []

    def start(*args: str) -> SimProcess:
        sim = start_simulators(*args)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.close()

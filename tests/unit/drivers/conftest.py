"""Fixtures of the Archon driver's unit tests (see ``archon_rig.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from simulators.synthesis import Detector, DetectorConfig
from tests.unit.drivers.archon_rig import Rig


@pytest.fixture(scope="session")
def detector() -> Detector:
    """The seeded frame synthesis every simulated controller here uses."""
    return Detector(DetectorConfig(seed=11))


@pytest.fixture
def make_rig(detector: Detector) -> Iterator[Callable[..., Rig]]:
    """Serves simulated controllers (``ArchonModel`` settings as keywords)."""
    rigs: list[Rig] = []

    def make(**model: Any) -> Rig:
        rigs.append(Rig.serve(detector, **model))
        return rigs[-1]

    yield make
    for rig in rigs:
        rig.close()


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    """MEGARA's controller as it powers up, served on a loopback port."""
    return make_rig()

"""Device URLs for the hardware-in-the-loop tests.

By default every test runs twice, against ``megara-dark simulate`` over
pseudo-terminals and over TCP. With ``--ccd-url``, ``--cover-left-url`` and
``--cover-right-url`` the same tests run against real controllers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.simproc import SimProcess, start_simulators

#: Simulator options for HIL runs: fast clock, short moves.
SIM_ARGS = ("--time-scale", "200", "--cover-motion-s", "4", "--readout-s", "10")


@dataclass(frozen=True)
class Urls:
    ccd: str
    cover_left: str
    cover_right: str
    sim: SimProcess | None = None


def _hardware(config: pytest.Config) -> Urls | None:
    urls = [
        config.getoption(n) for n in ("ccd_url", "cover_left_url", "cover_right_url")
    ]
    if not any(urls):
        return None
    if not all(urls):
        raise pytest.UsageError(
            "give all three of --ccd-url, --cover-left-url and --cover-right-url"
        )
    return Urls(*urls)


def device_urls(config: pytest.Config, transport: str) -> Iterator[Urls]:
    """Real hardware if given, else a fresh simulator set on ``transport``."""
    hardware = _hardware(config)
    if hardware is not None:
        yield hardware
        return
    sim = start_simulators("--transport", transport, *SIM_ARGS)
    try:
        yield Urls(
            sim.urls["ccd"], sim.urls["cover_left"], sim.urls["cover_right"], sim
        )
    finally:
        sim.close()


@pytest.fixture(scope="module", params=["pty", "tcp"])
def urls(request: pytest.FixtureRequest) -> Iterator[Urls]:
    """The devices to test, the cover halves on each transport in turn."""
    if _hardware(request.config) is not None and request.param == "tcp":
        pytest.skip("hardware given: one run is enough")
    yield from device_urls(request.config, request.param)

"""``megara-dark reset`` against simulators the tests start and damage.

The run's fault messages tell the engineer to check the mechanism and run
``megara-dark reset``; these tests show that the command exists, makes the
instrument safe when it can, and says so with exit status 1 when it cannot.
"""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from drivers import interfaces as pc
from drivers.archon import ArchonCcdController
from drivers.config import CcdConfig, CoverConfig
from drivers.cover import SerialCoverHalf, SerialFocalPlaneCover
from sequencer.motion import wait_for_cover
from tests.simproc import SimProcess, control, megara, start_simulators

pytestmark = pytest.mark.e2e

BLOCKS = """\
id: bias2
instrument: MEGARA
mode: MegaraBiasImage
exptime: 0.0
nframes: 3
"""


def devices_config(sim: SimProcess) -> str:
    """A configuration naming the running simulators as real devices."""
    return (
        "[devices]\n"
        + "".join(f'{name} = "{url}"\n' for name, url in sim.urls.items())
        + "[run]\npoll_s = 0.01\n[cover]\nmotion_timeout_s = 10.0\n"
    )


def inject(sim: SimProcess, fault: dict[str, Any]) -> None:
    """Schedule a fault through the simulators' control port."""
    reply = control(sim, {"op": "inject", "fault": fault})
    assert reply["ok"], reply


def cover_of(sim: SimProcess) -> SerialFocalPlaneCover:
    halves = [
        SerialCoverHalf.from_config(
            CoverConfig(url=sim.urls[f"cover_{side}"], name=side)
        )
        for side in ("left", "right")
    ]
    return SerialFocalPlaneCover(*halves)


def test_reset_after_a_jam_closes_the_cover(tmp_path: Path) -> None:
    scenario = tmp_path / "jam.yaml"
    scenario.write_text(
        "faults:\n  - {device: cover_left, kind: cover_jam, params: {at: 0.4}}\n"
    )
    sim = start_simulators(
        "--time-scale", "1000", "--cover-motion-s", "6", "--scenario", str(scenario)
    )
    with closing(sim):
        # The simulated cover starts open, so the run's close is a real move.
        (tmp_path / "ob.yaml").write_text(BLOCKS)
        (tmp_path / "instrument.toml").write_text(devices_config(sim))
        run = megara(
            "run",
            "ob.yaml",
            "--config",
            "instrument.toml",
            "--workdir",
            "work",
            cwd=tmp_path,
        )
        assert run.returncode == 1, run.stderr[-2000:]
        assert "cover left" in run.stdout
        assert "megara-dark reset" in run.stdout

        cover = cover_of(sim)
        cover.connect()
        try:
            assert not cover.status().fully_closed  # left in the jam
        finally:
            cover.close_link()  # the ports open exclusively

        done = megara("reset", "--config", "instrument.toml", cwd=tmp_path)

        assert done.returncode == 0, done.stdout + done.stderr
        assert "reset: safe: cover left=CLOSED right=CLOSED" in done.stdout
        assert "shutter CLOSED" in done.stdout
        cover.connect()
        try:
            assert cover.status().fully_closed  # read back by another client
        finally:
            cover.close_link()


def test_reset_aborts_an_exposure_and_reports_a_cover_it_cannot_close(
    tmp_path: Path,
) -> None:
    sim = start_simulators("--time-scale", "100", "--cover-motion-s", "6")
    with closing(sim):
        ccd = ArchonCcdController.from_config(CcdConfig(url=sim.urls["ccd"]))
        cover = cover_of(sim)
        ccd.connect()
        cover.connect()
        try:
            ccd.expose(3600.0, dark=True)  # 36 s of wall time at scale 100
            cover.open()
            wait_for_cover(cover, "open", timeout_s=10.0, poll_s=0.02)
            inject(sim, {"device": "cover_right", "kind": "cover_jam"})
            ccd.close_link()
            cover.close_link()
            (tmp_path / "instrument.toml").write_text(devices_config(sim))

            done = megara("reset", "--config", "instrument.toml", cwd=tmp_path)

            assert done.returncode == 1, done.stdout + done.stderr
            assert "reset: stopped any exposure or readout" in done.stdout
            assert "reset: shutter closed" in done.stdout
            assert "cover right" in done.stderr
            assert "jammed" in done.stderr
            assert "reset: NOT SAFE" in done.stdout
            assert "right=NEITHER" in done.stdout
            assert "Traceback" not in done.stderr
            # The Archon shows no integration under way (only a buffer being
            # written): what the test can read back is the shutter, shut, and
            # no frame made by the exposure that was stopped.
            ccd.close_link()
            ccd = ArchonCcdController.from_config(CcdConfig(url=sim.urls["ccd"]))
            ccd.connect()
            status = ccd.status()
            assert status.shutter is pc.ShutterState.CLOSED
            assert status.frame == 0
        finally:
            ccd.close_link()
            cover.close_link()
    # Stopping the simulators ends the test; nothing is left running.
    deadline = time.monotonic() + 20.0
    while sim.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.proc.poll() is not None

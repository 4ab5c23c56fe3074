"""``python -m simulators.archon`` driven by a client we did not write: sdss-archon.

SDSS-V's ``archon.controller.ArchonController`` runs its own sequences (start
with its configuration read and reset, write_config, expose with and without
readout, readout, fetch, abort) against the simulator subprocess over TCP,
and the frames it fetches are checked against the frame synthesis' truth.

sdss-archon is asyncio code and pytest here has no asyncio plugin: each test
runs its coroutine with ``asyncio.run``. Importing it emits one warning, from
its dependency sdsstools, which reads ``archon/etc/archon.yml`` (and, from
a plain install, the working folder's ``pyproject.toml``) without closing the
file (a ``ResourceWarning``); those warnings alone are ignored, and the import
happens inside the tests so that the filter applies.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from drivers.archon import ArchonCcdController
from drivers.config import CcdConfig
from drivers.interfaces import ControllerState, Readout, ShutterState
from simulators.archon import MEGARA_ACF
from simulators.synthesis import (
    DATA_SECTIONS,
    OVERSCAN_SECTIONS,
    DetectorConfig,
    dark_current_scale,
)
from tests.simproc import SimProcess

pytestmark = [
    pytest.mark.sim,
    pytest.mark.filterwarnings(
        r"ignore:unclosed file <_io\.TextIOWrapper "
        r"name='[^']*(archon\.yml|pyproject\.toml)':ResourceWarning"
    ),
]

SHAPE = (4212, 4196)
TRUTH = DetectorConfig()  # the simulator's detector, but for its seed's defects


@contextmanager
def archon_simulator(tmp_path: Path, *args: str) -> Iterator[int]:
    """Start the simulator, yield its TCP port, stop it with SIGTERM."""
    log = (tmp_path / "archon.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.archon", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=60), "the simulator did not announce itself"
        ready = json.loads(proc.stdout.readline())
        assert ready["device"] == "ccd"
        assert ready["protocol"] == "archon"
        host, _, port = ready["url"].removeprefix("socket://").rpartition(":")
        assert host == "127.0.0.1"
        yield int(port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        if proc.stdout is not None:
            proc.stdout.close()


def clipped_mean(values: npt.NDArray[np.uint16]) -> float:
    data = values.astype(np.float64).ravel()
    centre = float(np.median(data))
    spread = 1.4826 * float(np.median(np.abs(data - centre)))
    return float(data[np.abs(data - centre) < 5 * spread].mean())


def check_levels(frame: npt.NDArray[Any], dark_s: float) -> None:
    """Overscan at the bias, image area above it by the dark current of dark_s."""
    assert frame.shape == SHAPE
    assert frame.dtype == np.uint16
    rate = TRUTH.dark_ref_e_per_h / 3600
    rate *= dark_current_scale(163.15, TRUTH.dark_ref_temp_k)
    for amp in (0, 1):
        overscan = clipped_mean(frame[OVERSCAN_SECTIONS[amp]])
        assert overscan == pytest.approx(TRUTH.bias_adu[amp], abs=1.0)
        dark = clipped_mean(frame[DATA_SECTIONS[amp]]) - overscan
        assert dark == pytest.approx(rate * dark_s / TRUTH.gains[amp], abs=0.05)


async def until_complete(
    controller: Any, *, newer_than: int = 0, timeout: float = 30.0
) -> dict[str, int]:
    """Poll FRAME until a frame after ``newer_than`` is complete in WBUF."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame: dict[str, int] = await controller.get_frame()
        wbuf = frame["wbuf"]
        newer = wbuf and frame[f"buf{wbuf}frame"] > newer_than
        if newer and frame[f"buf{wbuf}complete"] == 1:
            return frame
        assert loop.time() < deadline, f"buffer {frame['wbuf']} never completed"
        await asyncio.sleep(0.1)


def sdss_archon() -> Any:
    """sdss-archon's ``archon.controller``, imported where the filter applies."""
    import archon.controller  # type: ignore[import-untyped]  # noqa: PLC0415

    return archon.controller


async def session(port: int) -> None:
    client = sdss_archon()
    status_bits = client.ControllerStatus
    controller = client.ArchonController("megara", "127.0.0.1", port)
    try:
        await controller.start()  # reads all 16384 lines, resets, reads power
        assert controller.status == status_bits.IDLE | status_bits.POWERON
        assert controller.parameters["OPENSHUTTER"] == 0
        system = await controller.get_system()
        assert system["mod2_name"] == "HEATERX"
        status = await controller.get_device_status()
        assert status["mod2/tempa"] == pytest.approx(163.15 - 273.15)
        assert status["mod2/dinputs"] == 4  # the shutter's closed switch

        await controller.write_config(str(MEGARA_ACF), applyall=True, poweron=True)
        assert controller.status & status_bits.POWERON

        # An exposure with its readout.
        task = await controller.expose(1.0, readout=True)
        await task  # checks that the controller is reading into WBUF
        assert controller.status & status_bits.READING
        first = await until_complete(controller)
        frame = await controller.fetch()
        check_levels(frame, 1.0)

        # An exposure read out later.
        task = await controller.expose(0.5, readout=False)
        await task
        assert controller.status & status_bits.READOUT_PENDING
        wbuf = await controller.readout()
        after = await controller.get_frame()
        assert after[f"buf{wbuf}frame"] == first[f"buf{first['wbuf']}frame"] + 1
        frame, buffer = await controller.fetch(return_buffer=True)
        assert buffer == wbuf
        assert frame.shape == SHAPE

        # An aborted exposure: nothing is read.
        task = await controller.expose(5.0, readout=True)
        await asyncio.sleep(0.5)
        await controller.abort(readout=False)
        assert controller.status & status_bits.READOUT_PENDING
        await asyncio.sleep(1.5)
        aborted = await controller.get_frame()
        assert aborted["wbuf"] == wbuf
        assert aborted[f"buf{wbuf}complete"] == 1

        # A second exposure after it.
        await controller.reset()
        task = await controller.expose(0.2, readout=True)
        await task
        last = await until_complete(controller)
        assert last[f"buf{last['wbuf']}frame"] == after[f"buf{wbuf}frame"] + 1
        assert (await controller.fetch()).shape == SHAPE
    finally:
        await controller.stop()


def test_sdss_archon_runs_a_session(tmp_path: Path) -> None:
    with archon_simulator(tmp_path, "--readout-s", "1.0", "--seed", "7") as port:
        asyncio.run(session(port))


async def bias_and_dark(port: int) -> None:
    """Integrations set as ``expose()`` sets them, without its wall-clock sleep."""
    controller = sdss_archon().ArchonController("megara", "127.0.0.1", port)
    try:
        await controller.start()
        last = 0
        for dark_s in (0.0, 900.0):
            await controller.reset(autoflush=False, release_timing=False)
            await controller.set_param("ReadOut", 1)
            await controller.set_param("IntCS", int(dark_s * 100))
            await controller.set_param("Exposures", 1)
            await controller.send_command("RELEASETIMING")
            info = await until_complete(controller, newer_than=last)
            number = info["wbuf"]
            last = info[f"buf{number}frame"]
            integration = info[f"buf{number}fetimestamp"]
            integration -= info[f"buf{number}retimestamp"]
            assert integration == pytest.approx(dark_s * 1e8, abs=1e6)
            frame = await controller.fetch(number)
            check_levels(frame, dark_s)
            await controller.set_autoflush(True)
    finally:
        await controller.stop()


def test_bias_and_900_s_dark_at_time_scale_1000(tmp_path: Path) -> None:
    with archon_simulator(tmp_path, "--time-scale", "1000", "--seed", "11") as port:
        asyncio.run(bias_and_dark(port))


async def hold_the_line(port: int) -> bytes:
    """Connect as sdss-archon does, then try a second connection."""
    controller = sdss_archon().ArchonController("megara", "127.0.0.1", port)
    await controller.start(reset=False, read_acf=False)
    try:
        await controller.get_frame()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as other:
            return other.recv(100)  # closed at once, without a byte
    finally:
        await controller.stop()


def test_a_second_connection_is_refused(tmp_path: Path) -> None:
    with archon_simulator(tmp_path) as port:
        assert asyncio.run(hold_the_line(port)) == b""


# -- on `megara-dark simulate`, and our driver through the same sequence --------

#: The cover shut: no light reaches the shutter, the frames are pure darks.
SIMULATE = ("--transport", "tcp", "--cover-initial", "closed")


def ccd_port(sim: SimProcess) -> int:
    url = sim.urls["ccd"]
    assert url.startswith("socket://127.0.0.1:")
    return int(url.rsplit(":", 1)[1])


def test_sdss_archon_runs_a_session_on_megara_dark_simulate(
    simulators: Callable[..., SimProcess],
) -> None:
    sim = simulators(*SIMULATE, "--readout-s", "1.0", "--seed", "7")
    asyncio.run(session(ccd_port(sim)))


def test_sdss_archon_takes_a_bias_and_a_dark_from_megara_dark_simulate(
    simulators: Callable[..., SimProcess],
) -> None:
    sim = simulators(*SIMULATE, "--time-scale", "1000", "--seed", "11")
    asyncio.run(bias_and_dark(ccd_port(sim)))


def exposed(ccd: ArchonCcdController, exptime_s: float) -> Readout:
    """One dark through our driver, waited for and read."""
    ccd.expose(exptime_s, dark=True)
    deadline = time.monotonic() + 60.0
    while ccd.status().state is not ControllerState.READY:
        assert time.monotonic() < deadline, "the frame never became READY"
        time.sleep(0.05)
    readout = ccd.read_frame()
    ccd.clear()
    return readout


def test_our_driver_runs_the_same_session(
    simulators: Callable[..., SimProcess],
) -> None:
    sim = simulators(*SIMULATE, "--readout-s", "1.0", "--seed", "7")
    ccd = ArchonCcdController.from_config(CcdConfig(url=sim.urls["ccd"]))
    try:
        assert ccd.connect() == "1.0.1104"
        assert ccd.identity().simulated
        first = exposed(ccd, 1.0)
        check_levels(first.pixels.astype(np.uint16), 1.0)
        assert first.info.shutter_max is ShutterState.CLOSED
        assert first.info.exptime_s == pytest.approx(1.0, abs=1e-6)
        second = exposed(ccd, 0.5)
        assert second.info.frame == first.info.frame + 1
        # An aborted exposure: nothing is read, the shutter stays shut.
        ccd.expose(5.0, dark=True)
        time.sleep(0.5)
        assert ccd.status().state is ControllerState.EXPOSING
        ccd.abort()
        time.sleep(1.5)
        after = ccd.status()
        assert after.state is ControllerState.IDLE
        assert after.frame == second.info.frame
        assert after.shutter is ShutterState.CLOSED
        # A second exposure after it.
        last = exposed(ccd, 0.2)
        assert last.info.frame == second.info.frame + 1
        assert last.pixels.shape == SHAPE
    finally:
        ccd.close_link()


def test_our_driver_takes_a_bias_and_a_dark_from_megara_dark_simulate(
    simulators: Callable[..., SimProcess],
) -> None:
    sim = simulators(*SIMULATE, "--time-scale", "1000", "--seed", "11")
    ccd = ArchonCcdController.from_config(CcdConfig(url=sim.urls["ccd"]))
    try:
        ccd.connect()
        for dark_s in (0.0, 900.0):
            readout = exposed(ccd, dark_s)
            assert readout.info.exptime_s == pytest.approx(dark_s, abs=0.01)
            check_levels(readout.pixels.astype(np.uint16), dark_s)
    finally:
        ccd.close_link()

"""The Archon driver against a simulator subprocess (or a real controller).

Every CCD fault of the simulators' catalogue ends here either recovered
(with the number of retries it took and proof that nothing ran twice or
came back different) or in a named, typed error. Faults are one-shot: each
is injected through the control channel just before the command meant to
trigger it, aimed with ``after_commands`` (the simulator's command counter)
or ``on_readout`` (the frame number).

The simulators run at time scale 200 (``tests/hil/conftest.py``): a 1 s dark
takes 5 ms, the 10 s readout into the controller's memory 50 ms. The
simulated Archon listens on loopback TCP whatever ``--transport`` (which
moves the cover halves only), so against the simulators these tests run in
the tcp set only.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from drivers.archon import COLS, ROWS, ArchonCcdController
from drivers.config import CcdConfig
from drivers.errors import DeviceError, DeviceTimeout
from drivers.interfaces import CcdStatus, ControllerState, Readout, ShutterState
from drivers.protocol import archon as protocol
from drivers.transport import LinkError
from tests.hil.conftest import SIM_ARGS, Urls, device_urls
from tests.simproc import SimProcess, control, start_simulators

pytestmark = pytest.mark.hil

IDLE, EXPOSING, READING, READY = (
    ControllerState.IDLE,
    ControllerState.EXPOSING,
    ControllerState.READING,
    ControllerState.READY,
)
#: Simulated seconds of the short darks (5 ms of wall time).
EXPTIME_S = 1.0
#: Allowed CCD temperatures in these tests: the simulator's 163.15 K is
#: inside, an excursion of +10 K outside (the Archon itself exposes anyway).
RANGE_K = (150.0, 170.0)
NOMINAL_K = 163.15
#: MEGARA's raw frame in bytes and in the Archon's 1024-byte blocks.
NBYTES = ROWS * COLS * 2
NBLOCKS = protocol.blocks_for(NBYTES)
#: MEGARA data sections (rows, columns) and gains (e-/ADU) of the two amplifiers.
DATA_SECTIONS = (
    (slice(0, 2056), slice(50, 4146)),
    (slice(2156, 4212), slice(50, 4146)),
)
GAINS = (1.73, 1.6)
#: Longest wait for a frame (wall seconds): a guard against a hang only.
READY_LIMIT_S = 30.0


def config(url: str, **kw: Any) -> CcdConfig:
    settings: dict[str, Any] = {
        # The simulator makes a frame's pixels while the CCD is read out and
        # answers its FETCH once they are made: a few tenths of a second.
        "reply_timeout_s": 1.0,
        "block_timeout_s": 1.0,
        "retries": 2,
        "temperature_range_k": RANGE_K,
        **kw,
    }
    return CcdConfig(url=url, **settings)


@pytest.fixture(scope="module")
def urls(request: pytest.FixtureRequest) -> Iterator[Urls]:
    """One device set: the Archon is on TCP whatever the covers' transport."""
    yield from device_urls(request.config, "tcp")


@pytest.fixture(scope="module")
def controller(urls: Urls) -> Iterator[ArchonCcdController]:
    """One connection for the module (as one observing program keeps it)."""
    ccd = ArchonCcdController.from_config(config(urls.ccd))
    ccd.connect()
    yield ccd
    ccd.close_link()


@pytest.fixture
def ccd(controller: ArchonCcdController) -> ArchonCcdController:
    """The controller, idle: no exposure running, no frame pending."""
    state = controller.status().state
    if state in (EXPOSING, READING):
        controller.abort()
    elif state is READY:
        controller.clear()
    assert controller.status().state is IDLE
    return controller


@pytest.fixture
def own_sim(urls: Urls) -> Iterator[SimProcess]:
    """A simulator set of its own, for faults that cannot be undone."""
    if urls.sim is None:
        pytest.skip("needs the simulators")
    sim = start_simulators("--transport", "tcp", *SIM_ARGS)
    try:
        yield sim
    finally:
        sim.close()


def sim_of(urls: Urls) -> SimProcess:
    if urls.sim is None:
        pytest.skip("fault injection needs the simulators")
    return urls.sim


def commands(sim: SimProcess) -> int:
    """Commands the simulated CCD controller has received so far."""
    reply = control(sim, {"op": "status"})
    return int(reply["devices"]["ccd"]["commands"])


def inject(sim: SimProcess, **fault: Any) -> None:
    reply = control(sim, {"op": "inject", "fault": {"device": "ccd", **fault}})
    assert reply["ok"], reply


def fired(sim: SimProcess, kind: str) -> int:
    """How many times faults of ``kind`` have fired in this simulator."""
    reply = control(sim, {"op": "faults"})
    return sum(1 for f in reply["fired"] if f["fault"]["kind"] == kind)


def wait_ready(ccd: ArchonCcdController) -> CcdStatus:
    """Poll the controller until the exposure's frame is complete in its memory."""
    deadline = time.monotonic() + READY_LIMIT_S
    while (status := ccd.status()).state is not READY:
        assert status.state in (EXPOSING, READING), status
        if time.monotonic() > deadline:
            pytest.fail(f"hung: not READY after {READY_LIMIT_S} s: {status}")
        time.sleep(0.005)
    return status


def exposed(
    ccd: ArchonCcdController, exptime_s: float = EXPTIME_S, *, dark: bool = True
) -> CcdStatus:
    """Expose and wait for the frame: the READY status (its frame number)."""
    ccd.expose(exptime_s, dark=dark)
    return wait_ready(ccd)


def take(ccd: ArchonCcdController, exptime_s: float = EXPTIME_S) -> Readout:
    exposed(ccd, exptime_s)
    return ccd.read_frame()


def data_median(pixels: np.ndarray[Any, Any], amp: int) -> float:
    rows, cols = DATA_SECTIONS[amp]
    return float(np.median(pixels[rows, cols]))


# -- the normal path ---------------------------------------------------------


def test_connect_and_identity(urls: Urls, ccd: ArchonCcdController) -> None:
    firmware = ccd.connect()  # again, on the open line: the timing reset again
    assert firmware
    identity = ccd.identity()
    assert identity.firmware == firmware
    assert identity.product.startswith("STA-ARCHON-")
    assert identity.simulated is (urls.sim is not None)
    assert ccd.status().state is IDLE
    assert ccd.shutter() is ShutterState.CLOSED
    assert RANGE_K[0] <= ccd.check_temperature() <= RANGE_K[1]


def test_dark_is_read_out_whole_with_its_evidence(ccd: ArchonCcdController) -> None:
    frame = ccd.status().frame
    ccd.close_shutter()
    status = exposed(ccd)
    assert (status.frame, status.dark) == (frame + 1, True)
    assert status.exptime_s == pytest.approx(EXPTIME_S)
    seen: list[tuple[int, int]] = []
    readout = ccd.read_frame(lambda done, total: seen.append((done, total)))
    info = readout.info
    assert readout.pixels.shape == (ROWS, COLS)
    assert readout.pixels.dtype == np.dtype(">u2")
    assert (readout.rounds, readout.refetched) == (1, 0)
    assert info.frame == frame + 1
    assert info.dark
    assert info.shutter_max is ShutterState.CLOSED
    assert info.shutter_readings >= 2
    assert info.exptime_s == pytest.approx(EXPTIME_S)  # the controller's timestamps
    assert info.temp_start_k == pytest.approx(NOMINAL_K, abs=0.01)
    done = [d for d, _ in seen]
    assert all(a <= b for a, b in itertools.pairwise(done))
    assert seen[-1] == (NBYTES, NBYTES)
    assert 1000 < data_median(readout.pixels, 0) < 60000  # a bias, not zeros
    again = ccd.read_frame()  # the same frame from the controller's memory
    assert np.array_equal(readout.pixels, again.pixels)


def test_abort_with_nothing_to_abort_is_fine(ccd: ArchonCcdController) -> None:
    ccd.abort()
    assert ccd.status().state is IDLE


def test_abort_stops_an_exposure(ccd: ArchonCcdController) -> None:
    frame = ccd.status().frame
    ccd.expose(3600.0)
    assert ccd.status().state is EXPOSING
    ccd.abort()
    status = ccd.status()
    assert (status.state, status.frame) == (IDLE, frame)  # no frame read out
    assert status.shutter is ShutterState.CLOSED


# -- link faults on a STATUS and on an exposure --------------------------------

LINK_FAULTS = [
    ("no_reply", {}),
    ("garbled_reply", {}),
    ("late_reply", {"delay_s": 1.5}),  # beyond the 1 s reply timeout
]


@pytest.mark.parametrize(("kind", "params"), LINK_FAULTS)
def test_link_fault_on_status_is_recovered_with_one_retry(
    urls: Urls, ccd: ArchonCcdController, kind: str, params: dict[str, float]
) -> None:
    sim = sim_of(urls)
    before, shots = ccd.retries_used, fired(sim, kind)
    inject(sim, kind=kind, after_commands=commands(sim), params=params)
    assert ccd.status().state is IDLE
    assert fired(sim, kind) == shots + 1
    assert ccd.retries_used == before + 1


@pytest.mark.parametrize(("kind", "params"), LINK_FAULTS)
def test_link_fault_on_expose_is_recovered_without_exposing_twice(
    urls: Urls, ccd: ArchonCcdController, kind: str, params: dict[str, float]
) -> None:
    sim = sim_of(urls)
    # A rehearsal counts what expose() sends: the timing parameters, then
    # RELEASETIMING (which starts the exposure) and a FRAME. Aim at the former.
    start = commands(sim)
    ccd.expose(3600.0)
    release = commands(sim) - start - 2
    ccd.abort()  # while integrating: no frame
    frame = ccd.status().frame
    before, shots = ccd.retries_used, fired(sim, kind)
    inject(sim, kind=kind, after_commands=commands(sim) + release, params=params)
    status = exposed(ccd)
    assert fired(sim, kind) == shots + 1
    assert ccd.retries_used == before + 1
    assert status.frame == frame + 1  # one exposure, not two
    assert ccd.read_frame().info.frame == frame + 1


def test_late_reply_within_the_timeout_needs_no_retry(
    urls: Urls, ccd: ArchonCcdController
) -> None:
    sim = sim_of(urls)
    before = ccd.retries_used
    inject(
        sim, kind="late_reply", after_commands=commands(sim), params={"delay_s": 0.1}
    )
    assert ccd.temperature() == pytest.approx(NOMINAL_K, abs=0.01)
    assert ccd.retries_used == before


# -- readout faults ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["short_fetch", "disconnect_readout"])
def test_cut_transfer_is_resumed_from_the_first_missing_block(
    urls: Urls, ccd: ArchonCcdController, kind: str
) -> None:
    sim = sim_of(urls)
    frame = exposed(ccd).frame
    before, reconnects = ccd.retries_used, ccd.archon.link.reconnects
    inject(sim, kind=kind, on_readout=frame, params={"fraction": 0.3})
    seen: list[int] = []
    readout = ccd.read_frame(lambda done, total: seen.append(done))
    assert fired(sim, kind) == 1
    assert readout.rounds == 2
    # About 70 % of the blocks were fetched again, not the whole frame.
    assert 0.6 * NBLOCKS < readout.refetched < 0.8 * NBLOCKS
    assert ccd.retries_used == before + 1
    assert seen == sorted(seen)
    assert seen[-1] == NBYTES
    # short_fetch keeps the connection; disconnect_readout drops it.
    dropped = kind == "disconnect_readout"
    assert ccd.archon.link.reconnects == reconnects + dropped
    clean = ccd.read_frame()
    assert (clean.rounds, clean.refetched) == (1, 0)
    assert np.array_equal(readout.pixels, clean.pixels)


def test_garbled_transfer_is_drained_and_fetched_again(
    urls: Urls, ccd: ArchonCcdController
) -> None:
    sim = sim_of(urls)
    exposed(ccd)
    before, shots = ccd.retries_used, fired(sim, "garbled_reply")
    # read_frame() sends FRAME and LOCKn, then the FETCH.
    inject(sim, kind="garbled_reply", after_commands=commands(sim) + 2)
    readout = ccd.read_frame()
    assert fired(sim, "garbled_reply") == shots + 1
    assert (readout.rounds, readout.refetched) == (2, NBLOCKS)
    assert ccd.retries_used == before + 1
    assert np.array_equal(readout.pixels, ccd.read_frame().pixels)


# -- the controller's own faults ---------------------------------------------


def excursion(sim: SimProcess, delta_k: float) -> None:
    """``delta_k`` on the CCD for 200 simulated seconds (1 s of wall time),
    from the next command."""
    inject(
        sim,
        kind="temperature_excursion",
        after_commands=commands(sim),
        params={"delta_k": delta_k, "duration_s": 200.0},
    )


def wait_nominal(ccd: ArchonCcdController) -> None:
    """Poll the CCD temperature until an excursion is over."""
    deadline = time.monotonic() + READY_LIMIT_S
    while ccd.temperature() > NOMINAL_K + 0.5:
        if time.monotonic() > deadline:
            pytest.fail(f"hung: the excursion outlasted {READY_LIMIT_S} s")
        time.sleep(0.05)


def test_temperature_excursion_out_of_range_is_refused(
    urls: Urls, ccd: ArchonCcdController
) -> None:
    sim = sim_of(urls)
    frame = ccd.status().frame
    excursion(sim, 10.0)
    with pytest.raises(DeviceError) as error:
        ccd.check_temperature()
    message = str(error.value)
    assert f"CCD temperature {NOMINAL_K + 10:.2f} K" in message
    assert "expected 150.00 to 170.00 K" in message
    # The Archon would expose at any temperature: the driver refuses.
    with pytest.raises(DeviceError, match=f"{NOMINAL_K + 10:.2f} K"):
        ccd.expose(EXPTIME_S)
    wait_nominal(ccd)
    assert ccd.check_temperature() == pytest.approx(NOMINAL_K, abs=0.01)
    info = take(ccd).info
    assert info.frame == frame + 1  # the refused exposure made none
    assert info.temp_end_k == pytest.approx(NOMINAL_K, abs=0.01)


def test_temperature_excursion_in_range_is_recorded(
    urls: Urls, ccd: ArchonCcdController
) -> None:
    sim = sim_of(urls)
    excursion(sim, 5.0)  # 168.15 K: inside the allowed range
    info = take(ccd).info
    assert info.temp_start_k == pytest.approx(NOMINAL_K + 5, abs=0.01)
    assert info.temp_end_k == pytest.approx(NOMINAL_K + 5, abs=0.01)
    wait_nominal(ccd)


def test_light_leak_raises_the_dark_level(urls: Urls, ccd: ArchonCcdController) -> None:
    sim = sim_of(urls)
    exptime_s, flux = 100.0, 5.0  # 0.5 s of wall time; 500 e- of leak
    clean = take(ccd, exptime_s)
    ccd.clear()
    inject(
        sim, kind="light_leak", on_readout=clean.info.frame + 1, params={"flux": flux}
    )
    leaky = take(ccd, exptime_s)
    assert leaky.info.shutter_max is ShutterState.CLOSED  # it is not the shutter
    for amp, gain in enumerate(GAINS):
        excess = data_median(leaky.pixels, amp) - data_median(clean.pixels, amp)
        expected = flux * exptime_s / gain
        assert 0.8 * expected < excess < 1.2 * expected, (amp, excess, expected)


def test_shutter_stuck_open(own_sim: SimProcess) -> None:
    ccd = ArchonCcdController.from_config(config(own_sim.urls["ccd"]))
    try:
        ccd.connect()
        ccd.close_shutter()  # healthy first
        inject(own_sim, kind="shutter_stuck_open")
        with pytest.raises(DeviceError) as error:
            ccd.close_shutter()
        assert "shutter reads OPEN" in str(error.value)
        assert "expected CLOSED" in str(error.value)
        info = take(ccd).info  # a dark taken anyway carries the evidence
        assert info.dark
        assert info.shutter_max is ShutterState.OPEN
        assert ccd.shutter() is ShutterState.OPEN
    finally:
        ccd.close_link()


# -- the line itself ---------------------------------------------------------


def test_second_program_cannot_use_the_ccd(
    urls: Urls, ccd: ArchonCcdController
) -> None:
    intruder = ArchonCcdController.from_config(config(urls.ccd, retries=0))
    with pytest.raises((LinkError, DeviceTimeout)):
        intruder.connect()  # the controller serves one client
    intruder.close_link()
    assert ccd.status().state is IDLE  # the first one unharmed


def test_stopped_simulator_is_a_typed_error_not_a_hang(own_sim: SimProcess) -> None:
    ccd = ArchonCcdController.from_config(config(own_sim.urls["ccd"], retries=1))
    try:
        ccd.connect()
        own_sim.close()
        with pytest.raises(DeviceError) as error:
            ccd.status()
        assert isinstance(error.value, (LinkError, DeviceTimeout))
        assert own_sim.urls["ccd"] in str(error.value)
    finally:
        ccd.close_link()

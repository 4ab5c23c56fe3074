"""The Archon driver's commands and failure paths, on a simulated controller.

Connecting, the exposure's states, the link's faults on text replies, the
shutter and the CCD temperature; readouts are in ``test_archon_readout.py``.
The controller is a real :class:`~simulators.archon.ArchonModel` served over
loopback TCP on a clock the tests advance (``archon_rig.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pytest

from drivers.archon import MAX_EXPTIME_S
from drivers.archon_link import ArchonRefused
from drivers.errors import ConfigError, DeviceError, DeviceTimeout, ProtocolError
from drivers.identity import DeviceIdentity
from drivers.interfaces import ShutterState
from drivers.protocol.archon_acf import parse_acf
from drivers.transport import LinkError
from simulators.archon import MEGARA_ACF
from simulators.archon_hardware import Readings, status_values, system_values
from simulators.faults import FaultKind
from tests.unit.drivers.archon_rig import (
    EXPOSING,
    IDLE,
    NOMINAL_K,
    READING,
    READOUT_S,
    READY,
    RESET,
    Rig,
    frame_status,
    take,
)

# -- connecting ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("backplane", "simulated"),
    [("53494D554C415445", True), ("0000A1B2C3D4E5F6", False)],
)
def test_connect_identifies_the_controller_and_resets_its_timing(
    make_rig: Callable[..., Rig],
    monkeypatch: pytest.MonkeyPatch,
    backplane: str,
    simulated: bool,
) -> None:
    system = system_values() | {"BACKPLANE_ID": backplane}
    monkeypatch.setattr("simulators.archon.system_values", lambda: system)
    rig = make_rig()
    ccd = rig.controller()
    with pytest.raises(DeviceError, match=r"call connect\(\) first"):
        ccd.identity()
    assert ccd.connect() == "1.0.1104"
    assert ccd.identity() == DeviceIdentity(
        device="ccd",
        url=rig.server.url,
        product="STA-ARCHON-1",
        firmware="1.0.1104",
        simulated=simulated,
    )
    assert rig.sent[:2] == ["SYSTEM", "STATUS"]
    rconfig = [t for t in rig.sent if t.startswith("RCONFIG")]
    # Read in windows of 64 lines until one comes back empty, not all 16384.
    windows = math.ceil(len(parse_acf(MEGARA_ACF.read_text())) / 64) + 1
    assert rconfig == [f"RCONFIG{n:04X}" for n in range(64 * windows)]
    assert rig.sent[2 + len(rconfig) :] == RESET


def test_a_controller_without_a_heaterx_in_slot_2_is_refused(
    make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    system = system_values() | {"MOD2_TYPE": "0"}
    monkeypatch.setattr("simulators.archon.system_values", lambda: system)
    rig = make_rig()
    with pytest.raises(DeviceError, match=r"module type '0' in slot 2.*HeaterX"):
        rig.controller().connect()
    assert rig.sent == ["SYSTEM"]


@pytest.mark.parametrize(
    ("line", "edited", "named"),
    [
        ("LINECOUNT=2106", "LINECOUNT=1053", "frames of 4196 x 2106 pixels of 16"),
        ("SAMPLEMODE=0", "SAMPLEMODE=1", "frames of 4196 x 4212 pixels of 32"),
        ('PARAMETER1="IntMS=0"', "PARAMETER1=", "declares IntMS"),
        ('PARAMETER5="OpenShutter=0"', "PARAMETER5=", "declares OpenShutter"),
    ],
)
def test_another_acf_is_refused_at_connect_before_touching_the_timing(
    make_rig: Callable[..., Rig], line: str, edited: str, named: str
) -> None:
    acf = MEGARA_ACF.read_text()
    assert acf.count(f"\n{line}\n") == 1
    rig = make_rig(acf=acf.replace(f"\n{line}\n", f"\n{edited}\n"))
    with pytest.raises(DeviceError) as info:
        rig.controller().connect()
    message = str(info.value)
    assert "holds another configuration" in message
    assert named in message
    assert "load MEGARA's ACF" in message
    assert "HOLDTIMING" not in rig.sent


def test_power_not_good_is_refused_at_connect_and_later(rig: Rig) -> None:
    rig.model.power_good = False
    with pytest.raises(DeviceError, match="POWER=4, POWERGOOD=0; expected") as info:
        rig.controller().connect()
    assert not isinstance(info.value, DeviceTimeout)
    assert rig.sent == ["SYSTEM", "STATUS"]  # not retried, nothing set
    rig.drivers[0].close_link()  # the controller serves one client
    rig.model.power_good = True
    ccd = rig.connected()
    rig.model.power_good = False
    mark = len(rig.sent)
    with pytest.raises(DeviceError, match="POWERGOOD=0"):
        ccd.expose(1.0)
    assert rig.since(mark) == ["STATUS"]  # no exposure started


def test_connect_resets_an_exposure_left_running(rig: Rig) -> None:
    killed = rig.connected()
    killed.expose(100.0)
    rig.clock.advance(30.0)
    killed.close_link()  # a run killed mid-integration
    ccd = rig.connected()
    rig.clock.advance(500.0)  # its integration and readout would be over
    status = ccd.status()
    assert (status.state, status.frame) == (IDLE, 0)
    assert frame_status(ccd).latest_complete() is None
    assert rig.model.record(1) is None  # it was never read out


# -- one exposure, as the driver sees it -----------------------------------------


def test_states_idle_exposing_reading_ready_then_idle(rig: Rig) -> None:
    ccd = rig.connected()
    idle = ccd.status()
    assert (idle.state, idle.frame, idle.exptime_s) == (IDLE, 0, 0.0)
    ccd.expose(10.0, dark=True)
    rig.clock.advance(4.0)
    exposing = ccd.status()
    assert (exposing.state, exposing.dark, exposing.exptime_s) == (EXPOSING, True, 10.0)
    assert exposing.elapsed_s == pytest.approx(4.0, abs=1e-6)
    rig.clock.advance(7.0)
    reading = ccd.status()
    assert (reading.state, reading.frame, reading.elapsed_s) == (READING, 1, 10.0)
    rig.clock.advance(READOUT_S)
    ready = ccd.status()
    assert (ready.state, ready.frame) == (READY, 1)
    mark = len(rig.sent)
    ccd.clear()
    assert rig.since(mark) == ["LOCK0"]
    after = ccd.status()
    assert (after.state, after.frame) == (IDLE, 1)


def test_expose_sets_the_timing_parameters_and_releases_once(rig: Rig) -> None:
    ccd = rig.connected()
    mark = len(rig.sent)
    ccd.expose(2.5, dark=False)
    assert rig.since(mark) == [
        "STATUS",
        "FRAME",
        *RESET[:-2],
        "FASTLOADPARAM OpenShutter 1",
        "FASTLOADPARAM IntCS 250",
        "FASTLOADPARAM IntMS 0",
        "FASTLOADPARAM ReadOut 1",
        "FASTLOADPARAM Exposures 1",
        "RELEASETIMING",
        "FRAME",
    ]
    assert ccd.status().dark is False


@pytest.mark.parametrize("exptime_s", [-0.5, math.nan, math.inf, MAX_EXPTIME_S + 0.01])
def test_exposure_time_out_of_range_sends_nothing(rig: Rig, exptime_s: float) -> None:
    ccd = rig.connected()
    mark = len(rig.sent)
    with pytest.raises(ConfigError, match=f"0 to {MAX_EXPTIME_S}"):
        ccd.expose(exptime_s)
    assert rig.since(mark) == []


# -- link faults on text replies -----------------------------------------------------

LINK_FAULTS = [
    (FaultKind.NO_REPLY, {}),
    (FaultKind.GARBLED_REPLY, {}),
    # Late by one and a half reply timeouts (1 s): the first attempt has
    # given up, the second has not.
    (FaultKind.LATE_REPLY, {"delay_s": 1.5}),
]


@pytest.mark.parametrize(("kind", "params"), LINK_FAULTS)
def test_a_link_fault_on_status_costs_one_retry(
    rig: Rig, kind: FaultKind, params: dict[str, float]
) -> None:
    ccd = rig.connected(reply_timeout_s=1.0)
    mark = len(rig.sent)
    rig.arm(kind, params=params)
    assert ccd.status().state is IDLE
    assert rig.fired(kind) == 1
    assert rig.since(mark) == ["STATUS", "STATUS", "FRAME"]
    assert ccd.retries_used == 1


@pytest.mark.parametrize("kind", [FaultKind.NO_REPLY, FaultKind.GARBLED_REPLY])
def test_a_link_fault_in_the_pipelined_config_read_is_recovered_and_counted(
    rig: Rig, kind: FaultKind
) -> None:
    rig.arm(kind, after_commands=5)  # the reply to RCONFIG0003
    ccd = rig.connected()
    assert rig.fired(kind) == 1
    assert rig.sent.count("RCONFIG0003") == 2
    assert rig.sent[-len(RESET) :] == RESET  # the configuration was accepted
    assert ccd.retries_used == 1


@pytest.mark.parametrize("text", ["FASTLOADPARAM Exposures 1", "RELEASETIMING"])
def test_a_lost_reply_during_expose_is_sent_again_and_exposes_once(
    rig: Rig, text: str
) -> None:
    ccd = rig.connected()
    mark = len(rig.sent)
    ccd.expose(10.0)  # a rehearsal, to find the command among those sent
    skip = rig.since(mark).index(text)
    ccd.abort()  # while integrating: no frame
    mark = len(rig.sent)
    rig.arm(FaultKind.NO_REPLY, skip=skip)
    assert take(rig, ccd) == [EXPOSING, EXPOSING, READING, READY]
    assert rig.since(mark).count(text) == 2
    assert ccd.retries_used == 1
    rig.clock.advance(10 * READOUT_S)
    assert ccd.status().frame == 1  # one exposure, not two
    assert rig.model.frames.frame_count == 1


def test_every_reply_lost_is_a_timeout_after_retries_plus_one_attempts(
    rig: Rig,
) -> None:
    ccd = rig.connected()
    mark = len(rig.sent)
    rig.arm(FaultKind.NO_REPLY, times=10)
    with pytest.raises(DeviceTimeout) as info:
        ccd.status()
    message = str(info.value)
    assert message.startswith(f"ccd: no valid reply to STATUS on {rig.server.url}")
    assert "after 3 attempts" in message
    assert isinstance(info.value.__cause__, DeviceTimeout)
    assert rig.since(mark) == ["STATUS"] * 3  # one retry loop, not 3 x 3


def test_garbage_every_time_is_a_protocol_error(rig: Rig) -> None:
    ccd = rig.connected(retries=1)
    mark = len(rig.sent)
    rig.arm(FaultKind.GARBLED_REPLY, times=2)
    with pytest.raises(ProtocolError, match="2 unusable replies to STATUS"):
        ccd.status()
    assert rig.since(mark) == ["STATUS"] * 2


def test_a_refusal_is_raised_at_once_and_not_retried(rig: Rig) -> None:
    ccd = rig.connected()
    mark = len(rig.sent)
    with pytest.raises(ArchonRefused) as info:
        ccd.archon.command("LOCK7")  # there are three buffers
    assert isinstance(info.value, DeviceError)
    assert info.value.command == "LOCK7"
    assert re.search(r"refused LOCK7 \(\?[0-9A-F]{2}\)", str(info.value))
    assert rig.since(mark) == ["LOCK7"]
    assert ccd.retries_used == 0


def test_a_parameter_the_acf_lacks_is_a_device_error_naming_it(rig: Rig) -> None:
    ccd = rig.connected()
    del rig.model.core.params["INTMS"]  # as if an ACF without it had been loaded
    mark = len(rig.sent)
    with pytest.raises(DeviceError, match="declares no parameter IntMS") as info:
        ccd.expose(1.0)
    assert isinstance(info.value.__cause__, ArchonRefused)
    assert rig.since(mark).count("FASTLOADPARAM IntMS 0") == 1
    assert "RELEASETIMING" not in rig.since(mark)


def test_status_without_the_ccd_sensor_is_a_protocol_error(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    ccd = rig.connected()

    def without_tempa(readings: Readings) -> dict[str, str]:
        values = status_values(readings)
        del values["MOD2/TEMPA"]
        return values

    monkeypatch.setattr("simulators.archon.status_values", without_tempa)
    with pytest.raises(
        ProtocolError, match="lacks a usable MOD2/DINPUTS or MOD2/TEMPA"
    ):
        ccd.temperature()


def test_a_stopped_controller_is_a_link_error_not_a_hang(rig: Rig) -> None:
    ccd = rig.connected()
    rig.server.close()
    with pytest.raises(LinkError) as info:
        ccd.status()
    assert f"{rig.server.url} failed 3 times during STATUS" in str(info.value)


# -- the shutter and the CCD temperature ------------------------------------------


def test_close_shutter_sets_the_parameter_and_reads_the_switches(rig: Rig) -> None:
    ccd = rig.connected()
    mark = len(rig.sent)
    ccd.close_shutter()
    assert rig.since(mark) == ["FASTLOADPARAM OpenShutter 0", "STATUS"]
    assert ccd.shutter() is ShutterState.CLOSED


def test_close_shutter_stuck_open_is_a_device_error(rig: Rig) -> None:
    ccd = rig.connected()
    rig.arm(FaultKind.SHUTTER_STUCK_OPEN)
    with pytest.raises(DeviceError) as info:
        ccd.close_shutter()
    message = str(info.value)
    assert f"shutter reads OPEN on {rig.server.url}" in message
    assert "expected CLOSED; do not take darks" in message
    assert ccd.shutter() is ShutterState.OPEN  # for good


@pytest.mark.parametrize("kelvin", [149.0, 195.5])
def test_temperature_out_of_range_is_refused_naming_both(
    make_rig: Callable[..., Rig], kelvin: float
) -> None:
    rig = make_rig(temperature_k=kelvin)
    ccd = rig.connected(temperature_range_k=(150.0, 180.0))
    with pytest.raises(DeviceError) as info:
        ccd.check_temperature()
    assert f"CCD temperature {kelvin:.2f} K" in str(info.value)
    assert "expected 150.00 to 180.00 K" in str(info.value)
    mark = len(rig.sent)
    with pytest.raises(DeviceError, match=f"CCD temperature {kelvin:.2f} K"):
        ccd.expose(1.0)  # the Archon itself would expose at any temperature
    assert rig.since(mark) == ["STATUS"]


def test_temperature_in_range_is_returned(rig: Rig) -> None:
    assert rig.connected().check_temperature() == pytest.approx(NOMINAL_K, abs=1e-3)

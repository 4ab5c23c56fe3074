"""Fault scenarios: parsing, validation and when each fault fires."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from drivers.errors import ConfigError
from simulators.clock import SimClock
from simulators.faults import Fault, FaultBook, FaultKind, load_scenario


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


def test_scenario_round_trip(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
faults:
  - {device: cover_left, kind: cover_jam, after_commands: 3}
  - device: ccd
    kind: bad_crc
    on_readout: 2
    params: {block: 10}
  - {device: ccd, kind: temperature_excursion, at_time: 1800,
     params: {delta_k: 12.0, duration_s: 600.0}}
""",
    )
    faults = load_scenario(path)
    assert [f.kind for f in faults] == [
        FaultKind.COVER_JAM,
        FaultKind.BAD_CRC,
        FaultKind.TEMPERATURE_EXCURSION,
    ]
    assert faults[1].param("block", 0) == 10
    assert faults[2].at_time == 1800.0
    assert faults[0].to_dict() == {
        "device": "cover_left",
        "kind": "cover_jam",
        "after_commands": 3,
    }


def test_empty_scenario_is_no_fault(tmp_path: Path) -> None:
    assert load_scenario(write(tmp_path, "")) == []
    assert load_scenario(write(tmp_path, "faults: []")) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("faults: [1]", "expected a mapping"),
        ("faults:\n  - {kind: no_reply}", "missing required key 'device'"),
        ("faults:\n  - {device: ccd, kind: no_reply, times: 0}", "times must be >= 1"),
        ("faults:\n  - {device: ccd, kind: no_reply, times: 1.5}", "must be an int"),
        ("faults:\n  - {device: ccd, kind: no_reply, at_time: -1}", "at_time"),
        ("faults:\n  - {device: ccd, kind: no_reply, at_time: .inf}", "at_time"),
        ("faults:\n  - {device: ccd, kind: no_reply, after_commands: -2}", ">= 0"),
        ("faults:\n  - {device: ccd, kind: no_reply, params: [1]}", "params"),
        ("faults:\n  - " + "[" * 5000 + "]" * 5000, "nested too deeply"),
        (
            "faults:\n  - {device: ccd, kind: no_reply, at_time: " + "9" * 5000 + "}",
            "number too large",
        ),
    ],
)
def test_invalid_scenarios(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_scenario(path)
    assert str(path) in str(info.value)


def test_after_commands_fires_on_the_next_command_then_is_spent() -> None:
    book = FaultBook([Fault(device="ccd", kind=FaultKind.NO_REPLY, after_commands=3)])
    fired = [
        book.fire("ccd", FaultKind.NO_REPLY, commands=n, sim_time=0.0) is not None
        for n in range(1, 7)
    ]
    assert fired == [False, False, False, True, False, False]
    assert book.pending() == []
    assert len(book.fired) == 1


def test_fault_is_for_its_device_and_kind_only() -> None:
    book = FaultBook([Fault(device="cover_left", kind=FaultKind.COVER_JAM)])
    assert book.fire("cover_right", FaultKind.COVER_JAM, commands=1, sim_time=0) is None
    assert book.fire("cover_left", FaultKind.COVER_SLOW, commands=1, sim_time=0) is None
    assert book.fire("cover_left", FaultKind.COVER_JAM, commands=1, sim_time=0)


def test_times_and_readout_trigger() -> None:
    book = FaultBook(
        [Fault(device="ccd", kind=FaultKind.BAD_CRC, on_readout=2, times=2)]
    )
    kw = {"commands": 10, "sim_time": 5.0}
    assert book.fire("ccd", FaultKind.BAD_CRC, readout=1, **kw) is None
    assert book.fire("ccd", FaultKind.BAD_CRC, readout=2, **kw) is not None
    assert book.fire("ccd", FaultKind.BAD_CRC, readout=2, **kw) is not None
    assert book.fire("ccd", FaultKind.BAD_CRC, readout=2, **kw) is None


def test_windowed_fault_lasts_its_duration() -> None:
    fault = Fault(
        device="ccd",
        kind=FaultKind.TEMPERATURE_EXCURSION,
        at_time=100.0,
        params={"delta_k": 8.0, "duration_s": 50.0},
    )
    book = FaultBook([fault])
    kind = FaultKind.TEMPERATURE_EXCURSION

    def active(t: float) -> bool:
        return book.active("ccd", kind, commands=1, sim_time=t) is not None

    assert [active(t) for t in (99.0, 100.0, 149.0, 150.0, 151.0, 120.0)] == [
        False,
        True,
        True,
        True,
        False,
        False,
    ]


def test_clock_scale_and_validation() -> None:
    clock = SimClock(1000.0)
    assert clock.to_wall(3600.0) == pytest.approx(3.6)
    before = clock.now()
    clock.advance(500.0)
    assert clock.now() - before >= 500.0
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match="time scale"):
            SimClock(bad)


def test_windowed_fault_on_one_readout_only() -> None:
    book = FaultBook([Fault(device="ccd", kind=FaultKind.LIGHT_LEAK, on_readout=2)])

    def active(readout: int) -> bool:
        found = book.active(
            "ccd", FaultKind.LIGHT_LEAK, commands=1, sim_time=0.0, readout=readout
        )
        return found is not None

    assert [active(k) for k in (1, 2, 2, 3, 4)] == [False, True, True, False, False]


def test_a_scenario_that_is_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00faults: []")
    with pytest.raises(ConfigError, match="not a UTF-8 text file") as info:
        load_scenario(path)
    assert str(path) in str(info.value)

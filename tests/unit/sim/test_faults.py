"""Fault scenarios: parsing, validation and when each fault fires."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.errors import ConfigError
from simulators.clock import SimClock
from simulators.faults import (
    PARAMS,
    TRIGGERS,
    Fault,
    FaultBook,
    FaultKind,
    ParamRange,
    fault_from_dict,
    load_scenario,
)
from simulators.faults import main as faults_main

OPERATIONS = Path(__file__).resolve().parents[3] / "docs" / "operations.md"


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
    kind: short_fetch
    on_readout: 2
    params: {fraction: 0.25}
  - {device: ccd, kind: temperature_excursion, at_time: 1800,
     params: {delta_k: 12.0, duration_s: 600.0}}
""",
    )
    faults = load_scenario(path)
    assert [f.kind for f in faults] == [
        FaultKind.COVER_JAM,
        FaultKind.SHORT_FETCH,
        FaultKind.TEMPERATURE_EXCURSION,
    ]
    assert faults[1].param("fraction", 0) == 0.25
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
        (
            "faults:\n  - {device: ccd, kind: no_reply, times: 0}",
            r"times must be an integer in \[1, 1000000\]",
        ),
        ("faults:\n  - {device: ccd, kind: no_reply, times: 1.5}", "must be an int"),
        ("faults:\n  - {device: ccd, kind: no_reply, at_time: -1}", "at_time"),
        ("faults:\n  - {device: ccd, kind: no_reply, at_time: .inf}", "at_time"),
        (
            "faults:\n  - {device: ccd, kind: no_reply, after_commands: -2}",
            r"in \[0, 1000000000\]",
        ),
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
        [Fault(device="ccd", kind=FaultKind.SHORT_FETCH, on_readout=2, times=2)]
    )
    kw = {"commands": 10, "sim_time": 5.0}
    assert book.fire("ccd", FaultKind.SHORT_FETCH, readout=1, **kw) is None
    assert book.fire("ccd", FaultKind.SHORT_FETCH, readout=2, **kw) is not None
    assert book.fire("ccd", FaultKind.SHORT_FETCH, readout=2, **kw) is not None
    assert book.fire("ccd", FaultKind.SHORT_FETCH, readout=2, **kw) is None


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


# -- parameter ranges ---------------------------------------------------------------

RANGED = [
    (kind, name, allowed)
    for kind, names in PARAMS.items()
    for name, allowed in names.items()
]


def inject(kind: FaultKind, **params: object) -> Fault:
    return fault_from_dict(
        {"device": "ccd", "kind": kind.value, "params": params}, where="fault"
    )


@pytest.mark.parametrize(
    ("kind", "name", "allowed"), RANGED, ids=lambda v: getattr(v, "value", str(v))
)
def test_every_parameter_is_accepted_at_its_bounds_and_refused_past_them(
    kind: FaultKind, name: str, allowed: ParamRange
) -> None:
    low, high = allowed.low, allowed.high
    assert inject(kind, **{name: low}).params[name] == low
    assert inject(kind, **{name: high}).params[name] == high
    step = 1 if allowed.integer else (high - low) * 1e-6
    for bad in (low - step, high + step, math.inf, math.nan, True, "1"):
        with pytest.raises(ConfigError) as info:
            inject(kind, **{name: bad})
        message = str(info.value)
        assert f"parameter {name!r} must be" in message
        assert allowed.describe() in message
        assert "\n" not in message


@pytest.mark.parametrize("delay", [1e6, -1.0, 120.5])
def test_a_late_reply_of_a_million_seconds_or_a_negative_one_is_refused(
    delay: float,
) -> None:
    with pytest.raises(ConfigError, match=r"'delay_s' must be a number in \[0, 120\]"):
        inject(FaultKind.LATE_REPLY, delay_s=delay)


def test_a_short_fetch_keeps_a_fraction_of_a_frame() -> None:
    with pytest.raises(ConfigError, match=r"'fraction' must be a number in \[0, 1\]"):
        inject(FaultKind.SHORT_FETCH, fraction=1.5)
    assert inject(FaultKind.SHORT_FETCH, fraction=0.25).param("fraction", 0) == 0.25


@pytest.mark.parametrize(
    ("kind", "name"),
    [(FaultKind.LATE_REPLY, "delay"), (FaultKind.NO_REPLY, "delay_s")],
)
def test_an_unknown_parameter_is_refused_naming_the_known_ones(
    kind: FaultKind, name: str
) -> None:
    with pytest.raises(ConfigError, match=f"unknown parameter {name!r}") as info:
        inject(kind, **{name: 1.0})
    known = ", ".join(PARAMS[kind]) or "none"
    assert str(info.value).endswith(f"{kind.value} takes {known}")


@pytest.mark.parametrize(("name", "allowed"), TRIGGERS.items())
def test_every_trigger_is_bounded(name: str, allowed: ParamRange) -> None:
    high = allowed.high
    raw = {"device": "ccd", "kind": "no_reply", name: high}
    assert fault_from_dict(raw).to_dict()[name] == high
    too_big = high + 1 if allowed.integer else high * 2
    with pytest.raises(ConfigError, match=f"{name} must be"):
        fault_from_dict({**raw, name: too_big})


def test_operations_document_gives_every_range() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    for kind, name, allowed in RANGED:
        low, high = allowed.describe().partition("[")[2].rstrip("]").split(", ")
        assert f"`{name}` {low} to {high}" in text, (kind, name)


# -- on_command: faults placed by protocol events -------------------------------


def test_on_command_fires_from_the_nth_command_of_that_name() -> None:
    book = FaultBook(
        [Fault(device="ccd", kind=FaultKind.NO_REPLY, on_command="FETCH", nth=2)]
    )

    def fire() -> Fault | None:
        return book.fire("ccd", FaultKind.NO_REPLY, commands=99, sim_time=0.0)

    book.received("ccd", "FETCH")
    assert fire() is None
    book.received("ccd", "STATUS")
    book.received("cover_left", "FETCH")  # another device's count
    assert fire() is None
    book.received("ccd", "FETCH")
    assert fire() is not None
    assert fire() is None  # spent


def test_on_command_alone_means_the_first_and_windows_open_there() -> None:
    leak = Fault(device="ccd", kind=FaultKind.LIGHT_LEAK, on_command="RELEASETIMING")
    book = FaultBook([leak])
    args = {"commands": 5, "sim_time": 1.0}
    assert book.active("ccd", FaultKind.LIGHT_LEAK, **args) is None
    book.received("ccd", "RELEASETIMING")
    assert book.active("ccd", FaultKind.LIGHT_LEAK, **args) is leak
    assert leak.to_dict() == {
        "device": "ccd",
        "kind": "light_leak",
        "on_command": "RELEASETIMING",
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"device": "ccd", "on_command": "CLOSE"},
            "on_command 'CLOSE' is no command of ccd",
        ),
        ({"device": "cover_left", "on_command": "FETCH"}, "no command of cover_left"),
        ({"device": "ccd", "nth": 2}, "nth counts on_command; give both"),
        (
            {"device": "ccd", "on_command": "FETCH", "nth": 0},
            "nth must be an integer in [1, 1000000000]",
        ),
        (
            {"device": "ccd", "on_command": "FETCH", "nth": 1.5},
            "nth must be an integer",
        ),
        ({"device": "ccd", "on_command": 3}, "on_command must be a command name"),
    ],
)
def test_on_command_is_checked(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        fault_from_dict({"kind": "no_reply", **raw})


def test_on_command_round_trips() -> None:
    raw = {
        "device": "cover_right",
        "kind": "no_reply",
        "on_command": "STATUS",
        "nth": 5,
    }
    assert fault_from_dict(raw).to_dict() == raw


# -- python -m simulators.faults check ------------------------------------------


def test_check_reads_json_batches_and_names_the_first_mistake(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good = [["c.yaml, run 'a', faults", [{"device": "ccd", "kind": "no_reply"}]]]
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(good)))
    assert faults_main(["check"]) == 0
    bad = [*good, ["c.yaml, run 'b', faults", [{"device": "ccd", "kind": "melt"}]]]
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(bad)))
    assert faults_main(["check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("c.yaml, run 'b', faults, fault #1: unknown fault kind")


def test_check_scenario_files_and_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "faults: [{device: ccd, kind: no_reply, times: 0}]\n")
    assert faults_main(["check", str(path)]) == 2
    assert "times must be an integer in [1, 1000000]" in capsys.readouterr().err
    assert faults_main([]) == 2
    assert capsys.readouterr().err.startswith("usage: python -m simulators.faults")


def test_check_is_a_module_entry_point(tmp_path: Path) -> None:
    """What the campaign runs: ``python -m simulators.faults check`` (stdin JSON)."""
    done = subprocess.run(
        [sys.executable, "-m", "simulators.faults", "check"],
        input=json.dumps([["here", [{"device": "dome", "kind": "no_reply"}]]]),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("here, fault #1: fault device 'dome' is unknown")

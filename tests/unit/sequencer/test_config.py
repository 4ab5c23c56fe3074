"""Instrument configuration: examples load, every invalid file is refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.errors import ConfigError
from sequencer.config import load_config

ROOT = Path(__file__).parents[3]
INVALID = sorted((ROOT / "tests/data/config").glob("invalid_*.toml"))

EXPECTED = {
    "invalid_time_scale.toml": "[simulator] time_scale: got -5.0; expected a number "
    "from 0.001 to 1e+06",
    "invalid_devices_missing.toml": "missing: ['cover_left', 'cover_right']",
    "invalid_retries.toml": "[ccd] retries: got 99; expected an integer from 0 to 20",
    "invalid_unknown_key.toml": "[cover]: unknown key(s) motion_timeout",
    "invalid_type.toml": "[run] retake_limit: got 'two'; expected an integer from 0 "
    "to 100",
    "invalid_both.toml": "either [devices] or [simulator]",
    "invalid_table.toml": "unknown table(s) dome",
    "invalid_syntax.toml": "not valid TOML",
    "invalid_temperature_range.toml": "expected [low, high] with low < high",
    "invalid_sim_temperature.toml": "[simulator] ccd_temperature_k: got 20.0; "
    "expected a temperature in kelvin from 50 to 350",
}


def test_every_invalid_example_has_an_expected_message() -> None:
    assert {p.name for p in INVALID} == set(EXPECTED)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_configs_are_refused(path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert EXPECTED[path.name] in str(info.value)
    assert str(path) in str(info.value)


def test_default_is_the_simulators() -> None:
    config = load_config(None)
    assert config.simulated
    assert config.time_scale == 1000.0


def test_examples_load() -> None:
    sim = load_config(ROOT / "examples/instrument-simulators.toml")
    hw = load_config(ROOT / "examples/instrument-hardware.toml")
    assert sim.simulated
    assert not hw.simulated
    assert hw.devices == {
        "ccd": "socket://megara-archon:4242",
        "cover_left": "/dev/ttyUSB1",
        "cover_right": "/dev/ttyUSB2",
    }
    assert hw.ccd_config("x").block_timeout_s == 5.0
    assert hw.cover_config("y", "left").motion_timeout_s == 30.0
    assert hw.time_scale == 1.0
    assert "--time-scale" in sim.simulator.argv()


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(ROOT / "nope.toml")

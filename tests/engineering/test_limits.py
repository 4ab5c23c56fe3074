"""The [verify] table: limits per figure, their checks, and judging figures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from drivers.errors import ConfigError
from sequencer.config import load_config, parse_config
from sequencer.engineering import plots
from sequencer.engineering.figures import Figure
from sequencer.engineering.limits import DEFAULT_HISTORY, FIGURES, Limit
from sequencer.engineering.verify import FAIL, PASS, UNCHECKED, UNMEASURED, judge

DATA = Path(__file__).parent / "data"

INVALID = {
    "invalid_verify_figure.toml": "unknown figure(s) dark_currant; allowed: dark_current",
    "invalid_verify_order.toml": "read_noise: min 4.5 exceeds max 2",
    "invalid_verify_bound.toml": "hot_pixels.max: got 'many'; expected a number",
    "invalid_verify_shape.toml": "dark_current: got 5.0; expected a table",
    "invalid_verify_key.toml": "unknown key(s) histroy; allowed: history, limits",
}


def test_every_invalid_file_has_a_test() -> None:
    assert {p.name for p in DATA.glob("invalid_*.toml")} == set(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_verify_table_is_one_line_naming_the_file(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(DATA / name)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(DATA / name))
    assert INVALID[name] in message


def test_defaults_without_a_verify_table() -> None:
    settings = parse_config({}, source="x", base=Path("cfg")).verify
    assert settings.history == DEFAULT_HISTORY
    for name, spec in FIGURES.items():
        assert settings.limit(name) == spec.default


def test_given_limits_replace_defaults_and_history_is_relative_to_the_file() -> None:
    settings = load_config(DATA / "tight_limits.toml").verify
    assert settings.limit("dark_current") == Limit(max=0.1)
    assert settings.limit("read_noise") == FIGURES["read_noise"].default
    assert settings.history == DATA / "tight-history.sqlite"


@pytest.mark.parametrize(
    ("limit", "value", "allowed"),
    [
        (Limit(2.0, 4.5), 2.0, True),
        (Limit(2.0, 4.5), 4.5, True),
        (Limit(2.0, 4.5), 1.999, False),
        (Limit(2.0, 4.5), 4.501, False),
        (Limit(max=0), 0.0, True),
        (Limit(max=0), 1.0, False),
        (Limit(min=1.0), 1e9, True),
        (Limit(2.0, 4.5), math.nan, False),
    ],
)
def test_limit_bounds_are_inclusive(limit: Limit, value: float, allowed: bool) -> None:
    assert limit.allows(value) is allowed


def test_judge_gives_each_status() -> None:
    settings = parse_config(
        {"verify": {"limits": {"read_noise": {"max": 4.0}}}}, source="x", base=Path()
    ).verify
    figures = [
        Figure("read_noise", 1, 3.9, "e-"),
        Figure("read_noise", 2, 4.1, "e-"),
        Figure("cover_close_time", None, None, "s"),
        Figure("ccd_temperature", None, 163.0, "K"),
    ]
    statuses = [c.status for c in judge(figures, settings)]
    assert statuses == [PASS, FAIL, UNMEASURED, UNCHECKED]


def test_missing_matplotlib_is_one_line_saying_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    with pytest.raises(ConfigError) as err:
        plots.pyplot()
    assert str(err.value) == plots.INSTALL_HINT
    assert "pip install 'megara-dark[report]'" in str(err.value)


def test_stretch_ignores_outliers_and_bin_image_averages() -> None:
    rng = __import__("numpy").random.default_rng(5)
    image = rng.normal(10.0, 1.0, size=(64, 64))
    image[0, 0] = 1e6  # one hot pixel must not set the display range
    low, high = plots.stretch(image)
    assert 6.0 < low < 9.0
    assert 11.0 < high < 14.0
    binned = plots.bin_image(image, 8)
    assert binned.shape == (8, 8)
    assert binned[3, 3] == pytest.approx(image[24:32, 24:32].mean())

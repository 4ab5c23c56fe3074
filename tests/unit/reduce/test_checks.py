"""Light-leak check: a warm frame is not a leak; a leak is; levels unbiased."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reduce.checks import (
    Exclusion,
    FrameCheckConfig,
    find_exclusions,
    frame_rate,
    temperature_scale,
)
from reduce.frames import FrameInspection, _clipped_mean
from reduce.geometry import AMPLIFIERS

DARKTIME_S = 900.0
RATE_163_E_S = 2.0 / 3600.0  # 2 e-/pix/h at 163 K, the simulators' detector
CONFIG = FrameCheckConfig()


def _frame(name: str, rate_e_s: float, temperature: float | None) -> FrameInspection:
    """A frame whose sampled level gives ``rate_e_s`` on both amplifiers."""
    levels = tuple(rate_e_s * DARKTIME_S / amp.gain for amp in AMPLIFIERS)
    return FrameInspection(
        path=Path(name),
        header={},
        exptime=DARKTIME_S,
        darktime=DARKTIME_S,
        temperature=temperature,
        simulated=True,
        interlock_ok=True,
        interlock_reason="",
        data_offset=2880,
        sha256="0" * 64,
        checksum="verified",
        overscan=(None, None),  # type: ignore[arg-type]  # not read by the checks
        sample_level=(levels[0], levels[1]),
    )


def _at(temperature: float) -> float:
    """True dark rate at ``temperature`` by the configured law, e-/pix/s."""
    return RATE_163_E_S * temperature_scale(CONFIG, temperature, 163.0)


def test_frame_rate_gives_back_the_rate_it_was_built_from() -> None:
    assert frame_rate(_frame("a", 1e-3, 163.0)) == pytest.approx(1e-3, rel=1e-12)


def test_a_frame_that_is_only_warmer_is_not_a_leak() -> None:
    # 10 K warmer: its rate is 13 times the others', and the law expects it.
    frames = [
        _frame("cold1.fits", _at(163.15), 163.15),
        _frame("warm.fits", _at(173.15), 173.15),
        _frame("cold2.fits", _at(163.15), 163.15),
    ]
    assert find_exclusions(frames, True, CONFIG) == []


def test_a_leak_in_a_warm_block_is_still_found() -> None:
    leak = 0.005  # e-/pix/s of light, above leak_excess_e_s
    frames = [_frame(f"f{k}.fits", _at(170.0), 170.0) for k in range(4)]
    frames.append(_frame("leaky.fits", _at(170.0) + leak, 170.0))
    excluded = find_exclusions(frames, True, CONFIG)
    assert [(e.name, e.kind) for e in excluded] == [
        ("leaky.fits", Exclusion.LIGHT_LEAK)
    ]
    assert "170.0 K" in excluded[0].reason


def test_a_frame_far_above_the_closed_cover_limit_is_a_leak_at_any_count() -> None:
    frames = [
        _frame("a.fits", _at(163.0), 163.0),
        _frame("lit.fits", 10 * CONFIG.leak_rate_e_s, 163.0),
    ]
    excluded = find_exclusions(frames, True, CONFIG)
    assert [e.name for e in excluded] == ["lit.fits"]
    assert "closed-cover limit" in excluded[0].reason


def test_the_limit_follows_silicon_near_163_k() -> None:
    # d ln D / dT = 1.5 / T + Eg / (2 k T^2) with Eg = 1.16 eV at 163 K.
    k_ev = 8.617333e-5
    slope = 1.5 / 163.0 + 1.16 / (2 * k_ev * 163.0**2)
    assert temperature_scale(CONFIG, 173.0, 163.0) == pytest.approx(
        np.exp(10 * slope), rel=0.1
    )
    assert temperature_scale(CONFIG, None, 163.0) == 1.0


def test_the_sampled_level_is_unbiased_below_one_adu() -> None:
    # Integer counts: 0.3 ADU of dark under 2 ADU of read noise, a few hot
    # pixels and cosmic rays. The median of such a sample snaps to a step.
    rng = np.random.default_rng(163)
    values = np.rint(rng.normal(0.3, 2.0, 135_000)).astype(np.float32)
    values[rng.choice(values.size, 300, replace=False)] += 5000.0
    assert abs(float(np.median(values)) - 0.3) > 0.2
    assert _clipped_mean(values) == pytest.approx(0.3, abs=0.02)

"""The QC judged on data it was not written against: the second detector model.

:mod:`reduce.second_model` was written apart from the reduction and from the
simulators (another glow, another bias structure, another temperature law,
crowded hot pixels, hot column segments, cosmic-ray storms). Sets of its raw
frames go through the production path (:func:`reduce.batch.reduce_block`),
and every figure is compared with the model's truth:

* clean sets (900 s and 3600 s, 5 and 15 frames, with and without CCD
  temperature keywords) are GOOD, and so is the master bias, whose fixed
  roll-off is structure, not a defect;
* dark current within 3 % of the bulk truth (the glow apart), read noise
  within 3 %, the glow's peak within 25 % and where the model puts it;
* the isolated hot pixels (excess over 0.02 e-/s, hot column segments apart)
  within 10 % of the truth in every set, and within 10 % of each other
  across 5 and 15 frames and across 900 s and 3600 s;
* a storm of cosmic rays over 3 frames gives cosmic-ray residuals, not hot
  pixels (hot count within 12 % of the truth), and a PARTIAL flag;
* a warm detector gives a BAD master, with the dark current and the CCD
  temperature in the reason;
* uniform and corner leaks in one frame are found and that frame excluded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from reduce.batch import reduce_block
from reduce.hotpixels import DQ
from reduce.second_model import Leak, Scenario, SecondDetector
from reduce.second_model_sets import SetTruth, write_set

HOT_RATE = 0.02
"""The QA's default hot cut, e-/s (QCThresholds.hot_rate_e_s)."""

DETECTOR = SecondDetector()


@dataclass(frozen=True)
class Reduced:
    """One set of the model, written and reduced."""

    truth: SetTruth
    qa: str
    reasons: tuple[str, ...]
    excluded: tuple[str, ...]
    qc: dict[str, Any]
    product: Path


class Sets:
    """The model's sets, each written and reduced once, on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._done: dict[str, Reduced] = {}
        self.bias = self._reduce(
            "bias", Scenario(kind="bias", n_frames=5, exptime_s=0.0, seed=101)
        )

    def _reduce(self, name: str, scenario: Scenario) -> Reduced:
        truth = write_set(self.root / name, DETECTOR, scenario, prefix=name)
        dark = scenario.kind == "dark"
        result = reduce_block(
            block_id=name,
            mode="MegaraDarkImage" if dark else "MegaraBiasImage",
            frames=list(truth.paths),
            master_bias=self.bias.product if dark else None,
            workdir=self.root / "work",
        )
        task = json.loads((result.folder / "task.json").read_text())
        for path in truth.paths:  # 35 MB each: the products are what is read
            path.unlink()
        return Reduced(
            truth,
            result.qa,
            tuple(result.reasons),
            tuple(e.name for e in result.excluded),
            task["qc"],
            result.product,
        )

    def get(self, name: str, scenario: Scenario) -> Reduced:
        if name not in self._done:
            self._done[name] = self._reduce(name, scenario)
        return self._done[name]


SCENARIOS = {
    "clean_900x5": Scenario(kind="dark", n_frames=5, exptime_s=900.0, seed=21),
    "clean_3600x5": Scenario(kind="dark", n_frames=5, exptime_s=3600.0, seed=22),
    "clean_900x15": Scenario(kind="dark", n_frames=15, exptime_s=900.0, seed=23),
    "no_temperature": Scenario(
        kind="dark", n_frames=5, exptime_s=900.0, temperature_k=None, seed=25
    ),
    "storm_3600x3": Scenario(
        kind="dark", n_frames=3, exptime_s=3600.0, cosmic_rate_scale=25.0, seed=24
    ),
    "warm": Scenario(
        kind="dark", n_frames=5, exptime_s=900.0, temperature_k=185.0, seed=26
    ),
    "uniform_leak": Scenario(
        kind="dark",
        n_frames=5,
        exptime_s=900.0,
        leaks=(Leak(frame=2, shape="uniform", rate_e_per_pix_s=1e-3),),
        seed=27,
    ),
    "corner_leak": Scenario(
        kind="dark",
        n_frames=5,
        exptime_s=900.0,
        leaks=(Leak(frame=3, shape="corner", rate_e_per_pix_s=3e-3, where="top_left"),),
        seed=28,
    ),
}


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> Sets:
    return Sets(tmp_path_factory.mktemp("second_model"))


def reduced(sets: Sets, name: str) -> Reduced:
    return sets.get(name, SCENARIOS[name])


def figure(r: Reduced, amp: int, name: str) -> Any:
    return r.qc["amplifiers"][amp][name]["value"]


def isolated_hot(truth: SetTruth) -> list[int]:
    """Per amplifier, true hot pixels above the cut outside column segments."""
    rate = truth.hot_map()
    column = np.zeros(rate.shape, dtype=bool)
    for c in truth.hot_columns:
        column[c.start : c.stop, c.column] = True
    hot = (rate > HOT_RATE) & ~column
    return [int(hot[:2056].sum()), int(hot[2056:].sum())]


CLEAN = ["clean_900x5", "clean_3600x5", "clean_900x15", "no_temperature"]


def test_the_master_bias_is_good_and_its_structure_no_defect(sets: Sets) -> None:
    assert sets.bias.qa == "GOOD", sets.bias.reasons
    for amp in range(2):
        assert figure(sets.bias, amp, "hot_pixels") == 0
        assert figure(sets.bias, amp, "read_noise") == pytest.approx(
            sets.bias.truth.read_noise_e[amp], rel=0.03
        )
    with fits.open(sets.bias.product) as hdul:
        assert "DQ" not in hdul
        assert "NHOTPIX1" not in hdul[0].header


@pytest.mark.parametrize("name", CLEAN)
def test_clean_sets_are_good_with_true_figures(sets: Sets, name: str) -> None:
    r = reduced(sets, name)
    assert r.qa == "GOOD", r.reasons
    assert r.excluded == ()
    for amp in range(2):
        assert figure(r, amp, "dark_current") == pytest.approx(
            r.truth.dark_e_per_pix_h[amp], rel=0.03
        )
        assert figure(r, amp, "read_noise") == pytest.approx(
            r.truth.read_noise_e[amp], rel=0.03
        )
        assert figure(r, amp, "cosmic_residuals") == 0


@pytest.mark.parametrize("name", CLEAN)
def test_glow_is_its_own_figure_at_the_readout_corner(sets: Sets, name: str) -> None:
    r = reduced(sets, name)
    for amp in range(2):
        peak = figure(r, amp, "glow_peak")
        assert peak == pytest.approx(r.truth.glow_peak_e_per_pix_h[amp], rel=0.25)
        assert peak > 5 * figure(r, amp, "glow_noise")
        row, col = figure(r, amp, "glow_at")
        true_row, true_col = r.truth.glow_location[amp]
        assert abs(row - true_row) <= 64
        assert abs(col - true_col) <= 64


@pytest.mark.parametrize("name", [*CLEAN, "storm_3600x3"])
def test_hot_pixels_are_the_true_ones(sets: Sets, name: str) -> None:
    r = reduced(sets, name)
    tolerance = 0.12 if name.startswith("storm") else 0.10
    for amp, truth in enumerate(isolated_hot(r.truth)):
        assert figure(r, amp, "hot_pixels") == pytest.approx(truth, rel=tolerance)
    column = sum(c.stop - c.start for c in r.truth.hot_columns)
    found = sum(figure(r, amp, "hot_column_pixels") for amp in range(2))
    assert found == pytest.approx(column, rel=0.10)


def test_the_hot_count_does_not_depend_on_frames_or_dark_time(sets: Sets) -> None:
    counts = {
        name: [figure(reduced(sets, name), amp, "hot_pixels") for amp in range(2)]
        for name in ("clean_900x5", "clean_900x15", "clean_3600x5")
    }
    base = counts["clean_900x5"]
    for name in ("clean_900x15", "clean_3600x5"):
        for amp in range(2):
            assert counts[name][amp] == pytest.approx(base[amp], rel=0.10), counts


def test_a_cosmic_ray_storm_leaves_residuals_not_hot_pixels(sets: Sets) -> None:
    r = reduced(sets, "storm_3600x3")
    assert r.qa == "PARTIAL"
    assert any("cosmic-ray residual" in reason for reason in r.reasons), r.reasons
    residuals = [figure(r, amp, "cosmic_residuals") for amp in range(2)]
    assert min(residuals) > 1000
    with fits.open(r.product) as hdul:
        dq = np.asarray(hdul["DQ"].data)
    marked = int(np.count_nonzero(dq & DQ.COSMIC_RESIDUAL))
    assert marked == sum(residuals)
    # Residuals sit where the frames were hit, not on the true hot pixels.
    hot_truth = r.truth.hot_map() > HOT_RATE
    residual_only = (dq & DQ.COSMIC_RESIDUAL) > 0
    assert np.count_nonzero(residual_only & hot_truth) < 0.05 * marked


def test_a_warm_detector_gives_a_bad_master_that_says_why(sets: Sets) -> None:
    r = reduced(sets, "warm")
    assert r.product.exists()
    assert r.qa == "BAD", r.reasons
    assert r.excluded == ()  # warm, not leaking: every frame agrees
    reason = next(x for x in r.reasons if "dark current" in x)
    assert "185." in reason
    assert "K" in reason
    truth = r.truth.dark_e_per_pix_h[0]
    assert figure(r, 0, "dark_current") == pytest.approx(truth, rel=0.03)


def test_without_ccd_temperature_the_qc_says_unknown(sets: Sets) -> None:
    r = reduced(sets, "no_temperature")
    assert r.qc["temperature"]["value"] is None
    warm = reduced(sets, "warm")
    assert warm.qc["temperature"]["value"] == pytest.approx(185.0, abs=0.5)


@pytest.mark.parametrize(("name", "frame"), [("uniform_leak", 2), ("corner_leak", 3)])
def test_a_leaking_frame_is_excluded(sets: Sets, name: str, frame: int) -> None:
    r = reduced(sets, name)
    assert r.excluded == (r.truth.paths[frame].name,)
    assert r.qa == "PARTIAL"
    assert any("leak" in reason for reason in r.reasons), r.reasons
    for amp in range(2):
        assert figure(r, amp, "dark_current") == pytest.approx(
            r.truth.dark_e_per_pix_h[amp], rel=0.03
        )

"""Simulated is never repeated: the run key keys every frame's noise to a session.

Fixed detector properties (hot pixels, bias structure) follow from ``--seed``
alone; a frame's noise and cosmic rays from the seed, the run key and the frame
number. So two sessions with the same seed and different run keys share their
hot pixels but not one frame's noise, and a session restarted with the same
run key and ``--first-frame`` makes the frame it replaces bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from drivers import interfaces as proto
from drivers.archon import ArchonCcdController
from drivers.config import CcdConfig
from simulators.synthesis import DATA_SECTIONS, Detector, DetectorConfig
from tests.simproc import SimProcess

pytestmark = pytest.mark.sim

SEED = 3
EXPTIME_S = 3600.0
ARGS = ("--transport", "tcp", "--time-scale", "10000", "--readout-s", "1")
Frame = npt.NDArray[np.uint16]


def darks(sim: SimProcess, count: int) -> list[Frame]:
    """``count`` one-hour darks read over the wire, in order."""
    ccd = ArchonCcdController.from_config(CcdConfig(url=sim.urls["ccd"]))
    frames = []
    try:
        ccd.connect()
        for _ in range(count):
            ccd.expose(EXPTIME_S, dark=True)
            while ccd.status().state is not proto.ControllerState.READY:
                time.sleep(0.01)
            frames.append(ccd.read_frame().pixels.astype(np.uint16))
            ccd.clear()
    finally:
        ccd.close_link()
    return frames


def noise(frame: Frame, bias: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    rows, cols = DATA_SECTIONS[0]
    return (frame[rows, cols] - bias[rows, None]).ravel()


def test_another_run_key_shares_the_hot_pixels_but_not_the_noise(
    simulators: Callable[..., SimProcess],
) -> None:
    first = simulators(*ARGS, "--seed", str(SEED), "--run-key", "11")
    second = simulators(*ARGS, "--seed", str(SEED), "--run-key", str(2**63 - 1))
    assert (first.info["run_key"], second.info["run_key"]) == (11, 2**63 - 1)
    (a,) = darks(first, 1)
    (b,) = darks(second, 1)
    assert not np.array_equal(a, b)
    truth = Detector(DetectorConfig(seed=SEED)).truth()
    bias = np.asarray(truth.bias_by_row_adu, dtype=np.float64)
    # Independent noise: the frames' residuals about the fixed bias do not
    # correlate (the same frame number of the same seed, two run keys). Hot
    # pixels and cosmic rays are left out: they are not noise.
    ra, rb = noise(a, bias), noise(b, bias)
    bulk = (np.abs(ra) < 15.0) & (np.abs(rb) < 15.0)
    assert np.count_nonzero(bulk) > 0.99 * bulk.size
    assert abs(np.corrcoef(ra[bulk], rb[bulk])[0, 1]) < 0.01
    assert np.corrcoef(ra[bulk], ra[bulk])[0, 1] == pytest.approx(1.0)
    # The fixed hot pixels: every bright one stands out at the same place.
    bright = truth.hot_rates_e_s * EXPTIME_S > 600.0  # > 350 ADU above bias
    rows, cols = truth.hot_rows[bright], truth.hot_cols[bright]
    assert rows.size > 100
    for frame in (a, b):
        assert np.all(frame[rows, cols] > bias[rows] + 150.0)


def test_the_same_run_key_and_first_frame_reproduce_a_frame_bit_for_bit(
    simulators: Callable[..., SimProcess],
) -> None:
    straight = simulators(*ARGS, "--seed", str(SEED), "--run-key", "77")
    frames = darks(straight, 2)
    resumed = simulators(
        *ARGS, "--seed", str(SEED), "--run-key", "77", "--first-frame", "1"
    )
    (again,) = darks(resumed, 1)
    assert np.array_equal(again, frames[1])
    assert not np.array_equal(frames[0], frames[1])


def test_without_a_run_key_each_session_draws_its_own(
    simulators: Callable[..., SimProcess],
) -> None:
    sims = [simulators(*ARGS) for _ in range(2)]
    keys = [sim.info["run_key"] for sim in sims]
    assert all(isinstance(k, int) and 0 <= k < 2**63 for k in keys)
    assert keys[0] != keys[1]  # 2**-63 odds of a false failure
    for sim in sims:
        assert {"control", "pid", "time_scale", "seed", "run_key", "token_file"} <= set(
            sim.info
        )

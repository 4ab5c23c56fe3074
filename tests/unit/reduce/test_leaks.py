"""The light-leak check: each frame against the others, globally and per tile.

Two kinds of truth: tile levels drawn with known errors (fast, many seeds),
and whole raw frames of the simulators' detector model (simulators.synthesis,
written apart from the reduction), read by the production path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reduce.checks import Exclusion, FrameCheckConfig, find_exclusions
from reduce.frames import TILE_GRID, FrameInspection, TileLevels, inspect_frame
from reduce.rawframe import Mode
from reduce.synthetic import raw_header, write_raw
from simulators.synthesis import Detector, DetectorConfig, dark_current_scale

CONFIG = FrameCheckConfig()
SHAPE = (2, *TILE_GRID)
ERROR_ADU = 0.03  # a tile's error at 900 s: ~4000 pixels of ~2 ADU


def frame(
    name: str,
    levels: np.ndarray,
    temperature: float | None = 163.0,
    darktime: float = 900.0,
) -> FrameInspection:
    return FrameInspection(
        path=Path(name),
        header={},
        exptime=darktime,
        darktime=darktime,
        temperature=temperature,
        simulated=True,
        interlock_ok=True,
        interlock_reason="",
        data_offset=2880,
        sha256="0" * 64,
        checksum="verified",
        overscan=(None, None),  # type: ignore[arg-type]  # not read by the check
        sample_level=(float(levels[0].mean()), float(levels[1].mean())),
        tiles=TileLevels(levels, np.full(SHAPE, ERROR_ADU), np.zeros(2)),
    )


def block(
    n: int, seed: int, dark_adu: float = 0.6, **extra: np.ndarray
) -> list[FrameInspection]:
    """``n`` frames of ``dark_adu`` with tile noise; ``extra`` adds to some."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        levels = dark_adu + rng.normal(0.0, ERROR_ADU, SHAPE)
        levels += extra.get(f"f{k}", 0.0)
        frames.append(frame(f"f{k}.fits", levels))
    return frames


def leaks(frames: list[FrameInspection]) -> list[str]:
    return [
        e.name
        for e in find_exclusions(frames, True, CONFIG)[0]
        if e.kind is Exclusion.LIGHT_LEAK
    ]


@pytest.mark.parametrize("n", [3, 5, 7])
def test_clean_blocks_lose_no_frame(n: int) -> None:
    found = [leaks(block(n, seed)) for seed in range(300)]
    assert sum(map(len, found)) == 0


def test_a_uniform_leak_of_a_few_errors_of_the_mean_is_found() -> None:
    # The mean of 64 tiles is known to ERROR_ADU / 8 (times the median's
    # factor for the others); the 1 % floor of 0.6 ADU adds 0.006 ADU, and
    # the scatter of 7 frames' means, measured, can raise the limit by half.
    for seed in range(20):
        assert leaks(block(7, seed, f3=np.full(SHAPE, 0.1))) == ["f3.fits"]
    # ... not one drowned in the noise
    assert all(leaks(block(7, s, f3=np.full(SHAPE, 0.005))) == [] for s in range(20))


def test_a_lit_corner_is_found_where_the_mean_hardly_moves() -> None:
    corner = np.zeros(SHAPE)
    corner[1, -1, -1] = 0.4  # one tile of 64: the mean moves by 0.006 ADU
    found, _ = find_exclusions(block(5, 1, f2=corner), True, CONFIG)
    assert [e.name for e in found] == ["f2.fits"]
    assert "amplifier 2, row band 4/4, column band 8/8" in found[0].reason
    assert "e-/pix/s" in found[0].reason


def test_a_warm_block_is_not_a_leak() -> None:
    # All frames 25 times the dark of the others: the QA's business, not a leak.
    assert leaks(block(5, 2, dark_adu=15.0)) == []


def test_a_warmer_frame_follows_the_law_when_temperatures_are_known() -> None:
    frames = block(5, 3)
    warm = frames[2]
    hotter = warm.tiles.levels * 2.0  # + 2.7 K
    frames[2] = frame(warm.name, hotter, temperature=163.0 + CONFIG.doubling_k)
    assert leaks(frames) == []
    # without the temperatures the same frame is a suspect, and it says why
    unknown = [frame(f.name, f.tiles.levels, temperature=None) for f in frames]
    found, _ = find_exclusions(unknown, True, CONFIG)
    assert [e.name for e in found] == [warm.name]
    assert "temperature unknown" in found[0].reason


def test_fewer_than_three_frames_name_no_suspect() -> None:
    assert leaks(block(2, 4, f1=np.full(SHAPE, 5.0))) == []


# -- whole frames of the simulators' detector, through inspect_frame --------


def write_block(
    folder: Path, exptime: float, n: int, seed: int, light: dict[int, float]
) -> list[Path]:
    detector = Detector(DetectorConfig(seed=seed))
    paths = []
    for k in range(n):
        raw = detector.frame(
            exptime_s=exptime,
            temperature_k=163.15,
            light_e_per_s=light.get(k, 0.0),
            frame_seed=k,
            run_key=seed,
        )
        path = folder / f"dark_{k}.fits"
        cards = raw_header(exptime)
        cards["CCDTEMP0"] = (163.15, "[K] CCD temperature")
        write_raw(path, raw, cards)
        paths.append(path)
    return paths


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_short_clean_darks_of_the_simulators_lose_no_frame(
    tmp_path: Path, seed: int
) -> None:
    # The review's case: 10 s darks of nominal simulators lost one frame of 3-5.
    paths = write_block(tmp_path, 10.0, 4, seed, {})
    frames = [inspect_frame(p, Mode.DARK) for p in paths]
    found, scan = find_exclusions(frames, True, CONFIG)
    assert found == []
    assert scan is not None
    assert 0 < scan.uniform_limit_e_s < scan.tile_limit_e_s


def test_a_small_uniform_leak_in_simulated_frames_is_found(tmp_path: Path) -> None:
    # 0.0005 e-/pix/s for 900 s: 0.45 e-, about 0.27 ADU on every pixel.
    paths = write_block(tmp_path, 900.0, 5, 7, {3: 0.0005})
    frames = [inspect_frame(p, Mode.DARK) for p in paths]
    found, scan = find_exclusions(frames, True, CONFIG)
    assert [e.name for e in found] == ["dark_3.fits"]
    assert scan is not None
    # the injected 0.0005 e-/pix/s is above the sensitivity the block reached
    assert scan.uniform_limit_e_s < 0.0005
    assert "over the whole detector" in found[0].reason


def test_a_frame_10_k_warmer_on_silicons_own_law_loses_no_frame() -> None:
    # The simulators' law (band gap and T^1.5) gives 12.1x for 163 -> 173 K;
    # the check's constant doubling gives 13.0x: neither frame is a leak.
    for seed in range(20):
        frames = block(3, seed, dark_adu=0.6)
        warm = frames[1]
        factor = dark_current_scale(173.15, 163.15)
        frames[1] = frame(warm.name, warm.tiles.levels * factor, temperature=173.15)
        for k in (0, 2):
            frames[k] = frame(frames[k].name, frames[k].tiles.levels, 163.15)
        assert leaks(frames) == [], seed


def test_from_five_frames_the_block_scatter_sets_the_errors() -> None:
    # Frame-to-frame offsets of 0.05 ADU that no error model knows of: the
    # pixel statistics alone (0.004 ADU for the mean) would call the highest
    # frame a leak; the block's measured scatter does not.
    found = []
    for seed in range(30):
        offsets = np.random.default_rng(1000 + seed).normal(0.0, 0.05, 7)
        frames = block(
            7, seed, **{f"f{k}": np.full(SHAPE, o) for k, o in enumerate(offsets)}
        )
        found += leaks(frames)
    assert found == []
    # ... while a real leak of 0.5 ADU still stands out of that scatter
    offsets = np.random.default_rng(7).normal(0.0, 0.05, 7)
    extra = {f"f{k}": np.full(SHAPE, o) for k, o in enumerate(offsets)}
    extra["f4"] = extra["f4"] + 0.5
    assert leaks(block(7, 3, **extra)) == ["f4.fits"]

"""The compiled kernels against the numpy steps they replace, bit for bit."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reduce.combine import CombineConfig, combine_band_into
from reduce.compiled import KERNELS
from reduce.engine import (
    BandCombiner,
    RawBands,
    combine_raw_band,
    compiled_kernel,
    subtract_model,
    to_counts,
)
from reduce.geometry import DATA_COLUMNS, RAW_SHAPE, TRIMMED_SHAPE
from reduce.median import schedule_array

from .conftest import Campaign

COLUMNS = DATA_COLUMNS.stop - DATA_COLUMNS.start
ROOT = Path(__file__).resolve().parents[3]


def _numpy_band(
    raw: npt.NDArray[np.uint16], model: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """What the numpy path makes of a band: RawBands.load, then the network."""
    n, rows, _ = raw.shape
    stack = np.empty((n, rows, COLUMNS), np.float32)
    for k in range(n):
        counts = to_counts(raw[k].copy())[:, DATA_COLUMNS]
        subtract_model(counts, model[k], stack[k])
    data = np.empty((rows, COLUMNS), np.float32)
    variance = np.empty_like(data)
    npix = np.empty((rows, COLUMNS), np.int16)
    combine_band_into(stack, CombineConfig(), 0, data, variance, npix)
    return data, variance


def _random_band(
    seed: int, n: int, rows: int, spread: int
) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.float64]]:
    """Stored words around a bias level (``spread`` ADU, clipped to the ADC's
    range, full scale and zero included) and fractional overscan models."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(-spread, spread + 1, (n, rows, RAW_SHAPE[1])) + 2000
    counts[:, :, :8] = [0, 65535, 1, 65534, 32767, 32768, 2000, 2000]
    counts = np.clip(counts, 0, 65535).astype(np.uint16)
    stored = (counts ^ 0x8000).astype(">u2").view(np.uint16)  # file byte order
    model = rng.uniform(1900.0, 2100.0, (n, rows))
    return stored, model


def test_the_kernel_is_built() -> None:
    # Installed from a clone with a C compiler (as CI is), the extension
    # must be there: without it the reduction falls back to numpy, ~2x slower.
    assert compiled_kernel()


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 64),
    rows=st.integers(1, 3),
    spread=st.sampled_from([0, 3, 40, 40000]),
)
def test_kernel_equals_the_numpy_steps_bit_for_bit(
    seed: int, n: int, rows: int, spread: int
) -> None:
    raw, model = _random_band(seed, n, rows, spread)
    expected_data, expected_variance = _numpy_band(raw, model)
    data = np.full((rows, COLUMNS), np.nan, np.float32)
    variance = np.full_like(data, np.nan)
    combine_raw_band(raw, model, data, variance)
    assert np.array_equal(data.view(np.uint32), expected_data.view(np.uint32))
    assert np.array_equal(variance.view(np.uint32), expected_variance.view(np.uint32))


def test_kernel_median_is_the_order_statistic() -> None:
    # Known truth: frame k holds count 1000 + k at every pixel, model 0.
    n = 7
    counts = (1000 + np.arange(n))[:, None, None] * np.ones((1, 2, RAW_SHAPE[1]))
    stored = (counts.astype(np.uint16) ^ 0x8000).astype(">u2").view(np.uint16)
    data = np.empty((2, COLUMNS), np.float32)
    variance = np.empty_like(data)
    combine_raw_band(stored, np.zeros((n, 2)), data, variance)
    assert np.all(data == 1003.0)
    sample_variance = np.var(np.arange(n), ddof=1)
    assert np.allclose(variance, sample_variance * np.pi / (2 * n), rtol=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"raw": np.zeros((3, 2, RAW_SHAPE[1] - 1), np.uint16)}, "raw"),
        ({"model": np.zeros((3, 3))}, "model"),
        ({"data": np.zeros((1, COLUMNS), np.float32)}, "data"),
        ({"variance": np.zeros((2, COLUMNS), np.float64)}, "variance"),
    ],
)
def test_kernel_refuses_buffers_of_the_wrong_size(
    change: dict[str, npt.NDArray[np.generic]], message: str
) -> None:
    from reduce import _kernels  # noqa: PLC0415

    args = {
        "raw": np.zeros((3, 2, RAW_SHAPE[1]), np.uint16),
        "model": np.zeros((3, 2)),
        "data": np.zeros((2, COLUMNS), np.float32),
        "variance": np.zeros((2, COLUMNS), np.float32),
    } | change
    with pytest.raises(ValueError, match=message):
        _kernels.median_raw_band(
            args["raw"],
            args["model"],
            schedule_array(3),
            args["data"],
            args["variance"],
            3,
            2,
            RAW_SHAPE[1],
            DATA_COLUMNS.start,
            COLUMNS,
            1 / 3,
            0.5,
        )


def test_kernel_refuses_a_schedule_outside_the_stack() -> None:
    from reduce import _kernels  # noqa: PLC0415

    steps = np.array([[0, 5, 1, 1]], np.int32)  # plane 5 of a 3-frame stack
    with pytest.raises(ValueError, match="planes 0 and 5"):
        _kernels.median_raw_band(
            np.zeros((3, 1, RAW_SHAPE[1]), np.uint16),
            np.zeros((3, 1)),
            steps,
            np.zeros((1, COLUMNS), np.float32),
            np.zeros((1, COLUMNS), np.float32),
            3,
            1,
            RAW_SHAPE[1],
            DATA_COLUMNS.start,
            COLUMNS,
            1 / 3,
            0.5,
        )


@pytest.mark.parametrize("n", [2, 3])
def test_engine_gives_the_same_master_either_way(campaign: Campaign, n: int) -> None:
    # Whole frames from files, across the amplifier boundary and the last
    # short band: the compiled and numpy routes write identical arrays.
    frames = campaign.master_dark.frames[:n]

    def run(compiled: bool) -> tuple[npt.NDArray[np.generic], ...]:
        source = RawBands(
            [f.path for f in frames],
            [f.overscan for f in frames],
            [f.data_offset for f in frames],
        )
        combiner = BandCombiner(source, CombineConfig(), threads=2, compiled=compiled)
        got = combiner.run()
        return got.data.view(np.uint32), got.variance.view(np.uint32), got.npix

    for ours, reference in zip(run(True), run(False), strict=True):
        assert np.array_equal(ours, reference)


def test_a_median_map_holds_no_pixels(campaign: Campaign) -> None:
    # Every frame is kept by the kernel's median: MAP is N everywhere, a
    # read-only view of one value (no 34 MB array at the memory peak).
    frames = campaign.master_dark.frames
    source = RawBands(
        [f.path for f in frames],
        [f.overscan for f in frames],
        [f.data_offset for f in frames],
    )
    got = BandCombiner(source, CombineConfig(), threads=2, compiled=True).run()
    assert got.npix.shape == TRIMMED_SHAPE
    assert np.all(got.npix == len(frames))
    assert got.npix.strides == (0, 0)
    assert not got.npix.flags.writeable


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=0, max_size=4096).map(lambda b: b[: len(b) // 4 * 4]))
def test_word_sum_equals_numpys(data: bytes) -> None:
    assert KERNELS is not None
    expected = int(np.frombuffer(data, dtype=">u4").sum(dtype=np.uint64))
    assert KERNELS.ones_complement_words(data) == expected


def test_word_sum_does_not_wrap_at_32_bits() -> None:
    # 2**20 words of 0xFFFFFFFF: a sum kept in 32 bits would be far smaller.
    assert KERNELS is not None
    words = b"\xff" * (4 << 20)
    assert KERNELS.ones_complement_words(words) == (2**32 - 1) << 20


def test_word_sum_refuses_a_partial_word() -> None:
    assert KERNELS is not None
    with pytest.raises(ValueError, match="multiple of 4"):
        KERNELS.ones_complement_words(b"\0" * 6)


def test_written_out_networks_run_here_and_are_current() -> None:
    # On x86-64 with AVX2 (as CI is), medians of up to 32 frames run the
    # written-out networks; those are exactly reduce.median's schedules
    # (tools/gen_networks.py writes reduce/_networks.h from them).
    assert KERNELS is not None
    if platform.machine() in ("x86_64", "AMD64") and "avx2" in _cpu_flags():
        assert KERNELS.register_networks() == 32
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_networks.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""

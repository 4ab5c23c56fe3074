"""The hot-pixel scan: compiled kernel and numpy steps give the same findings."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reduce.compiled import KERNELS
from reduce.hotpixels import smooth_background
from reduce.hotscan import (
    CHUNK_ROWS,
    RowBackground,
    Scan,
    _scan_compiled,
    _scan_numpy,
    chunk_edges,
    scan_excess,
)

CUT, CLIP = 12.0, 8.5


def _region(seed: int, rows: int, cols: int) -> npt.NDArray[np.float32]:
    """A master's amplifier: a level with a gradient and noise, hot pixels of
    known places, a hot column, a cold pixel, a NaN and an infinity."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    level = 5.0 + 0.002 * xx + 0.001 * yy + rng.normal(0, 1.7, (rows, cols))
    region: npt.NDArray[np.float32] = level.astype(np.float32)
    hot = rng.choice(rows * cols, size=rows * cols // 500, replace=False)
    region.flat[hot] += rng.uniform(CUT + 0.5, 400, hot.size).astype(np.float32)
    region[:, cols // 3] += np.float32(3.0)
    region[rows // 2, 1] = -500.0
    region[1, 2], region[2, 3] = np.nan, np.inf
    return region


def _both(
    region: npt.NDArray[np.float32], background: RowBackground, capacity_scan: bool
) -> tuple[Scan, npt.NDArray[np.uint8], Scan, npt.NDArray[np.uint8]]:
    edges = chunk_edges(region.shape[0], CHUNK_ROWS)
    mask_c = np.zeros(region.shape, np.uint8)
    mask_c[::5, ::7] = 4  # bits already set stay set
    mask_n = mask_c.copy()
    if capacity_scan:
        found = scan_excess(region, mask_c, background, CUT, CLIP)
    else:
        found = _scan_compiled(KERNELS, region, mask_c, background, edges, CUT, CLIP)  # type: ignore[arg-type]
    reference = _scan_numpy(region, mask_n, background, edges, CUT, CLIP)
    return found, mask_c, reference, mask_n


def _assert_same(
    a: Scan, mask_a: npt.NDArray[np.uint8], b: Scan, mask_b: npt.NDArray[np.uint8]
) -> None:
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.cols, b.cols)
    np.testing.assert_array_equal(mask_a, mask_b)
    # bit for bit (a view as integers: -0.0 and 0.0 would differ, NaN match)
    np.testing.assert_array_equal(
        a.segments.view(np.uint32), b.segments.view(np.uint32)
    )
    np.testing.assert_array_equal(
        a.hot_share.view(np.uint32), b.hot_share.view(np.uint32)
    )
    np.testing.assert_array_equal(a.edges, b.edges)
    # numpy sums the bulk pairwise, the kernel in four running sums
    assert a.mean_excess_adu == pytest.approx(b.mean_excess_adu, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("rows", [300, 2056])
def test_kernel_finds_what_numpy_finds(rows: int) -> None:
    region = _region(7, rows, 1024)
    background = smooth_background(region).of_rows()
    found, mask, reference, mask_ref = _both(region, background, capacity_scan=True)
    _assert_same(found, mask, reference, mask_ref)
    # and what was planted: every hot pixel (not the column, 3 ADU, below the cut)
    planted = np.argwhere(np.nan_to_num(region, posinf=1e9) > 5.0 + 3 + CUT + 10)
    found_at = set(zip(found.rows.tolist(), found.cols.tolist(), strict=True))
    assert {tuple(p) for p in planted.tolist()} <= found_at
    assert (2, 3) in found_at  # infinity: hot
    assert (1, 2) not in found_at  # NaN: not


def test_a_single_block_row_and_a_full_index_buffer() -> None:
    """One block row (no blend), and more hot pixels than the first buffer."""
    rng = np.random.default_rng(3)
    region = rng.normal(0, 1, (40, 512)).astype(np.float32)
    region[:, ::3] += np.float32(50.0)  # a third of the pixels hot: > size // 256
    grid = np.full((1, 512), 0.25, np.float32)
    background = RowBackground(grid, np.zeros(40, np.intp), np.zeros(40, np.float32))
    found, mask, reference, mask_ref = _both(region, background, capacity_scan=True)
    _assert_same(found, mask, reference, mask_ref)
    assert found.rows.size == 40 * 171


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 400),
    cols=st.integers(2, 96),  # (one column: numpy adds it pairwise)
    blocks=st.integers(1, 6),
)
def test_kernel_equals_numpy_on_random_grids(
    seed: int, rows: int, cols: int, blocks: int
) -> None:
    rng = np.random.default_rng(seed)
    region = (rng.standard_cauchy((rows, cols)) * 4).astype(np.float32)
    grid = rng.normal(0, 2, (blocks, cols)).astype(np.float32)
    i0 = rng.integers(0, max(blocks - 1, 1), rows).astype(np.intp)
    w = rng.random(rows).astype(np.float32)
    found, mask, reference, mask_ref = _both(
        region, RowBackground(grid, i0, w), capacity_scan=False
    )
    _assert_same(found, mask, reference, mask_ref)


def test_numpy_takes_what_the_kernel_cannot() -> None:
    """float64 or strided input goes the numpy way, with the same findings."""
    region = _region(11, 256, 256)
    background = smooth_background(region).of_rows()
    mask64 = np.zeros(region.shape, np.uint8)
    found = scan_excess(region.astype(np.float64), mask64, background, CUT, CLIP)
    mask32 = np.zeros(region.shape, np.uint8)
    reference = scan_excess(region, mask32, background, CUT, CLIP)
    _assert_same(found, mask64, reference, mask32)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"i0": np.full(8, 5, np.intp)}, "i0[0] = 5; expected 0 to 1"),
        ({"edges": np.array([0, 4, 4, 8], np.intp)}, "chunk 1 is empty"),
        ({"edges": np.array([0, 7], np.intp)}, "from row 0 to the last row"),
        ({"w": np.zeros(7, np.float32)}, "w: 28 bytes, expected 32"),
    ],
)
def test_kernel_refuses_inconsistent_arguments(
    change: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {
        "region": np.zeros((8, 16), np.float32),
        "grid": np.zeros((3, 16), np.float32),
        "i0": np.zeros(8, np.intp),
        "w": np.zeros(8, np.float32),
        "edges": np.array([0, 8], np.intp),
        "mask": np.zeros((8, 16), np.uint8),
        "found": np.zeros(16, np.int64),
        "segments": np.zeros((1, 16), np.float32),
        "share": np.zeros((1, 16), np.float32),
    }
    args.update(change)
    if "edges" in change:
        chunks = len(change["edges"]) - 1  # type: ignore[arg-type]
        args["segments"] = np.zeros((chunks, 16), np.float32)
        args["share"] = np.zeros((chunks, 16), np.float32)
    assert KERNELS is not None
    with pytest.raises(
        ValueError, match=message.replace("[", r"\[").replace("]", r"\]")
    ):
        KERNELS.scan_excess(*args.values(), 8, 16, CUT, CLIP)

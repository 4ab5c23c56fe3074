"""Shared synthetic frames for the reduction tests (built once per session)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
from astropy.io import fits

from reduce.batch import reduce_block
from reduce.combine import CombineConfig, Combined, combine_band_into
from reduce.frames import FrameInspection, inspect_frame
from reduce.masters import MasterKind, load_master
from reduce.qc import HotPixels, detect_hot_pixels
from reduce.rawframe import Mode
from reduce.synthetic import SyntheticDetector, make_raw, raw_header, write_raw

DARK_S = 3600.0


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class MasterDark:
    """The campaign's master dark as ``megara-dark reduce`` wrote it.

    Attributes
    ----------
    data
        PRIMARY: median of the darks minus the master bias, ADU.
    npix
        MAP: frames combined per pixel.
    frames
        The darks' first pass (their overscan models).
    """

    data: npt.NDArray[np.float32]
    npix: npt.NDArray[np.int16]
    frames: tuple[FrameInspection, ...]


@dataclass(frozen=True)
class Campaign:
    """Three biases and three one-hour darks of a known detector, reduced."""

    truth: SyntheticDetector
    biases: list[npt.NDArray[np.uint16]]
    darks: list[npt.NDArray[np.uint16]]
    master_bias: npt.NDArray[np.float32]  # its PRIMARY, ADU
    master_dark: MasterDark


@pytest.fixture(scope="session")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    """The frames written as raw files and reduced by the production path
    (:func:`reduce.batch.reduce_block`: bias block, then dark block)."""
    truth = SyntheticDetector()
    rng = np.random.default_rng(12345)
    biases = [make_raw(truth, 0.0, rng) for _ in range(3)]
    darks = [make_raw(truth, DARK_S, rng) for _ in range(3)]
    folder = tmp_path_factory.mktemp("campaign")
    bias_paths, dark_paths = [], []
    for k, raw in enumerate(biases):
        bias_paths.append(folder / f"bias_{k}.fits")
        write_raw(bias_paths[-1], raw, raw_header(0.0, obsmode="MegaraBiasImage"))
    for k, raw in enumerate(darks):
        dark_paths.append(folder / f"dark_{k}.fits")
        write_raw(dark_paths[-1], raw, raw_header(DARK_S))
    work = folder / "work"
    bias = reduce_block(
        block_id="bias",
        mode=Mode.BIAS.value,
        frames=bias_paths,
        master_bias=None,
        workdir=work,
    )
    dark = reduce_block(
        block_id="dark",
        mode=Mode.DARK.value,
        frames=dark_paths,
        master_bias=bias.product,
        workdir=work,
    )
    with fits.open(dark.product) as hdul:
        npix = np.array(hdul["MAP"].data, dtype=np.int16)
    master = MasterDark(
        data=load_master(dark.product, MasterKind.DARK).data,
        npix=npix,
        frames=tuple(inspect_frame(p, Mode.DARK) for p in dark_paths),
    )
    master_bias = load_master(bias.product, MasterKind.BIAS).data
    return Campaign(truth, biases, darks, master_bias, master)


@pytest.fixture(scope="session")
def hot(campaign: Campaign) -> HotPixels:
    """Hot pixels and columns of the campaign's master dark (default settings)."""
    return detect_hot_pixels(campaign.master_dark.data, darktime_s=DARK_S)


def combine(
    stack: npt.NDArray[np.floating],
    config: CombineConfig | None = None,
    row0: int = 0,
) -> Combined:
    """A whole ``(N, rows, columns)`` stack combined as one band, as the
    reduction combines each of its bands (:func:`combine_band_into`)."""
    band = np.array(stack, dtype=np.float32)  # a copy: the band is overwritten
    shape = band.shape[1:]
    out = Combined(
        np.empty(shape, np.float32),
        np.empty(shape, np.float32),
        np.empty(shape, np.int16),
    )
    combine_band_into(
        band, config or CombineConfig(), row0, out.data, out.variance, out.npix
    )
    return out

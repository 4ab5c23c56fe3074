"""Seeded synthetic raw MEGARA frames with known truth, for tests and benchmarks.

:func:`make_frames` writes a set of them as raw files, as the benchmarks
(``benchmarks/bench_reduce.py``, ``bench_stream.py``) reduce them.

Not a detector simulator (that is ``simulators/``): just enough physics to
check the reduction against known numbers. Per amplifier: a bias level with a
smooth drift along the rows (present in the data and the overscan alike), a
fixed bias pattern (per pixel and per column, removed by the master bias),
Gaussian read noise, Poisson dark current, and hot pixels and hot columns at
fixed positions (drawn from the detector seed).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from reduce.errors import InputError
from reduce.fits import writer
from reduce.fits.cards import Header, make_card
from reduce.geometry import AMPLIFIERS, DATA_COLUMNS, RAW_SHAPE, TRIMMED_SHAPE
from reduce.rawframe import frame_header

log = logging.getLogger(__name__)

CONFIG_UUID = "4fd05b24-2ed9-457b-b563-a3c618bb1d4c"
"""megaradrp's instrument configuration (``INSCONF``)."""

DATE_OBS = "2026-11-28T01:00:00.0"
"""``DATE-OBS`` of the frames :func:`make_frames` writes."""

DARK_EXPTIME_S = 3600.0
"""Exposure time of the darks :func:`make_frames` writes, seconds."""


@dataclass(frozen=True, kw_only=True)
class SyntheticDetector:
    """The true properties of a synthetic detector.

    The reduction's own test detector, written apart from the simulators'
    (:class:`simulators.synthesis.DetectorTruth`): judgements are tested on
    both, so that none is right only on the model it was written against.

    Attributes
    ----------
    bias_level_adu
        Overscan/bias level of amplifiers 1 and 2, ADU.
    bias_drift_adu
        Change of the level from the first to the last row of each
        amplifier, ADU (a quadratic ramp, present in data and overscan).
    bias_pattern_adu
        Standard deviation of the fixed per-pixel bias pattern, ADU.
    read_noise_e
        Read noise of each amplifier, electrons.
    gain
        Gain of each amplifier, e-/ADU.
    dark_e_per_h
        Dark current of each amplifier, e-/pix/h.
    hot_fraction
        Fraction of trimmed pixels that are hot.
    hot_rate_e_per_h
        Range (low, high) of the hot pixels' dark rate, e-/pix/h.
    hot_columns
        Number of hot columns per amplifier.
    hot_column_e_per_h
        Extra dark rate of a hot column, e-/pix/h.
    seed
        Seed of the fixed pattern (positions of hot pixels and columns).
    """

    bias_level_adu: tuple[float, float] = (2050.0, 2120.0)
    bias_drift_adu: tuple[float, float] = (3.0, -2.0)
    bias_pattern_adu: float = 1.0
    read_noise_e: tuple[float, float] = (3.4, 3.6)
    gain: tuple[float, float] = (1.73, 1.6)
    dark_e_per_h: tuple[float, float] = (10.0, 12.0)
    hot_fraction: float = 2e-4
    hot_rate_e_per_h: tuple[float, float] = (100.0, 3000.0)
    hot_columns: int = 2
    hot_column_e_per_h: float = 60.0
    seed: int = 2024

    @cached_property
    def _pattern(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
        rng = np.random.default_rng(self.seed)
        bias = rng.normal(0.0, self.bias_pattern_adu, TRIMMED_SHAPE).astype(np.float32)
        bias += np.linspace(-0.5, 0.5, TRIMMED_SHAPE[1], dtype=np.float32)
        rate = np.zeros(TRIMMED_SHAPE, dtype=np.float64)
        for amp, dark in zip(AMPLIFIERS, self.dark_e_per_h, strict=True):
            rate[amp.trimmed_rows] = dark
            cols = rng.choice(TRIMMED_SHAPE[1], self.hot_columns, replace=False)
            rate[amp.trimmed_rows, cols] += self.hot_column_e_per_h
        n_hot = round(self.hot_fraction * rate.size)
        flat = rng.choice(rate.size, n_hot, replace=False)
        rate.ravel()[flat] = rng.uniform(*self.hot_rate_e_per_h, n_hot)
        return bias, rate

    @property
    def bias_pattern(self) -> npt.NDArray[np.float32]:
        """Fixed bias pattern on the trimmed frame, ADU."""
        return self._pattern[0]

    @property
    def dark_rate(self) -> npt.NDArray[np.float64]:
        """True dark rate of every trimmed pixel, e-/pix/h."""
        return self._pattern[1]

    @property
    def hot_mask(self) -> npt.NDArray[np.bool_]:
        """Hot pixels (isolated, not hot columns), trimmed frame."""
        normal = np.zeros(TRIMMED_SHAPE)
        for amp, dark in zip(AMPLIFIERS, self.dark_e_per_h, strict=True):
            normal[amp.trimmed_rows] = dark
        return self.dark_rate > normal + self.hot_column_e_per_h

    @property
    def hot_column_mask(self) -> npt.NDArray[np.bool_]:
        """Columns (per amplifier rows) carrying the hot-column excess."""
        mask = np.zeros(TRIMMED_SHAPE, dtype=bool)
        for amp, dark in zip(AMPLIFIERS, self.dark_e_per_h, strict=True):
            region = self.dark_rate[amp.trimmed_rows]
            excess = np.median(region, axis=0) > dark + self.hot_column_e_per_h / 2
            mask[amp.trimmed_rows, :] = excess[np.newaxis, :]
        return mask


def poisson_uniform_rate(
    lam: float, shape: tuple[int, ...], rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Poisson(``lam``) draws by inverse-CDF lookup (exact; faster than numpy's)."""
    if lam <= 0:
        return np.zeros(shape, dtype=np.float32)
    k_max = int(lam + 12.0 * math.sqrt(lam) + 12.0)
    k = np.arange(k_max + 1)
    log_pmf = k * math.log(lam) - lam - np.array([math.lgamma(i + 1.0) for i in k])
    cdf = np.cumsum(np.exp(log_pmf))
    draws = np.searchsorted(cdf, rng.random(shape, dtype=np.float64), side="right")
    return np.minimum(draws, k_max).astype(np.float32)


def make_raw(
    truth: SyntheticDetector, exptime_s: float, rng: np.random.Generator
) -> npt.NDArray[np.uint16]:
    """One raw frame (4212 x 4196 uint16 counts) of ``exptime_s`` seconds dark."""
    raw = np.empty(RAW_SHAPE, dtype=np.float32)
    for k, amp in enumerate(AMPLIFIERS):
        n = amp.n_rows
        t = np.linspace(0.0, 1.0, n, dtype=np.float32) ** 2
        level = truth.bias_level_adu[k] + truth.bias_drift_adu[k] * t
        level += np.float32(rng.normal(0.0, 0.5))  # frame-to-frame offset
        rn_adu = truth.read_noise_e[k] / truth.gain[k]
        block = rng.standard_normal((n, RAW_SHAPE[1]), dtype=np.float32)
        block *= np.float32(rn_adu)
        block += level[:, np.newaxis]
        raw[amp.data_rows] = block
        data = raw[amp.data_rows, DATA_COLUMNS]
        data += truth.bias_pattern[amp.trimmed_rows]
        if exptime_s > 0:
            scale = exptime_s / 3600.0
            rate = truth.dark_rate[amp.trimmed_rows]
            base = truth.dark_e_per_h[k]
            electrons = poisson_uniform_rate(base * scale, rate.shape, rng)
            extra = rate > base  # hot pixels and columns: their excess only
            electrons[extra] += rng.poisson((rate[extra] - base) * scale)
            data += electrons / np.float32(truth.gain[k])
    middle = slice(AMPLIFIERS[0].data_rows.stop, AMPLIFIERS[1].data_rows.start)
    raw[middle] = np.float32(truth.bias_level_adu[0]) + rng.standard_normal(
        (middle.stop - middle.start, RAW_SHAPE[1]), dtype=np.float32
    )
    return np.clip(np.rint(raw), 0, 65535).astype(np.uint16)


def raw_header(
    exptime_s: float, *, obsmode: str = "MegaraDarkImage"
) -> dict[str, object]:
    """A minimal raw header (EXPTIME/DARKTIME and what numina needs to identify)."""
    imagetyp = "IMAGE_BIAS" if obsmode == "MegaraBiasImage" else "IMAGE_DARK"
    return {
        "INSTRUME": "MEGARA",
        "OBSMODE": obsmode,
        "IMAGETYP": imagetyp,
        "EXPTIME": float(exptime_s),
        "DARKTIME": float(exptime_s),
    }


def numina_header(exptime_s: float, obsmode: str, index: int) -> dict[str, object]:
    """:func:`raw_header` plus what ``numina run`` needs to reduce the frame:
    DATE-OBS, the instrument configuration, and a UUID made from ``index``."""
    header = raw_header(exptime_s, obsmode=obsmode)
    header.update(
        {
            "DATE-OBS": DATE_OBS,
            "INSCONF": CONFIG_UUID,
            "VPH": "LR-U",
            "INSMODE": "MOS",
            "UUID": str(uuid.UUID(int=index + (1 << 64))),
        }
    )
    return header


def make_frames(folder: Path, n_darks: int, n_biases: int) -> None:
    """Write seeded synthetic raw biases and one-hour darks into ``folder``.

    ``bias_00.fits``, ... and ``dark_00.fits``, ...: the same pixels on every
    call (one detector, one seed), with :func:`numina_header` headers.
    """
    truth = SyntheticDetector()
    rng = np.random.default_rng(20261128)
    for k in range(n_biases):
        header = numina_header(0.0, "MegaraBiasImage", k)
        write_raw(folder / f"bias_{k:02d}.fits", make_raw(truth, 0.0, rng), header)
    for k in range(n_darks):
        header = numina_header(DARK_EXPTIME_S, "MegaraDarkImage", 100 + k)
        raw = make_raw(truth, DARK_EXPTIME_S, rng)
        write_raw(folder / f"dark_{k:02d}.fits", raw, header)


def write_raw(
    path: str | Path, counts: npt.NDArray[np.integer], header: Mapping[str, Any]
) -> None:
    """Write counts as a raw MEGARA frame (BITPIX=16, BZERO=32768), overwriting.

    For tests and benchmarks; a run writes its frames with
    :func:`reduce.rawframe.write_raw_frame`.

    Parameters
    ----------
    path
        Destination (overwritten).
    counts
        ``(4212, 4196)`` integer counts in 0..65535, ADU.
    header
        Keyword to value, or to ``(value, comment)``; structural keywords
        are set from the data.
    """
    arr = np.asarray(counts)
    if arr.shape != RAW_SHAPE or arr.min() < 0 or arr.max() > 65535:
        raise InputError(
            str(path), f"counts must be {RAW_SHAPE} in 0..65535, got {arr.shape}"
        )
    cards = Header()
    for key, value in header.items():
        if key not in writer.STRUCTURAL:
            cards.append(
                make_card(key, *(value if isinstance(value, tuple) else (value,)))
            )
    pixels = arr.astype(np.uint16, copy=False)
    with open(path, "wb") as stream:
        writer.write_image(stream, frame_header(cards), pixels)

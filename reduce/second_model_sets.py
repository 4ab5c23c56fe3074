"""Frames and sets of raw MEGARA frames of :mod:`reduce.second_model`, with truth.

:func:`raw_frame` makes the counts of one frame and its :class:`FrameTruth`;
:func:`write_set` writes ``<prefix>_NNN.fits`` for one :class:`Scenario` of
one :class:`SecondDetector` and returns a :class:`SetTruth`: what the QC of
the Dark mode should find in them.

Header of every frame: :func:`reduce.synthetic.numina_header` (INSTRUME,
OBSMODE, IMAGETYP, EXPTIME, DARKTIME, DATE-OBS, INSCONF, VPH, INSMODE, UUID)
with DATE-OBS advanced by ``index * (exptime + 40 s)``, plus BLCKUUID (one
per set), CCDTEMP0..3 (``[K] CCD temperature``; absent when the scenario's
temperature is None) and SENTEMP0..5 (``[C] sensor temperature``, one of them
12.5 C). TEMPSTRT and INTLKOK are not written.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from reduce.geometry import AMPLIFIERS, DATA_COLUMNS, RAW_SHAPE
from reduce.geometry import TRIMMED_SHAPE as SHAPE
from reduce.rawframe import Mode
from reduce.second_model import (
    F32,
    GLOW_CORNERS,
    I64,
    HotColumn,
    Leak,
    Scenario,
    SecondDetector,
    population,
)
from reduce.synthetic import numina_header, write_raw

_DRIFT_SHARES: Final = (0.5, 0.3, 0.2)
"""Shares of ``row_drift_adu`` of the drift's three sinusoids."""

_READ_ROWS: Final = 2106
"""Raw rows each amplifier reads: its 2056 data rows, then 50 middle rows."""

_READOUT_S = 40.0
"""Time between the end of one exposure and the start of the next, s."""


@dataclass(frozen=True, eq=False)
class FrameTruth:
    """What was put into one frame.

    Attributes
    ----------
    index
        Frame index in its set.
    bias_offset_adu
        Per-frame bias offset of each amplifier, ADU.
    bias_rows_adu
        Bias level + offset + drift of every raw row (4212), ADU: the same in
        the row's data, overscan and prescan columns.
    cosmic_events
        Number of cosmic-ray events.
    cosmic_hits
        Flat trimmed indices of the pixels they hit (unique, sorted).
    leaks
        The leaks of this frame.
    """

    index: int
    bias_offset_adu: tuple[float, float]
    bias_rows_adu: npt.NDArray[np.float64]
    cosmic_events: int
    cosmic_hits: I64
    leaks: tuple[Leak, ...]


def _cosmics(
    detector: SecondDetector, n_events: int, rng: np.random.Generator
) -> tuple[I64, F32]:
    """Flat trimmed indices and charge (e-) of the pixels of ``n_events`` tracks."""
    lo, hi = detector.cosmic_length_px
    start_r = rng.uniform(0, SHAPE[0], n_events)[:, None]
    start_c = rng.uniform(0, SHAPE[1], n_events)[:, None]
    angle = rng.uniform(0.0, 2 * np.pi, n_events)
    sin, cos = np.sin(angle), np.cos(angle)
    major = np.maximum(
        np.abs(sin), np.abs(cos)
    )  # one pixel per step along the major axis
    step = np.arange(hi)[None, :]
    r = np.floor(start_r + step * (sin / major)[:, None]).astype(np.int64)
    c = np.floor(start_c + step * (cos / major)[:, None]).astype(np.int64)
    keep = step < rng.integers(lo, hi + 1, n_events)[:, None]
    keep &= (r >= 0) & (r < SHAPE[0]) & (c >= 0) & (c < SHAPE[1])
    index = r[keep] * SHAPE[1] + c[keep]
    charge = rng.uniform(*detector.cosmic_e_per_px, index.size).astype(np.float32)
    return index, charge


def _drift(
    detector: SecondDetector, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Drift of one amplifier against its readout index (0: first row read)."""
    k = np.arange(_READ_ROWS, dtype=np.float64)
    drift = np.zeros_like(k)
    for share in _DRIFT_SHARES:
        period = rng.uniform(2500.0, 5000.0)
        drift += (
            share
            * detector.row_drift_adu
            * np.sin(2 * np.pi * k / period + rng.uniform(0, 2 * np.pi))
        )
    return drift


def raw_frame(
    detector: SecondDetector, scenario: Scenario, index: int
) -> tuple[npt.NDArray[np.uint16], FrameTruth]:
    """The raw counts (4212 x 4196 uint16 ADU) of frame ``index`` and its truth."""
    pop = population(detector)
    kind_code = 0 if scenario.kind == "bias" else 1
    rng = np.random.default_rng([detector.seed, scenario.seed, kind_code, index])
    temperature = scenario.temperature_k
    if temperature is None:
        temperature = detector.reference_temperature_k
    t = scenario.exptime_s
    leaks = tuple(leak for leak in scenario.leaks if leak.frame == index)
    hits: I64 = np.zeros(0, dtype=np.int64)
    n_events = 0
    signal: F32 | None = None
    if t > 0:
        scale = np.float32(detector.dark_scale(temperature))
        lam = pop.dark_e_per_s * scale
        lam.reshape(-1)[pop.hot_index] += pop.hot_e_per_s * scale
        lam += pop.glow_e_per_s
        for leak in leaks:
            lam += leak.rate_map()
        lam *= np.float32(t)
        signal = rng.poisson(lam).astype(np.float32)
        del lam
        mean = (
            detector.cosmic_per_cm2_min
            * detector.area_cm2
            * t
            / 60.0
            * scenario.cosmic_rate_scale
        )
        n_events = int(rng.poisson(mean))
        where, charge = _cosmics(detector, n_events, rng)
        np.add.at(signal.reshape(-1), where, charge)
        hits = np.unique(where)
    raw = rng.standard_normal(RAW_SHAPE, dtype=np.float32)
    bias_rows = np.empty(RAW_SHAPE[0])
    sigma_rows = np.empty(RAW_SHAPE[0])
    offsets = rng.normal(0.0, detector.bias_offset_sigma_adu, 2)
    for n in range(len(AMPLIFIERS)):
        drift = _drift(detector, rng)
        # Amplifier 1 reads raw rows 0, 1, ... then its middle rows 2056:2106;
        # amplifier 2 reads 4211, 4210, ... then its middle rows 2155..2106.
        rows = slice(0, _READ_ROWS) if n == 0 else slice(_READ_ROWS, RAW_SHAPE[0])
        k = np.arange(RAW_SHAPE[0])[rows]
        k = k if n == 0 else (RAW_SHAPE[0] - 1) - k
        bias_rows[rows] = detector.bias_level_adu[n] + offsets[n] + drift[k]
        sigma_rows[rows] = detector.read_noise_e[n] / detector.gain_e_per_adu[n]
    raw *= sigma_rows.astype(np.float32)[:, None]
    raw += bias_rows.astype(np.float32)[:, None]
    for n, amp in enumerate(AMPLIFIERS):
        data = raw[amp.data_rows, DATA_COLUMNS]
        data += pop.bias_pattern_adu[amp.trimmed_rows]
        if signal is not None:
            data += signal[amp.trimmed_rows] * np.float32(
                1.0 / detector.gain_e_per_adu[n]
            )
    np.rint(raw, out=raw)
    np.clip(raw, 0, 65535, out=raw)
    truth = FrameTruth(
        index=index,
        bias_offset_adu=(float(offsets[0]), float(offsets[1])),
        bias_rows_adu=bias_rows,
        cosmic_events=n_events,
        cosmic_hits=hits,
        leaks=leaks,
    )
    return raw.astype(np.uint16), truth


def uuid_index(scenario: Scenario, index: int) -> int:
    """The ``index`` given to numina_header: distinct per seed, kind and frame."""
    kind_code = 0 if scenario.kind == "bias" else 1
    return (scenario.seed << 17) | (kind_code << 16) | index


def block_uuid(detector: SecondDetector, scenario: Scenario) -> str:
    """BLCKUUID of a set: the same for all its frames."""
    name = f"second_model:{detector.seed}:{scenario.kind}:{scenario.seed}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def ccd_temperatures_k(
    detector: SecondDetector, scenario: Scenario
) -> tuple[float, ...] | None:
    """CCDTEMP0..3 as written, K, or None when not written."""
    if scenario.temperature_k is None:
        return None
    return tuple(
        round(scenario.temperature_k + offset, 3)
        for offset in detector.ccd_sensor_offsets_k
    )


def frame_header(
    detector: SecondDetector, scenario: Scenario, index: int
) -> dict[str, object]:
    """The header cards of frame ``index``: keyword -> value or (value, comment)."""
    mode = Mode.BIAS if scenario.kind == "bias" else Mode.DARK
    header = dict(
        numina_header(scenario.exptime_s, mode.value, uuid_index(scenario, index))
    )
    start = dt.datetime.fromisoformat(str(header["DATE-OBS"]))
    start += dt.timedelta(seconds=index * (scenario.exptime_s + _READOUT_S))
    header["DATE-OBS"] = start.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-5]
    header["BLCKUUID"] = block_uuid(detector, scenario)
    temperatures = ccd_temperatures_k(detector, scenario)
    for n, value in enumerate(temperatures or ()):
        header[f"CCDTEMP{n}"] = (value, "[K] CCD temperature")
    for n, celsius in enumerate(detector.sensor_temperatures_c):
        header[f"SENTEMP{n}"] = (celsius, "[C] sensor temperature")
    return header


@dataclass(frozen=True, eq=False)
class SetTruth:
    """What a set of frames holds (trimmed coordinates, see the model).

    Attributes
    ----------
    kind, exptime_s
        ``bias`` or ``dark``; exposure time, s.
    paths, frames
        The files written and each frame's truth, in order.
    temperature_k
        The true CCD temperature, K (the reference one when not written).
    ccd_temperatures_k
        CCDTEMP0..3 as written, K; None: no CCDTEMPn in the headers.
    dark_e_per_pix_h
        Uniform dark current per amplifier at ``temperature_k``, e-/pix/h
        (the mean of the non-uniform map; glow and hot pixels excluded).
    read_noise_e, gain_e_per_adu, bias_level_adu
        Per amplifier.
    glow_peak_e_per_pix_h, glow_location
        Glow at each amplifier's readout-corner pixel, e-/pix/h, and that
        pixel's trimmed (row, column).
    hot_index, hot_e_per_s
        Flat trimmed indices of the hot pixels and hot-column pixels and
        their excess dark rate at ``temperature_k``, e-/s.
    hot_columns
        The hot column segments (their rate at the reference temperature).
    leaks
        The leaks, each naming its frame.
    rolloff_adu, rolloff_efold_columns
        The fixed bias roll-off at the output side of each amplifier.
    block_uuid
        BLCKUUID of the set.
    """

    kind: str
    exptime_s: float
    paths: tuple[Path, ...]
    frames: tuple[FrameTruth, ...]
    temperature_k: float
    ccd_temperatures_k: tuple[float, ...] | None
    dark_e_per_pix_h: tuple[float, float]
    read_noise_e: tuple[float, float]
    gain_e_per_adu: tuple[float, float]
    bias_level_adu: tuple[float, float]
    glow_peak_e_per_pix_h: tuple[float, float]
    glow_location: tuple[tuple[int, int], ...]
    hot_index: npt.NDArray[np.int64]
    hot_e_per_s: npt.NDArray[np.float32]
    hot_columns: tuple[HotColumn, ...]
    leaks: tuple[Leak, ...]
    rolloff_adu: float
    rolloff_efold_columns: float
    block_uuid: str

    def hot_count_above(self, rate_e_per_s: float) -> int:
        """Number of pixels whose excess exceeds ``rate_e_per_s`` (e-/s)."""
        return int(np.count_nonzero(self.hot_e_per_s > rate_e_per_s))

    def hot_map(self) -> npt.NDArray[np.float32]:
        """The dense trimmed map of the excess dark rate, e-/s."""
        dense = np.zeros(SHAPE, dtype=np.float32)
        dense.reshape(-1)[self.hot_index] = self.hot_e_per_s
        return dense

    def cosmic_mask(self, frame: int) -> npt.NDArray[np.bool_]:
        """Trimmed boolean map of the pixels hit by cosmic rays in ``frame``."""
        mask = np.zeros(SHAPE, dtype=bool)
        mask.reshape(-1)[self.frames[frame].cosmic_hits] = True
        return mask


def write_set(
    folder: Path,
    detector: SecondDetector,
    scenario: Scenario,
    prefix: str = "frame",
) -> SetTruth:
    """Write the frames of ``scenario`` as ``folder/<prefix>_NNN.fits``.

    Parameters
    ----------
    folder
        Destination, created if needed; existing files of the same names are
        overwritten.
    detector
        The CCD (its fixed population comes from ``detector.seed``).
    scenario
        The set: kind, frames, exposure, temperature, cosmic rays, leaks.
    prefix
        File name stem.

    Returns
    -------
    SetTruth
        What was written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    frames: list[FrameTruth] = []
    for index in range(scenario.n_frames):
        counts, truth = raw_frame(detector, scenario, index)
        path = folder / f"{prefix}_{index:03d}.fits"
        write_raw(path, counts, frame_header(detector, scenario, index))
        paths.append(path)
        frames.append(truth)
    temperature = scenario.temperature_k
    if temperature is None:
        temperature = detector.reference_temperature_k
    pop = population(detector)
    scale = np.float32(detector.dark_scale(temperature))
    return SetTruth(
        kind=scenario.kind,
        exptime_s=scenario.exptime_s,
        paths=tuple(paths),
        frames=tuple(frames),
        temperature_k=temperature,
        ccd_temperatures_k=ccd_temperatures_k(detector, scenario),
        dark_e_per_pix_h=detector.dark_at(temperature),
        read_noise_e=detector.read_noise_e,
        gain_e_per_adu=detector.gain_e_per_adu,
        bias_level_adu=detector.bias_level_adu,
        glow_peak_e_per_pix_h=detector.glow_peak_e_per_pix_h,
        glow_location=GLOW_CORNERS,
        hot_index=pop.hot_index.copy(),
        hot_e_per_s=pop.hot_e_per_s * scale,
        hot_columns=pop.hot_columns,
        leaks=scenario.leaks,
        rolloff_adu=detector.rolloff_adu,
        rolloff_efold_columns=detector.rolloff_efold_columns,
        block_uuid=block_uuid(detector, scenario),
    )

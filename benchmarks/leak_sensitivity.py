"""The light-leak check's sensitivity, measured on the simulators' detector.

For each dark time and frame count asked, a block of raw frames is written
from :class:`simulators.synthesis.Detector` (the simulators' model, written
apart from the reduction) and read by the production path
(:func:`reduce.frames.inspect_frame`, :func:`reduce.checks.find_exclusions`).
Printed per block:

* the limits the check reached (``LeakScan``), uniform and per tile, e-/pix/s;
* whether a leak of 1.5 times each limit is found, and one of 0.5 times is
  not: uniform light in one frame (the model's own ``light_e_per_s``), and a
  lit corner (light added to one tile of one amplifier of one frame);
* whether the clean block loses a frame (it must not).

Usage::

    python benchmarks/leak_sensitivity.py [--exptimes 900 1800] [--frames 5 7]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from reduce.checks import FrameCheckConfig, find_exclusions
from reduce.frames import LEVEL_STEP, TILE_GRID, FrameInspection, inspect_frame
from reduce.geometry import AMPLIFIERS, DATA_COLUMNS
from reduce.rawframe import Mode
from reduce.synthetic import raw_header, write_raw
from simulators.synthesis import Detector, DetectorConfig

CONFIG = FrameCheckConfig()
GAIN = float(np.mean([amp.gain for amp in AMPLIFIERS]))


def light_corner(raw: npt.NDArray[np.uint16], adu: float, seed: int) -> None:
    """Light one tile: add ``adu`` (mean; whole ADU and a dithered fraction)
    to amplifier 2's last row band (of the rows inspect_frame samples), last
    column tile. Also used by ``qa_matrix.py``."""
    amp = AMPLIFIERS[1]
    sampled = len(range(amp.data_rows.start, amp.data_rows.stop, LEVEL_STEP))
    first = int(np.linspace(0, sampled, TILE_GRID[0] + 1)[-2])
    band = slice(amp.data_rows.start + first * LEVEL_STEP, amp.data_rows.stop)
    width = (DATA_COLUMNS.stop - DATA_COLUMNS.start) // TILE_GRID[1]
    cols = slice(DATA_COLUMNS.stop - width, DATA_COLUMNS.stop)
    rng = np.random.default_rng(seed)
    shape = raw[band, cols].shape
    whole = int(adu)
    raw[band, cols] += (whole + (rng.random(shape) < adu - whole)).astype(np.uint16)


def frames_of(
    folder: Path, exptime: float, n: int, light: float = 0.0, corner_adu: float = 0.0
) -> list[FrameInspection]:
    """``n`` frames; the last carries ``light`` e-/pix/s or ``corner_adu``."""
    detector = Detector(DetectorConfig(seed=29))
    out = []
    for k in range(n):
        last = k == n - 1
        raw = detector.frame(
            exptime_s=exptime,
            temperature_k=163.15,
            light_e_per_s=light if last else 0.0,
            frame_seed=k,
            run_key=int(exptime),
        )
        if last and corner_adu:
            light_corner(raw, corner_adu, k)
        cards = raw_header(exptime)
        cards["CCDTEMP0"] = (163.15, "[K] CCD temperature")
        path = folder / f"dark_{k}.fits"
        write_raw(path, raw, cards)
        out.append(inspect_frame(path, Mode.DARK))
    return out


def found(frames: list[FrameInspection]) -> bool:
    excluded, _ = find_exclusions(frames, True, CONFIG)
    return [e.name for e in excluded] == [frames[-1].name]


def measure(folder: Path, exptime: float, n: int) -> list[str]:
    clean = frames_of(folder, exptime, n)
    excluded, scan = find_exclusions(clean, True, CONFIG)
    if scan is None:
        return [f"{exptime:6g} s N={n}: fewer than 3 frames, no check"]
    uniform, tile = scan.uniform_limit_e_s, scan.tile_limit_e_s
    tile_adu = tile * exptime / GAIN
    checks = {
        "uniform x1.5": found(frames_of(folder, exptime, n, light=1.5 * uniform)),
        "uniform x0.5": not found(frames_of(folder, exptime, n, light=0.5 * uniform)),
        "corner x1.5": found(frames_of(folder, exptime, n, corner_adu=1.5 * tile_adu)),
    }
    ok = all(checks.values()) and not excluded
    marks = " ".join(f"{k}:{'ok' if v else 'MISS'}" for k, v in checks.items())
    return [
        f"{exptime:6g} s N={n}: uniform {uniform:.2e} e-/pix/s, tile {tile:.2e} "
        f"e-/pix/s ({tile_adu:.2f} ADU); clean block kept {n - len(excluded)}/{n}; "
        f"{marks} -> {'PASS' if ok else 'FAIL'}"
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exptimes", type=float, nargs="+", default=[900.0, 1800.0])
    parser.add_argument("--frames", type=int, nargs="+", default=[5, 7])
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="leak-sensitivity-"))
    lines: list[str] = []
    try:
        for exptime in args.exptimes:
            for n in args.frames:
                lines += measure(folder, exptime, n)
                print(lines[-1], flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if all(line.endswith("PASS") for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())

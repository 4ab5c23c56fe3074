"""QA confusion table: expected vs obtained flags over scenarios of two models.

Blocks of raw frames are written from two independently written detector
models and reduced by the production path (:func:`reduce.batch.reduce_block`):

* model A, the simulators' detector (:mod:`simulators.synthesis`; frames
  written as :mod:`benchmarks.leak_sensitivity` does, lit corner included);
* model B, the second test model (:mod:`reduce.second_model`).

Each model gets a master bias (5 frames) reduced first, then the scenarios:
clean darks (10, 60, 900, 3600 s), a warm detector, uniform leaks in one frame
of 7 at 1800 s, structured leaks, crowded hot pixels (B), a cosmic-ray storm
and a missing CCD temperature. Leak expectations come from the sensitivity the
block itself reports (task.json ``light_leak_sensitivity``): a leak 1.5 x above
it must be excluded (PARTIAL, reason naming the leak), one 0.5 x below must
not; in between either flag is accepted. The hot-pixel expectation comes from
the model's truth (pixels above 0.02 e-/s plus hot-column pixels vs the warn
fraction 0.001). Raw frames and products are deleted after each scenario.

Usage::

    python benchmarks/qa_matrix.py [--models A B] [--scenarios clean warm ...]
        [--workdir DIR] [--quick]

Exit status 0 when every row matched its expectation, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from leak_sensitivity import light_corner

from reduce.batch import reduce_block
from reduce.errors import ReductionError
from reduce.frames import TILE_GRID
from reduce.geometry import AMPLIFIERS
from reduce.geometry import TRIMMED_SHAPE as SHAPE
from reduce.pipeline import Result
from reduce.second_model import Leak, LeakShape, Scenario, SecondDetector
from reduce.second_model_sets import SetTruth, write_set
from reduce.synthetic import raw_header, write_raw
from simulators.synthesis import Detector, DetectorConfig, dark_current_scale

GROUPS = ("clean", "warm", "uniform", "structured", "hot", "storm", "notemp")
GAIN = float(np.mean([amp.gain for amp in AMPLIFIERS]))
A_REF_K, A_DARK, A_COSMICS = 163.15, 2.0, DetectorConfig().cosmic_rate_per_cm2_s
HOT_RATE, HOT_WARN = 0.02, 0.001
LeakSpec = tuple[LeakShape, float, str | None]
"""A leak: shape, rate (e-/pix/s; the lit tile's for model A's corner), where."""
WARM_REASON = re.compile(r"dark current .* at \d+(\.\d+)? K")


@dataclass(frozen=True)
class Case:
    """One block: which model, what frames, what is put in them."""

    model: str
    group: str
    name: str
    n: int
    exptime: float
    temperature: float | None = 163.0
    leak: LeakSpec | None = None
    cosmic_scale: float = 1.0
    hot_fraction: float | None = None


@dataclass
class Row:
    """One line of the table."""

    case: Case
    expected: str
    got: str
    reasons: str
    match: bool
    notes: list[str]
    sensitivity: tuple[float, float] | None = None  # uniform, tile, e-/pix/s


def warm_temperature_a(target: float = 50.0) -> float:
    """Model A's temperature of ``target`` e-/pix/h (bisection on its law)."""
    low, high = A_REF_K, A_REF_K + 40.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        if A_DARK * dark_current_scale(mid, A_REF_K) < target:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def cases(model: str, quick: bool) -> list[Case]:
    """The scenarios of one model (``quick``: clean 900 s, warm, a leak, storm)."""
    ref = 163.0 if model == "B" else A_REF_K
    warm = 185.0 if model == "B" else round(warm_temperature_a(), 2)
    out = [
        Case(model, "clean", f"clean-{t:g}s", 5, t, ref) for t in (10, 60, 900, 3600)
    ]
    out.append(Case(model, "warm", f"warm-{warm:g}K", 5, 900.0, warm))
    for rate in (3e-5, 5e-4, 2e-3):
        leak: LeakSpec = ("uniform", rate, None)
        out.append(Case(model, "uniform", f"uniform-{rate:.0e}", 7, 1800.0, ref, leak))
    shapes: list[tuple[LeakShape, str | None]] = (
        [("corner", "top_left"), ("edge", "top"), ("gradient", "right")]
        if model == "B"
        else [("corner", None)]
    )
    for shape, where in shapes:
        for rate in (5e-5, 2e-3):
            name = f"{shape}-{rate:.0e}"
            out.append(
                Case(model, "structured", name, 7, 1800.0, ref, (shape, rate, where))
            )
    if model == "B":
        for frac in (1.5e-3, 1e-2):
            name = f"hot-{frac:g}"
            out.append(Case(model, "hot", name, 5, 900.0, ref, hot_fraction=frac))
    out.append(Case(model, "storm", "storm-x25", 3, 3600.0, ref, cosmic_scale=25.0))
    out.append(Case(model, "notemp", "no-temperature", 5, 900.0, None))
    if quick:
        keep = {"clean-900s", "uniform-5e-04", "storm-x25", out[4].name}
        out = [c for c in out if c.name in keep]
    return out


# --- writing frames -------------------------------------------------------


def detector_b(case: Case) -> SecondDetector:
    """Model B, with its hot fraction raised when the case asks."""
    base = SecondDetector()
    return replace(base, hot_fraction=case.hot_fraction) if case.hot_fraction else base


def make_leak(frame: int, spec: LeakSpec) -> Leak:
    """Model B's leak of ``spec`` (shape, e-/pix/s, where) in ``frame``."""
    shape, rate, where = spec
    return Leak(frame=frame, shape=shape, rate_e_per_pix_s=rate, where=where)


def write_b(case: Case, folder: Path) -> tuple[list[Path], SetTruth]:
    """Frames of model B; a leak goes into the last frame."""
    leaks: tuple[Leak, ...] = ()
    if case.leak is not None:
        leaks = (make_leak(case.n - 1, case.leak),)
    scenario = Scenario(
        kind="bias" if case.exptime == 0 else "dark",
        n_frames=case.n,
        exptime_s=case.exptime,
        temperature_k=case.temperature,
        cosmic_rate_scale=case.cosmic_scale,
        leaks=leaks,
        seed=zlib.crc32(case.name.encode()) & 0x7FFFFFFF,
    )
    truth = write_set(folder, detector_b(case), scenario, prefix=case.name)
    return list(truth.paths), truth


def write_a(case: Case, folder: Path) -> list[Path]:
    """Frames of model A (as benchmarks/leak_sensitivity.py writes them)."""
    cosmics = A_COSMICS * case.cosmic_scale
    detector = Detector(DetectorConfig(seed=29, cosmic_rate_per_cm2_s=cosmics))
    mode = "MegaraBiasImage" if case.exptime == 0 else "MegaraDarkImage"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(case.n):
        leak = case.leak if k == case.n - 1 else None
        raw = detector.frame(
            exptime_s=case.exptime,
            temperature_k=case.temperature or A_REF_K,
            light_e_per_s=leak[1] if leak and leak[0] == "uniform" else 0.0,
            frame_seed=k,
            run_key=zlib.crc32(case.name.encode()),
        )
        if leak and leak[0] == "corner":
            light_corner(raw, leak[1] * case.exptime / GAIN, k)
        cards = raw_header(case.exptime, obsmode=mode)
        if case.temperature is not None:
            cards["CCDTEMP0"] = (case.temperature, "[K] CCD temperature")
        paths.append(folder / f"{case.name}_{k:03d}.fits")
        write_raw(paths[-1], raw, cards)
    return paths


# --- expectations -----------------------------------------------------------


def leak_strength(case: Case) -> tuple[float, float]:
    """(whole-detector mean, largest tile excess over its amplifier), e-/pix/s."""
    assert case.leak is not None
    shape, rate, _ = case.leak
    if shape == "uniform":
        return rate, 0.0
    if case.model == "A":  # one tile of 2 x 4 x 8 lit
        tiles = 2 * TILE_GRID[0] * TILE_GRID[1]
        return rate / tiles, rate * (1.0 - 2.0 / tiles)
    full = np.broadcast_to(make_leak(0, case.leak).rate_map(), SHAPE)
    worst = 0.0
    for amp in AMPLIFIERS:
        half = np.asarray(full[amp.trimmed_rows], dtype=np.float64)
        n_r, n_c = TILE_GRID
        split = half.reshape(n_r, half.shape[0] // n_r, n_c, half.shape[1] // n_c)
        means = split.mean(axis=(1, 3))
        worst = max(worst, float((means - means.mean()).max()))
    return float(full.mean(dtype=np.float64)), worst


def expect_leak(case: Case, qc: dict[str, Any] | None) -> tuple[set[str], str]:
    """From the block's reported sensitivity: PARTIAL above 1.5 x, GOOD below 0.5 x."""
    sens = (qc or {}).get("light_leak_sensitivity")
    if not sens:
        return {"PARTIAL", "GOOD"}, "?no sensitivity"
    mean, tile = leak_strength(case)
    ratio = max(mean / sens["uniform"]["value"], tile / sens["tile"]["value"])
    if ratio >= 1.5:
        return {"PARTIAL"}, f"leak ({ratio:.2g}x)"
    if ratio <= 0.5:
        return {"GOOD"}, f"({ratio:.2g}x)"
    return {"GOOD", "PARTIAL"}, f"either ({ratio:.2g}x)"


def truth_hot_fraction(truth: SetTruth) -> float:
    """Pixels whose excess is above the hot cut, plus hot-column pixels."""
    mask = truth.hot_map() > HOT_RATE
    for seg in truth.hot_columns:
        mask[seg.start : seg.stop, seg.column] = True
    return float(mask.mean())


def expect(
    case: Case, qc: dict[str, Any] | None, truth: SetTruth | None
) -> tuple[set[str], str]:
    """Expected flags and the reason keyword (or a note) of one case."""
    if case.exptime == 0 or case.group in ("clean", "notemp"):
        return {"GOOD"}, ""
    if case.group == "warm":
        return {"BAD"}, "dark current at K"
    if case.group == "storm":
        return {"PARTIAL"}, "cosmic-ray residual"
    if case.group in ("uniform", "structured"):
        return expect_leak(case, qc)
    assert truth is not None
    frac = truth_hot_fraction(truth)
    if frac > 1.2 * HOT_WARN:
        return {"PARTIAL"}, f"hot pixel (truth {frac:.2g})"
    if frac < 0.8 * HOT_WARN:
        return {"GOOD"}, f"(truth {frac:.2g})"
    return {"GOOD", "PARTIAL"}, f"either (truth {frac:.2g})"


def keyword_ok(case: Case, result: Result, qc: dict[str, Any]) -> bool:
    """Does the result carry what the case's expectation names?"""
    text = " | ".join(result.reasons)
    if case.group == "warm":
        return bool(WARM_REASON.search(text)) and result.product.is_file()
    if case.group == "storm":
        return "cosmic-ray residual" in text
    if case.group == "notemp":
        return qc.get("temperature", {}).get("value", 0) is None
    if case.group in ("uniform", "structured") and result.qa == "PARTIAL":
        last = f"{case.name}_{case.n - 1:03d}.fits"
        return "leak" in text and [e.name for e in result.excluded] == [last]
    if case.group == "hot" and result.qa == "PARTIAL":
        return "hot pixel" in text
    return True


# --- running ------------------------------------------------------------------


def shorten(reasons: tuple[str, ...] | list[str], width: int = 90) -> str:
    """The reasons on one line, cut to ``width`` characters."""
    text = "; ".join(reasons) or "-"
    return text if len(text) <= width else text[: width - 3] + "..."


def reduce(case: Case, paths: list[Path], bias: Path | None, work: Path) -> Result:
    """Reduce one block (bias when ``bias`` is None and exptime is 0)."""
    return reduce_block(
        block_id=f"{case.model}_{case.name}",
        mode="MegaraBiasImage" if case.exptime == 0 else "MegaraDarkImage",
        frames=paths,
        master_bias=bias,
        workdir=work,
    )


def hot_notes(qc: dict[str, Any], truth: SetTruth | None) -> list[str]:
    """Measured hot pixel and column pixel counts (vs the model's truth)."""
    amps = qc["amplifiers"]
    hot = sum(a["hot_pixels"]["value"] or 0 for a in amps)
    col = sum(a["hot_column_pixels"]["value"] or 0 for a in amps)
    cols = sum(a["hot_columns"]["value"] or 0 for a in amps)
    cuts = ", ".join(f"{a['hot_rate_limit']['value']:.3g}" for a in amps)
    text = (
        f"hot pixels measured {hot} (+{col} pixels in {cols} hot columns; cuts "
        f"{cuts} e-/s); hot fraction {qc['hot_fraction']['value']:.3g}"
    )
    if truth is not None:
        text += (
            f"; truth: {truth.hot_count_above(HOT_RATE)} pixels above "
            f"{HOT_RATE} e-/s, hot fraction {truth_hot_fraction(truth):.3g}"
        )
    return [text]


def run_case(case: Case, work: Path, bias: Path | None) -> tuple[Row, Path | None]:
    """Write, reduce and judge one case; delete its frames (and its product,
    unless it is a master bias, which is returned)."""
    folder = work / f"{case.model}_{case.name}"
    truth: SetTruth | None = None
    if case.model == "B":
        paths, truth = write_b(case, folder / "raw")
    else:
        paths = write_a(case, folder / "raw")
    notes: list[str] = []
    try:
        result = reduce(case, paths, bias, folder)
    except ReductionError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        flags, word = expect(case, None, truth)
        got = f"no product: {exc}"
        expected = "|".join(sorted(flags)) + f" {word}"
        return Row(case, expected, "NONE", shorten([got]), False, notes), None
    finally:
        shutil.rmtree(folder / "raw", ignore_errors=True)
    qc = json.loads((result.folder / "task.json").read_text())["qc"]
    flags, word = expect(case, qc, truth)
    match = result.qa in flags and keyword_ok(case, result, qc)
    if case.group == "hot" or "hot pixel" in " ".join(result.reasons):
        notes += hot_notes(qc, truth)
    if case.group == "notemp":
        notes.append(f"qc temperature: {qc.get('temperature', {}).get('value')!r}")
    expected = "|".join(sorted(flags)) + (f" {word}" if word else "")
    row = Row(case, expected, result.qa, shorten(result.reasons), match, notes)
    sens = qc.get("light_leak_sensitivity")
    if case.exptime == 1800.0 and sens:
        row.sensitivity = (sens["uniform"]["value"], sens["tile"]["value"])
    if case.exptime == 0:
        return row, result.product
    shutil.rmtree(folder, ignore_errors=True)
    return row, None


def print_row(row: Row) -> None:
    """One table line, then its notes indented."""
    c = row.case
    print(
        f"{c.model:5} {c.name:16} {row.expected:34} {row.got:8} "
        f"{'yes' if row.match else 'NO':5} {row.reasons}",
        flush=True,
    )
    for note in row.notes:
        print(f"{'':22}  {note}", flush=True)


def run_model(model: str, groups: set[str], quick: bool, work: Path) -> list[Row]:
    """The model's bias, then its selected scenarios."""
    temp = 163.0 if model == "B" else A_REF_K
    bias_row, bias = run_case(Case(model, "bias", "bias", 5, 0.0, temp), work, None)
    print_row(bias_row)
    rows = [bias_row]
    for case in cases(model, quick):
        if case.group in groups:
            rows.append(run_case(case, work, bias)[0])
            print_row(rows[-1])
    if bias is not None:
        shutil.rmtree(bias.parent.parent, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=("A", "B"), default=["A", "B"])
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=GROUPS,
        default=list(GROUPS),
        help="scenario groups (the master bias of each model is always made)",
    )
    parser.add_argument(
        "--workdir", type=Path, help="scratch folder (default: a temporary one)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="clean 900 s, warm, one leak, storm"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    scratch = tempfile.TemporaryDirectory(prefix="qa-matrix-")
    work = Path(scratch.name) if args.workdir is None else args.workdir
    if args.workdir is not None:
        scratch.cleanup()
    print(f"{'model':5} {'scenario':16} {'expected':34} {'got':8} {'match':5} reasons")
    rows: list[Row] = []
    try:
        for model in args.models:
            rows += run_model(model, set(args.scenarios), args.quick, work)
    finally:
        scratch.cleanup()
    good = sum(r.match for r in rows)
    print(f"{good} of {len(rows)} as expected ({time.monotonic() - started:.0f} s)")
    print("leak sensitivity of the 1800 s blocks (uniform, tile; e-/pix/s):")
    for r in rows:
        if r.sensitivity is not None:
            uniform, tile = r.sensitivity
            print(f"  {r.case.model} {r.case.name:16} {uniform:.3g}  {tile:.3g}")
    for r in rows:
        if not r.match:
            print(
                f"MISMATCH {r.case.model} {r.case.name}: expected {r.expected}, "
                f"got {r.got}: {r.reasons}"
            )
    return 0 if good == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())

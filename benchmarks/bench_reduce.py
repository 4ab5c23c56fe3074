"""``megara-dark reduce`` against ``numina run`` (megaradrp), as whole processes.

Writes seeded synthetic raw frames (``reduce.synthetic``), then reduces the
biases and the darks (with each side's own master bias) once with our
command and once with ``numina run`` of megaradrp's BiasRecipe/DarkRecipe,
each as a separate process: wall time, peak RSS of that process, and the
largest PRIMARY difference. numina lives in its own environment (it is an
optional extra): point ``--numina`` at its script.

Usage::

    python benchmarks/bench_reduce.py [--darks 20] [--biases 5] \
        [--numina /path/to/venv/bin/numina] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from astropy.io import fits

from reduce.io import write_raw
from reduce.synthetic import DetectorTruth, make_raw, raw_header

CONFIG_UUID = "4fd05b24-2ed9-457b-b563-a3c618bb1d4c"  # megaradrp's instrument
DATE_OBS = "2026-11-28T01:00:00.0"
DARK_EXPTIME_S = 3600.0


def _header(exptime: float, obsmode: str, k: int) -> dict[str, Any]:
    header = raw_header(exptime, obsmode=obsmode)
    header.update(
        {
            "DATE-OBS": DATE_OBS,
            "INSCONF": CONFIG_UUID,
            "VPH": "LR-U",
            "INSMODE": "MOS",
            "UUID": str(uuid.UUID(int=k + (1 << 64))),
        }
    )
    return header


def make_frames(workdir: Path, n_darks: int, n_biases: int) -> None:
    """Write seeded synthetic raw biases and darks into ``workdir``."""
    truth = DetectorTruth()
    rng = np.random.default_rng(20261128)
    for k in range(n_biases):
        header = _header(0.0, "MegaraBiasImage", k)
        write_raw(workdir / f"bias_{k:02d}.fits", make_raw(truth, 0.0, rng), header)
    for k in range(n_darks):
        header = _header(DARK_EXPTIME_S, "MegaraDarkImage", 100 + k)
        raw = make_raw(truth, DARK_EXPTIME_S, rng)
        write_raw(workdir / f"dark_{k:02d}.fits", raw, header)


def _measure(argv: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run a whole process; wall seconds and its peak RSS (MiB, via a wrapper).

    The wrapper is a fresh Python that runs ``argv`` and reports
    ``getrusage(RUSAGE_CHILDREN).ru_maxrss``, so each figure is one process's.
    """
    wrapper = (
        "import json,resource,subprocess,sys,time;"
        "t=time.perf_counter();"
        "r=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
        "dt=time.perf_counter()-t;"
        "sys.stderr.write(r.stderr[-3000:] if r.returncode else '');"
        "print(json.dumps({'seconds':dt,'rc':r.returncode,"
        "'peak_mib':resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, *argv],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    if figures["rc"] != 0:
        raise RuntimeError(f"{argv[0]} failed: {out.stderr}")
    return figures


def _blocks(kind: str, n: int, bias: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": kind,
        "instrument": "MEGARA",
        "mode": "MegaraBiasImage" if kind == "bias" else "MegaraDarkImage",
        "frames": [f"{kind}_{k:02d}.fits" for k in range(n)],
    }
    if bias is not None:
        doc["requirements"] = {"master_bias": bias}
    return doc


def ours_command() -> list[str]:
    """``megara-dark reduce`` when wired, else ``python -m reduce`` (same code)."""
    beside = Path(sys.executable).with_name("megara-dark")
    probe = subprocess.run(
        [str(beside), "reduce", "--help"], capture_output=True, check=False
    )
    if beside.exists() and probe.returncode == 0:
        return [str(beside), "reduce"]
    return [sys.executable, "-m", "reduce"]


def compare(theirs: Path, ours: Path) -> str:
    """Largest PRIMARY difference and MAP equality of two masters."""
    with fits.open(theirs) as a, fits.open(ours) as b:
        diff = np.abs(a[0].data.astype(np.float64) - b[0].data)
        names = [hdu.name for hdu in a]
        same_map = (
            bool(np.array_equal(a["MAP"].data, b["MAP"].data))
            if "MAP" in names
            else "n/a (megaradrp wrote no MAP)"
        )
    return f"PRIMARY max|diff| {diff.max():.3g} ADU, MAP equal: {same_map}"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--darks", type=int, default=20)
    parser.add_argument("--biases", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--numina",
        type=Path,
        default=None,
        help="numina script of an environment with megaradrp (default: beside "
        "this interpreter)",
    )
    args = parser.parse_args()
    numina = args.numina or Path(sys.executable).with_name("numina")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        data = work / "data"
        data.mkdir(parents=True, exist_ok=True)
        make_frames(data, args.darks, args.biases)
        figures = {}
        # Bias first (both), then each side's dark with its own master bias.
        for who in ("ours", "numina"):
            base = work / who
            base.mkdir(exist_ok=True)
            for kind, n in (("bias", args.biases), ("dark", args.darks)):
                bias = str(base / "obsidbias_results" / "master_bias.fits")
                ob = work / f"{who}_{kind}.yaml"
                doc = _blocks(kind, n, bias if kind == "dark" else None)
                ob.write_text(yaml.safe_dump(doc), encoding="utf-8")
                if who == "ours":
                    argv = [*ours_command(), str(ob), "--datadir", str(data)]
                    argv += ["--workdir", str(base), "--min-frames", "1"]
                else:
                    if not numina.exists():
                        continue
                    argv = [str(numina), "run", str(ob), "--datadir", str(data)]
                    argv += ["--basedir", str(base)]
                figures[(who, kind)] = _measure(argv)
        for kind, n in (("bias", args.biases), ("dark", args.darks)):
            ours = figures[("ours", kind)]
            line = (
                f"{kind:4s} N={n:2d} megara-dark reduce: {ours['seconds']:.2f} s, "
                f"peak RSS {ours['peak_mib']:.0f} MiB"
            )
            theirs = figures.get(("numina", kind))
            if theirs is not None:
                line += (
                    f"; numina run: {theirs['seconds']:.2f} s, "
                    f"{theirs['peak_mib']:.0f} MiB; "
                    f"x{theirs['seconds'] / ours['seconds']:.1f} faster, "
                    f"x{theirs['peak_mib'] / ours['peak_mib']:.1f} less memory; "
                    + compare(
                        work
                        / "numina"
                        / f"obsid{kind}_results"
                        / f"master_{kind}.fits",
                        work / "ours" / f"obsid{kind}_results" / f"master_{kind}.fits",
                    )
                )
            print(line)
            task = work / "ours" / f"obsid{kind}_results" / "task.json"
            print(f"     ours, stages (s): {json.loads(task.read_text())['timings_s']}")
        if not numina.exists():
            print(f"(no numina at {numina}: pass --numina PATH to compare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

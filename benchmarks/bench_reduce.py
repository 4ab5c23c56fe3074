"""``megara-dark reduce`` against ``numina run`` (megaradrp), as whole processes.

Writes seeded synthetic raw frames (``reduce.synthetic``): ``--biases``
biases and ``max(--darks)`` one-hour darks, read once so that they are in
the page cache. Then, side by side in the same run, each as a separate
process: the bias block with each pipeline (each side's dark uses its own
master bias), and the dark block of the first N frames for every N of
``--darks`` with ours, and for the first N with ``numina run`` of
megaradrp's DarkRecipe. Printed: wall time and peak RSS of each process,
the speed ratio, the largest PRIMARY difference and MAP equality, and, over
the values of N, how peak RSS grows per extra frame.

Targets (issue 15, item 7): at N = 20, faster than numina at least 8x in
every run and at least 10x at the median of the runs (each run's ratio is
numina's time over ours in the same round), peak RSS at most 400 MiB;
peak RSS growing by at most 5 MiB per extra frame up to N = 50 (issue 5).
Each prints PASS or FAIL; the exit status is 1 if any failed.

Usage::

    python benchmarks/bench_reduce.py [--darks 20,35,50] [--biases 5] \
        [--numina PATH] [--workdir DIR] [--repeat 1]

With ``--repeat R`` every dark block runs R times, alternating ours and
numina: the median time, the largest peak RSS and our median stage timings
(``task.json``) are reported; use ``--repeat 3`` for the targets. One
untimed dark run of each side comes first, and the processes run without
``PYTHONDONTWRITEBYTECODE``: both are measured as installed, their bytecode
compiled once (an environment that forbids writing it would have ours
compile its modules on every run: about 0.08 s more). Before each process
the disk's pending writes are flushed (``sync``) and the machine rests
(:data:`SETTLE_S`), untimed, so that neither side pays for the other's
writes or freed memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from astropy.io import fits

from reduce.synthetic import make_frames

SETTLE_S = 6.0
"""Seconds of rest before each measured process. On the virtual machines
this runs on, a process that freed gigabytes slows the next one while the
host takes the memory back: ``megara-dark reduce`` of 20 darks took
1.79-1.90 s on a quiet machine, 2.47-2.72 s just after a process had freed
3 GB (its fsync waiting), 2.10-2.29 s 3 s after, 1.93-2.13 s 6 s after
(2026-12-07). Ours runs after numina's 3 GB, numina after ours' 0.4 GB."""


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
    if env is None:  # as installed: bytecode written once, then read
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    # Each process starts on a quiet machine, untimed: the previous one's
    # writes flushed (numina copies every frame into its work folder, 700 MB
    # at N = 20), and the memory it freed given back to the host (numina's
    # 3 GB: see SETTLE_S).
    os.sync()
    time.sleep(SETTLE_S)
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


def warm_page_cache(folder: Path) -> None:
    """Read every frame once, so that both pipelines find them in the page cache."""
    for path in sorted(folder.glob("*.fits")):
        with path.open("rb") as handle:
            while handle.read(1 << 24):
                pass


def _run(
    who: str, numina: Path | None, work: Path, data: Path, kind: str, n: int
) -> dict[str, float]:
    base = work / who
    base.mkdir(exist_ok=True)
    bias = str(base / "obsidbias_results" / "master_bias.fits")
    doc = _blocks(kind, n, bias if kind == "dark" else None)
    doc["id"] = kind if kind == "bias" else f"dark{n}"
    ob = work / f"{who}_{doc['id']}.yaml"
    ob.write_text(yaml.safe_dump(doc), encoding="utf-8")
    # A repeated run starts from the same empty folders on both sides: ours
    # refuses to overwrite products, and numina's would pile up.
    for folder in base.glob(f"obsid{doc['id']}_*"):
        shutil.rmtree(folder)
    if who == "ours":
        argv = [*ours_command(), str(ob), "--datadir", str(data)]
        argv += ["--workdir", str(base), "--min-frames", "1"]
    else:
        assert numina is not None
        argv = [str(numina), "run", str(ob), "--datadir", str(data)]
        argv += ["--basedir", str(base)]
    return _measure(argv)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


RSS_TARGET_MIB = 400.0
"""Peak RSS of ``megara-dark reduce`` at N = 20 (issue 15, item 7)."""

EVERY_RUN_RATIO, MEDIAN_RATIO = 8.0, 10.0
"""Speed over numina at N = 20: in every run, and at the runs' median."""


def _per_run_targets(
    runs: dict[tuple[str, str, int], list[dict[str, float]]],
    stages: dict[int, list[dict[str, float]]],
) -> bool:
    """Print N = 20's ratio of each round and our median stages; True if failed."""
    for n, timings in stages.items():
        names = list(timings[0])
        middle = {k: round(statistics.median(t[k] for t in timings), 3) for k in names}
        print(f"ours dark N={n} median stages over {len(timings)} runs (s): {middle}")
    ours, theirs = runs.get(("ours", "dark", 20)), runs.get(("numina", "dark", 20))
    if not ours or not theirs:
        return False
    ratios = [t["seconds"] / o["seconds"] for o, t in zip(ours, theirs, strict=True)]
    middle_ratio = statistics.median(ratios)
    every = min(ratios) >= EVERY_RUN_RATIO
    median_ok = middle_ratio >= MEDIAN_RATIO
    listed = ", ".join(f"x{r:.2f}" for r in ratios)
    print(
        f"dark N=20 speed over numina per run: {listed}; median x{middle_ratio:.2f} "
        f"[every run >= x{EVERY_RUN_RATIO:.0f}: {_verdict(every)}] "
        f"[median >= x{MEDIAN_RATIO:.0f}: {_verdict(median_ok)}]"
    )
    return not (every and median_ok)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--darks", default="20,35,50", help="values of N")
    parser.add_argument("--biases", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--repeat", type=int, default=1, help="R runs each: median time, largest RSS"
    )
    parser.add_argument(
        "--numina",
        type=Path,
        default=None,
        help="numina script of an environment with megaradrp (default: the "
        "numina on PATH, else none: ours alone)",
    )
    args = parser.parse_args()
    sizes = sorted({int(v) for v in args.darks.split(",")})
    found = shutil.which("numina")
    numina = args.numina or (Path(found) if found else None)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.workdir or Path(tmp)).resolve()
        data = work / "data"
        data.mkdir(parents=True, exist_ok=True)
        make_frames(data, max(sizes), args.biases)
        warm_page_cache(data)
        sides = ["ours"] + (["numina"] if numina is not None else [])
        figures: dict[tuple[str, str, int], dict[str, float]] = {}
        for who in sides:
            figures[(who, "bias", args.biases)] = _run(
                who, numina, work, data, "bias", args.biases
            )
        for who in sides:  # untimed: the dark path's first imports
            _run(who, numina, work, data, "dark", sizes[0])
        loads = [os.getloadavg()[0]]
        runs: dict[tuple[str, str, int], list[dict[str, float]]] = {}
        stages: dict[int, list[dict[str, float]]] = {}
        for _ in range(args.repeat):
            for n in sizes:
                whos = ["ours"] + (["numina"] if n == sizes[0] and numina else [])
                for who in whos:
                    got = _run(who, numina, work, data, "dark", n)
                    runs.setdefault((who, "dark", n), []).append(got)
                task = work / "ours" / f"obsiddark{n}_results" / "task.json"
                stages.setdefault(n, []).append(
                    json.loads(task.read_text())["timings_s"]
                )
            loads.append(os.getloadavg()[0])
        failed |= _per_run_targets(runs, stages)
        for key, got_all in runs.items():  # median time, largest peak RSS
            figures[key] = {
                "seconds": statistics.median(g["seconds"] for g in got_all),
                "peak_mib": max(g["peak_mib"] for g in got_all),
            }
            if len(got_all) > 1:
                times = ", ".join(f"{g['seconds']:.2f}" for g in got_all)
                print(f"{key[0]} dark N={key[2]} runs (s): {times}")
        print(
            f"load average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f}"
        )
        for kind, n in [("bias", args.biases)] + [("dark", n) for n in sizes]:
            ours = figures[("ours", kind, n)]
            line = (
                f"{kind:4s} N={n:2d} megara-dark reduce: {ours['seconds']:.2f} s, "
                f"peak RSS {ours['peak_mib']:.0f} MiB"
            )
            theirs = figures.get(("numina", kind, n))
            stem = kind if kind == "bias" else f"dark{n}"
            if theirs is not None:
                ratio = theirs["seconds"] / ours["seconds"]
                line += (
                    f"; numina run: {theirs['seconds']:.2f} s, "
                    f"{theirs['peak_mib']:.0f} MiB; x{ratio:.2f} faster, "
                    f"x{theirs['peak_mib'] / ours['peak_mib']:.1f} less memory; "
                    + compare(
                        work
                        / "numina"
                        / f"obsid{stem}_results"
                        / f"master_{kind}.fits",
                        work / "ours" / f"obsid{stem}_results" / f"master_{kind}.fits",
                    )
                )
            if kind == "dark" and n == 20:
                ok = ours["peak_mib"] <= RSS_TARGET_MIB
                failed |= not ok
                line += f" [RSS <= {RSS_TARGET_MIB:.0f} MiB: {_verdict(ok)}]"
            print(line)
            task = work / "ours" / f"obsid{stem}_results" / "task.json"
            print(f"     ours, stages (s): {json.loads(task.read_text())['timings_s']}")
        if len(sizes) > 1:
            first, last = sizes[0], sizes[-1]
            rss = [figures[("ours", "dark", n)]["peak_mib"] for n in sizes]
            slope = (rss[-1] - rss[0]) / (last - first)
            ok = slope <= 5.0
            failed |= not ok
            steps = ", ".join(
                f"N={a}->{b}: {(rb - ra) / (b - a):+.2f}"
                for a, b, ra, rb in zip(sizes, sizes[1:], rss, rss[1:], strict=False)
            )
            print(
                f"peak RSS growth N={first}->{last}: {slope:+.2f} MiB per extra "
                f"frame ({steps}) [<= 5 MiB/frame: {_verdict(ok)}]"
            )
        if numina is None:
            print("(no numina found: pass --numina PATH to compare)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

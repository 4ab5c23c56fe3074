"""``megara-dark archive`` against a serial loop of ``megara-dark reduce``.

One synthetic archive (:mod:`reduce.synthetic`: one bias set and one dark set
per night, ``--nights`` nights, every frame with its own DATE-OBS, UUID and
block UUID, in nested folders) is reduced, in one session:

1. **serial reduce**: one ``megara-dark reduce`` process per set, as a person
   would loop over the sets by hand (the reference);
2. **archive, 1 worker** and **archive, N workers** (``--workers``), each
   into a fresh output folder;
3. **archive again** over the last output: every set up to date (skipped);
4. with ``--dask``, **archive through Dask**: a local ``distributed``
   cluster of N single-threaded worker processes, ``--scheduler`` its address.

Printed: each path's wall time, the per-set cost of the archive (1 worker)
against ``reduce``'s, the speed-up with N workers, the Dask path's overhead
per set against the local pool, the peak RSS per worker (the sets' own
``peak_rss_mib``), and the hours that ten years of nightly sets would take
on this machine and on a cluster of K nodes like it.

Usage::

    python benchmarks/bench_archive.py [--nights 5] [--frames 3] [--workers 2]
        [--dask] [--nodes 10] [--keep DIR]

The archive and outputs live in a temporary folder deleted at the end
(35 MB per frame), unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from reduce.synthetic import SyntheticDetector, make_raw, numina_header, write_raw

START = datetime(2026, 1, 10, 20, 0, tzinfo=UTC)
"""First night's first frame."""

DARK_S = 900.0
"""Exposure time of the archive's darks, seconds."""


@dataclass(frozen=True)
class NightSets:
    """The raw files of one night: its bias set and its dark set."""

    night: str
    bias: list[Path]
    dark: list[Path]


def megara_dark() -> list[str]:
    """The installed console script (beside this Python), else ``-m``."""
    beside = Path(sys.executable).with_name("megara-dark")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "sequencer"]


def _frame(
    path: Path, raw: np.ndarray, obsmode: str, index: int, block: str, when: datetime
) -> None:
    header = numina_header(0.0 if "Bias" in obsmode else DARK_S, obsmode, index)
    header["DATE-OBS"] = when.strftime("%Y-%m-%dT%H:%M:%S.0")
    header["BLCKUUID"] = block
    path.parent.mkdir(parents=True, exist_ok=True)
    write_raw(path, raw, header)


def write_archive(root: Path, nights: int, frames: int) -> list[NightSets]:
    """The synthetic archive: ``root/YYYY/MM/DD/{bias,dark}/...``."""
    truth = SyntheticDetector()
    rng = np.random.default_rng(2027)
    found = []
    index = 0
    for n in range(nights):
        start = START + timedelta(days=n)
        folder = root / f"{start:%Y/%m/%d}"
        sets: dict[str, list[Path]] = {"bias": [], "dark": []}
        for kind, obsmode, step in (
            ("bias", "MegaraBiasImage", 60.0),
            ("dark", "MegaraDarkImage", DARK_S + 60.0),
        ):
            block = str(uuid.UUID(int=rng.integers(1 << 62)))
            first = start if kind == "bias" else start + timedelta(hours=1)
            for k in range(frames):
                path = folder / kind / f"r{index:06d}.fits"
                exptime = 0.0 if kind == "bias" else DARK_S
                when = first + timedelta(seconds=k * step)
                _frame(path, make_raw(truth, exptime, rng), obsmode, index, block, when)
                sets[kind].append(path)
                index += 1
        found.append(NightSets(f"{start:%Y-%m-%d}", sets["bias"], sets["dark"]))
    return found


def _block(block_id: str, mode: str, files: list[Path], bias: str | None) -> str:
    lines = [f"id: {block_id}", "instrument: MEGARA", f"mode: {mode}", "frames:"]
    lines += [f"  - {p}" for p in files]
    if bias is not None:
        lines += ["requirements:", f"  master_bias: {bias}"]
    return "\n".join(lines) + "\n"


def serial_reduce(nights: list[NightSets], out: Path) -> tuple[float, int]:
    """One ``megara-dark reduce`` per set; wall seconds and sets reduced."""
    out.mkdir(parents=True)
    start = time.perf_counter()
    count = 0
    for night in nights:
        bias_id, dark_id = f"b{night.night}", f"d{night.night}"
        for block_id, text in (
            (bias_id, _block(bias_id, "MegaraBiasImage", night.bias, None)),
            (
                dark_id,
                _block(
                    dark_id,
                    "MegaraDarkImage",
                    night.dark,
                    f"obsid{bias_id}_results/master_bias.fits",
                ),
            ),
        ):
            ob = out / f"{block_id}.yaml"
            ob.write_text(text, encoding="utf-8")
            cmd = [
                *megara_dark(),
                "reduce",
                str(ob),
                "--datadir",
                "/",
                "--workdir",
                str(out),
            ]
            subprocess.run(cmd, check=True, capture_output=True)
            count += 1
    return time.perf_counter() - start, count


@dataclass(frozen=True)
class ArchiveRun:
    """One ``megara-dark archive`` run: wall time and its set_done events."""

    seconds: float
    done: list[dict[str, Any]]
    status: int


def archive(root: Path, out: Path, *extra: str) -> ArchiveRun:
    """Run ``megara-dark archive`` with ``--json``; its events."""
    cmd = [*megara_dark(), "archive", str(root), "--workdir", str(out)]
    cmd += ["--no-history", "--json", *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    events = [
        json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")
    ]
    finished = [e for e in events if e.get("event") == "set_done"]
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
    return ArchiveRun(seconds, finished, done.returncode)


def _per_set(run: ArchiveRun) -> float:
    return (
        float(np.mean([e["seconds"] for e in run.done])) if run.done else float("nan")
    )


def _peak(run: ArchiveRun) -> float:
    values = [e.get("peak_rss_mib") or 0.0 for e in run.done]
    return float(max(values)) if values else float("nan")


def dask_cluster(workers: int) -> Any:
    """A local distributed cluster of single-threaded worker processes."""
    from distributed import LocalCluster  # noqa: PLC0415  (optional extra)

    return LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )


def report(
    args: argparse.Namespace, runs: dict[str, ArchiveRun], serial: tuple[float, int]
) -> None:
    """Print the figures the issue asks for."""
    serial_s, n_sets = serial
    one, many = runs["archive-1"], runs[f"archive-{args.workers}"]
    rerun = runs["rerun"].seconds
    print(f"sets: {n_sets} ({args.nights} nights x bias + dark, {args.frames} frames)")
    for name, run in runs.items():
        each = _per_set(run)
        print(f"  {name:<14} {run.seconds:8.2f} s  exit {run.status}  set {each:.2f} s")
    print(
        f"  {'serial reduce':<14} {serial_s:8.2f} s  per set {serial_s / n_sets:.2f} s"
    )
    print(f"per-set cost, archive (1 worker) / reduce: {one.seconds / serial_s:.3f}")
    gain, scaling = serial_s / many.seconds, one.seconds / many.seconds
    print(f"speed-up with {args.workers} workers: {gain:.2f}x over serial reduce,")
    print(f"  {scaling:.2f}x over 1 worker")
    print(f"rerun (all up to date): {rerun:.2f} s, {rerun / n_sets:.3f} s per set")
    if "dask" in runs:
        extra = (runs["dask"].seconds - many.seconds) / n_sets
        print(f"Dask overhead per set against the local pool: {extra:+.3f} s")
    print(
        f"peak RSS per worker: {max(_peak(r) for r in runs.values() if r.done):.0f} MiB"
    )
    per_set = many.seconds / n_sets
    nightly = 3 * 3652  # ten years of a bias and two dark sets a night
    hours = nightly * per_set / 3600.0
    print(
        f"ten years ({nightly} sets of {args.frames} frames) on this machine: "
        f"{hours:.1f} h; on {args.nodes} such nodes: {hours / args.nodes:.2f} h "
        "(reading bound: ~35 MB per frame from the archive's file system)"
    )


def main() -> int:
    """Build the archive, run every path, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nights", type=int, default=5)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--dask", action="store_true")
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    base = (
        Path(tempfile.mkdtemp(prefix="bench_archive_"))
        if args.keep is None
        else args.keep
    )
    try:
        root = base / "archive"
        t0 = time.perf_counter()
        nights = write_archive(root, args.nights, args.frames)
        print(f"archive written in {time.perf_counter() - t0:.1f} s")
        serial = serial_reduce(nights, base / "serial")
        runs = {"archive-1": archive(root, base / "out1", "--workers", "1")}
        runs[f"archive-{args.workers}"] = archive(
            root, base / "outN", "--workers", str(args.workers)
        )
        runs["rerun"] = archive(root, base / "outN", "--workers", str(args.workers))
        if args.dask:
            with dask_cluster(args.workers) as cluster:
                runs["dask"] = archive(
                    root, base / "outD", "--scheduler", cluster.scheduler_address
                )
        report(args, runs, serial)
        return 0 if all(r.status == 0 for r in runs.values()) else 1
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())

"""Our master bias/dark against megaradrp's, on the same synthetic raw frames.

Runs only where the official pipeline is importable
(``pip install '.[compat]'``, megaradrp 0.22 on numina 0.40). It writes
seeded synthetic raw frames (``reduce.synthetic``), reduces them with
megaradrp's BiasRecipe and DarkRecipe and with ``reduce.stream.reduce_files``
(each in its own subprocess, so that peak memory is measured per run), then
prints the largest PRIMARY difference and the time and peak-RSS ratios.

Usage::

    python benchmarks/bench_reduce.py [--darks 20] [--biases 5] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from reduce.io import read_master, write_raw
from reduce.stream import reduce_files
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


def run_megaradrp(kind: str, workdir: Path) -> float:
    """Run megaradrp's recipe as ``numina`` would; return the seconds taken."""
    # The official pipeline is optional: imported only in this child process.
    bias_mod = importlib.import_module("megaradrp.recipes.calibration.bias")
    dark_mod = importlib.import_module("megaradrp.recipes.calibration.dark")
    core = importlib.import_module("numina.core")
    assembly = importlib.import_module("numina.instrument.assembly")
    dataframe = importlib.import_module("numina.types.dataframe")

    files = sorted(workdir.glob(f"{kind}_*.fits"))
    start = time.perf_counter()
    header = fits.getheader(files[0])
    store = assembly.load_paths_store(["megaradrp.instrument.configs"])
    insmodel = assembly.assembly_instrument(store, CONFIG_UUID, DATE_OBS, by_key="uuid")
    insmodel.configure_with_header(header)
    ob = core.ObservationResult()
    ob.instrument = "MEGARA"
    ob.mode = "MegaraBiasImage" if kind == "bias" else "MegaraDarkImage"
    ob.configuration = insmodel
    ob.frames = [dataframe.DataFrame(filename=str(f)) for f in files]
    if kind == "bias":
        recipe: Any = bias_mod.BiasRecipe()
        rinput = recipe.create_input(obresult=ob)
        result = recipe.run(rinput)
        product = result.master_bias
    else:
        recipe = dark_mod.DarkRecipe()
        bias = dataframe.DataFrame(filename=str(workdir / "master_bias_mdrp.fits"))
        rinput = recipe.create_input(obresult=ob, master_bias=bias)
        result = recipe.run(rinput)
        product = result.master_dark
    recipe.run_qc(rinput, result)
    product.open().writeto(workdir / f"master_{kind}_mdrp.fits", overwrite=True)
    return time.perf_counter() - start


def run_ours(kind: str, workdir: Path, backend: str) -> float:
    """Run reduce.stream.reduce_files; return the seconds taken."""
    files = sorted(workdir.glob(f"{kind}_*.fits"))
    start = time.perf_counter()
    bias = None
    if kind == "dark":
        bias, _ = read_master(workdir / f"master_bias_ours_{backend}.fits")
    master = reduce_files(files, bias=bias, backend=backend)  # type: ignore[arg-type]
    hdul = fits.HDUList(
        [
            fits.PrimaryHDU(master.data),
            fits.ImageHDU(master.variance, name="VARIANCE"),
            fits.ImageHDU(master.npix, name="MAP"),
        ]
    )
    hdul.writeto(workdir / f"master_{kind}_ours_{backend}.fits", overwrite=True)
    return time.perf_counter() - start


def child(argv: list[str]) -> None:
    """Subprocess entry: run one reduction, print seconds and peak RSS (MiB)."""
    who, kind, workdir = argv[0], argv[1], Path(argv[2])
    if who == "mdrp":
        seconds = run_megaradrp(kind, workdir)
    else:
        seconds = run_ours(kind, workdir, who.split(":")[1])
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib}))


def spawn(who: str, kind: str, workdir: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", who, kind, str(workdir)],
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def compare(workdir: Path, kind: str, backend: str) -> str:
    with (
        fits.open(workdir / f"master_{kind}_mdrp.fits") as theirs,
        fits.open(workdir / f"master_{kind}_ours_{backend}.fits") as ours,
    ):
        a = theirs[0].data.astype(np.float64)
        b = ours[0].data.astype(np.float64)
        names = [hdu.name for hdu in theirs]
        same_map = (
            bool(np.array_equal(theirs["MAP"].data, ours["MAP"].data))
            if "MAP" in names
            else "n/a (megaradrp wrote no MAP)"
        )
        dtypes = f"{theirs[0].data.dtype}/{ours[0].data.dtype}"
    diff = np.abs(a - b)
    return (
        f"{kind:4s} backend={backend:7s} PRIMARY max|diff|={diff.max():.3g} ADU, "
        f"pixels differing={int(np.count_nonzero(diff))}, dtypes {dtypes}, "
        f"MAP equal={same_map}"
    )


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--darks", type=int, default=20)
    parser.add_argument("--biases", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if importlib.util.find_spec("megaradrp") is None:
        print("megaradrp is not importable: pip install '.[compat]' to run this")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        make_frames(workdir, args.darks, args.biases)
        figures = {}
        for kind in ("bias", "dark"):
            for who in ("mdrp", "ours:numpy", "ours:fitpack"):
                figures[(who, kind)] = spawn(who, kind, workdir)
        for kind in ("bias", "dark"):
            for backend in ("numpy", "fitpack"):
                print(compare(workdir, kind, backend))
        for kind, n in (("bias", args.biases), ("dark", args.darks)):
            theirs = figures[("mdrp", kind)]
            for who in ("ours:numpy", "ours:fitpack"):
                ours = figures[(who, kind)]
                speedup = theirs["seconds"] / ours["seconds"]
                print(
                    f"{kind:4s} N={n:2d} {who:12s}: {ours['seconds']:.2f} s vs "
                    f"{theirs['seconds']:.2f} s (x{speedup:.1f} faster); "
                    f"peak RSS {ours['peak_mib']:.0f} MiB vs "
                    f"{theirs['peak_mib']:.0f} MiB "
                    f"(x{theirs['peak_mib'] / ours['peak_mib']:.1f} less)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

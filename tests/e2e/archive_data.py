"""A small raw archive of two nights for the ``megara-dark archive`` tests.

Night 2026-11-27: 3 biases and 3 one-hour darks; night 2026-11-28: 3 darks
(paired with the first night's biases) and 2 short darks (too few for a set);
in nested folders with other names, beside a duplicate of a frame, a FITS
file of another instrument and a text file named ``.fits``. Shared by
``test_archive`` (local pool) and ``test_archive_dask`` (Dask cluster).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from reduce.synthetic import SyntheticDetector, make_raw, numina_header, write_raw
from sequencer.simlaunch import megara_dark

DARK_S = 3600.0
BIAS_NIGHT1 = ["2026-11-27T19:00:00", "2026-11-27T19:01:00", "2026-11-27T19:02:00"]
DARK_NIGHT1 = ["2026-11-27T20:00:00", "2026-11-27T21:01:00", "2026-11-27T22:02:00"]
DARK_NIGHT2 = ["2026-11-28T20:00:00", "2026-11-28T21:01:00", "2026-11-28T22:02:00"]
SHORT_NIGHT2 = ["2026-11-29T03:00:00", "2026-11-29T03:11:00"]


@dataclass(frozen=True)
class Archive:
    root: Path
    bias1: list[Path]
    dark1: list[Path]
    dark2: list[Path]
    duplicate: Path
    other: Path
    text: Path


def header(exptime: float, mode: str, k: int, date_obs: str) -> dict[str, Any]:
    found = numina_header(exptime, mode, k)
    found["DATE-OBS"] = date_obs
    found["UUID"] = str(uuid.UUID(int=k + (7 << 64)))
    return found


def write_archive(root: Path) -> Archive:
    """The archive of the module docstring, written under ``root`` (about
    420 MB: 35 MB a frame)."""
    truth, rng = SyntheticDetector(), np.random.default_rng(20261127)
    biases = [make_raw(truth, 0.0, rng) for _ in range(3)]
    darks = [make_raw(truth, DARK_S, rng) for _ in range(3)]

    def write(folder: str, name: str, pixels: Any, cards: dict[str, Any]) -> Path:
        path = root / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_raw(path, pixels, cards)
        return path

    bias1 = [
        write("2026/1127/cal", f"MEG_b{k}.fits", biases[k], header(0.0, "MegaraBiasImage", k, t))
        for k, t in enumerate(BIAS_NIGHT1)
    ]  # fmt: skip
    dark1 = [
        write("2026/1127/cal/dk", f"r{k}.FITS", darks[k], header(DARK_S, "MegaraDarkImage", 10 + k, t))
        for k, t in enumerate(DARK_NIGHT1)
    ]  # fmt: skip
    dark2 = [
        write("2026/1128", f"frame-{k:03d}.fit", darks[k], header(DARK_S, "MegaraDarkImage", 20 + k, t))
        for k, t in enumerate(DARK_NIGHT2)
    ]  # fmt: skip
    for k, t in enumerate(SHORT_NIGHT2):
        write("2026/1128", f"short{k}.fits", darks[k], header(600.0, "MegaraDarkImage", 30 + k, t))  # fmt: skip
    duplicate = root / "zz_copies" / "again.fits"
    duplicate.parent.mkdir()
    shutil.copy2(dark1[0], duplicate)
    other = root / "other" / "guider.fits"
    other.parent.mkdir()
    hdu = fits.PrimaryHDU(np.zeros((8, 8), dtype=np.int16))
    hdu.header["INSTRUME"] = "GUIDER"
    hdu.writeto(other)
    text = root / "other" / "notes.fits"
    text.write_text("observing notes, not a FITS file\n")
    (root / "other" / "README.txt").write_text("ignored: not named .fits\n")
    return Archive(root, bias1, dark1, dark2, duplicate, other, text)


def archive_argv(
    archive: Archive, out: Path, history: Path, *options: str
) -> list[str]:
    """``megara-dark archive ROOT --workdir OUT --history H --json OPTIONS``."""
    argv = [*megara_dark(), "archive", str(archive.root), "--workdir", str(out)]
    return [*argv, "--history", str(history), "--json", *options]


def run_archive(
    archive: Archive, out: Path, history: Path, *options: str
) -> tuple[int, list[Any], str]:
    """Run the command (:func:`archive_argv`): exit status, events, stderr."""
    argv = archive_argv(archive, out, history, *options)
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=600, check=False
    )
    events = [json.loads(line) for line in done.stdout.splitlines()]
    return done.returncode, events, done.stderr


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def primary(path: Path) -> Any:
    with fits.open(path) as hdul:
        return np.array(hdul[0].data)

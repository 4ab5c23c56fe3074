"""``megara-dark archive`` end to end on a small archive of two nights.

Night 2026-11-27: 3 biases and 3 one-hour darks; night 2026-11-28: 3 darks
(paired with the first night's biases) and 2 short darks (too few for a set);
in nested folders with other names, beside a duplicate of a frame, a FITS
file of another instrument and a text file named ``.fits``. The command
runs as a subprocess, three times: reduce everything, then nothing (all up
to date), then one set fails (a frame corrupted).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from reduce.batch import reduce_block
from reduce.synthetic import SyntheticDetector, make_raw, numina_header, write_raw
from sequencer.simlaunch import megara_dark

pytestmark = pytest.mark.e2e

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


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    root = tmp_path_factory.mktemp("archive")
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
    yield Archive(root, bias1, dark1, dark2, duplicate, other, text)
    shutil.rmtree(root, ignore_errors=True)


def run_archive(
    archive: Archive, out: Path, history: Path
) -> tuple[int, list[Any], str]:
    argv = [*megara_dark(), "archive", str(archive.root), "--workdir", str(out)]
    argv += ["--workers", "2", "--history", str(history), "--json"]
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


def test_archive_reduces_pairs_skips_and_reports(
    archive: Archive, tmp_path: Path
) -> None:
    out, history = tmp_path / "out", tmp_path / "history.sqlite"
    status, events, stderr = run_archive(archive, out, history)
    assert status == 0, stderr
    summary = events[-1]
    assert summary["event"] == "summary"
    assert summary["frames"] == 12  # the duplicate found, counted once
    assert summary["sets"] == 3
    assert (summary["reduced"], summary["skipped"], summary["failed"]) == (3, 0, [])
    assert summary["skipped_files"] == {"not FITS": 1, "not MEGARA": 1}
    assert {s["file"] for s in summary["skipped_list"]} == {
        str(archive.other),
        str(archive.text),
    }
    problems = {p["what"]: p for p in summary["problems"]}
    duplicate = problems[str(archive.duplicate)]
    assert "duplicate" in duplicate["reason"]
    assert str(archive.dark1[0]) in duplicate["files"]
    short = [
        p for p in summary["problems"] if "fewer than the minimum 3" in p["reason"]
    ]
    assert len(short) == 1
    assert short[0]["files"][0].endswith("short0.fits")
    started = [e for e in events if e["event"] == "set_started"]
    assert [e["mode"] for e in started] == ["MegaraBiasImage"] + ["MegaraDarkImage"] * 2
    assert "[3/3]" in stderr

    bias = out / "2026-11-27" / "obsid20261127_bias_190000_results"
    dark1 = out / "2026-11-27" / "obsid20261127_dark_200000_results"
    dark2 = out / "2026-11-28" / "obsid20261128_dark_200000_results"
    note = "master bias of 2026-11-27 (nearest earlier night)"
    assert note in (dark2 / "processing.log").read_text()
    notes = {o["set_id"]: o["note"] for o in summary["outcomes"]}
    assert notes["20261128_dark_200000"] == note
    task2 = json.loads((dark2 / "task.json").read_text())
    assert task2["inputs"]["master_bias"]["file"] == str(bias / "master_bias.fits")
    assert not list(out.rglob(".partial-*"))

    # The same sets through reduce_block: the same pixels.
    ref = reduce_block(
        block_id="ref_bias",
        mode="MegaraBiasImage",
        frames=archive.bias1,
        master_bias=None,
        workdir=tmp_path / "ref",
    )
    assert np.array_equal(primary(ref.product), primary(bias / "master_bias.fits"))
    ref_dark = reduce_block(
        block_id="ref_dark",
        mode="MegaraDarkImage",
        frames=archive.dark1,
        master_bias=ref.product,
        workdir=tmp_path / "ref",
    )
    assert np.array_equal(
        primary(ref_dark.product), primary(dark1 / "master_dark.fits")
    )
    shutil.rmtree(tmp_path / "ref")

    with sqlite3.connect(history) as db:
        rows = db.execute(
            "SELECT block, night, archive, source FROM dark_sets ORDER BY block"
        ).fetchall()
    assert rows == [
        ("20261127_dark_200000", "2026-11-27", str(archive.root), "archive"),
        ("20261128_dark_200000", "2026-11-28", str(archive.root), "archive"),
    ]

    # Again: everything up to date, nothing written.
    before = snapshot(out)
    status, events, stderr = run_archive(archive, out, history)
    assert status == 0, stderr
    assert (events[-1]["reduced"], events[-1]["skipped"]) == (0, 3)
    assert snapshot(out) == before

    # A frame corrupted: its set fails (exit status 1), its old products stay.
    with open(archive.dark2[1], "r+b") as stream:
        stream.seek(os.path.getsize(archive.dark2[1]) - 100_000)
        stream.write(b"\x12\x34")
    status, events, stderr = run_archive(archive, out, history)
    assert status == 1, stderr
    summary = events[-1]
    assert [f["set_id"] for f in summary["failed"]] == ["20261128_dark_200000"]
    assert "frame-001.fit" in summary["failed"][0]["reason"]
    assert summary["skipped"] == 2
    assert (dark2 / "master_dark.fits").is_file()
    assert not list(out.rglob(".partial-*"))

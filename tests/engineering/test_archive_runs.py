"""``megara-dark archive`` over frames that real runs of the simulators wrote.

The archive is the campaign sweep's run folders (``conftest.sweep``: the
simulators at 158, 163.15 and 173 K, and a run with a light leak, each run a
3-frame bias block and a dark block), reached through a folder link, plus a
copy of one frame under another name. The runs' own products (masters,
journals, reports) lie among the raw frames, as they would on a disk that
holds both. The command runs as a user types it; then ``megara-dark trend``
reads what it recorded.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from simulators.synthesis import dark_current_scale
from tests.engineering.conftest import SWEEP_TEMPERATURES, CampaignRun, cli

pytestmark = pytest.mark.e2e

QA = {"t158": "GOOD", "t163": "GOOD", "t173": "PARTIAL", "leak": "PARTIAL"}
"""The dark set of each run: the QA its own run's reduction gave it."""


def primary(path: Path) -> np.ndarray:
    with fits.open(path) as hdul:
        return np.array(hdul[0].data, dtype=np.float64)


def test_archive_of_simulator_runs_matches_the_runs_and_feeds_trend(
    sweep: CampaignRun, tmp_path: Path
) -> None:
    runs = sweep.folder / "runs"
    root = tmp_path / "archive"
    root.mkdir()
    (root / "runs").symlink_to(runs, target_is_directory=True)
    # each run writes its raw frames in its run folder's "data" folder
    raw = sorted(p for p in runs.rglob("*.fits") if p.parent.name == "data")
    assert len(raw) == 3 * 6 + 7
    copy = root / "zz_copies" / "again.fits"  # after runs/: the copy is set aside
    copy.parent.mkdir()
    shutil.copy2(raw[0], copy)
    out, history = tmp_path / "out", tmp_path / "history.sqlite"

    done = cli(
        "archive", str(root), "--workdir", str(out), "--history", str(history),
        "--json", "--workers", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["frames"] == len(raw) + 1  # the copy found, then set aside
    assert (summary["sets"], summary["reduced"], summary["failed"]) == (8, 8, [])
    duplicates = [p for p in summary["problems"] if "duplicate" in p["reason"]]
    assert [p["what"] for p in duplicates] == [str(copy)]
    # The runs' masters are products, not raw frames: never reduced again.
    reduced = {o["set_id"] for o in summary["outcomes"]}
    assert len(reduced) == 8

    # Each dark set: its run's QA and its run's master, pixel for pixel.
    outcomes = [o for o in summary["outcomes"] if o["product"]]
    darks = {Path(o["product"]): o for o in outcomes if "dark" in o["set_id"]}
    assert len(darks) == 4
    for name, qa in QA.items():
        block = "dark_4" if name == "leak" else "dark_3"
        own = runs / name / "work" / f"obsid{block}_results" / "master_dark.fits"
        matches = [
            (path, o)
            for path, o in darks.items()
            if np.allclose(primary(path), primary(own), rtol=0, atol=1e-4)
        ]
        assert len(matches) == 1, name
        assert matches[0][1]["qa"] == qa, (name, matches[0][1]["qa_reasons"])

    # The history has the four dark sets, with the night and the archive...
    with sqlite3.connect(history) as db:
        rows = db.execute("SELECT night, archive, source FROM dark_sets").fetchall()
    assert len(rows) == 4
    assert {(archive, source) for _, archive, source in rows} == {
        (str(root), "archive")
    }
    assert all(night for night, _, _ in rows)
    trend = cli(
        "trend", "dark_current", "--against", "temperature",
        "--history", str(history), "--out", str(tmp_path / "trend"),
    )  # fmt: skip
    assert trend.returncode == 0, trend.stderr
    doc = json.loads(
        (tmp_path / "trend" / "trend-dark_current-temperature.json").read_text()
    )
    # ... and the trend over the archive finds the simulators' law.
    lo, hi = SWEEP_TEMPERATURES[0], SWEEP_TEMPERATURES[-1]
    law = (hi - lo) * math.log(2) / math.log(dark_current_scale(hi, lo))
    for series in ("amp 1", "amp 2"):
        assert doc["fits"][series]["doubling_k"] == pytest.approx(law, rel=0.08)

    again = cli(
        "archive", str(root), "--workdir", str(out), "--history", str(history),
        "--json",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout.splitlines()[-1])
    assert (summary["reduced"], summary["skipped"]) == (0, 8)

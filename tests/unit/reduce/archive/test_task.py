"""One archive set reduced in place: reduced once, then up to date; atomic.

Real full-size frames (3 biases, 3 darks, 35 MB each), written once per
module; each test reduces into its own folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from reduce.archive.task import SetTask, clean_partials, run_set
from reduce.synthetic import SyntheticDetector, make_raw, numina_header, write_raw

NIGHT = date(2026, 11, 27)
DARK_S = 3600.0


@dataclass(frozen=True)
class Raw:
    folder: Path
    biases: tuple[Path, ...]
    darks: tuple[Path, ...]
    spare: npt.NDArray[np.uint16]  # another bias, to change an input with


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Raw]:
    folder = tmp_path_factory.mktemp("raw")
    truth, rng = SyntheticDetector(), np.random.default_rng(20261127)
    biases, darks = [], []
    for k in range(3):
        path = folder / f"b{k}.fits"
        write_raw(
            path, make_raw(truth, 0.0, rng), numina_header(0.0, "MegaraBiasImage", k)
        )
        biases.append(path)
    for k in range(3):
        path = folder / f"d{k}.fits"
        header = numina_header(DARK_S, "MegaraDarkImage", 10 + k)
        write_raw(path, make_raw(truth, DARK_S, rng), header)
        darks.append(path)
    spare = make_raw(truth, 0.0, rng)
    yield Raw(folder, tuple(biases), tuple(darks), spare)
    shutil.rmtree(folder, ignore_errors=True)


def bias_task(raw: Raw, out: Path, frames: tuple[Path, ...] | None = None) -> SetTask:
    return SetTask(
        set_id="20261127_bias_200000",
        night=NIGHT,
        mode="MegaraBiasImage",
        frames=frames or raw.biases,
        bias_product=None,
        out_dir=out / "2026-11-27",
        threads=2,
    )


def dark_task(raw: Raw, out: Path, bias: Path | None, note: str = "") -> SetTask:
    return SetTask(
        set_id="20261128_dark_210000",
        night=date(2026, 11, 28),
        mode="MegaraDarkImage",
        frames=raw.darks,
        bias_product=bias,
        out_dir=out / "2026-11-28",
        note=note,
        threads=2,
    )


def snapshot(folder: Path) -> dict[str, int]:
    """Every path under ``folder`` with its mtime (ns)."""
    return {str(p): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.fixture
def own_biases(raw: Raw, tmp_path: Path) -> tuple[Path, ...]:
    """Copies of the biases that a test may change."""
    folder = tmp_path / "raw"
    folder.mkdir()
    return tuple(Path(shutil.copy2(p, folder / p.name)) for p in raw.biases)


def test_reduced_then_up_to_date(raw: Raw, tmp_path: Path) -> None:
    out = tmp_path / "out"
    bias = bias_task(raw, out)
    first = run_set(bias)
    assert first.status == "reduced", first.reason
    assert first.product == bias.product
    assert bias.product.is_file()
    assert first.qa == "GOOD"
    assert first.seconds > 0
    assert first.peak_rss_mib > 0
    assert sorted(p.name for p in bias.out_dir.iterdir()) == [bias.results.name]
    before = snapshot(out)

    again = run_set(bias)
    assert again.status == "skipped"
    assert again.reason == "up to date"
    assert again.qa == "GOOD"
    assert again.product == bias.product
    assert snapshot(out) == before  # nothing written, nothing touched

    note = "master bias of 2026-11-27 (nearest earlier night)"
    dark = dark_task(raw, out, bias.product, note)
    done = run_set(dark)
    assert done.status == "reduced", done.reason
    assert note in (dark.results / "processing.log").read_text()
    task_json = json.loads((dark.results / "task.json").read_text())
    assert task_json["archive"] == {
        "set_id": dark.set_id,
        "night": "2026-11-28",
        "note": note,
    }
    assert task_json["inputs"]["master_bias"]["file"] == str(bias.product)
    assert run_set(dark).status == "skipped"

    # Another master bias (a new UUID) makes the dark outdated.
    shutil.rmtree(bias.results)
    assert run_set(bias).status == "reduced"
    before = snapshot(dark.results)
    redone = run_set(dark)
    assert redone.status == "reduced"
    assert snapshot(dark.results) != before
    assert not list(dark.out_dir.glob(".partial-*"))


def test_changed_input_or_settings_reduce_again(
    raw: Raw, own_biases: tuple[Path, ...], tmp_path: Path
) -> None:
    task = bias_task(raw, tmp_path / "out", own_biases)
    assert run_set(task).status == "reduced"
    uuid = json.loads((task.results / "task.json").read_text())["product"]["uuid"]
    write_raw(own_biases[1], raw.spare, numina_header(0.0, "MegaraBiasImage", 1))

    changed = run_set(task)
    assert changed.status == "reduced"
    document = json.loads((task.results / "task.json").read_text())
    assert document["product"]["uuid"] != uuid
    assert sorted(p.name for p in task.out_dir.iterdir()) == [task.results.name]

    qc = tmp_path / "qc.toml"
    qc.write_text("[qc]\nhot_nsigma = 6.0\n")
    assert run_set(replace(task, qc_config=qc)).status == "reduced"
    assert run_set(replace(task, qc_config=qc)).status == "skipped"
    assert run_set(replace(task, min_frames=2)).status == "reduced"


def test_leftover_partial_folders_are_deleted(raw: Raw, tmp_path: Path) -> None:
    task = bias_task(raw, tmp_path / "out")
    crashed = task.out_dir / f".partial-{task.set_id}-99999"
    (crashed / f"obsid{task.set_id}_results").mkdir(parents=True)
    (crashed / f"obsid{task.set_id}_results" / "master_bias.fits").write_bytes(b"x")
    other = task.out_dir / ".partial-another_set-12345"
    other.mkdir()

    assert run_set(task).status == "reduced"
    assert not crashed.exists()
    assert other.exists()  # another set's: perhaps under way
    assert clean_partials(task.out_dir) == [other]
    assert sorted(p.name for p in task.out_dir.iterdir()) == [task.results.name]


def test_a_failing_set_is_an_outcome(raw: Raw, tmp_path: Path) -> None:
    task = bias_task(raw, tmp_path / "out", raw.biases[:2])
    failed = run_set(task)
    assert failed.status == "failed"
    assert "frame" in failed.reason
    assert failed.product is None
    assert not task.out_dir.exists() or not any(task.out_dir.iterdir())

    missing = run_set(replace(task, frames=(tmp_path / "gone.fits",) * 3))
    assert missing.status == "failed"
    assert "gone.fits" in missing.reason

    no_bias = run_set(dark_task(raw, tmp_path / "out", tmp_path / "no_bias.fits"))
    assert no_bias.status == "failed"
    assert "no_bias.fits" in no_bias.reason

"""``megara-dark archive`` end to end on a small archive of two nights.

The archive is :func:`tests.e2e.archive_data.write_archive`'s: 3 sets (a
bias set and two dark sets), 2 short darks, a duplicate, a FITS file of
another instrument and a text file named ``.fits``. The command runs as a
subprocess on a local pool, three times: reduce everything, then nothing (all up
to date), then one set fails (a frame corrupted). First, a run stopped by
Ctrl-C (SIGINT to its process group, as a terminal sends it) and the same
command typed again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from reduce.batch import reduce_block
from tests.e2e.archive_data import (
    Archive,
    archive_argv,
    primary,
    run_archive,
    snapshot,
    write_archive,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    root = tmp_path_factory.mktemp("archive")
    yield write_archive(root)
    shutil.rmtree(root, ignore_errors=True)


LOCAL = ("--workers", "2")


def test_ctrl_c_stops_and_the_same_command_continues(
    archive: Archive, tmp_path: Path
) -> None:
    out, history = tmp_path / "out", tmp_path / "history.sqlite"
    argv = archive_argv(archive, out, history, "--workers", "1")
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "set_done":
            os.killpg(proc.pid, signal.SIGINT)
            break
    stdout, stderr = proc.communicate(timeout=120)
    events += [json.loads(line) for line in stdout.splitlines()]
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "run the same command again to continue" in stderr
    assert events[-1]["event"] == "interrupted"
    done = events[-1]["done"]
    assert 1 <= done < 3
    bias = out / "2026-11-27" / "obsid20261127_bias_190000_results"
    kept = snapshot(bias)

    status, events, stderr = run_archive(archive, out, history, "--workers", "1")
    assert status == 0, stderr
    summary = events[-1]
    # The set in progress at Ctrl-C was let finish: done, or done + 1, skipped.
    assert summary["reduced"] + summary["skipped"] == 3
    assert done <= summary["skipped"] <= done + 1
    assert snapshot(bias) == kept  # what the first run finished is not redone
    assert len(list(out.rglob("master_*.fits"))) == 3
    assert not list(out.rglob(".partial-*"))


def test_archive_reduces_pairs_skips_and_reports(
    archive: Archive, tmp_path: Path
) -> None:
    out, history = tmp_path / "out", tmp_path / "history.sqlite"
    status, events, stderr = run_archive(archive, out, history, *LOCAL)
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
    status, events, stderr = run_archive(archive, out, history, *LOCAL)
    assert status == 0, stderr
    assert (events[-1]["reduced"], events[-1]["skipped"]) == (0, 3)
    assert snapshot(out) == before

    # A frame corrupted: its set fails (exit status 1), its old products stay.
    with open(archive.dark2[1], "r+b") as stream:
        stream.seek(os.path.getsize(archive.dark2[1]) - 100_000)
        stream.write(b"\x12\x34")
    status, events, stderr = run_archive(archive, out, history, *LOCAL)
    assert status == 1, stderr
    summary = events[-1]
    assert [f["set_id"] for f in summary["failed"]] == ["20261128_dark_200000"]
    assert "frame-001.fit" in summary["failed"][0]["reason"]
    assert summary["skipped"] == 2
    assert (dark2 / "master_dark.fits").is_file()
    assert not list(out.rglob(".partial-*"))

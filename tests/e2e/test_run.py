"""``megara-dark run`` end to end on the built-in simulators, as a user runs it."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from sequencer.journal import Journal, replay
from sequencer.rawfits import verify_raw_frame
from sequencer.simlaunch import megara_dark
from tests.simproc import BIAS3_DARK60

pytestmark = pytest.mark.e2e

BLOCKS = BIAS3_DARK60


def write_setup(
    tmp_path: Path, scenario: str | None = None, **run: float
) -> tuple[Path, Path]:
    blocks = tmp_path / "ob.yaml"
    blocks.write_text(BLOCKS)
    config = tmp_path / "instrument.toml"
    lines = ["[simulator]", "time_scale = 1000.0", "seed = 3", "readout_s = 10.0"]
    if scenario is not None:
        (tmp_path / "scenario.yaml").write_text(scenario)
        lines.append('scenario = "scenario.yaml"')
    lines += ["[run]", *(f"{k} = {v}" for k, v in run.items())]
    lines += ["[ccd]", "reply_timeout_s = 2.0", "[cover]", "motion_timeout_s = 5.0"]
    config.write_text("\n".join(lines) + "\n")
    return blocks, config


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*megara_dark(), "run", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        check=False,
    )


def test_clean_run_writes_valid_frames_and_products(tmp_path: Path) -> None:
    blocks, config = write_setup(tmp_path)
    work = tmp_path / "work"
    done = run(
        str(blocks),
        "--config",
        str(config),
        "--workdir",
        str(work),
        "--json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # With --json the human summary goes to stderr; stdout is events only.
    assert "bias3: 3/3 valid frames, 0 retaken; QA" in done.stderr
    assert "dark60: 3/3 valid frames, 0 retaken; QA" in done.stderr
    check_events([json.loads(line) for line in done.stdout.splitlines()], work)

    frames = sorted((work / "data").glob("*.fits"))
    assert [f.name for f in frames] == [
        "bias3_0001.fits", "bias3_0002.fits", "bias3_0003.fits",
        "dark60_0001.fits", "dark60_0002.fits", "dark60_0003.fits",
    ]  # fmt: skip
    for path in frames:
        header = verify_raw_frame(path)  # checksums, shape, layout
        assert header["INTLKOK"] is True
        assert header["SIMULATE"] is True
        assert header["COVBEF"] == header["COVAFT"] == "left=CLOSED right=CLOSED"
        assert header["SHUTBEF"] == header["SHUTAFT"] == header["SHUTMAX"] == "CLOSED"
    assert fits.getheader(frames[-1])["EXPTIME"] == 60.0

    for block, product in (
        ("bias3", "master_bias.fits"),
        ("dark60", "master_dark.fits"),
    ):
        folder = work / f"obsid{block}_results"
        for name in (product, "result.json", "task.json", "processing.log"):
            assert (folder / name).is_file(), name
        result = json.loads((folder / "result.json").read_text())
        assert result["qc"] == "GOOD", result
        with fits.open(folder / product, checksum=True) as hdul:
            assert hdul[0].data.shape == (4112, 4096)

    state = replay(Journal(work / "run.journal").records())
    assert state.done
    assert state.block("dark60").valid_files == [f.name for f in frames[3:]]


NO_ASTROPY = """\
import sys
sys.modules["astropy"] = None  # any import of astropy now raises ImportError
from sequencer.cli import main
sys.argv = ["megara-dark", *sys.argv[1:]]
main()
"""


def test_a_run_never_imports_astropy(tmp_path: Path) -> None:
    # The raw frames are written and verified, and the products reduced, by
    # the project's own FITS code (reduce.fits, reduce.rawframe): a run, its
    # reductions included, works in an interpreter where astropy cannot be
    # imported at all. What it writes is then checked with astropy.
    blocks, config = write_setup(tmp_path)
    work = tmp_path / "work"
    argv = ["run", str(blocks), "--config", str(config), "--workdir", str(work)]
    done = subprocess.run(
        [sys.executable, "-c", NO_ASTROPY, *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    frames = sorted((work / "data").glob("*.fits"))
    assert len(frames) == 6
    for path in frames:
        with fits.open(path, checksum=True) as hdul:
            assert len(hdul) == 1
            assert hdul[0].data.dtype == np.uint16
            assert hdul[0].header["INTLKOK"] is True
    assert json.loads((work / "obsiddark60_results" / "result.json").read_text())


def check_events(events: list[dict[str, Any]], work: Path) -> None:
    """The --json events of the clean two-block run, in order."""
    news = [
        (e["event"], e.get("block"), e.get("frame"))
        for e in events
        if e["event"] not in ("exposure", "readout", "readback", "state")
    ]
    # A frame's file is written while the next frame starts: the two events
    # may come in either order; everything else is in sequence.
    at = {item: i for i, item in enumerate(news)}
    ordered = [item for item in news if item[0] != "frame_written"]
    expected: list[tuple[str, str | None, int | None]] = [
        ("run_started", None, None),
        ("devices", None, None),
    ]
    for block in ("bias3", "dark60"):
        expected.append(("block_started", block, None))
        expected += [("frame_started", block, k) for k in (1, 2, 3)]
        expected += [("reduction_done", block, None), ("block_done", block, None)]
        for k in (1, 2, 3):
            written = at[("frame_written", block, k)]
            assert at[("frame_started", block, k)] < written
            assert written < at[("reduction_done", block, None)]
    expected.append(("run_done", None, None))
    assert ordered == expected
    assert len(news) == len(expected) + 6
    assert all(b["t"] >= a["t"] for a, b in itertools.pairwise(events))

    for e in events:
        if e["event"] == "frame_written":
            assert (work / "data" / e["file"]).is_file()
        if e["event"] == "reduction_done":
            assert e["qa"] == "GOOD", e
            assert Path(e["product"]).is_file()
    done = events[-1]
    assert (done["status"], done["exit"]) == ("ok", 0)
    assert [b["valid"] for b in done["blocks"]] == [3, 3]

    # Each dark frame: its exposure counts down 60 s to 0, then its readout
    # goes through the controller (ccd) and the transfer to 100 %.
    for k in (1, 2, 3):
        mine = [e for e in events if e.get("block") == "dark60" and e.get("frame") == k]
        exposure = [e["remaining_s"] for e in mine if e["event"] == "exposure"]
        assert exposure[0] == 60.0
        assert exposure[-1] == 0.0
        assert exposure == sorted(exposure, reverse=True)
        readout = [(e["phase"], e["percent"]) for e in mine if e["event"] == "readout"]
        assert readout[0] == ("ccd", 0.0)
        assert ("ccd", 100.0) in readout
        assert readout[-1] == ("transfer", 100.0)
        kinds = [e["event"] for e in mine]
        assert kinds.index("frame_written") > max(
            i for i, kind in enumerate(kinds) if kind == "readout"
        )


def test_bad_block_file_is_one_line_exit_2(tmp_path: Path) -> None:
    blocks = tmp_path / "ob.yaml"
    blocks.write_text(BLOCKS.replace("nframes: 3\n", "nframes: 0\n", 1))
    done = run(str(blocks), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "key 'nframes': got 0" in lines[0]
    assert not (
        tmp_path / "megara-dark-runs"
    ).exists()  # nothing moved, nothing written


def test_shutter_stuck_open_faults_before_any_frame(tmp_path: Path) -> None:
    blocks, config = write_setup(
        tmp_path, "faults:\n  - {device: ccd, kind: shutter_stuck_open}\n"
    )
    work = tmp_path / "work"
    done = run(
        str(blocks), "--config", str(config), "--workdir", str(work), cwd=tmp_path
    )
    assert done.returncode == 1
    assert "FAULT" in done.stdout
    assert "shutter reads OPEN" in done.stdout
    assert "Traceback" not in done.stderr
    assert list((work / "data").glob("*.fits")) == []
    records = Journal(work / "run.journal").records()
    assert records[-1]["event"] == "fault"


def test_cover_jam_faults_with_an_actionable_message(tmp_path: Path) -> None:
    blocks, config = write_setup(
        tmp_path, "faults:\n  - {device: cover_right, kind: cover_jam}\n"
    )
    done = run(
        str(blocks),
        "--config",
        str(config),
        "--workdir",
        str(tmp_path / "w"),
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "cover right: stopped part-way" in done.stdout
    # The built-in simulators ended with the run: nothing to reset, and the
    # way on is the resume of this run folder.
    assert f"megara-dark run --resume {tmp_path / 'w'}" in done.stdout
    assert "megara-dark reset" not in done.stdout


def test_interrupted_run_resumes_to_exactly_n_frames(tmp_path: Path) -> None:
    blocks, config = write_setup(tmp_path)
    work = tmp_path / "work"
    proc = subprocess.Popen(
        [
            *megara_dark(),
            "run",
            str(blocks),
            "--config",
            str(config),
            "--workdir",
            str(work),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 120
    while (
        time.monotonic() < deadline
        and len(list((work / "data").glob("dark60_*.fits"))) < 1
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "ABORTED" in out
    taken = len(list((work / "data").glob("dark60_*.fits")))
    assert 1 <= taken < 3

    again = run(
        str(blocks),
        "--config",
        str(config),
        "--workdir",
        str(work),
        "--resume",
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "dark60: 3/3 valid frames" in again.stdout
    frames = sorted(p.name for p in (work / "data").glob("dark60_*.fits"))
    assert len(frames) == 3  # nothing lost, nothing duplicated
    state = replay(Journal(work / "run.journal").records())
    assert state.block("dark60").valid_files == frames
    assert len(set(frames)) == len(frames)
    assert (work / "obsiddark60_results" / "master_dark.fits").is_file()
    assert not [p for p in (work / "data").iterdir() if p.name.endswith(".partial")]
    # The resumed run fed the frames taken before the stop to its reduction.
    task = json.loads((work / "obsiddark60_results" / "task.json").read_text())
    used = sorted(Path(f["file"]).name for f in task["inputs"]["frames"] if f["used"])
    assert used == frames


def test_frames_the_reduction_excludes_are_counted_and_named(tmp_path: Path) -> None:
    """A leak in one of four darks: 3 used, 1 excluded, said everywhere."""
    (tmp_path / "ob.yaml").write_text(
        "id: bias3\ninstrument: MEGARA\nmode: MegaraBiasImage\nexptime: 0.0\n"
        "nframes: 3\n---\n"
        "id: dark4\ninstrument: MEGARA\nmode: MegaraDarkImage\nexptime: 3600.0\n"
        "nframes: 4\n"
    )
    (tmp_path / "leak.yaml").write_text(
        "faults:\n  - {device: ccd, kind: light_leak, on_readout: 5, "
        "params: {flux: 5.0}}\n"
    )
    (tmp_path / "sim.toml").write_text(
        '[simulator]\ntime_scale = 10000.0\nseed = 3\nscenario = "leak.yaml"\n'
        "readout_s = 10.0\n[run]\nreadout_s = 10.0\n"
    )
    done = run("ob.yaml", "--config", "sim.toml", "--workdir", "w", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dark4: 3/4 frames used, 1 excluded by the reduction" in done.stdout
    assert "  excluded dark4_0002.fits: " in done.stdout  # readout 5: 3 biases
    records = Journal(tmp_path / "w" / "run.journal").records()
    reduced = next(
        r for r in records if r["event"] == "reduction_done" and r["block"] == "dark4"
    )
    assert [e["file"] for e in reduced["excluded"]] == ["dark4_0002.fits"]
    result = json.loads(
        (tmp_path / "w" / "obsiddark4_results" / "result.json").read_text()
    )
    assert [e["file"] for e in result["excluded"]] == ["dark4_0002.fits"]
    assert result["qc"] == "PARTIAL"
    assert result["qc_reasons"]

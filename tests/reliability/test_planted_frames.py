"""A resume can always finish: damaged, missing and planted frames, a second run.

One run is stopped (SIGINT) after its first dark frame; each case copies its
folder, damages or plants something where a frame is, and resumes with
``megara-dark run --resume WORKDIR`` alone. The resume must end with exit 0
and exactly N valid frames of distinct UUIDs, the bad file kept aside (never
deleted) and named in the journal, without hanging.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from astropy.io import fits

from sequencer.journal import Journal, replay
from sequencer.simlaunch import megara_dark
from tests.simproc import BIAS3_DARK60, megara, stop_when

pytestmark = pytest.mark.e2e

BLOCKS = BIAS3_DARK60
CONFIG = """\
[simulator]
time_scale = 200.0
seed = 5
readout_s = 20.0
[run]
readout_s = 20.0
"""
DARK = "dark60"


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder stopped by SIGINT after its first dark frame."""
    here = tmp_path_factory.mktemp("stopped")
    (here / "ob.yaml").write_text(BLOCKS)
    (here / "sim.toml").write_text(CONFIG)
    work = here / "w"
    done = stop_when(
        ["run", "ob.yaml", "--config", "sim.toml", "--workdir", "w"],
        cwd=here,
        frames=work / "data",
        pattern=f"{DARK}_0001.fits",
    )
    assert done.returncode == 130, done.stderr[-2000:]
    return work


def dark_frames(work: Path) -> list[Path]:
    return sorted((work / "data").glob(f"{DARK}_*.fits"))


def journaled(work: Path) -> list[str]:
    return replay(Journal(work / "run.journal").records()).block(DARK).valid_files


def truncate(work: Path) -> str:
    first = work / "data" / journaled(work)[0]
    first.write_bytes(first.read_bytes()[:-2880])
    return first.name


def flip_a_byte(work: Path) -> str:
    first = work / "data" / journaled(work)[0]
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0x40
    first.write_bytes(bytes(data))
    return first.name


def delete(work: Path) -> str:
    first = work / "data" / journaled(work)[0]
    first.unlink()
    return first.name


def next_name(work: Path) -> str:
    highest = max(int(p.stem.rsplit("_", 1)[1]) for p in dark_frames(work))
    return f"{DARK}_{highest + 1:04d}.fits"


def plant_a_copy(work: Path) -> str:
    """A copy of a good frame under the next frame's name (valid checksums)."""
    name = next_name(work)
    shutil.copy(work / "data" / journaled(work)[0], work / "data" / name)
    return name


def plant_a_bias(work: Path) -> str:
    name = next_name(work)
    shutil.copy(work / "data" / "bias3_0001.fits", work / "data" / name)
    return name


def plant_a_fifo(work: Path) -> str:
    name = next_name(work)
    os.mkfifo(work / "data" / name)
    return name


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "damage",
    [truncate, flip_a_byte, delete, plant_a_copy, plant_a_bias, plant_a_fifo],
)
def test_a_resume_sets_bad_frames_aside_and_finishes(
    stopped: Path, tmp_path: Path, damage: Callable[[Path], str]
) -> None:
    work = tmp_path / "w"
    shutil.copytree(stopped, work, symlinks=True)
    stale = work / f"obsid{DARK}_results" / ".master_dark.fits.999999.tmp"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"left by a killed writer")
    bad = damage(work)

    done = megara("run", "--resume", str(work), cwd=tmp_path)

    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{DARK}: 3/3 valid frames" in done.stdout
    records = Journal(work / "run.journal").records()
    discarded = [r for r in records if r["event"] == "frame_discarded"]
    assert [r["file"] for r in discarded] == [bad]
    if damage is not delete:
        assert discarded[0]["moved_to"] == f"{bad}.damaged"
        assert os.path.lexists(work / "data" / f"{bad}.damaged")  # kept
    valid = replay(records).block(DARK).valid_files
    assert len(valid) == 3
    assert bad not in valid
    uuids = {fits.getheader(work / "data" / name)["UUID"] for name in valid}
    assert len(uuids) == 3  # three distinct frames, none counted twice
    assert not stale.exists()


def test_a_second_run_on_a_folder_in_use_is_refused_at_once(
    stopped: Path, tmp_path: Path
) -> None:
    work = tmp_path / "w"
    shutil.copytree(stopped, work, symlinks=True)
    first = subprocess.Popen(
        [*megara_dark(), "run", "--resume", "w"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and b"pid" not in (
            (work / ".lock").read_bytes() if (work / ".lock").exists() else b""
        ):
            time.sleep(0.01)
        before = (work / "run.journal").read_bytes()
        second = megara("run", "--resume", "w", cwd=tmp_path, timeout=60)
        assert second.returncode == 2
        assert f"PID {first.pid}" in second.stderr
        assert "in use by another megara-dark" in second.stderr
        assert (work / "run.journal").read_bytes().startswith(before)
    finally:
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    seqs = [r["seq"] for r in Journal(work / "run.journal").records()]
    assert seqs == sorted(set(seqs))  # one writer: no duplicate sequence numbers

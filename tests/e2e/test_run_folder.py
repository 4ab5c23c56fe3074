"""The run folder is the run: the telescope path, typed as an engineer types it.

``megara-dark simulate --transport tcp`` runs as its own process; an
instrument configuration names its ``socket://`` URLs in ``[devices]``; every
``megara-dark`` command gets ``--config`` (or the run folder); and every
command the software prints for the operator is typed exactly as printed
(split as a shell splits it, run from the same folder).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from astropy.io import fits

from drivers.archon import ArchonCcdController
from drivers.config import CcdConfig, CoverConfig
from drivers.cover import SerialCoverHalf, SerialFocalPlaneCover
from sequencer.journal import Journal, replay
from tests.simproc import (
    BIAS3_DARK60,
    SimProcess,
    megara,
    megara_dark,
    start_simulators,
    stop_when,
)

pytestmark = pytest.mark.e2e

BLOCKS = BIAS3_DARK60


def devices_config(sim: SimProcess, extra: str = "") -> str:
    """An instrument configuration naming the running simulators' URLs."""
    return (
        "[devices]\n"
        + "".join(f'{name} = "{url}"\n' for name, url in sim.urls.items())
        + "[run]\npoll_s = 0.01\ncover_poll_s = 0.05\nreadout_s = 1.0\n"
        + "[cover]\nmotion_timeout_s = 10.0\n"
        + extra
    )


@pytest.fixture
def telescope(tmp_path: Path) -> Iterator[tuple[SimProcess, Path]]:
    """TCP simulators as their own process, and eng.toml pointing at them."""
    sim = start_simulators(
        "--transport", "tcp", "--time-scale", "50", "--readout-s", "1",
        "--cover-motion-s", "1",
    )  # fmt: skip
    with closing(sim):
        (tmp_path / "eng.toml").write_text(devices_config(sim))
        (tmp_path / "eng.yaml").write_text(BLOCKS)
        yield sim, tmp_path


def typed_as_printed(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command the software printed, split as a shell splits it."""
    argv = shlex.split(command)
    assert argv[0] == "megara-dark", command
    return megara(*argv[1:], cwd=cwd)


def printed(text: str, after: str) -> str:
    """The command printed after ``after`` (up to ';' or the end of line)."""
    match = re.search(re.escape(after) + r"\s*(megara-dark [^;\n]+)", text)
    assert match is not None, f"no command after {after!r} in:\n{text[-2000:]}"
    return match.group(1).strip()


def cover_closed(sim: SimProcess) -> bool:
    halves = [
        SerialCoverHalf.from_config(CoverConfig(url=sim.urls[f"cover_{s}"], name=s))
        for s in ("left", "right")
    ]
    cover = SerialFocalPlaneCover(*halves)
    cover.connect()
    try:
        return cover.status().fully_closed
    finally:
        cover.close_link()


def records(work: Path) -> list[dict[str, Any]]:
    return Journal(work / "run.journal").records()


def test_the_run_folder_records_inputs_and_devices(
    telescope: tuple[SimProcess, Path],
) -> None:
    sim, here = telescope
    done = megara("run", "eng.yaml", "--config", "eng.toml", "--workdir", "w", cwd=here)
    assert done.returncode == 0, done.stderr[-3000:]
    work = here / "w"
    assert (work / "blocks.yaml").read_bytes() == (here / "eng.yaml").read_bytes()
    assert (work / "instrument.toml").read_bytes() == (here / "eng.toml").read_bytes()
    first, *rest = records(work)
    assert first["event"] == "run_started"
    assert first["command"].startswith("megara-dark run eng.yaml --config eng.toml")
    assert first["blocks_file"]["name"] == "blocks.yaml"
    assert first["config_file"]["name"] == "instrument.toml"
    devices = next(r for r in rest if r["event"] == "devices")["devices"]
    assert devices["ccd"]["url"] == sim.urls["ccd"]
    assert devices["ccd"]["simulated"] is True  # it says so itself
    assert devices["cover_left"]["url"] == sim.urls["cover_left"]
    # Reached through [devices], the frames still say they are simulated.
    for path in sorted((work / "data").glob("*.fits")):
        assert fits.getheader(path)["SIMULATE"] is True, path.name
    # The folder stands alone: its reduction blocks reduce again from inside.
    again = megara(
        "reduce", "reduction.yaml", "--datadir", "data", "--workdir", ".",
        "--overwrite", cwd=work,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert "dark60: 3 frames" in again.stdout
    # Finished: resuming says so, touches nothing, exits 0.
    before = (work / "run.journal").read_bytes()
    again = megara("run", "--resume", "w", cwd=here)
    assert again.returncode == 0, again.stderr
    assert "finished" in again.stdout
    assert (work / "run.journal").read_bytes() == before
    # A plain rerun in the finished folder is refused, without a resume hint.
    rerun = megara(
        "run", "eng.yaml", "--config", "eng.toml", "--workdir", "w", cwd=here
    )
    assert rerun.returncode == 2
    assert "finished run" in rerun.stderr
    assert "--resume" not in rerun.stderr


def test_sigint_then_the_printed_resume_finishes_on_the_same_devices(
    telescope: tuple[SimProcess, Path],
) -> None:
    sim, here = telescope
    work = here / "w"
    stopped = stop_when(
        ["run", "eng.yaml", "--config", "eng.toml", "--workdir", "w"],
        cwd=here,
        frames=work / "data",
        pattern="dark60_*",
    )
    err = stopped.stderr
    assert stopped.returncode == 130, err[-3000:]
    command = printed(err, "finish with:")
    assert command == "megara-dark run --resume w"
    assert any(r["event"] == "stopped" for r in records(work))

    # Other observing blocks or another configuration: refused, untouched.
    before = (work / "run.journal").read_bytes()
    (here / "other.yaml").write_text(
        BLOCKS + "---\nid: dark9\nmode: MegaraDarkImage\nexptime: 9.0\nnframes: 3\n"
    )
    other = megara("run", "other.yaml", "--workdir", "w", "--resume", cwd=here)
    assert other.returncode == 2
    assert "not the observing blocks this run was started with" in other.stderr
    (here / "other.toml").write_text(devices_config(sim, "[ccd]\nretries = 1\n"))
    other = megara("run", "--resume", "w", "--config", "other.toml", cwd=here)
    assert other.returncode == 2
    assert "not the instrument configuration" in other.stderr
    assert (work / "run.journal").read_bytes() == before

    again = typed_as_printed(command, here)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "dark60: 3/3 valid frames" in again.stdout
    log = records(work)
    recorded = next(r for r in log if r["event"] == "devices")["devices"]
    checked = [r["devices"] for r in log if r["event"] == "devices_checked"]
    assert checked, "the resume did not check the devices"
    for found in checked:
        assert {k: v["url"] for k, v in found.items()} == {
            k: v["url"] for k, v in recorded.items()
        }
    state = replay(log)
    assert len(state.block("dark60").valid_files) == 3


def test_after_a_jam_the_printed_reset_acts_on_the_configured_cover(
    tmp_path: Path,
) -> None:
    scenario = tmp_path / "jam.yaml"
    scenario.write_text(
        "faults:\n  - {device: cover_left, kind: cover_jam, params: {at: 0.4}}\n"
    )
    sim = start_simulators(
        "--transport", "tcp", "--time-scale", "1000", "--cover-motion-s", "6",
        "--scenario", str(scenario),
    )  # fmt: skip
    with closing(sim):
        (tmp_path / "eng.toml").write_text(devices_config(sim))
        (tmp_path / "eng.yaml").write_text(BLOCKS)
        run = megara(
            "run", "eng.yaml", "--config", "eng.toml", "--workdir", "w", cwd=tmp_path
        )
        assert run.returncode == 1, run.stderr[-2000:]
        assert not cover_closed(sim)  # left in the jam
        command = printed(run.stdout + run.stderr, "make it safe with:")
        assert command == "megara-dark reset --workdir w"

        done = typed_as_printed(command, tmp_path)

        assert done.returncode == 0, done.stdout + done.stderr
        assert sim.urls["cover_left"] in done.stdout  # it names what it read
        assert sim.urls["ccd"] in done.stdout
        assert "reset: safe: cover left=CLOSED right=CLOSED" in done.stdout
        assert cover_closed(sim)  # read back by another client


def test_reset_without_a_target_refuses_and_starts_nothing(tmp_path: Path) -> None:
    done = megara("reset", cwd=tmp_path)
    assert done.returncode == 2
    assert "--config" in done.stderr
    assert "--workdir" in done.stderr
    assert "--simulators" in done.stderr
    assert "safe" not in done.stdout
    shown = megara("reset", "--simulators", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "reset: safe:" in shown.stdout


def test_a_block_the_reduction_must_refuse_is_refused_before_any_exposure(
    telescope: tuple[SimProcess, Path],
) -> None:
    sim, here = telescope
    (here / "short.yaml").write_text(
        BLOCKS.rstrip().removesuffix("nframes: 3") + "nframes: 2\n"
    )
    done = megara(
        "run", "short.yaml", "--config", "eng.toml", "--workdir", "w", cwd=here
    )
    assert done.returncode == 2
    assert "dark60" in done.stderr
    assert "nframes" in done.stderr
    assert "Traceback" not in done.stderr
    assert not cover_closed(sim)  # the cover was never commanded (starts open)
    ccd = ArchonCcdController.from_config(CcdConfig(url=sim.urls["ccd"]))
    ccd.connect()
    try:
        assert ccd.status().frame == 0  # nothing was exposed
    finally:
        ccd.close_link()
    # The folder never took a frame: a plain rerun may reuse it.
    again = megara(
        "run", "eng.yaml", "--config", "eng.toml", "--workdir", "w", cwd=here
    )
    assert again.returncode == 0, again.stderr[-3000:]


def test_a_folder_whose_run_never_took_a_frame_is_reused_by_a_plain_rerun(
    tmp_path: Path,
) -> None:
    (tmp_path / "eng.yaml").write_text(BLOCKS)
    (tmp_path / "jam.yaml").write_text(
        "faults:\n  - {device: cover_right, kind: cover_jam}\n"
    )
    jammed = '[simulator]\ntime_scale = 1000.0\nscenario = "jam.yaml"\n'
    (tmp_path / "sim.toml").write_text(jammed)
    first = megara(
        "run", "eng.yaml", "--config", "sim.toml", "--workdir", "w", cwd=tmp_path
    )
    assert first.returncode == 1, first.stderr[-2000:]
    assert not list((tmp_path / "w" / "data").glob("*.fits"))
    (tmp_path / "sim.toml").write_text("[simulator]\ntime_scale = 1000.0\n")

    again = megara(
        "run", "eng.yaml", "--config", "sim.toml", "--workdir", "w", cwd=tmp_path
    )

    assert again.returncode == 0, again.stderr[-2000:]
    assert "never took a frame" in again.stderr
    kept = list((tmp_path / "w").glob("run.journal.unused-*"))
    assert len(kept) == 1  # the earlier journal is kept, not deleted


@pytest.mark.parametrize(
    "moment", ["dark60_0001.fits", "dark60_0002.fits", 0.5, 1.3, 2.1, 3.4]
)
def test_sigkill_then_resume_alone_on_the_configured_devices(
    telescope: tuple[SimProcess, Path], moment: str | float
) -> None:
    """Killed mid-run (the devices outlive it), resumed with the folder alone."""
    _, here = telescope
    work = here / "w"
    proc = subprocess.Popen(
        [*megara_dark(), "run", "eng.yaml", "--config", "eng.toml", "--workdir", "w"],
        cwd=here,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if isinstance(moment, float):  # seconds after the start: any phase
        time.sleep(moment)
    else:  # a frame file just written
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (work / "data" / moment).exists():
            time.sleep(0.01)
    proc.kill()
    proc.wait()
    if (work / "run.journal").exists():
        again = megara("run", "--resume", "w", cwd=here)
    else:  # killed before the run folder was made: a plain rerun takes it
        again = megara(
            "run", "eng.yaml", "--config", "eng.toml", "--workdir", "w", cwd=here
        )

    assert again.returncode == 0, again.stderr[-3000:]
    assert "dark60: 3/3 valid frames" in again.stdout
    log = records(work)
    recorded = next(r for r in log if r["event"] == "devices")["devices"]
    for checked in (r["devices"] for r in log if r["event"] == "devices_checked"):
        assert checked == recorded  # the same devices, identified the same way
    for path in sorted((work / "data").glob("*.fits")):
        assert fits.getheader(path)["SIMULATE"] is True, path.name


def test_the_printed_resume_after_a_scenario_fault_finishes_the_run(
    tmp_path: Path,
) -> None:
    """Built-in simulators: the resume starts them without the scenario."""
    (tmp_path / "eng.yaml").write_text(BLOCKS)
    (tmp_path / "jam.yaml").write_text(
        "faults:\n  - {device: cover_right, kind: cover_jam}\n"
    )
    (tmp_path / "sim.toml").write_text(
        '[simulator]\ntime_scale = 1000.0\nscenario = "jam.yaml"\n'
    )
    first = megara(
        "run", "eng.yaml", "--config", "sim.toml", "--workdir", "w", cwd=tmp_path
    )
    assert first.returncode == 1, first.stderr[-2000:]
    command = printed(first.stdout + first.stderr, "finish the run with:")
    assert command == "megara-dark run --resume w"

    again = typed_as_printed(command, tmp_path)

    assert again.returncode == 0, again.stderr[-2000:]
    assert "without the fault scenario" in again.stderr
    assert "dark60: 3/3 valid frames" in again.stdout


def test_a_file_the_run_names_changed_since_its_start_is_refused_on_resume(
    tmp_path: Path,
) -> None:
    (tmp_path / "eng.yaml").write_text(BLOCKS)
    (tmp_path / "qc.toml").write_text("[qc]\nhot_nsigma = 5.0\n")
    (tmp_path / "sim.toml").write_text(
        '[simulator]\ntime_scale = 1000.0\n[reduce]\nqc_config = "qc.toml"\n'
    )
    stopped = stop_when(
        ["run", "eng.yaml", "--config", "sim.toml", "--workdir", "w"],
        cwd=tmp_path,
        frames=tmp_path / "w" / "data",
        pattern="dark60_*",
    )
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    (tmp_path / "qc.toml").write_text("[qc]\nhot_nsigma = 3.0\n")

    refused = megara("run", "--resume", "w", cwd=tmp_path)

    assert refused.returncode == 2
    assert "qc.toml: changed since this run started" in refused.stderr
    (tmp_path / "qc.toml").write_text("[qc]\nhot_nsigma = 5.0\n")
    again = megara("run", "--resume", "w", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]

"""A Dark run the way an engineer runs one, checked by the official pipeline.

``megara-dark simulate --transport tcp`` runs as its own process (the CCD an
Archon on its TCP port), an instrument configuration names its URLs in
``[devices]``, and ``megara-dark run --config`` takes a bias and a dark block
through our Archon driver. ``numina verify`` must accept every raw frame the
run wrote, and ``numina run`` (megaradrp) on those same frames must make the
master dark the run made (PRIMARY within 1e-3 ADU, MAP equal).

Needs the official pipeline (``pip install '.[compat]'``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from tests.simproc import SimProcess, megara, start_simulators

pytestmark = [pytest.mark.compat, pytest.mark.sim]

pytest.importorskip("megaradrp")

NUMINA = Path(sys.executable).with_name("numina")
BLOCKS = """\
id: bias
instrument: MEGARA
mode: MegaraBiasImage
exptime: 0.0
nframes: 5
---
id: dark
instrument: MEGARA
mode: MegaraDarkImage
exptime: 900.0
nframes: 3
"""


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    started = start_simulators(
        "--transport", "tcp", "--time-scale", "1000", "--seed", "5", "--run-key", "9"
    )
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="module")
def run(sim: SimProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of one bias and one dark block, ``--config`` throughout."""
    here = tmp_path_factory.mktemp("archon_run")
    assert sim.urls["ccd"].startswith("socket://127.0.0.1:")
    devices = "".join(f'{name} = "{url}"\n' for name, url in sim.urls.items())
    (here / "instrument.toml").write_text(
        f"[devices]\n{devices}[run]\npoll_s = 0.05\n", encoding="utf-8"
    )
    (here / "blocks.yaml").write_text(BLOCKS, encoding="utf-8")
    done = megara(
        "run", "blocks.yaml", "--config", "instrument.toml", "--workdir", "w",
        cwd=here,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "QA GOOD" in done.stdout
    return here / "w"


def numina(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NUMINA), *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_numina_verify_accepts_every_frame_of_the_run(run: Path) -> None:
    frames = sorted((run / "data").glob("*.fits"))
    assert [p.name for p in frames] == [
        *(f"bias_{k:04d}.fits" for k in range(1, 6)),
        *(f"dark_{k:04d}.fits" for k in range(1, 4)),
    ]
    done = numina("verify", *map(str, frames), cwd=run)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8 valid, 0 invalid, 0 not checked" in done.stdout
    with fits.open(frames[-1]) as hdul:
        header = hdul[0].header
        assert header["SIMULATE"] is True
        assert header["SHUTMAX"] == "CLOSED"
        assert header["INTLKOK"] is True


def test_megaradrp_makes_the_master_dark_the_run_made(
    run: Path, tmp_path: Path
) -> None:
    blocks = [
        {
            "id": block,
            "instrument": "MEGARA",
            "mode": mode,
            "frames": [f"{block}_{k:04d}.fits" for k in range(1, count + 1)],
        }
        for block, mode, count in (
            ("bias", "MegaraBiasImage", 5),
            ("dark", "MegaraDarkImage", 3),
        )
    ]
    blocks[1]["requirements"] = {
        "master_bias": str(tmp_path / "obsidbias_results" / "master_bias.fits")
    }
    obs = tmp_path / "obs.yaml"
    obs.write_text("\n---\n".join(json.dumps(b) for b in blocks), encoding="utf-8")
    done = numina(
        "run", str(obs), "--datadir", str(run / "data"), "--basedir", str(tmp_path),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    name = "obsiddark_results/master_dark.fits"
    with fits.open(tmp_path / name) as theirs, fits.open(run / name) as ours:
        diff = np.abs(theirs[0].data.astype(np.float64) - ours[0].data)
        assert float(diff.max()) <= 1e-3
        assert theirs[0].header["NUM-NCOM"] == ours[0].header["NUM-NCOM"] == 3
        assert np.array_equal(theirs["MAP"].data, ours["MAP"].data)

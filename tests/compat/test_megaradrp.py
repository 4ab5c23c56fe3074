"""Our products against megaradrp's, through ``numina run``, on the same frames.

Needs the official pipeline (``pip install '.[compat]'``: megaradrp 0.22 on
numina 0.40); skipped where it is not importable, since it is an optional
extra. ``numina run`` is the ``numina`` script beside this interpreter.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from astropy.io import fits

from reduce.batch import run_reduction_file
from reduce.settings import Options
from reduce.synthetic import SyntheticDetector, make_raw, raw_header, write_raw

pytestmark = pytest.mark.compat

pytest.importorskip("megaradrp")

N = 3
DARK_S = 3600.0


def _header(exptime: float, obsmode: str, k: int) -> dict[str, Any]:
    header = raw_header(exptime, obsmode=obsmode)
    header.update(
        {
            "DATE-OBS": "2026-11-28T01:00:00.0",
            "INSCONF": "4fd05b24-2ed9-457b-b563-a3c618bb1d4c",
            "VPH": "LR-U",
            "INSMODE": "MOS",
            "UUID": str(uuid.UUID(int=k + (1 << 64))),
        }
    )
    return header


def _blocks(bias: str) -> list[dict[str, Any]]:
    return [
        {
            "id": "bias",
            "instrument": "MEGARA",
            "mode": "MegaraBiasImage",
            "frames": [f"bias_{k}.fits" for k in range(N)],
        },
        {
            "id": "dark",
            "instrument": "MEGARA",
            "mode": "MegaraDarkImage",
            "frames": [f"dark_{k}.fits" for k in range(N)],
            "requirements": {"master_bias": bias},
        },
    ]


def _numina(
    obs: Path, data: Path, base: Path, *extra: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    numina = Path(sys.executable).with_name("numina")
    done = subprocess.run(
        [
            str(numina),
            "run",
            str(obs),
            "--datadir",
            str(data),
            "--basedir",
            str(base),
            *list(extra),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compat")
    data = root / "data"
    data.mkdir()
    truth, rng = SyntheticDetector(), np.random.default_rng(77)
    for k in range(N):
        bias = make_raw(truth, 0.0, rng)
        write_raw(data / f"bias_{k}.fits", bias, _header(0.0, "MegaraBiasImage", k))
        dark = make_raw(truth, DARK_S, rng)
        write_raw(
            data / f"dark_{k}.fits", dark, _header(DARK_S, "MegaraDarkImage", 9 + k)
        )
    theirs, ours = root / "theirs", root / "ours"
    obs = root / "numina.yaml"
    mbias = theirs / "obsidbias_results" / "master_bias.fits"
    obs.write_text(yaml.safe_dump_all(_blocks(str(mbias))), encoding="utf-8")
    _numina(obs, data, theirs)
    ob = root / "ours.yaml"
    blocks = _blocks("")
    del blocks[1]["requirements"]  # the bias block's product, as a chain
    ob.write_text(yaml.safe_dump_all(blocks), encoding="utf-8")
    run_reduction_file(ob, data, ours, Options())
    return {"root": root, "data": data, "theirs": theirs, "ours": ours}


@pytest.mark.parametrize("kind", ["bias", "dark"])
def test_primary_and_map_match_megaradrp(folders: dict[str, Path], kind: str) -> None:
    name = f"obsid{kind}_results/master_{kind}.fits"
    with (
        fits.open(folders["theirs"] / name) as theirs,
        fits.open(folders["ours"] / name) as ours,
    ):
        diff = np.abs(theirs[0].data.astype(np.float64) - ours[0].data)
        assert float(diff.max()) <= 1e-3
        assert theirs[0].header["NUM-NCOM"] == ours[0].header["NUM-NCOM"] == N
        if "MAP" in [hdu.name for hdu in theirs]:  # BiasRecipe writes none
            assert np.array_equal(theirs["MAP"].data, ours["MAP"].data)


def test_numina_validates_our_master_bias(folders: dict[str, Path]) -> None:
    # megaradrp's validator wants a one-HDU master bias (n_ext=1), which its
    # own DarkRecipe products do not satisfy either; our PRIMARY alone, with
    # its header as written, must pass it as the requirement.
    ours_bias = folders["ours"] / "obsidbias_results" / "master_bias.fits"
    primary_only = folders["root"] / "our_bias_primary.fits"
    with fits.open(ours_bias) as hdul:
        fits.PrimaryHDU(hdul[0].data, hdul[0].header).writeto(primary_only)
    blocks = _blocks(str(primary_only))[1:]
    obs = folders["root"] / "dark_with_our_bias.yaml"
    obs.write_text(yaml.safe_dump_all(blocks), encoding="utf-8")
    base = folders["root"] / "validated"
    done = _numina(obs, folders["data"], base, "--validate", check=False)
    assert "validate MASTER_BIAS" in done.stderr
    assert "invalid DarkRecipeInput" not in done.stderr, done.stderr[-2000:]
    # The only complaint is about megaradrp's own 3-HDU master dark.
    assert "invalid DarkRecipeResult: master_dark: image has 3 HDUs" in done.stderr

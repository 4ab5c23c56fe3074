"""Our raw frames, checked and reduced by the official MEGARA pipeline.

Needs megaradrp 0.22 on numina 0.40 (``pip install '.[compat]'``): ``numina
verify`` runs megaradrp's checker of each raw image (the JSON schema
``baseimage.json`` with the definitions of the observing mode), and ``numina
run`` reduces a bias block and then a dark block made of our frames.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from reduce.geometry import RAW_SHAPE
from sequencer.rawfits import (
    FrameMeta,
    build_header,
    file_name,
    write_raw_frame,
)
from tests.unit.sequencer.test_rawfits import DARK

pytestmark = pytest.mark.compat

datamodel = pytest.importorskip("megaradrp.datamodel")
datatype = pytest.importorskip("megaradrp.datatype")

BIAS_ADU = 1000.0
DARK_ADU = 40.0  # injected dark signal of the dark frames, ADU
# numina's console script; ``python -m numina.user`` drops the exit status
NUMINA = [
    sys.executable,
    "-c",
    "import sys; from numina.user.cli import main; sys.exit(main())",
]


def frame_meta(mode: str, block: str, attempt: int, start: datetime) -> FrameMeta:
    exptime = 0.0 if mode == "MegaraBiasImage" else 300.0
    return FrameMeta(
        mode=mode,  # type: ignore[arg-type]
        exptime_s=exptime,
        darktime_s=exptime + 0.4,
        date_obs=start + timedelta(seconds=400 * attempt),
        block_id=block,
        block_uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, block)),
        frame_index=attempt,
        attempt=attempt,
        uuid=str(uuid.uuid4()),
        ccd_temp_start_k=163.5,
        ccd_temp_end_k=163.6,
        interlock=DARK,
        valid=True,
        invalid_reason=None,
        simulated=True,
        readout_bad_blocks=0,
        readout_rounds=1,
        software_version="test",
    )


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    datadir = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(20261128)
    start = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
    out: dict[str, list[Path]] = {"bias": [], "dark": []}
    for block, mode, signal in (
        ("bias", "MegaraBiasImage", 0.0),
        ("dark", "MegaraDarkImage", DARK_ADU),
    ):
        for attempt in (1, 2, 3):
            level = np.full(RAW_SHAPE, BIAS_ADU)
            level[:, 50:4146] += signal
            pixels = rng.normal(level, 3.0).round().astype(np.uint16)
            meta = frame_meta(mode, block, attempt, start)
            out[block].append(
                write_raw_frame(datadir / file_name(block, attempt), pixels, meta)
            )
    return out


def numina(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NUMINA, *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_numina_verify_accepts_every_frame(frames: dict[str, list[Path]]) -> None:
    paths = frames["bias"] + frames["dark"]
    done = numina("verify", *map(str, paths), cwd=paths[0].parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 valid, 0 invalid, 0 not checked" in done.stdout


@pytest.mark.parametrize(
    ("block", "mode", "ok"),
    [
        ("dark", "MegaraDarkImage", True),
        ("bias", "MegaraBiasImage", True),
        ("bias", "MegaraDarkImage", False),
        ("dark", "MegaraBiasImage", False),
    ],
)
def test_numina_verify_as_the_raw_image_of_a_mode(
    frames: dict[str, list[Path]], block: str, mode: str, ok: bool
) -> None:
    path = frames[block][0]
    done = numina("verify", "--mode", mode, str(path), cwd=path.parent)
    assert (done.returncode == 0) is ok, done.stdout + done.stderr
    if not ok:
        assert "OBSMODE" in done.stdout


def test_megaradrp_checker_in_python(frames: dict[str, list[Path]]) -> None:
    for block, expected in (
        ("bias", datatype.MegaraDataType.IMAGE_BIAS),
        ("dark", datatype.MegaraDataType.IMAGE_DARK),
    ):
        with fits.open(frames[block][0]) as hdul:
            assert datamodel.megara_inferr_datatype(hdul) is expected
            assert datamodel.check_obj_megara(hdul, astype=expected) is True


@pytest.mark.parametrize("drop", ["INSCONF", "VPH", "DATE-OBS"])
def test_numina_verify_needs_what_we_write(tmp_path: Path, drop: str) -> None:
    """The keywords megaradrp requires really are required (the check bites)."""
    meta = frame_meta("MegaraDarkImage", "x", 1, datetime(2026, 1, 1, tzinfo=UTC))
    header = fits.Header.fromstring(build_header(meta).tostring())
    del header[drop]
    path = tmp_path / "x.fits"
    fits.PrimaryHDU(np.zeros(RAW_SHAPE, np.uint16), header=header).writeto(path)
    done = numina("verify", str(path), cwd=tmp_path)
    assert done.returncode == 1
    assert drop in done.stdout


def test_numina_run_reduces_bias_then_dark(
    frames: dict[str, list[Path]], tmp_path: Path
) -> None:
    datadir = frames["bias"][0].parent
    bias_ob = tmp_path / "bias.yaml"
    bias_ob.write_text(
        json.dumps(
            {
                "id": "bias",
                "instrument": "MEGARA",
                "mode": "MegaraBiasImage",
                "frames": [p.name for p in frames["bias"]],
            }
        )
    )
    done = numina(
        "run", "--validate", str(bias_ob), "--datadir", str(datadir), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    master_bias = tmp_path / "obsidbias_results" / "master_bias.fits"
    assert master_bias.exists()

    dark_ob = tmp_path / "dark.yaml"
    dark_ob.write_text(
        json.dumps(
            {
                "id": "dark",
                "instrument": "MEGARA",
                "mode": "MegaraDarkImage",
                "frames": [p.name for p in frames["dark"]],
                "requirements": {"master_bias": str(master_bias)},
            }
        )
    )
    done = numina(
        "verify", "--ob", str(dark_ob), "--datadir", str(datadir), cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout
    assert "3 valid, 0 invalid, 1 not checked" in done.stdout  # no mode validator
    # Not --validate: megaradrp 0.22 rejects its own master dark (3 HDUs where
    # its checker of MASTER_DARK wants 1), whatever the raw frames are.
    done = numina("run", str(dark_ob), "--datadir", str(datadir), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    with fits.open(tmp_path / "obsiddark_results" / "master_dark.fits") as hdul:
        data = hdul[0].data
        assert data.shape == (4112, 4096)  # trimmed by megaradrp
        assert np.median(data) == pytest.approx(DARK_ADU, abs=0.5)

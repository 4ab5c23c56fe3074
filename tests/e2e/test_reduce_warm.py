"""A warm detector gets a master, flagged BAD with its dark current and temperature.

The frames come from the simulators' detector model (simulators.synthesis,
written apart from the reduction) at 50 e-/pix/h, 25 times its nominal dark
current: the review found every such frame excluded as a "light leak" and no
product at all.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from astropy.io import fits

from reduce.synthetic import raw_header, write_raw
from simulators.synthesis import Detector, DetectorConfig
from tests.e2e.test_reduce_cli import block, command, write_blocks

pytestmark = pytest.mark.e2e

WARM_E_PER_H = 50.0
DARK_S = 900.0


def test_a_warm_detector_gets_a_bad_master(tmp_path: Path) -> None:
    detector = Detector(DetectorConfig(seed=11, dark_ref_e_per_h=WARM_E_PER_H))
    names = {"bias": [], "dark": []}
    for kind, exptime in (("bias", 0.0), ("dark", DARK_S)):
        for k in range(3):
            raw = detector.frame(
                exptime_s=exptime, temperature_k=163.15, frame_seed=k, run_key=11
            )
            cards = raw_header(
                exptime,
                obsmode="MegaraBiasImage" if kind == "bias" else "MegaraDarkImage",
            )
            cards["UUID"] = str(uuid.UUID(int=len(names["bias"]) * 10 + k + 1))
            cards["CCDTEMP0"] = (163.15, "[K] CCD temperature")
            write_raw(tmp_path / f"{kind}_{k}.fits", raw, cards)
            names[kind].append(f"{kind}_{k}.fits")
    ob = write_blocks(
        tmp_path / "ob.yaml",
        block("b", "MegaraBiasImage", names["bias"]),
        block("d", "MegaraDarkImage", names["dark"]),
    )
    done = subprocess.run(
        [*command(), str(ob), "--datadir", str(tmp_path), "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    result = json.loads((tmp_path / "obsidd_results" / "result.json").read_text())
    assert result["qc"] == "BAD", done.stdout + done.stderr
    with fits.open(tmp_path / "obsidd_results" / "master_dark.fits") as hdul:
        header = hdul[0].header
        assert header["NEXCLUDE"] == 0  # no frame taken for a leak
        for n in (1, 2):
            # the dark current measured, within 10 % of the truth
            assert header[f"DARKCUR{n}"] == pytest.approx(WARM_E_PER_H, rel=0.1)
        reasons = [header[f"QAREAS{k}"] for k in range(1, header["QANREAS"] + 1)]
    at = f"at {163.15:.1f} K"  # the frames' CCDTEMP0
    assert any("dark current" in r and at in r for r in reasons), reasons

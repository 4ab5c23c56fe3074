"""A 10-frame run of ``benchmarks/soak.py``, so that the soak script keeps working.

The real soak (200 frames) is run by hand; its figures are in the closing note
of the reliability issue and in ``benchmarks/README.md``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_short_soak_loses_nothing(tmp_path: Path) -> None:
    command = [sys.executable, str(SOAK), "--frames", "10", "--per-block", "5"]
    command += ["--seed", "3", "--fault-every", "1.0", "--keep", str(tmp_path)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    figures = dict(re.findall(r"^([a-z][a-z ()]+?)\s{2,}(\d+)", out, re.MULTILINE))
    assert figures["frames requested"] == "10"
    assert figures["frames written valid"] == "10"
    assert figures["data lost"] == "0"
    assert figures["damaged raw files"] == "0"
    assert int(figures["faults injected (fired)"]) >= 1
    assert figures["faults recovered"] == figures["faults injected (fired)"]
    assert "Traceback" not in done.stderr
    log = (tmp_path / "stderr.txt").read_text()  # the run's log (INFO)
    assert "Traceback" not in log

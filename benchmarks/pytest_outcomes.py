"""Run a pytest selection in a subprocess and read back each test's outcome.

For the benchmarks whose cases are tests (``redteam.py``, ``fault_matrix.py``):
a benchmark never imports ``tests/`` (DESIGN.md), it runs them, from the
repository root, as CI would, and reports one line per test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: A line of pytest's ``-rA`` summary: outcome, node id, and its message.
_OUTCOME = re.compile(
    r"^(PASSED|FAILED|ERROR|XPASS|XFAIL) (\S+)(?: - (.*))?$", re.MULTILINE
)
#: A line of ``--durations=0``: seconds, phase, node id.
_DURATION = re.compile(r"^(\d+\.\d+)s (?:setup|call|teardown) +(\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class Outcome:
    """How one test ended.

    Attributes
    ----------
    node
        The pytest node id (``path::test[param]``).
    what
        ``PASSED``, ``FAILED``, ``ERROR``, ``XPASS`` or ``XFAIL``.
    message
        The summary message: the failure's first line, or the xfail reason.
    seconds
        Wall seconds of its setup, call and teardown (module fixtures
        included in the first test that uses them).
    """

    node: str
    what: str
    message: str
    seconds: float

    @property
    def param(self) -> str:
        """The test's parameter id (its case or row), else its name."""
        name = self.node.rpartition("::")[2]
        return name.partition("[")[2].rstrip("]") or name


def run_pytest(selection: Sequence[str]) -> list[Outcome]:
    """Run ``pytest SELECTION`` from the repository root; each test's outcome.

    An empty list means pytest ran nothing (its collection failed or the
    selection matched no test).
    """
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "--tb=no", "-p",
         "no:cacheprovider", "--durations=0", "--durations-min=0", *selection],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "100000"},  # summary messages untruncated
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    seconds: dict[str, float] = {}
    for took, node in _DURATION.findall(done.stdout):
        seconds[node] = seconds.get(node, 0.0) + float(took)
    return [
        Outcome(node, what, message, seconds.get(node, 0.0))
        for what, node, message in _OUTCOME.findall(done.stdout)
    ]

"""Run the red-team case tables and print tried / handled / failed per category.

Usage, from the repository root with the project installed::

    python benchmarks/redteam.py [--only SUBSTRING] [--category A|B|C|D|E|F]

The tables are those of the red-team tests (``tests/redteam/``): category A,
hostile FITS built from real frames into ``megara-dark reduce`` (frames and
master biases; fresh work folders and folders holding products); category
B, hostile observing blocks, instrument configurations, reduction blocks and
QC settings into ``megara-dark run`` and ``megara-dark reduce``. Categories
C to F run as the red-team tests that exercise a whole process (a pytest
subprocess; each test a case): C, damaged, missing and planted frames on
resume; D, concurrent runs on one folder; E, signals in every phase of a
run; F, the simulators' control port and device ports. A case is
*handled* when the command ends with the documented exit status, one line on
stderr naming the file or key, no traceback, no hang, and nothing written.
Prints one line per failure (a failure known to need a fix outside the
files this suite may change says where), then the table; exits 1 unless
every case was handled. Scratch files (about 1 GB: full frames and their
products) go to a temporary folder that is deleted at the end. Takes a few
minutes.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.redteam.cases import Case
from tests.redteam.hostile_fits import build_fits_world, fits_cases
from tests.redteam.hostile_inputs import build_input_world, input_cases

#: Per category: its cases and how to build what they run against.
CATEGORIES: dict[str, tuple[Callable[[], list[Case]], Callable[[Path], Any]]] = {
    "A": (fits_cases, build_fits_world),
    "B": (input_cases, build_input_world),
}


#: Categories whose cases are whole-process tests, run by pytest.
PROCESS_CATEGORIES: dict[str, tuple[str, list[str]]] = {
    "C": (
        "C: damaged and planted frames on resume",
        ["tests/reliability/test_planted_frames.py", "-k", "bad_frames_aside"],
    ),
    "D": (
        "D: concurrent runs on one folder",
        [
            "tests/reliability/test_planted_frames.py::"
            "test_a_second_run_on_a_folder_in_use_is_refused_at_once",
            "tests/unit/sequencer/test_runfolder.py",
            "-k",
            "lock or second_run",
        ],
    ),
    "E": ("E: signals in every phase", ["tests/e2e/test_run_signals.py"]),
    "F": (
        "F: control port and device ports",
        ["tests/security/test_control_port.py", "tests/security/test_ports.py"],
    ),
}
_OUTCOME = re.compile(r"^(PASSED|FAILED|ERROR|XPASS|XFAIL) (\S+)", re.MULTILINE)


def _run_tests(label: str, selection: list[str]) -> tuple[int, int]:
    """Run a pytest selection in a subprocess; print failures; (tried, failed)."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "--tb=line", "-p",
         "no:cacheprovider", *selection],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    outcomes = _OUTCOME.findall(done.stdout)
    failed = [node for what, node in outcomes if what not in ("PASSED", "XFAIL")]
    for node in failed:
        print(f"FAILED {label} / {node}")
    if not outcomes:
        print(f"FAILED {label}: pytest ran nothing ({done.returncode})")
        return 1, 1
    return len(outcomes), len(failed)


def _run(cases: Sequence[Case], world: Any) -> list[tuple[Case, list[str]]]:
    failures = []
    for case in cases:
        try:
            problems = case.check(world)
        except Exception as err:
            problems = [f"the case itself failed: {type(err).__name__}: {err}"]
        if problems:
            failures.append((case, problems))
            known = f" [known: {case.known}]" if case.known else ""
            print(f"FAILED {case.category} / {case.name}: {'; '.join(problems)}{known}")
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run cases whose name holds this")
    parser.add_argument(
        "--category", choices=sorted({*CATEGORIES, *PROCESS_CATEGORIES}), default=None
    )
    args = parser.parse_args(argv)
    rows = []
    for key, (make_cases, build) in CATEGORIES.items():
        if args.category not in (None, key):
            continue
        cases = [c for c in make_cases() if args.only in c.name]
        if not cases:
            continue
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"redteam-{key}-") as name:
            failures = _run(cases, build(Path(name)))
        seconds = time.perf_counter() - started
        tried, failed = len(cases), len(failures)
        known = sum(1 for case, _ in failures if case.known)
        rows.append((cases[0].category, tried, tried - failed, failed, known, seconds))
    for key, (label, selection) in PROCESS_CATEGORIES.items():
        if args.category not in (None, key) or args.only:
            continue
        started = time.perf_counter()
        tried, failed = _run_tests(label, selection)
        rows.append(
            (label, tried, tried - failed, failed, 0, time.perf_counter() - started)
        )
    _table(rows)
    return 0 if all(row[3] == 0 for row in rows) else 1


def _table(rows: Sequence[tuple[str, int, int, int, int, float]]) -> None:
    """Per category: tried, handled, failed (of which known, with where the
    fix belongs printed on its FAILED line), seconds."""
    print()
    print(f"{'category':<40} {'tried':>6} {'handled':>8} {'failed':>7} {'known':>6} s")
    for category, tried, handled, failed, known, seconds in rows:
        print(
            f"{category:<40} {tried:>6} {handled:>8} {failed:>7} {known:>6} "
            f"{seconds:.0f}"
        )
    total = [sum(row[k] for row in rows) for k in (1, 2, 3, 4)]
    print(f"{'total':<40} {total[0]:>6} {total[1]:>8} {total[2]:>7} {total[3]:>6}")


if __name__ == "__main__":
    raise SystemExit(main())

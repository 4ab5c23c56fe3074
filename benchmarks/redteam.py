"""Run the red-team case tables and print tried / handled / failed per category.

Usage, from the repository root with the project installed::

    python benchmarks/redteam.py [--only SUBSTRING] [--category A|B|C|D|E|F]

Each category is a selection of the red-team tests, run by pytest in a
subprocess (each test a case; a benchmark does not import ``tests/``): A,
hostile FITS built from real frames into ``megara-dark reduce`` (frames and
master biases; fresh work folders and folders holding products;
``tests/redteam/hostile_fits.py``); B, hostile observing blocks, instrument
configurations, reduction blocks and QC settings into ``megara-dark run`` and
``megara-dark reduce`` (``tests/redteam/hostile_inputs.py``); C, damaged,
missing and planted frames on resume; D, concurrent runs on one folder; E,
signals in every phase of a run; F, the simulators' control port and device
ports. ``--only`` selects cases of A and B by name (pytest ``-k``). A case is
*handled* when the command ends with the documented exit status, one line on
stderr naming the file or key, no traceback, no hang, and nothing written.
Prints one line per failure (a known failure, an xfail in the tests, gives
its reason: where the fix belongs), then the table; exits 1 unless
every case was handled. Scratch files (about 1 GB: full frames and their
products) go to a temporary folder that is deleted at the end. Takes a few
minutes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from pytest_outcomes import run_pytest  # run beside it

#: Per category: its label and the pytest selection whose tests are its cases.
CATEGORIES: dict[str, tuple[str, list[str]]] = {
    "A": ("A: hostile FITS into reduce", ["tests/redteam/test_hostile_fits.py"]),
    "B": (
        "B: hostile blocks and configurations",
        ["tests/redteam/test_hostile_inputs.py"],
    ),
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
#: Categories whose cases ``--only`` selects by name.
NAMED = ("A", "B")


def _run_tests(label: str, selection: list[str]) -> tuple[int, int, int]:
    """Run a pytest selection; print failures; (tried, failed, known)."""
    outcomes = run_pytest(selection)
    if not outcomes:
        print(f"FAILED {label}: pytest ran nothing")
        return 1, 1, 0
    failed = known = 0
    for outcome in outcomes:
        if outcome.what == "PASSED":
            continue
        failed += 1
        if outcome.what == "XFAIL":
            known += 1
            print(f"FAILED {label} / {outcome.param} [known: {outcome.message}]")
        else:
            print(f"FAILED {label} / {outcome.param}: {outcome.what} {outcome.message}")
    return len(outcomes), failed, known


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run cases whose name holds this")
    parser.add_argument("--category", choices=sorted(CATEGORIES), default=None)
    args = parser.parse_args(argv)
    rows = []
    for key, (label, selection) in CATEGORIES.items():
        if args.category not in (None, key) or (args.only and key not in NAMED):
            continue
        only = ["-k", args.only] if args.only else []
        started = time.perf_counter()
        tried, failed, known = _run_tests(label, [*selection, *only])
        seconds = time.perf_counter() - started
        rows.append((label, tried, tried - failed, failed, known, seconds))
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

"""Run the whole fault matrix and print "faults tried / outcomes as expected".

Usage, from the repository root with the project installed::

    python benchmarks/fault_matrix.py [--only SUBSTRING] [--keep DIR]

Every applicable row of ``tests/faults/matrix.yaml`` is one real ``megara-dark
run`` against a fresh set of built-in simulators with the row's faults as its
scenario: this runs ``tests/faults/test_matrix.py`` (one test per row, with the
catalogue checks) by pytest in a subprocess, since a benchmark does not import
``tests/``. Rows marked ``known_failure`` (xfail) are run too and reported as
such. Prints one line per row (row, wall seconds, verdict; an unexpected
outcome with the run's actual outcome), then the figure, and exits 1 unless
every row came out as expected and the catalogue is whole. Takes about three
minutes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pytest_outcomes import run_pytest  # run beside it

TESTS = "tests/faults/test_matrix.py"
ROW_TEST = f"{TESTS}::test_row"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run rows whose id contains this")
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep each row's run folder in DIR/fault-matrix (replaced if there)",
    )
    args = parser.parse_args(argv)

    selection = [ROW_TEST, "-k", args.only] if args.only else [TESTS]
    if args.keep is not None:
        basetemp = args.keep.resolve() / "fault-matrix"
        selection += [f"--basetemp={basetemp}", "-o", "tmp_path_retention_policy=all"]
    print("running the rows (a master bias first) ...", flush=True)
    outcomes = run_pytest(selection)
    rows = [o for o in outcomes if o.node.startswith(f"{ROW_TEST}[")]
    as_expected = known = 0
    for row in rows:
        if row.what == "PASSED":
            as_expected += 1
            verdict = "as expected"
        elif row.what == "XFAIL":
            known += 1
            verdict = f"KNOWN FAILURE ({row.message})"
        else:
            verdict = f"UNEXPECTED ({row.what}): {row.message}"
        print(f"{row.param:44s} {row.seconds:6.1f} s  {verdict}", flush=True)
    checks = [o for o in outcomes if o not in rows]
    broken = [o for o in checks if o.what != "PASSED"]
    for check in broken:
        print(f"catalogue: {check.param}: {check.what} {check.message}")
    print()
    if checks:
        passed = len(checks) - len(broken)
        print(f"matrix catalogue checks passed: {passed}/{len(checks)}")
    if known:
        print(f"known failures (xfail in the tests): {known}")
    print(f"faults tried / outcomes as expected: {as_expected}/{len(rows)} as expected")
    return 0 if rows and as_expected == len(rows) and not broken else 1


if __name__ == "__main__":
    raise SystemExit(main())

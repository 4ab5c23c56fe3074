"""Run the whole fault matrix and print "faults tried / outcomes as expected".

Usage, from the repository root with the project installed::

    python benchmarks/fault_matrix.py [--only SUBSTRING] [--keep DIR]

Every applicable row of ``tests/faults/matrix.yaml`` is one real ``megara-dark
run`` against a fresh set of built-in simulators with the row's faults as its
scenario (see ``tests/faults/harness.py``). Rows marked ``known_failure`` are
run too and reported as such. Prints a table (row, expected, actual, verdict,
wall seconds), then the figure, and exits 1 unless every row came out as
expected. Takes about three minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults.harness import (
    Row,
    load_matrix,
    make_master_bias,
    mismatches,
    run_row,
)


def _expected(row: Row) -> str:
    want = row.expect
    if want["outcome"] == "completed":
        retries = {k: v for k, v in (want.get("retries") or {}).items() if v}
        return (
            f"completed {want['valid_frames']} valid, {want.get('retaken', 0)} "
            f"retaken, QA {want['qa']}, retries {retries or 0}"
        )
    return f"FAULT exit {want['exit']}: {want['error']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run rows whose id contains this")
    parser.add_argument("--keep", type=Path, help="keep each row's run folder here")
    args = parser.parse_args(argv)

    matrix = load_matrix()
    rows = [r for r in matrix.applicable() if args.only in r.id]
    with tempfile.TemporaryDirectory(prefix="fault-matrix-") as scratch:
        base = args.keep or Path(scratch)
        print(f"making a master bias ({len(rows)} rows to run) ...", flush=True)
        master = make_master_bias(base / "bias", matrix.settings)
        as_expected = 0
        known = 0
        lines = []
        for row in rows:
            start = time.monotonic()
            actual = run_row(row, base / row.id, matrix.settings, master)
            took = time.monotonic() - start
            problems = mismatches(row, actual)
            if not problems:
                as_expected += 1
                verdict = "as expected"
            elif row.known_failure:
                known += 1
                verdict = f"KNOWN FAILURE ({row.known_failure})"
            else:
                verdict = "UNEXPECTED: " + "; ".join(problems)
            line = (
                f"{row.id:44s} {row.phase:11s} {took:6.1f} s  {verdict}\n"
                f"    expected: {_expected(row)}\n"
                f"    actual:   {actual.short()}"
            )
            lines.append(line)
            print(line, flush=True)
    print()
    cells = {(r.kind, r.phase) for r in matrix.rows if r.kind != "none"}
    tried_cells = {(r.kind, r.phase) for r in matrix.applicable() if r.kind != "none"}
    print(
        f"matrix: {len(cells)} (fault kind, phase) cells: {len(tried_cells)} tried, "
        f"{len(cells) - len(tried_cells)} not applicable (with reasons); "
        f"{len(matrix.applicable())} rows tried in all (variants and a no-fault "
        "baseline)"
    )
    if known:
        print(f"known failures (xfail in the tests): {known}")
    print(f"faults tried / outcomes as expected: {as_expected}/{len(rows)} as expected")
    return 0 if as_expected == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

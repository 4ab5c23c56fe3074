"""The fault matrix: one real ``megara-dark run`` per row of ``matrix.yaml``.

Each applicable row starts the command as a user would, with the built-in
simulators and the row's faults as the scenario, and checks the outcome the
row names (exit status, error, frames, retakes, QA, retries per device, every
raw file valid). Rows that cannot occur carry their reason; a test checks that
every fault kind the simulators know is catalogued at every phase.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators.faults import FaultKind
from tests.faults.harness import (
    PHASES,
    Row,
    load_matrix,
    make_master_bias,
    mismatches,
    run_row,
)

pytestmark = pytest.mark.e2e

MATRIX = load_matrix()


def _param(row: Row) -> object:
    marks = []
    if row.known_failure:
        marks.append(pytest.mark.xfail(reason=row.known_failure, strict=True))
    return pytest.param(row, id=row.id, marks=marks)


@pytest.fixture(scope="module")
def master_bias(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A master bias from a clean bias run, shared by every row's dark block."""
    return make_master_bias(tmp_path_factory.mktemp("bias"), MATRIX.settings)


@pytest.mark.parametrize("row", [_param(r) for r in MATRIX.applicable()])
def test_row(row: Row, master_bias: Path, tmp_path: Path) -> None:
    actual = run_row(row, tmp_path, MATRIX.settings, master_bias)
    problems = mismatches(row, actual)
    assert not problems, (
        f"{row.id}: {actual.short()}\n  "
        + "\n  ".join(problems)
        + f"\n--- stdout\n{actual.stdout}\n--- stderr (tail)\n{actual.stderr[-3000:]}"
    )


def test_every_fault_kind_is_catalogued_at_every_phase() -> None:
    covered = {(r.kind, r.phase) for r in MATRIX.rows}
    missing = [
        (kind.value, phase)
        for kind in FaultKind
        for phase in PHASES
        if (kind.value, phase) not in covered
    ]
    assert not missing, f"not in tests/faults/matrix.yaml: {missing}"


def test_every_fault_kind_is_tried_somewhere() -> None:
    tried = {f["kind"] for r in MATRIX.applicable() for f in r.faults}
    assert tried == {kind.value for kind in FaultKind}


def test_rows_inject_the_kind_they_are_filed_under() -> None:
    for row in MATRIX.applicable():
        if row.kind == "none":
            assert row.faults == ()
        else:
            assert row.kind in {f["kind"] for f in row.faults}, row.id


def test_not_applicable_rows_say_why_and_inject_nothing() -> None:
    for row in MATRIX.rows:
        if not row.applicable:
            assert len(row.not_applicable or "") > 20, row.id
            assert row.faults == (), row.id
            assert not row.expect, row.id

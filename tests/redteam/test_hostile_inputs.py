"""Category B: hostile blocks and configurations (see hostile_inputs.py).

Every case must end with exit status 2 and one stderr line naming the file
or key, no traceback, no hang, and no frame taken.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redteam.cases import Case
from tests.redteam.hostile_inputs import build_input_world, input_cases

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def input_world() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="redteam-inputs-") as name:
        yield build_input_world(Path(name))


CASES = [
    pytest.param(case, id=case.name, marks=pytest.mark.xfail(reason=case.known))
    if case.known
    else pytest.param(case, id=case.name)
    for case in input_cases()
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES)
def test_hostile_input_is_refused_in_one_line(case: Case, input_world: Path) -> None:
    assert case.check(input_world) == []

"""Category A: hostile FITS into ``megara-dark reduce`` (see hostile_fits.py).

Every case must end with exit status 2, one line on stderr naming the file
and saying what is wrong, no traceback, no hang, and no product written or
changed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redteam.cases import Case
from tests.redteam.hostile_fits import FitsWorld, build_fits_world, fits_cases

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fits_world() -> Iterator[FitsWorld]:
    """Real frames and their reduction, deleted after the module (0.7 GB)."""
    with tempfile.TemporaryDirectory(prefix="redteam-fits-") as name:
        yield build_fits_world(Path(name))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("case", fits_cases(), ids=lambda case: case.name)
def test_hostile_fits_is_refused_in_one_line(case: Case, fits_world: FitsWorld) -> None:
    assert case.check(fits_world) == []

"""Options shared by the test layers."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("megara-dark hardware")
    group.addoption(
        "--ccd-url",
        default=None,
        help="run tests/hil against this CCD controller instead of a simulator",
    )
    group.addoption("--cover-left-url", default=None, help="left cover half URL")
    group.addoption("--cover-right-url", default=None, help="right cover half URL")

"""Process settings made by the entry points before numpy is imported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reduce.runtime import configure_process


def test_defaults_are_set_when_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    configure_process()
    assert os.environ["NUMPY_MADVISE_HUGEPAGE"] == "0"


def test_an_operators_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    configure_process()
    assert os.environ["NUMPY_MADVISE_HUGEPAGE"] == "1"


@pytest.mark.parametrize("module", ["sequencer.cli", "reduce.cli", "reduce.__main__"])
def test_entry_modules_do_not_import_numpy(module: str) -> None:
    """The settings only work if the entry point runs before numpy loads."""
    code = f"import sys, {module}; print('numpy' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"

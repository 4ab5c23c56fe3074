"""The compiled kernels (``reduce/_kernels.c``), where they were built.

They are an optional C extension: built at install when a C compiler is
there, else absent, and then numpy does the same work, with the same
results, more slowly. Users of a kernel ask :data:`KERNELS` and keep their
numpy path for None.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def _load() -> ModuleType | None:
    try:
        return importlib.import_module("reduce._kernels")
    except ImportError:  # not built (no compiler at install)
        return None


KERNELS: ModuleType | None = _load()
"""The module ``reduce._kernels``, or None where it was not built."""

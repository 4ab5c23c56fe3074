"""Process-wide settings that the command-line entry points make first.

They must be made before numpy is imported (numpy reads them once, at
import), so :func:`configure_process` is the first thing ``megara-dark``
and ``python -m reduce`` do. A value already in the environment wins: an
operator can always set it otherwise.

``NUMPY_MADVISE_HUGEPAGE=0``
    numpy asks the kernel for transparent huge pages on every array of
    4 MiB or more. Where the kernel's THP ``defrag`` policy is ``madvise``
    (Debian's default), each first touch of such an array may compact
    memory synchronously and zero 2 MiB at once. The reduction allocates
    many short-lived band and product arrays: with huge pages, a 20-frame
    master dark spent about 0.2 s more in the kernel (writing the products
    0.62 s instead of 0.40 s, median of 6 alternating runs), and gained
    nothing back, its arrays being streamed once, not reused.

``OPENBLAS_NUM_THREADS=1``
    The reduction runs its own threads (one per core) and calls BLAS only
    on tiny matrices (the overscan spline's least squares): OpenBLAS's own
    threads only spun, waiting (1.5% of the samples of a profiled run).
"""

from __future__ import annotations

import os

PROCESS_DEFAULTS = {"NUMPY_MADVISE_HUGEPAGE": "0", "OPENBLAS_NUM_THREADS": "1"}
"""Environment variables set (unless already set) before numpy is imported."""


def configure_process() -> None:
    """Apply :data:`PROCESS_DEFAULTS` to this process's environment."""
    for name, value in PROCESS_DEFAULTS.items():
        os.environ.setdefault(name, value)

"""Types of the compiled band kernel (``reduce/_bandkernel.c``)."""

import numpy as np
import numpy.typing as npt

Buffer = npt.NDArray[np.generic]

def median_raw_band(
    raw: Buffer,
    model: Buffer,
    steps: Buffer,
    data: Buffer,
    variance: Buffer,
    n: int,
    rows: int,
    raw_cols: int,
    col0: int,
    cols: int,
    inv_n: float,
    factor: float,
    /,
) -> None: ...

"""Types of the compiled kernels (``reduce/_kernels.c``)."""

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
def ones_complement_words(data: bytes | bytearray | memoryview | Buffer, /) -> int: ...
def register_networks() -> int: ...

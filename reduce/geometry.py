"""Geometry of a raw MEGARA frame (e2v CCD231-84, two amplifiers).

Everything here is a constant: no I/O. The numbers are those of the MEGARA
pipeline's detector description (``megaradrp/instrument/configs/
component-2e02e135-2325-47c9-9975-466b445b0b8b.json``, property ``scan``),
in 0-based numpy ``[row, column]`` order, unbinned::

    rows    0:2056  amplifier 1: prescan 0:50, data 50:4146, overscan 4146:4196
    rows 2056:2106  amplifier 1 "middle" (row overscan, unused by the pipeline)
    rows 2106:2156  amplifier 2 "middle" (row overscan, unused by the pipeline)
    rows 2156:4212  amplifier 2: overscan 0:50, data 50:4146, prescan 4146:4196

The trimmed frame stacks amplifier 1's data (rows 0:2056) on top of
amplifier 2's (rows 2156:4212): 4112 x 4096 pixels, with no flip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

log = logging.getLogger(__name__)

RAW_SHAPE: Final = (4212, 4196)
"""Shape of a raw frame, (rows, columns)."""

TRIMMED_SHAPE: Final = (4112, 4096)
"""Shape of a trimmed (overscan-free) frame, (rows, columns)."""

OVERSCAN_WIDTH: Final = 50
"""Number of overscan columns of each amplifier."""

DATA_COLUMNS: Final = slice(50, 4146)
"""Columns of the raw frame that hold light-sensitive pixels."""

RAW_BZERO: Final = 32768
"""BZERO of a raw frame (unsigned 16-bit data stored as BITPIX=16)."""


@dataclass(frozen=True)
class Amplifier:
    """One readout amplifier and the raw regions it owns.

    Attributes
    ----------
    number
        1 or 2, as in the pipeline's ``trim1``/``overscan1`` names.
    data_rows
        Rows of the raw frame read by this amplifier.
    overscan_columns
        The 50 serial-overscan columns of the raw frame for this amplifier.
    prescan_columns
        The 50 prescan columns (not used by the pipeline's correction).
    knot_row
        Raw row of the single interior knot of the overscan spline.
    gain
        Nominal gain, electrons per ADU.
    trimmed_rows
        Rows of the trimmed frame that this amplifier fills.
    """

    number: int
    data_rows: slice
    overscan_columns: slice
    prescan_columns: slice
    knot_row: int
    gain: float
    trimmed_rows: slice

    @property
    def n_rows(self) -> int:
        """Number of rows read by this amplifier."""
        return int(self.data_rows.stop - self.data_rows.start)

    @property
    def raw_data(self) -> tuple[slice, slice]:
        """Raw-frame slices of the light-sensitive pixels."""
        return (self.data_rows, DATA_COLUMNS)

    @property
    def raw_overscan(self) -> tuple[slice, slice]:
        """Raw-frame slices of the serial overscan."""
        return (self.data_rows, self.overscan_columns)


AMP1: Final = Amplifier(
    number=1,
    data_rows=slice(0, 2056),
    overscan_columns=slice(4146, 4196),
    prescan_columns=slice(0, 50),
    knot_row=1200,
    gain=1.73,
    trimmed_rows=slice(0, 2056),
)

AMP2: Final = Amplifier(
    number=2,
    data_rows=slice(2156, 4212),
    overscan_columns=slice(0, 50),
    prescan_columns=slice(4146, 4196),
    knot_row=3100,
    gain=1.6,
    trimmed_rows=slice(2056, 4112),
)

AMPLIFIERS: Final = (AMP1, AMP2)
"""Both amplifiers, in the order the pipeline corrects them."""

MIDDLE_ROWS: Final = slice(2056, 2156)
"""Raw rows between the two amplifiers' data sections (row overscan)."""


def amplifier_of_trimmed_row(row: int) -> Amplifier:
    """Return the amplifier that reads a given row of the trimmed frame."""
    for amp in AMPLIFIERS:
        if amp.trimmed_rows.start <= row < amp.trimmed_rows.stop:
            return amp
    raise IndexError(f"trimmed row {row} outside 0:{TRIMMED_SHAPE[0]}")

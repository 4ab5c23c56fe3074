"""Raw FITS frames written for tests, read by the reduction; the frame geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from reduce.errors import InputError
from reduce.frames import inspect_frame
from reduce.geometry import (
    AMP1,
    AMP2,
    DATA_COLUMNS,
    RAW_SHAPE,
    TRIMMED_SHAPE,
    amplifier_of_trimmed_row,
)
from reduce.masters import load_master
from reduce.rawframe import Mode
from reduce.synthetic import raw_header, write_raw


def test_geometry_adds_up() -> None:
    rows = AMP1.n_rows + AMP2.n_rows
    cols = DATA_COLUMNS.stop - DATA_COLUMNS.start
    assert (rows, cols) == TRIMMED_SHAPE
    assert AMP1.overscan_columns == slice(4146, 4196)
    assert AMP2.overscan_columns == slice(0, 50)
    assert AMP2.data_rows == slice(2156, RAW_SHAPE[0])
    assert amplifier_of_trimmed_row(2055) is AMP1
    assert amplifier_of_trimmed_row(2056) is AMP2
    with pytest.raises(IndexError):
        amplifier_of_trimmed_row(4112)


def test_raw_round_trip(tmp_path: Path) -> None:
    counts = np.random.default_rng(1).integers(0, 65536, RAW_SHAPE).astype(np.uint16)
    counts[:, AMP2.overscan_columns] = 1000  # a readable overscan
    counts[:, AMP1.overscan_columns] = 1000
    path = tmp_path / "raw.fits"
    write_raw(path, counts, raw_header(5.0))
    with fits.open(path) as hdul:
        assert hdul[0].header["BITPIX"] == 16
        assert hdul[0].header["BZERO"] == 32768
        assert np.array_equal(hdul[0].data, counts)
    frame = inspect_frame(path, Mode.DARK)
    assert frame.exptime == 5.0
    assert frame.checksum == "verified"
    assert [m.level for m in frame.overscan] == pytest.approx([1000.0, 1000.0])


def test_not_a_raw_frame(tmp_path: Path) -> None:
    path = tmp_path / "trimmed.fits"
    fits.PrimaryHDU(np.zeros(TRIMMED_SHAPE, dtype=np.float32)).writeto(path)
    with pytest.raises(InputError, match=r"trimmed\.fits.*expected a 2-D raw frame"):
        inspect_frame(path, Mode.DARK)
    load_master(path, None)  # a trimmed float frame is a valid master


def test_raw_frame_without_bzero(tmp_path: Path) -> None:
    path = tmp_path / "signed.fits"
    fits.PrimaryHDU(np.zeros(RAW_SHAPE, dtype=np.int16)).writeto(path)
    with pytest.raises(InputError, match="BZERO"):
        inspect_frame(path, Mode.DARK)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "short.fits"
    write_raw(path, np.zeros(RAW_SHAPE, dtype=np.uint16), raw_header(5.0))
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(InputError, match="short"):
        inspect_frame(path, Mode.DARK)


def test_not_fits(tmp_path: Path) -> None:
    path = tmp_path / "junk.fits"
    path.write_bytes(b"not a fits file at all")
    with pytest.raises(InputError, match=r"junk\.fits"):
        inspect_frame(path, Mode.DARK)

"""Raw FITS reading and the frame geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from reduce.errors import InputError
from reduce.geometry import (
    AMP1,
    AMP2,
    DATA_COLUMNS,
    RAW_SHAPE,
    TRIMMED_SHAPE,
    amplifier_of_trimmed_row,
)
from reduce.io import RawFrameReader, read_master, read_raw, write_raw


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


def test_raw_round_trip_and_bands(tmp_path: Path) -> None:
    counts = np.random.default_rng(1).integers(0, 65536, RAW_SHAPE).astype(np.uint16)
    path = tmp_path / "raw.fits"
    write_raw(path, counts, {"EXPTIME": 5.0})
    with fits.open(path) as hdul:
        assert hdul[0].header["BITPIX"] == 16
        assert hdul[0].header["BZERO"] == 32768
    data, header = read_raw(path)
    assert np.array_equal(data, counts)
    assert header["EXPTIME"] == 5.0
    reader = RawFrameReader(path)
    try:
        band = reader.read(slice(2150, 2170), AMP2.overscan_columns)
        assert np.array_equal(band, counts[2150:2170, 0:50])
    finally:
        reader.close()


def test_not_a_raw_frame(tmp_path: Path) -> None:
    path = tmp_path / "trimmed.fits"
    fits.PrimaryHDU(np.zeros(TRIMMED_SHAPE, dtype=np.float32)).writeto(path)
    with pytest.raises(InputError, match=r"trimmed\.fits.*expected a 2-D raw frame"):
        RawFrameReader(path)
    _, _ = read_master(path)  # a trimmed float frame is a valid master


def test_raw_frame_without_bzero(tmp_path: Path) -> None:
    path = tmp_path / "signed.fits"
    fits.PrimaryHDU(np.zeros(RAW_SHAPE, dtype=np.int16)).writeto(path)
    with pytest.raises(InputError, match="BZERO"):
        RawFrameReader(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "short.fits"
    write_raw(path, np.zeros(RAW_SHAPE, dtype=np.uint16), {})
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(InputError, match="short"):
        RawFrameReader(path)


def test_not_fits(tmp_path: Path) -> None:
    path = tmp_path / "junk.fits"
    path.write_bytes(b"not a fits file at all")
    with pytest.raises(InputError, match=r"junk\.fits"):
        RawFrameReader(path)

"""FITS checksums: our encoder against the sum it must complete, and astropy."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from reduce.fits.cards import Header
from reduce.fits.checksum import encode_checksum, ones_complement_sum
from reduce.fits.writer import image_header, write_image


@pytest.mark.parametrize("total", [0, 1, 0x7FFFFFFF, 0xFFFFFFFE, 0x12345678])
def test_encoded_checksum_completes_the_sum(total: int) -> None:
    text = encode_checksum(total)
    assert len(text) == 16
    assert text.isalnum()
    # In a card the value starts one byte before a 4-byte boundary: the
    # encoded string, placed there, adds exactly ~total to the '0' placeholder.
    placed = b"\0\0\0" + text.encode() + b"\0"
    zeros = b"\0\0\0" + b"0" * 16 + b"\0"
    added = ones_complement_sum(placed) - ones_complement_sum(zeros)
    assert (total + added) % 0xFFFFFFFF == 0


# -- against astropy, an implementation we did not write ------------------------


@pytest.mark.parametrize(
    ("dtype", "seed"), [(np.uint16, 1), (np.int16, 2), (np.float32, 3), (np.uint8, 4)]
)
def test_checksums_equal_astropys(tmp_path: Path, dtype: type, seed: int) -> None:
    """An HDU written by astropy: our sums and encoding give its two cards.

    astropy computes DATASUM and CHECKSUM with its own code (FITS 4.0 appendix
    J). Our sum of its data unit must be its DATASUM; our encoding of the sum
    of its HDU, CHECKSUM set to the '0' placeholder, must be its CHECKSUM.
    """
    rng = np.random.default_rng(seed)
    data = (rng.random((37, 53)) * 250).astype(dtype)
    path = tmp_path / "astropy.fits"
    fits.PrimaryHDU(data).writeto(path, checksum=True)
    raw = path.read_bytes()
    theirs = Header.fromstring(raw[:2880].decode("ascii"))
    datasum = ones_complement_sum(raw[2880:])
    assert str(datasum) == theirs["DATASUM"]
    placeholder = raw[:2880].replace(theirs["CHECKSUM"].encode(), b"0" * 16)
    assert (
        encode_checksum(ones_complement_sum(placeholder, datasum))
        == (theirs["CHECKSUM"])
    )


def test_a_file_we_write_passes_astropys_verification(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    data = rng.integers(0, 65536, size=(64, 48), dtype=np.uint16)
    path = tmp_path / "ours.fits"
    with path.open("wb") as stream:
        write_image(stream, image_header("PRIMARY", np.uint16, data.shape), data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy warns on a checksum mismatch
        with fits.open(path, checksum=True) as hdul:
            np.testing.assert_array_equal(hdul[0].data, data)
            assert hdul[0].header["BZERO"] == 32768

"""FITS checksums: our encoder and chunked image writer against astropy's reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from reduce.checksum import encode_checksum, ones_complement_sum
from reduce.io import write_images_atomic
from reduce.products import dq_table


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


def test_chunked_writer_gives_valid_checksums(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("reduce.io.CHUNK_BYTES", 4096)  # many chunks, ragged end
    rng = np.random.default_rng(7)
    primary = fits.PrimaryHDU(rng.normal(size=(37, 101)).astype(np.float32))
    primary.header["HISTORY"] = "a long history card " * 6
    hdul = fits.HDUList(
        [
            primary,
            fits.ImageHDU(
                rng.integers(-5, 300, (37, 101)).astype(np.int16), name="MAP"
            ),
            fits.ImageHDU(rng.integers(0, 8, (3, 7)).astype(np.uint8), name="DQ"),
            dq_table(),
        ]
    )
    path = tmp_path / "product.fits"
    write_images_atomic(path, hdul)
    assert path.stat().st_size % 2880 == 0
    with fits.open(path, checksum=True) as back:
        assert [h.name for h in back] == ["PRIMARY", "MAP", "DQ", "DQBITS"]
        for ours, theirs in zip(back, hdul, strict=True):
            assert ours.verify_checksum() == 1, ours.name
            assert ours.verify_datasum() == 1, ours.name
            if ours.name != "DQBITS":
                assert np.array_equal(ours.data, theirs.data), ours.name
    assert not list(tmp_path.glob(".*tmp"))

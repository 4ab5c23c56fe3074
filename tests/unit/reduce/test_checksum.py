"""FITS checksums: our encoder against the sum it must complete."""

from __future__ import annotations

import pytest

from reduce.checksum import encode_checksum, ones_complement_sum


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

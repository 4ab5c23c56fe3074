"""FITS checksums (the DATASUM and CHECKSUM cards), as pure functions.

The FITS checksum convention (FITS standard 4.0, appendix J; Seaman, Pence &
Rots): ``DATASUM`` is the 32-bit ones'-complement sum of the data unit read as
big-endian 32-bit words, written as a decimal string; ``CHECKSUM`` is a
16-character ASCII encoding of the complement of the whole HDU's sum, chosen
so that the header and data together sum to negative zero (0xFFFFFFFF). The
encoding spreads each byte of the value over four characters of ``0-9A-Za-z``
(avoiding the punctuation between them) and rotates the string by one place,
because the card's value starts one byte before a 4-byte boundary.

The sum is commutative, so a data unit may be summed in pieces (each a
multiple of 4 bytes long, starting on a 4-byte boundary) and the pieces
added: :func:`ones_complement_sum` takes the running sum as ``start``.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np

from reduce.compiled import KERNELS
from reduce.errors import InputError
from reduce.fits.cards import BLOCK, CARD, Header

log = logging.getLogger(__name__)


def ones_complement_sum(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    """32-bit ones'-complement sum of big-endian words (the FITS checksum sum).

    Parameters
    ----------
    data
        Bytes, starting on a 4-byte boundary of the data unit. A length that
        is not a multiple of 4 is summed as if padded with zeros, as FITS
        pads a data unit: only the last piece of a data unit may be so.
    start
        Running sum to continue from.

    Returns
    -------
    int
        The folded sum, 0..0xFFFFFFFF.
    """
    view = memoryview(data).cast("B")
    whole = len(view) - len(view) % 4
    total = _word_sum(view[:whole]) + start
    if whole < len(view):
        total += int.from_bytes(bytes(view[whole:]).ljust(4, b"\0"), "big")
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def _word_sum(view: memoryview) -> int:
    """Sum of the big-endian 32-bit words, not folded."""
    if KERNELS is not None:  # one pass, about twice numpy's speed (no swapped copy)
        total: int = KERNELS.ones_complement_words(view)
        return total
    return int(np.frombuffer(view, dtype=">u4").sum(dtype=np.uint64))


def header_length(buf: bytes | bytearray | memoryview, source: str) -> int:
    """Bytes of the primary header (to the end of the block holding END)."""
    view = memoryview(buf)
    for pos in range(0, len(view) - CARD + 1, CARD):
        if bytes(view[pos : pos + 8]) == b"END     ":
            return (pos // BLOCK + 1) * BLOCK
    raise InputError(source, "no END card in the primary header: not a FITS file?")


class HeaderValues(Protocol):
    """What the checks read of a header: ``get`` (a Mapping, a FITS header)."""

    def get(self, key: str, default: Any = None, /) -> Any:
        """The value of ``key``, or ``default``."""


def verify_checksums(
    header: HeaderValues,
    header_bytes: bytes | bytearray | memoryview,
    data_sum: int,
    source: str,
) -> str:
    """Check DATASUM and CHECKSUM of an HDU given its header bytes and data sum.

    Returns
    -------
    str
        ``"verified"`` or ``"absent"`` (no CHECKSUM/DATASUM cards).

    Raises
    ------
    InputError
        On any mismatch (the file was altered or damaged after writing).
    """
    datasum = header.get("DATASUM")
    checksum = header.get("CHECKSUM")
    if datasum is None and checksum is None:
        return "absent"
    if datasum is not None and str(datasum).strip() != str(data_sum):
        raise InputError(
            source,
            f"DATASUM mismatch: header says {str(datasum).strip()}, data sums to "
            f"{data_sum}; the file is corrupt, take the frame again",
        )
    if checksum is not None:
        total = ones_complement_sum(header_bytes, data_sum)
        if total != 0xFFFFFFFF:
            raise InputError(
                source,
                f"CHECKSUM mismatch (HDU sums to {total:#010x}, expected "
                "0xffffffff); the file was altered or damaged after writing",
            )
    return "verified"


CHECKSUM_PLACEHOLDER = "0" * 16
"""CHECKSUM value while the sum is taken (the encoding is relative to '0')."""

_EXCLUDED = frozenset(range(0x3A, 0x41)) | frozenset(range(0x5B, 0x61))
"""Punctuation between digits and letters, never used in an encoded checksum."""


def encode_checksum(total: int) -> str:
    """The CHECKSUM string for an HDU whose bytes sum to ``total``.

    Parameters
    ----------
    total
        Ones'-complement sum of the header (with CHECKSUM set to
        :data:`CHECKSUM_PLACEHOLDER`) plus DATASUM.

    Returns
    -------
    str
        16 characters; with them in place the HDU sums to 0xFFFFFFFF.
    """
    value = ~total & 0xFFFFFFFF
    chars = [0] * 16
    for i in range(4):
        byte = (value >> (24 - 8 * i)) & 0xFF
        group = [byte // 4 + 0x30] * 4
        group[0] += byte % 4
        changed = True
        while changed:  # move pairs off the excluded punctuation, same sum
            changed = False
            for j in (0, 2):
                if group[j] in _EXCLUDED or group[j + 1] in _EXCLUDED:
                    group[j] += 1
                    group[j + 1] -= 1
                    changed = True
        for j in range(4):
            chars[4 * j + i] = group[j]
    return bytes(chars[15:] + chars[:15]).decode("ascii")


def checksummed_header(header: Header, datasum: int, size: int | None = None) -> bytes:
    """Header bytes with DATASUM and the CHECKSUM that makes the HDU sum to -0.

    With ``size``, blank cards are added before END so that the header
    fills ``size`` bytes (a multiple of 2880), when it fits.
    """
    header = header.copy()
    header["CHECKSUM"] = (CHECKSUM_PLACEHOLDER, "HDU checksum (FITS 4.0 appendix J)")
    header["DATASUM"] = (str(datasum), "data unit checksum")
    if size is not None:
        used = len(header) + 1  # + END
        for _ in range(max(0, size // CARD - BLOCK // CARD - used + 1)):
            header.add_blank()  # END goes in the last block of the room
    total = ones_complement_sum(header.tostring().encode("ascii"), datasum)
    header["CHECKSUM"] = (encode_checksum(total), header.comment("CHECKSUM"))
    return header.tostring().encode("ascii")

"""FITS image HDUs written without astropy: structural cards and whole images.

An image HDU is its header (structural cards first: ``SIMPLE`` or
``XTENSION``, ``BITPIX``, ``NAXIS``, ``NAXISn``, then ``EXTEND`` or
``PCOUNT``/``GCOUNT``/``EXTNAME``), ``CHECKSUM`` and ``DATASUM``
(:func:`reduce.fits.checksum.checksummed_header`), and the pixels
big-endian, padded with zeros to whole 2880-byte blocks (FITS 4.0, sections
3.3 and 4.4).

Unsigned 16-bit pixels are stored as FITS stores them: ``BITPIX = 16`` with
``BZERO = 32768`` (section 5.2.5), each value ``v`` written as the signed
word ``v - 32768``, which is ``v`` with its top bit flipped.

:func:`write_image` writes a whole image to a stream: a raw frame, a test's
frame. A master, written band by band while it is computed, goes through
:class:`reduce.productfile.ProductFile`, which takes its headers from
:func:`image_header` too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from reduce.fits.cards import Card, Header, padded
from reduce.fits.checksum import checksummed_header, ones_complement_sum

log = logging.getLogger(__name__)

BITPIX = {
    np.dtype(np.uint8): 8,
    np.dtype(np.int16): 16,
    np.dtype(np.uint16): 16,
    np.dtype(np.int32): 32,
    np.dtype(np.float32): -32,
    np.dtype(np.float64): -64,
}
"""BITPIX of each pixel type written (``uint16`` with ``BZERO = 32768``)."""

STRUCTURAL = frozenset(
    {
        *("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND"),
        *("PCOUNT", "GCOUNT", "BZERO", "BSCALE", "CHECKSUM", "DATASUM"),
    }
)
"""Cards that describe the layout or integrity of an HDU, not its content:
never copied from one HDU into another."""

_UNSIGNED_ZERO = 32768
"""BZERO of unsigned 16-bit pixels."""


def image_header(
    name: str,
    dtype: npt.DTypeLike,
    shape: tuple[int, int],
    cards: Iterable[Card] = (),
) -> Header:
    """The header of a 2-D image HDU: structural cards, then ``cards``.

    Parameters
    ----------
    name
        ``PRIMARY`` for the primary HDU, else the extension's EXTNAME.
    dtype
        Pixel type, a key of :data:`BITPIX`.
    shape
        ``(rows, columns)``.
    cards
        Content cards, appended in order (structural ones are the caller's
        mistake: they are refused).
    """
    kind = np.dtype(dtype)
    if kind not in BITPIX:
        raise ValueError(f"no FITS pixel type for {kind}; expected one of {BITPIX}")
    primary = name == "PRIMARY"
    header = Header()
    if primary:
        header["SIMPLE"] = (True, "conforms to FITS standard")
    else:
        header["XTENSION"] = ("IMAGE", "Image extension")
    header["BITPIX"] = (BITPIX[kind], "array data type")
    header["NAXIS"] = (2, "number of array dimensions")
    header["NAXIS1"] = shape[1]
    header["NAXIS2"] = shape[0]
    if primary:
        header["EXTEND"] = True
    else:
        header["PCOUNT"] = (0, "number of parameters")
        header["GCOUNT"] = (1, "number of groups")
        header["EXTNAME"] = (name, "extension name")
    if kind == np.uint16:
        header["BZERO"] = _UNSIGNED_ZERO
        header["BSCALE"] = 1
    for card in cards:
        if card.keyword in STRUCTURAL:
            raise ValueError(f"{card.keyword} is a structural card, set from the data")
        header.append(card)
    return header


def stored(data: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``data`` as FITS stores it: big-endian, unsigned 16-bit as signed words.

    A new array (``data`` is not modified), C-ordered.
    """
    kind = np.dtype(data.dtype).newbyteorder("=")
    if kind not in BITPIX:
        raise ValueError(f"no FITS pixel type for {data.dtype}")
    if kind == np.uint16:
        out = np.empty(data.shape, dtype=">u2")
        np.bitwise_xor(data, np.uint16(0x8000), out=out)
        return out
    return np.ascontiguousarray(data, dtype=kind.newbyteorder(">"))


def write_image(stream: BinaryIO, header: Header, data: npt.NDArray[Any]) -> int:
    """Write one image HDU: its header with checksums, pixels and padding.

    Parameters
    ----------
    stream
        Open for binary writing, at the HDU's place.
    header
        From :func:`image_header` for ``data``'s type and shape.
    data
        The pixels, either byte order; not modified.

    Returns
    -------
    int
        Bytes written (a multiple of 2880).
    """
    rows, columns = data.shape
    declared = (header.get("NAXIS2"), header.get("NAXIS1"), header.get("BITPIX"))
    if declared != (rows, columns, BITPIX.get(np.dtype(data.dtype).newbyteorder("="))):
        raise ValueError(
            f"header declares NAXIS2, NAXIS1, BITPIX = {declared}; the data is "
            f"{data.dtype} {data.shape}"
        )
    words = stored(data).reshape(-1).view(np.uint8).data
    head = checksummed_header(header, ones_complement_sum(words))
    size = len(head) + padded(len(words))
    stream.write(head)
    stream.write(words)
    stream.write(bytes(size - len(head) - len(words)))
    return size

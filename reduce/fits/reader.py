"""The one path by which the reduction reads FITS files: every size bounded.

A :class:`FitsFile` is a regular file (:func:`reduce.files.open_regular`:
never a FIFO, a device or a directory) whose HDUs are found from their
headers alone, and where every size that a header declares is checked
against the file's real size (``fstat``) before anything is read or
allocated:

* a header is read a few blocks at a time, never past the end of the file
  nor past :data:`MAX_HEADER_BLOCKS` blocks;
* ``BITPIX`` must be one of the six FITS values, ``NAXIS`` 0..999, each
  ``NAXISn``, ``PCOUNT`` and ``GCOUNT`` a non-negative integer;
* the data unit, padded to whole 2880-byte blocks as FITS requires, must lie
  inside the file; a file even a byte short is refused as truncated.

The checks are O(1) per HDU (a handful of integers): nothing here visits
the pixels. Reading the data (a memory map, a read into a buffer, or one
HDU's data unit) happens only after them, through the same descriptor, so
what was checked is what is read.
"""

from __future__ import annotations

import logging
import math
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from reduce.errors import InputError
from reduce.files import Identity, identity, open_regular
from reduce.fits.cards import BLOCK, CARD, FitsHeaderError, Header, padded
from reduce.fits.checksum import ones_complement_sum, verify_checksums

log = logging.getLogger(__name__)

MAX_HEADER_BLOCKS = 1000
"""A header longer than this many 2880-byte blocks is refused (corrupt file)."""

_CHUNK_BLOCKS = 4
"""Header blocks read per ``pread`` (a raw frame's header takes two or three)."""

STORED_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
"""The pixel type stored for each BITPIX (table 8 of the standard)."""

BITPIX_VALUES = frozenset(STORED_DTYPES)
"""The values FITS allows for BITPIX."""


@dataclass(frozen=True)
class Hdu:
    """One HDU: its header and where its parts are in the file.

    Attributes
    ----------
    header
        The parsed header.
    index
        0 for the primary HDU.
    header_start, data_start
        Byte offsets of the header and of the data unit.
    data_bytes
        Bytes of data the header declares (without the padding).
    """

    header: Header
    index: int
    header_start: int
    data_start: int
    data_bytes: int

    @property
    def data_span(self) -> int:
        """Bytes of the data unit with its padding."""
        return padded(self.data_bytes)

    @property
    def end(self) -> int:
        """Offset of the byte after this HDU."""
        return self.data_start + self.data_span

    @property
    def name(self) -> str:
        """``PRIMARY``, or the extension's EXTNAME (else its index)."""
        if self.index == 0:
            return "PRIMARY"
        return str(self.header.get("EXTNAME", f"HDU {self.index}"))

    @property
    def shape(self) -> tuple[int, ...]:
        """Axis lengths in numpy order (NAXISn, ..., NAXIS1)."""
        naxis = int(self.header.get("NAXIS", 0))
        return tuple(int(self.header[f"NAXIS{k}"]) for k in range(naxis, 0, -1))


def _end_card(chunk: bytes) -> int:
    """Offset just after the END card in ``chunk`` (cards at 80-byte steps), or -1."""
    for pos in range(0, len(chunk) - CARD + 1, CARD):
        if chunk[pos : pos + 8] == b"END     ":
            return pos + CARD
    return -1


def _integer(header: Header, key: str, default: int, where: str) -> int:
    value = header.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(where, f"{key}={value!r}; expected an integer >= 0")
    return value


def _data_bytes(header: Header, index: int, where: str) -> int:
    """Bytes of data the header declares (structural keywords checked)."""
    bitpix = header.get("BITPIX")
    if isinstance(bitpix, bool) or bitpix not in BITPIX_VALUES:
        raise InputError(
            where, f"BITPIX={bitpix!r}; expected one of {sorted(BITPIX_VALUES)}"
        )
    naxis = _integer(header, "NAXIS", -1, where)
    if naxis > 999:
        raise InputError(where, f"NAXIS={naxis}; expected 0 to 999")
    if naxis == 0:
        return 0
    axes = [_integer(header, f"NAXIS{k}", -1, where) for k in range(1, naxis + 1)]
    if index == 0 and header.get("GROUPS") is True and axes[0] == 0:
        axes = axes[1:]  # random groups: NAXIS1 = 0 is not an axis
    pcount = _integer(header, "PCOUNT", 0, where)
    gcount = _integer(header, "GCOUNT", 1, where)
    return abs(int(bitpix)) // 8 * gcount * (pcount + math.prod(axes))


class FitsFile:
    """A regular FITS file open for reading (see the module docstring).

    Parameters
    ----------
    path
        The file.
    what
        What it should be (``"frame file"``, ``"master bias"``), for messages.

    Raises
    ------
    InputError
        If the path is not a readable regular file.
    """

    def __init__(self, path: str | Path, what: str) -> None:
        self.path = Path(path)
        self.source = str(path)
        self.what = what
        fd, info = open_regular(path, what)
        self._fd: int | None = fd
        self.size = info.st_size
        self.identity: Identity = identity(info)

    @property
    def fd(self) -> int:
        """The open descriptor."""
        if self._fd is None:
            raise InputError(self.source, "file already closed")
        return self._fd

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FitsFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _header_text(self, start: int, where: str) -> tuple[bytes, int]:
        """Header bytes at ``start``, to the end of END's block; their length."""
        room = min(self.size - start, MAX_HEADER_BLOCKS * BLOCK)
        limit = room // BLOCK * BLOCK  # a header is whole blocks
        text = b""
        while len(text) < limit:
            want = min(_CHUNK_BLOCKS * BLOCK, limit - len(text))
            chunk = os.pread(self.fd, want, start + len(text))
            if len(chunk) < want:
                break  # the file shrank
            found = _end_card(chunk)
            if found >= 0:
                text += chunk[: padded(found)]
                return text, len(text)
            text += chunk
        if room < MAX_HEADER_BLOCKS * BLOCK:
            raise InputError(
                where,
                f"header without END card before the end of the file "
                f"({self.size} bytes); truncated, or not a FITS file?",
            )
        raise InputError(
            where, f"no END card in the first {MAX_HEADER_BLOCKS} header blocks"
        )

    def hdu_at(self, start: int, index: int) -> Hdu:
        """The HDU whose header starts at byte ``start``; its data unit checked
        to lie inside the file."""
        where = self.source if index == 0 else f"{self.source}[HDU {index}]"
        first = b"SIMPLE  =" if index == 0 else b"XTENSION="
        if os.pread(self.fd, len(first), start) != first:
            if index == 0:
                raise InputError(
                    where,
                    f"does not start with SIMPLE: not a FITS file "
                    f"({self.size} bytes); expected a {self.what}",
                )
            raise InputError(
                where, f"no XTENSION card at byte {start}: bytes after the last HDU"
            )
        text, length = self._header_text(start, where)
        try:
            header = Header.fromstring(text.decode("ascii"))
        except (UnicodeDecodeError, FitsHeaderError) as err:
            raise InputError(where, f"unreadable header: {err}") from err
        data_bytes = _data_bytes(header, index, where)
        hdu = Hdu(header, index, start, start + length, data_bytes)
        if hdu.end > self.size:
            part = "primary" if index == 0 else f"HDU {index}'s"
            raise InputError(
                where,
                f"file is {self.size} bytes, too short for its {part} data unit "
                f"({data_bytes} bytes at byte {hdu.data_start}, {hdu.data_span} "
                "with its padding); truncated file (copy interrupted?)",
            )
        return hdu

    def primary(self) -> Hdu:
        """The primary HDU.

        Raises
        ------
        InputError
            For an empty file, or a primary HDU that is not well formed.
        """
        if self.size == 0:
            raise InputError(
                self.source, f"empty file (0 bytes); expected a {self.what}"
            )
        return self.hdu_at(0, 0)

    def hdus(self) -> list[Hdu]:
        """Every HDU of the file, in order (headers only; no data read).

        Raises
        ------
        InputError
            For an empty file, or any HDU that is not well formed.
        """
        found = [self.primary()]
        while found[-1].end < self.size:
            found.append(self.hdu_at(found[-1].end, len(found)))
        return found

    def map(self) -> memoryview:
        """The whole file as a read-only memory map, populated at once.

        The map stays valid after :meth:`close` (it goes with its last view).
        """
        if self.size == 0:
            return memoryview(b"")
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        try:
            mapped = mmap.mmap(self.fd, self.size, flags=flags, prot=mmap.PROT_READ)
        except (OSError, ValueError) as err:
            raise InputError(self.source, f"cannot map: {err}") from err
        return memoryview(mapped)

    def read_into(self, view: memoryview) -> None:
        """Read the whole file into ``view`` (exactly :attr:`size` bytes)."""
        got = os.preadv(self.fd, [view], 0)
        if got != self.size or len(view) != self.size:
            raise InputError(self.source, f"short read ({got} of {self.size} bytes)")

    def image(self, name: str, verify: bool = True) -> npt.NDArray[Any]:
        """The pixels of the image HDU called ``name`` (``PRIMARY`` or its
        EXTNAME), as stored: big-endian, BZERO and BSCALE not applied.

        ``verify``: check DATASUM and CHECKSUM (when present) on the way.

        Raises
        ------
        InputError
            No HDU of that name, or a checksum mismatch.
        """
        hdus = self.hdus()
        hdu = next((h for h in hdus if h.name == name), None)
        if hdu is None:
            raise InputError(
                self.source, f"no HDU named {name}; it has {[h.name for h in hdus]}"
            )
        dtype = np.dtype(STORED_DTYPES[int(hdu.header["BITPIX"])])
        raw = self.read_data(hdu, verify)
        count = hdu.data_bytes // dtype.itemsize
        return np.frombuffer(raw, dtype, count).reshape(hdu.shape)

    def read_data(self, hdu: Hdu, verify: bool) -> npt.NDArray[np.uint8]:
        """The data unit of ``hdu`` with its padding, as stored (bytes).

        ``verify``: check DATASUM and CHECKSUM (when present) on the way.
        """
        where = f"{self.source}[{hdu.name}]"
        raw = np.empty(hdu.data_span, dtype=np.uint8)
        got = os.preadv(self.fd, [raw.data], hdu.data_start)
        if got != hdu.data_span:
            raise InputError(where, f"short read ({got} of {hdu.data_span} bytes)")
        if verify:
            head = os.pread(
                self.fd, hdu.data_start - hdu.header_start, hdu.header_start
            )
            verify_checksums(hdu.header, head, ones_complement_sum(raw.data), where)
        return raw


def read_header(path: str | Path, what: str) -> Header:
    """The primary header of the FITS file ``path`` (``what`` names it in errors).

    Raises
    ------
    InputError
        Not a regular, readable FITS file.
    """
    with FitsFile(path, what) as fits:
        return fits.primary().header

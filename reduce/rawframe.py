"""The MEGARA raw frame: its modes, layout, keywords, write and verification.

One owner for what the sequencer writes and the reduction reads. A raw
frame is one primary HDU (no extensions) of 4212 x 4196 pixels
(:mod:`reduce.geometry`), ``BITPIX = 16`` with ``BZERO = 32768`` so that the
stored signed words are the controller's unsigned ADU, with ``CHECKSUM`` and
``DATASUM``: what megaradrp 0.22 checks for the observing modes
``MegaraDarkImage`` and ``MegaraBiasImage``. The header's content cards are
the sequencer's (``sequencer/rawfits.py``, which documents each keyword);
the keywords the reduction depends on are named here.

:func:`write_raw_frame` writes a frame atomically: the frame goes to
``.<name>.partial`` in the same folder (created exclusively), which is
flushed and fsync'd, renamed to its name and the folder fsync'd. After a
crash there is either no frame or the complete one; a partial file is never
a frame. A frame is never overwritten. :func:`verify_raw_frame` checks a
written frame end to end (layout, one HDU, size, checksums, INSTRUME and
OBSMODE) through :class:`reduce.fits.reader.FitsFile`.

Neither imports astropy: ``megara-dark run`` and ``megara-dark reduce``
never do. astropy is the tests' oracle for both.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from reduce.errors import InputError
from reduce.fits import writer
from reduce.fits.cards import Header
from reduce.fits.checksum import HeaderValues
from reduce.fits.reader import FitsFile
from reduce.geometry import RAW_BZERO, RAW_SHAPE
from reduce.io import fsync_dir

log = logging.getLogger(__name__)


class Mode(enum.Enum):
    """The observing modes of this suite (megaradrp's names)."""

    BIAS = "MegaraBiasImage"
    DARK = "MegaraDarkImage"

    @property
    def imagetyp(self) -> str:
        """IMAGETYP of the raw frames of this mode (megaradrp's datatype)."""
        return "IMAGE_BIAS" if self is Mode.BIAS else "IMAGE_DARK"

    @property
    def product(self) -> str:
        """Name of the product (numina's result key and file stem)."""
        return "master_bias" if self is Mode.BIAS else "master_dark"


# IMAGETYP is optional: megaradrp derives a raw frame's type from OBSMODE, and
# MEGARA raw frames written by the sequencer omit it (a raw IMAGETYP copied
# into megaradrp's master bias makes numina refuse that master). When present
# it must agree with the block.
REQUIRED_KEYWORDS = ("INSTRUME", "OBSMODE", "EXPTIME")
"""Keywords every raw frame must carry (DARKTIME defaults to EXPTIME)."""

INTERLOCK_OK = "INTLKOK"
"""``T``: cover and shutter read back closed throughout; ``F`` marks a frame
the reduction excludes (and reports), not an error."""

INTERLOCK_WHY = "INTLKWHY"
"""Why the interlock failed (free text, optional)."""

SIMULATED = "SIMULATE"
"""``T`` on frames from the simulators: never combined with real frames."""

CCD_TEMPERATURE_KEYS = ("TEMPSTRT", "CCDTEMP0", "CCDTEMP1", "CCDTEMP2", "CCDTEMP3")
"""Keywords searched, in order, for the CCD's temperature.

``TEMPSTRT``: this suite's raw writer, kelvin, at exposure start.
``CCDTEMP0``-``CCDTEMP3``: the CCD temperatures of a MEGARA raw frame,
kelvin (megaradrp 0.22, ``schemas/baseimage.json``, ``primary_hdu_values``:
``"minimum": 0``). Never ``SENTEMPn``: those are other sensors of the
instrument, in degrees C (``SENTEMP4 = 12.5 / [C] sensor temperature``).
"""

TEMPERATURE_UNITS = {"TEMPSTRT": "K", "TEMPEND": "K"} | {
    f"CCDTEMP{n}": "K" for n in range(4)
}
"""The unit of each temperature keyword whose definition we know. A card's
own ``[unit]`` comment (FITS 4.0, section 4.3.2) takes precedence."""

_UNIT_NAMES = {"K": "K", "KELVIN": "K", "C": "C", "DEG C": "C", "CELSIUS": "C"}


def ccd_temperature(
    header: Header, keys: tuple[str, ...] = CCD_TEMPERATURE_KEYS
) -> float | None:
    """The CCD temperature in kelvin from the first of ``keys`` present, or None.

    The unit is the card's ``[K]``/``[C]`` comment, else the keyword's
    definition (:data:`TEMPERATURE_UNITS`); a value whose unit is neither
    known nor stated is skipped, never guessed.
    """
    for key in keys:
        value = header.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value):
            continue
        unit = _stated_unit(header.comment(key)) or TEMPERATURE_UNITS.get(key)
        if unit == "C":
            value += 273.15
        elif unit != "K":
            log.warning("%s = %r: unit unknown; not read as a temperature", key, value)
            continue
        if value > 0:
            return float(value)
    return None


def _stated_unit(comment: str) -> str | None:
    if not comment.startswith("["):
        return None
    stated = comment[1 : comment.find("]")].strip().upper()
    return _UNIT_NAMES.get(stated)


PARTIAL_SUFFIX = ".partial"
"""Suffix of a frame being written (``.<name>.partial``)."""


def partial_name(name: str) -> str:
    """The name of the temporary file while frame ``name`` is written."""
    return f".{name}{PARTIAL_SUFFIX}"


def check_layout(header: HeaderValues, source: str) -> None:
    """Refuse a primary header that is not a raw frame's image.

    Raises
    ------
    InputError
        Shape, BITPIX, BZERO or BSCALE is not a raw frame's.
    """
    shape = (header.get("NAXIS2"), header.get("NAXIS1"))
    if header.get("NAXIS") != 2 or shape != RAW_SHAPE:
        raise InputError(
            source,
            f"primary HDU has NAXIS={header.get('NAXIS')} shape {shape}; expected "
            f"a 2-D raw frame of {RAW_SHAPE} (rows, columns) in the primary HDU",
        )
    if header.get("BITPIX") != 16:
        raise InputError(
            source,
            f"BITPIX={header.get('BITPIX')}, expected 16 for a raw frame "
            "(is it a processed or float image?)",
        )
    if header.get("BZERO", 0) != RAW_BZERO or header.get("BSCALE", 1) != 1:
        raise InputError(
            source,
            f"BZERO={header.get('BZERO')} BSCALE={header.get('BSCALE', 1)}; expected "
            f"BZERO={RAW_BZERO}, BSCALE=1 (unsigned 16-bit counts)",
        )


def frame_header(cards: Header) -> Header:
    """A raw frame's whole header: the structural cards, then ``cards``."""
    return writer.image_header("PRIMARY", np.uint16, RAW_SHAPE, cards.cards)


def write_raw_frame(path: Path, pixels: npt.NDArray[np.uint16], cards: Header) -> Path:
    """Write a raw frame atomically (see the module docstring); never overwrite.

    Parameters
    ----------
    path
        The frame's final name.
    pixels
        4212 x 4196 uint16 ADU, either byte order; not modified.
    cards
        The header's content cards (no structural ones).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        The pixels are not a raw frame's, or ``path`` (or a leftover partial
        file of it) exists.
    OSError
        The file system refused the write; the partial file is removed first.
    """
    path = Path(path)
    if pixels.shape != RAW_SHAPE or pixels.dtype.kind != "u" or pixels.itemsize != 2:
        raise InputError(
            path.name,
            f"pixels are {pixels.dtype} {pixels.shape}; expected uint16 "
            f"{RAW_SHAPE} (MEGARA raw)",
        )
    header = frame_header(cards)
    if path.exists():
        raise InputError(
            str(path),
            "a frame with this name exists; frames are never overwritten: check "
            "the run journal (resume) or the attempt counter",
        )
    tmp = path.with_name(partial_name(path.name))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise InputError(
            str(tmp),
            f"a leftover partial write of {path.name} exists; it is not a frame: "
            "remove it, then write again",
        ) from None
    try:
        with open(fd, "wb", closefd=True) as stream:
            writer.write_image(stream, header, pixels)
            stream.flush()
            os.fsync(stream.fileno())
        if path.exists():  # appeared while we wrote: never replace a frame
            raise InputError(str(path), "appeared during the write; not replaced")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    log.debug("wrote %s", path)
    return path


def verify_raw_frame(path: Path) -> Header:
    """Check a written raw frame end to end; return its primary header.

    Checks: a regular, complete file of one HDU; a raw frame's layout;
    CHECKSUM and DATASUM present and matching; INSTRUME ``MEGARA`` and an
    OBSMODE of :class:`Mode`. The file is read once, through the one FITS
    reader (every declared size checked against the file's first).

    Raises
    ------
    InputError
        Naming the file and what is wrong.
    """
    source = str(path)
    with FitsFile(path, "raw frame") as frame:
        primary = frame.primary()
        header = primary.header
        check_layout(header, source)  # before any offset is used
        count = len(frame.hdus())
        if count != 1:
            raise InputError(source, f"{count} HDUs; a MEGARA raw frame has one")
        if "CHECKSUM" not in header or "DATASUM" not in header:
            raise InputError(source, "no CHECKSUM/DATASUM; not written by us")
        frame.read_data(primary, verify=True)
    _check_identity(header, source)
    return header


def _check_identity(header: Header, source: str) -> None:
    modes = [m.value for m in Mode]
    if header.get("OBSMODE") not in modes or header.get("INSTRUME") != "MEGARA":
        raise InputError(
            source,
            f"INSTRUME {header.get('INSTRUME')!r} OBSMODE "
            f"{header.get('OBSMODE')!r}; expected MEGARA and one of {modes}",
        )

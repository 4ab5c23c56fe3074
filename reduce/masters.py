"""The one validated loader of master calibrations (master bias, master dark).

Every reader of a master goes through :func:`load_master`: the dark
reduction's master bias (:mod:`reduce.batch` and :mod:`reduce.online`
alike) and the pre-flight checks (:mod:`reduce.preflight`). A master is
accepted only when:

* it is a regular, well-formed FITS file (:class:`reduce.fits.reader.FitsFile`:
  every size bounded by the file's);
* it is the product asked for: ``NUMTYPE`` (when present) ``MasterBias`` or
  ``MasterDark``, ``OBSMODE`` (when present) the matching mode;
* its PRIMARY (and VARIANCE, when there is one) is a 2-D float image
  (BITPIX -32 or -64, no BSCALE/BZERO scaling) of the trimmed shape;
* its checksums hold (for our products and foreign ones; numina's own carry
  the first raw frame's stale CHECKSUM/DATASUM, see docs/products.md);
* every value is finite: a NaN master bias would make every pixel of the
  master dark NaN, under a valid checksum.

The finiteness check is one pass over each image, a band of rows at a time
(in the cache, no image-sized temporary).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from reduce.errors import InputError
from reduce.fits.cards import Header
from reduce.fits.reader import FitsFile, Hdu
from reduce.geometry import TRIMMED_SHAPE
from reduce.rawframe import Mode

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]

_FLOAT_TYPES = {-32: ">f4", -64: ">f8"}
_CHECK_ROWS = 256
"""Rows checked for finiteness at a time (4 MB of float32: in the cache)."""


class MasterKind(enum.Enum):
    """The master products, by their numina ``NUMTYPE``."""

    BIAS = "MasterBias"
    DARK = "MasterDark"

    @property
    def mode(self) -> Mode:
        """The observing mode that makes this product."""
        return Mode.BIAS if self is MasterKind.BIAS else Mode.DARK

    @property
    def label(self) -> str:
        """``master bias`` or ``master dark``, for messages."""
        return "master bias" if self is MasterKind.BIAS else "master dark"


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class Master:
    """A master calibration read and validated.

    Attributes
    ----------
    path
        The file.
    kind
        Bias or dark.
    header
        The primary header.
    data
        PRIMARY, trimmed, native float32, ADU; every value finite.
    variance
        VARIANCE (same shape, finite), ADU^2, or None when absent.
    uuid
        The product's ``UUID`` card (``"unknown"`` when absent).
    """

    path: Path
    kind: MasterKind
    header: Header
    data: Float32Array
    variance: Float32Array | None
    uuid: str


def _kind_of(header: Header, kind: MasterKind | None, source: str) -> MasterKind:
    numtype, obsmode = header.get("NUMTYPE"), header.get("OBSMODE")
    kinds = list(MasterKind) if kind is None else [kind]
    for candidate in kinds:
        if numtype in (None, candidate.value) and obsmode in (
            None,
            candidate.mode.value,
        ):
            return candidate
    wanted = " or ".join(f"NUMTYPE {k.value}, OBSMODE {k.mode.value}" for k in kinds)
    label = kind.label if kind is not None else "master calibration"
    raise InputError(
        source,
        f"NUMTYPE={numtype!r} OBSMODE={obsmode!r}; expected a {label} ({wanted})",
    )


def check_finite(image: npt.NDArray[np.floating], where: str) -> None:
    """Raise unless every value of ``image`` is finite (one pass, in bands)."""
    for r0 in range(0, image.shape[0], _CHECK_ROWS):
        band = image[r0 : r0 + _CHECK_ROWS]
        if np.isfinite(band).all():
            continue
        bad = np.argwhere(~np.isfinite(band))[0]
        count = sum(
            int(np.count_nonzero(~np.isfinite(image[r : r + _CHECK_ROWS])))
            for r in range(r0, image.shape[0], _CHECK_ROWS)
        )
        raise InputError(
            where,
            f"{count} non-finite value(s) (NaN or infinity), the first at row "
            f"{r0 + int(bad[0])}, column {int(bad[1])}; expected finite ADU "
            "everywhere (a damaged or wrong master?)",
        )


def _check_image(hdu: Hdu, where: str, label: str) -> str:
    """Refuse an HDU that is not an unscaled trimmed float image; its dtype."""
    header = hdu.header
    bitpix = header.get("BITPIX")
    dtype = _FLOAT_TYPES.get(bitpix) if isinstance(bitpix, int) else None
    if dtype is None or hdu.shape != TRIMMED_SHAPE:
        raise InputError(
            where,
            f"BITPIX={bitpix} shape {hdu.shape}; expected a float image "
            f"(BITPIX -32) of the trimmed {TRIMMED_SHAPE}; is it a {label}?",
        )
    if header.get("BSCALE", 1) != 1 or header.get("BZERO", 0) != 0:
        raise InputError(
            where,
            f"BSCALE={header.get('BSCALE')} BZERO={header.get('BZERO')}; "
            f"expected an unscaled float image for a {label}",
        )
    return dtype


def _image(fits: FitsFile, hdu: Hdu, verify: bool, label: str) -> Float32Array:
    """An HDU's trimmed float image as native float32, checked."""
    where = f"{fits.source}[{hdu.name}]"
    dtype = _check_image(hdu, where, label)
    raw = fits.read_data(hdu, verify)
    image = raw[: hdu.data_bytes].view(dtype).reshape(TRIMMED_SHAPE)
    if image.dtype == np.dtype(">f4"):
        image.byteswap(inplace=True)  # no second copy of the image
        native: Float32Array = image.view(np.float32)
    else:
        native = image.astype(np.float32)
    check_finite(native, where)
    return native


#: Cards only our products carry: any one of them present means "ours".
_OUR_MARKS = ("REDUCER", "QAFLAG", "QANREAS", "NEXCLUDE")


def _ours(header: Header) -> bool:
    """Whether the product's checksums must hold.

    numina's products carry the first raw frame's stale CHECKSUM/DATASUM,
    so those are not checked; every other file's are. A file is numina's
    only with none of our marks and numina's NUMXVER: a byte flipped in one
    card (REDUCER's value or keyword) cannot turn the check off.
    """
    return any(mark in header for mark in _OUR_MARKS) or "NUMXVER" not in header


def load_master(path: str | Path, kind: MasterKind | None) -> Master:
    """Read and validate a master calibration (ours or megaradrp's).

    Parameters
    ----------
    path
        The master's FITS file.
    kind
        The product expected (None: either).

    Returns
    -------
    Master
        The validated master.

    Raises
    ------
    InputError
        One line naming the file and what was expected, for a file that is
        not a valid master of that kind (see the module docstring).
    """
    label = kind.label if kind is not None else "master calibration"
    with FitsFile(path, label) as fits:
        # The primary's kind and shape first: a lying NAXIS1 is named as such,
        # not as what it does to the offsets of the HDUs after it.
        primary = fits.primary()
        found = _kind_of(primary.header, kind, fits.source)
        _check_image(primary, f"{fits.source}[PRIMARY]", found.label)
        hdus = fits.hdus()
        header = hdus[0].header
        ours = _ours(header)
        data = _image(fits, hdus[0], ours, found.label)
        named = {hdu.name: hdu for hdu in hdus[1:]}
        variance = (
            _image(fits, named["VARIANCE"], ours, found.label)
            if "VARIANCE" in named
            else None
        )
    return Master(
        Path(path), found, header, data, variance, str(header.get("UUID", "unknown"))
    )

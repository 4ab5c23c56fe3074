"""A block's master FITS file before its pixels: headers and layout.

The FITS layout (``docs/products.md``): PRIMARY (ADU, megaradrp's),
VARIANCE (ADU^2), MAP (frames per pixel), and for darks DARKRATE (e-/s) and
DQ (bit mask) with a DQBITS table defining the bits. The primary header is
the first used frame's, with the structural and checksum cards dropped and
the numina product keywords set (IMAGETYP = MASTER_BIAS / MASTER_DARK so that
numina accepts the master bias as a ``master_bias`` requirement). Every HDU
carries a fresh CHECKSUM/DATASUM. The file itself is written by
:class:`reduce.productfile.ProductFile`; the JSON documents beside it come
from :mod:`reduce.documents`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from reduce import __version__
from reduce.fits.cards import BLOCK, Card, Header, fits_text
from reduce.fits.checksum import checksummed_header, ones_complement_sum
from reduce.fits.writer import STRUCTURAL, image_header
from reduce.geometry import AMP1, AMP2, AMPLIFIERS, TRIMMED_SHAPE
from reduce.hotpixels import DQ, DQ_DESCRIPTIONS, Glow
from reduce.qalimits import QAFlag, QCThresholds
from reduce.qc import AmplifierQC, OverscanStats, QAReport
from reduce.rawframe import Mode

log = logging.getLogger(__name__)

REDUCER = "megara-dark"
"""Value of the REDUCER keyword that marks our products."""

DETECTOR_UUID = "2e02e135-2325-47c9-9975-466b445b0b8b"
"""megaradrp's detector component (NUM-OVPE / NUM-TRIM)."""

_NOT_COPIED = STRUCTURAL | {"UUID", "NUM-NCOM", "HISTORY", ""}
"""Cards of the first frame that a master does not copy."""


def software_version() -> str:
    """Version of megara-dark (:data:`reduce.__version__`)."""
    return __version__


def software_versions() -> dict[str, str]:
    """Versions of the software that computed the products."""
    return {
        "megara-dark": __version__,
        "python": ".".join(str(part) for part in sys.version_info[:3]),
        "numpy": np.__version__,
    }


def product_header(
    first: Any,
    mode: Mode,
    *,
    product_uuid: str,
    frame_uuids: Sequence[str],
    bias_uuid: str | None,
    method: str,
    qa: QAReport,
    excluded: int,
) -> Header:
    """Primary header of a master: the first frame's cards plus product keys.

    ``first`` is the first frame's header (:class:`reduce.fits.cards.Header`);
    its cards are copied as they were written. Structural cards are not
    included (:func:`master_layout` adds them).
    """
    header = Header()
    for card in first.cards:
        if card.keyword not in _NOT_COPIED:
            header.append(card)
    dark = mode is Mode.DARK
    version = software_version()
    header["BUNIT"] = ("ADU", "PRIMARY unit (as the raw frames and megaradrp)")
    header["DATE"] = (
        datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "UTC date this product was written",
    )
    header["IMAGETYP"] = "MASTER_DARK" if dark else "MASTER_BIAS"
    if not dark:
        header["IMGTYPE"] = "MASTER_BIAS"
    header["UUID"] = product_uuid
    header["NUM-OVPE"] = DETECTOR_UUID
    header["NUM-TRIM"] = DETECTOR_UUID
    header["NUM-NCOM"] = (len(frame_uuids), "number of frames combined")
    if bias_uuid is not None:
        header["NUM-BS"] = (bias_uuid, "master bias UUID")
    header["REDUCER"] = (REDUCER, "software that made this product")
    header["NUMXVER"] = (version, "megara-dark version (numina-style key)")
    header["NUMRNAM"] = ("DarkRecipe" if dark else "BiasRecipe", "recipe equivalent")
    header["NUMRVER"] = (1, "recipe version")
    header["NUMDRP"] = ("MEGARA", "DRP name")
    header["NUMDRPV"] = (version, "megara-dark version")
    header["NUMPIPE"] = ("default", "DRP pipeline")
    header["NUMTYPE"] = ("MasterDark" if dark else "MasterBias", "Product type")
    header["QAFLAG"] = (qa.flag.value, "QA verdict: GOOD, PARTIAL or BAD")
    header["QANREAS"] = (len(qa.reasons), "number of QAREASn cards")
    for k, reason in enumerate(qa.reasons, start=1):
        header[f"QAREAS{k}"] = fits_text(reason)
    header["NEXCLUDE"] = (excluded, "frames excluded (interlock, light leak)")
    for amp in qa.amplifiers:
        n = amp.amplifier
        if amp.dark_current_e_pix_h is not None:
            header[f"DARKCUR{n}"] = (
                round(amp.dark_current_e_pix_h, 5),
                f"[electron/pix/h] dark current, amplifier {n}",
            )
        header[f"RDNOISE{n}"] = (round(amp.read_noise_e, 4), f"[electron] amp {n}")
        if dark:
            _defect_cards(header, amp)
        if amp.cosmic_ray_pixels is not None:
            header[f"NCRPIX{n}"] = (
                amp.cosmic_ray_pixels,
                f"pixels hit by a cosmic ray in a frame, amp {n}",
            )
    header.add_history(f"Combined {len(frame_uuids)} images using '{method}'")
    for frame_uuid in frame_uuids:
        header.add_history(fits_text(f"Image {frame_uuid}"))
    if bias_uuid is not None:
        header.add_history(f"Bias correction with {bias_uuid}")
    header.add_history(f"megara-dark {version} (reduce)")
    return header


def _defect_cards(header: Header, amp: AmplifierQC) -> None:
    """A master dark's defect and glow figures of one amplifier."""
    n = amp.amplifier
    header[f"NHOTPIX{n}"] = (amp.hot_pixels, f"[pixel] hot pixels, amplifier {n}")
    header[f"NHOTCOL{n}"] = (amp.hot_columns, f"[column] hot columns, amp {n}")
    if amp.hot_column_pixels is not None:
        header[f"NHOTCPX{n}"] = (
            amp.hot_column_pixels,
            f"[pixel] pixels of hot column segments, amp {n}",
        )
    if amp.hot_rate_limit_e_s is not None:
        header[f"HOTLIM{n}"] = (
            round(amp.hot_rate_limit_e_s, 6),
            f"[electron/s] hot-pixel cut reached, amp {n}",
        )
    if amp.glow is not None:
        header[f"GLOWPK{n}"] = (
            round(amp.glow.peak_e_pix_h, 4),
            f"[electron/pix/h] glow peak above bulk, amp {n}",
        )
        header[f"GLOWX{n}"] = (amp.glow.col + 1, f"glow peak column (1-based), amp {n}")
        header[f"GLOWY{n}"] = (amp.glow.row + 1, f"glow peak row (1-based), amp {n}")
    if amp.cosmic_residuals is not None:
        header[f"NCRRES{n}"] = (
            amp.cosmic_residuals,
            f"[pixel] median hit by cosmic rays (DQ 8), amp {n}",
        )


def provisional_report(n_frames: int, dark: bool, thresholds: QCThresholds) -> QAReport:
    """A QA report with a final report's cards but no figures yet, nor reasons.

    Sizes the primary header of a product written before its QC
    (:class:`reduce.productfile.ProductFile`); never written as it is.
    """
    amps = tuple(
        AmplifierQC(
            amplifier=amp.number,
            dark_current_e_pix_h=0.0 if dark else None,
            read_noise_e=0.0,
            overscan=OverscanStats(level=0.0, drift=0.0, slope=0.0),
            hot_pixels=0,
            hot_columns=0,
            cosmic_ray_pixels=0 if n_frames >= 3 else None,
            hot_column_pixels=0 if dark else None,
            cosmic_residuals=0 if dark and n_frames >= 3 else None,
            glow=Glow(0.0, 0, 0, 0.0) if dark else None,
            hot_rate_limit_e_s=0.0 if dark else None,
        )
        for amp in AMPLIFIERS
    )
    return QAReport(
        flag=QAFlag.GOOD,
        reasons=(),
        amplifiers=amps,
        n_frames=n_frames,
        flagged_fraction=0.0,
        thresholds=thresholds,
    )


@dataclass(frozen=True)
class ImagePlan:
    """An image HDU of a product before its pixels: header, dtype, shape.

    Attributes
    ----------
    name
        EXTNAME (``PRIMARY`` for the primary HDU).
    header
        The whole header, structural cards first (no CHECKSUM/DATASUM).
    dtype
        Native dtype of the pixels (written big-endian).
    shape
        ``(rows, columns)``.
    """

    name: str
    header: Header
    dtype: np.dtype[Any]
    shape: tuple[int, int]


def image_plan(
    name: str,
    dtype: type[np.generic],
    shape: tuple[int, int] = TRIMMED_SHAPE,
    cards: Iterable[Card] = (),
) -> ImagePlan:
    """An image HDU's plan; ``name`` ``PRIMARY`` makes the primary HDU."""
    header = image_header(name, dtype, shape, cards)
    return ImagePlan(name, header, np.dtype(dtype), shape)


def dq_table() -> bytes:
    """The DQBITS table HDU, whole (CHECKSUM/DATASUM set).

    Value, name and meaning of every DQ bit: three fixed-width columns of
    big-endian rows. MEANING is as wide as the longest meaning, so no
    meaning is cut.
    """
    bits = list(DQ)
    names = [b.name.encode("ascii") for b in bits if b.name is not None]
    meanings = [DQ_DESCRIPTIONS[b].encode("ascii") for b in bits]
    name_width, meaning_width = max(map(len, names)), max(map(len, meanings))
    rows = np.array(
        list(zip([int(b) for b in bits], names, meanings, strict=True)),
        dtype=[
            ("BIT", ">i4"),
            ("NAME", f"S{name_width}"),
            ("MEANING", f"S{meaning_width}"),
        ],
    )
    header = Header()
    for keyword, value, comment in [
        ("XTENSION", "BINTABLE", "binary table extension"),
        ("BITPIX", 8, "array data type"),
        ("NAXIS", 2, "number of array dimensions"),
        ("NAXIS1", rows.dtype.itemsize, "bytes per row"),
        ("NAXIS2", len(rows), "rows: one per DQ bit"),
        ("PCOUNT", 0, "number of group parameters"),
        ("GCOUNT", 1, "number of groups"),
        ("TFIELDS", 3, "number of table fields"),
        ("TTYPE1", "BIT", "value of the bit in DQ"),
        ("TFORM1", "J", ""),
        ("TTYPE2", "NAME", ""),
        ("TFORM2", f"{name_width}A", ""),
        ("TTYPE3", "MEANING", ""),
        ("TFORM3", f"{meaning_width}A", ""),
        ("EXTNAME", "DQBITS", "meaning of the DQ bits"),
    ]:
        header[keyword] = (value, comment)
    data = rows.tobytes()
    data += b"\0" * (-len(data) % BLOCK)
    return checksummed_header(header, ones_complement_sum(data)) + data


def _unit(unit: str, comment: str) -> list[Card]:
    header = Header()
    header["BUNIT"] = (unit, comment)
    return list(header.cards)


def master_layout(
    header: Header, dark: bool, darktime: float | None = None
) -> list[ImagePlan | bytes]:
    """The HDUs of a master before its pixels (DARKRATE, DQ, DQBITS for darks).

    Parameters
    ----------
    header
        The primary header's cards (:func:`product_header`).
    dark
        A master dark (else a master bias).
    darktime
        DARKTIME of a dark, s (recorded with DARKRATE).

    Returns
    -------
    list
        :class:`ImagePlan` per image HDU, the DQBITS table HDU's bytes.
    """
    plans: list[ImagePlan | bytes] = [
        image_plan("PRIMARY", np.float32, cards=header.cards),
        image_plan(
            "VARIANCE", np.float32, cards=_unit("adu2", "variance of PRIMARY, ADU^2")
        ),
        image_plan("MAP", np.int16, cards=_unit("", "frames combined per pixel")),
    ]
    if dark:
        rate = Header(_unit("electron/s", "dark current: PRIMARY x gain / DARKTIME"))
        rate["DARKTIME"] = (darktime, "[s] exposure used for the rate")
        rate["GAIN1"] = (AMP1.gain, "[electron/adu] amplifier 1 (rows 1-2056)")
        rate["GAIN2"] = (AMP2.gain, "[electron/adu] amplifier 2 (rows 2057-4112)")
        plans += [
            image_plan("DARKRATE", np.float32, cards=rate.cards),
            image_plan(
                "DQ",
                np.uint8,
                cards=_unit("", "data quality bits, see DQBITS; 0 = good"),
            ),
            dq_table(),
        ]
    return plans

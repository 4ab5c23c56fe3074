"""The product files of one block: master FITS, result.json, task.json.

The FITS layout (``docs/products.md``): PRIMARY (ADU, megaradrp's),
VARIANCE (ADU^2), MAP (frames per pixel), and for darks DARKRATE (e-/s) and
DQ (bit mask) with a DQBITS table defining the bits. The primary header is
the first used frame's, with the structural and checksum cards dropped and
the numina product keywords set (IMAGETYP = MASTER_BIAS / MASTER_DARK so that
numina accepts the master bias as a ``master_bias`` requirement). Every HDU
carries a fresh CHECKSUM/DATASUM; files are written atomically.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import platform
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from reduce.blocks import Mode
from reduce.checksum import FITS_BLOCK
from reduce.geometry import AMP1, AMP2, AMPLIFIERS
from reduce.io import write_images_atomic, write_text_atomic
from reduce.qc import (
    DQ,
    DQ_DESCRIPTIONS,
    AmplifierQC,
    OverscanStats,
    QAFlag,
    QAReport,
    QCThresholds,
)

log = logging.getLogger(__name__)

REDUCER = "megara-dark"
"""Value of the REDUCER keyword that marks our products."""

DETECTOR_UUID = "2e02e135-2325-47c9-9975-466b445b0b8b"
"""megaradrp's detector component (NUM-OVPE / NUM-TRIM)."""

_STRUCTURAL = {
    "SIMPLE",
    "BITPIX",
    "NAXIS",
    "NAXIS1",
    "NAXIS2",
    "EXTEND",
    "BZERO",
    "BSCALE",
    "CHECKSUM",
    "DATASUM",
    "UUID",
    "NUM-NCOM",
}


def software_version() -> str:
    """Version of the installed megara-dark package ("unknown" if not installed)."""
    try:
        return importlib.metadata.version("megara-dark")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def software_versions() -> dict[str, str]:
    """Versions of the software that computed the products."""
    import astropy  # noqa: PLC0415

    return {
        "megara-dark": software_version(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "astropy": astropy.__version__,
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
) -> fits.Header:
    """Primary header of a master: the first frame's cards plus product keys."""
    header = fits.Header()
    for card in first.cards:
        if card.keyword not in _STRUCTURAL and card.keyword not in ("HISTORY", ""):
            header.append(card)
    dark = mode is Mode.DARK
    version = software_version()
    header["BUNIT"] = ("adu", "PRIMARY unit: ADU (megaradrp-compatible)")
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
        header[f"QAREAS{k}"] = reason
    header["NEXCLUDE"] = (excluded, "frames excluded (interlock, light leak)")
    for amp in qa.amplifiers:
        n = amp.amplifier
        if amp.dark_current_e_pix_h is not None:
            header[f"DARKCUR{n}"] = (
                round(amp.dark_current_e_pix_h, 5),
                f"[electron/pix/h] dark current, amplifier {n}",
            )
        header[f"RDNOISE{n}"] = (round(amp.read_noise_e, 4), f"[electron] amp {n}")
        header[f"NHOTPIX{n}"] = (amp.hot_pixels, f"hot pixels, amplifier {n}")
        header[f"NHOTCOL{n}"] = (amp.hot_columns, f"hot columns, amplifier {n}")
    header.add_history(f"Combined {len(frame_uuids)} images using '{method}'")
    for frame_uuid in frame_uuids:
        header.add_history(f"Image {frame_uuid}")
    if bias_uuid is not None:
        header.add_history(f"Bias correction with {bias_uuid}")
    header.add_history(f"megara-dark {version} (reduce)")
    return header


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


def dq_table() -> fits.BinTableHDU:
    """The DQBITS table: value, name and meaning of every DQ bit.

    Serialised here (three fixed-width columns, big-endian rows) and parsed
    back by astropy: building it through ``BinTableHDU.from_columns`` would
    import ``astropy.table`` (about 60 ms) for a three-row table. MEANING is
    as wide as the longest meaning, so no meaning is cut.
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
    header = fits.Header(
        [
            ("XTENSION", "BINTABLE", "binary table extension"),
            ("BITPIX", 8, "array data type"),
            ("NAXIS", 2, "number of array dimensions"),
            ("NAXIS1", rows.dtype.itemsize, "bytes per row"),
            ("NAXIS2", len(rows), "rows: one per DQ bit"),
            ("PCOUNT", 0, "number of group parameters"),
            ("GCOUNT", 1, "number of groups"),
            ("TFIELDS", 3, "number of table fields"),
            ("TTYPE1", "BIT", "value of the bit in DQ"),
            ("TFORM1", "J"),
            ("TTYPE2", "NAME"),
            ("TFORM2", f"{name_width}A"),
            ("TTYPE3", "MEANING"),
            ("TFORM3", f"{meaning_width}A"),
            ("EXTNAME", "DQBITS", "meaning of the DQ bits"),
        ]
    )
    raw = header.tostring().encode("ascii") + rows.tobytes()
    raw += b"\0" * (-len(raw) % FITS_BLOCK)
    hdu: fits.BinTableHDU = fits.BinTableHDU.fromstring(raw)
    return hdu


def _image(data: npt.NDArray[Any], name: str, unit: str, comment: str) -> fits.ImageHDU:
    hdu = fits.ImageHDU(data, name=name)
    hdu.header["BUNIT"] = (unit, comment)
    return hdu


def master_hdul(
    header: fits.Header,
    data: npt.NDArray[np.float32],
    variance: npt.NDArray[np.float32],
    npix: npt.NDArray[np.int16],
    dark_rate: npt.NDArray[np.float32] | None = None,
    dq: npt.NDArray[np.uint8] | None = None,
    darktime: float | None = None,
) -> fits.HDUList:
    """Assemble the HDUs of a master (DARKRATE and DQ for darks only)."""
    hdus: list[Any] = [
        fits.PrimaryHDU(data, header=header),
        _image(variance, "VARIANCE", "adu2", "variance of PRIMARY, ADU^2"),
        _image(npix, "MAP", "", "frames combined per pixel"),
    ]
    if dark_rate is not None:
        rate = _image(
            dark_rate,
            "DARKRATE",
            "electron/s",
            "dark current: PRIMARY x gain / DARKTIME",
        )
        rate.header["DARKTIME"] = (darktime, "[s] exposure used for the rate")
        rate.header["GAIN1"] = (AMP1.gain, "[electron/adu] amplifier 1 (rows 1-2056)")
        rate.header["GAIN2"] = (
            AMP2.gain,
            "[electron/adu] amplifier 2 (rows 2057-4112)",
        )
        hdus.append(rate)
    if dq is not None:
        mask = _image(dq, "DQ", "", "data quality bits, see DQBITS; 0 = good")
        hdus += [mask, dq_table()]
    return fits.HDUList(hdus)


def write_master(path: Path, hdul: fits.HDUList) -> None:
    """Write a master atomically, with CHECKSUM/DATASUM on every HDU."""
    write_images_atomic(path, hdul)


def result_document(product: str, filename: str, qa: QAReport) -> dict[str, Any]:
    """numina's result.json: ``values``, ``qc`` (QC enum name) and ``uuid``."""
    return {
        "values": {product: filename},
        "qc": qa.flag.value,
        "uuid": str(uuid.uuid1()),
    }


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write a JSON document atomically (indent 2, as numina)."""
    write_text_atomic(path, json.dumps(document, indent=2, allow_nan=False) + "\n")

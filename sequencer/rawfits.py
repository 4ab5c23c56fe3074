"""What a run records in each MEGARA raw frame: the header's cards.

The frame itself (one primary HDU of 4212 x 4196 pixels, BITPIX=16 with
BZERO=32768, CHECKSUM and DATASUM), its atomic write and its verification
belong to :mod:`reduce.rawframe`; this module turns a frame's metadata
(:class:`FrameMeta`) into cards, names the files, and says what went wrong
in the sequencer's terms. The frame is what megaradrp 0.22 checks for
the observing modes ``MegaraDarkImage`` and ``MegaraBiasImage``
(``megaradrp.validators.check_as_datatype``: ``ExtChecker`` with the schema
definitions ``raw_hdu_values`` + ``dark_hdu_values`` / ``bias_hdu_values`` of
``megaradrp/schemas/baseimage.json`` and ``n_ext=1``).

Header keywords
---------------
Source ``schema``: ``megaradrp/schemas/baseimage.json``, definitions
``primary_hdu_values`` (``required``: OBSMODE, DATE-OBS, INSTRUME, INSCONF,
EXPTIME, VPH; the others are type- or enum-checked when present),
``raw_hdu_values``, ``dark_hdu_values``, ``bias_hdu_values``. Source
``datamodel``: ``megaradrp/datamodel.py`` and ``numina/datamodel.py`` (what the
pipeline reads into an image's metadata).

========  ======================================================  ==============
Keyword   Meaning                                                 Source
========  ======================================================  ==============
INSTRUME  ``'MEGARA'``                                            schema (req.)
OBSMODE   ``MegaraDarkImage`` or ``MegaraBiasImage``              schema (req.)
OBSTYPE   ``'CALIBRATION'``                                       schema (enum)
DATE-OBS  UTC start of the exposure, ``YYYY-MM-DDThh:mm:ss.sss``  schema (req.,
          (the schema allows at most 4 decimals)                  pattern)
EXPTIME   requested exposure time, s (0 for a bias)               schema (req.)
DARKTIME  exposure start to readout start, s; 0 for a bias        schema (bias:
          (``bias_hdu_values`` demands <= 0)                      maximum 0)
INSCONF   instrument configuration UUID, see ``insconf_for``      schema (req.)
INSMODE   ``LCB`` or ``MOS`` (recorded, not commanded)            schema (enum)
VPH       grating name, e.g. ``LR-B`` (recorded, not commanded)   schema (req.)
UUID      this frame's UUID                                       schema, dm
BLCKUUID  the observing block's UUID                              schema, dm
OBJECT    ``DARK``/``BIAS`` unless given                          schema, dm
DETECTOR  ``CCD2231-84-0-E74`` (schema default)                   schema
BUNIT     ``ADU``                                                 schema
READMODE  ``NORMAL``                                              schema (enum)
GAIN1     1.73 e-/ADU, gain of amplifier 1                      schema, and
GAIN2     1.6 e-/ADU, gain of amplifier 2                       detector comp.
RDNOISE1  3.4 e-, nominal read noise of amp. 1 (schema default)  schema
RDNOISE2  3.4 e-, nominal read noise of amp. 2 (schema default)  schema
CCDTEMP0  CCD temperature at exposure start, K (MEGARA's CCD      schema
          temperatures are CCDTEMP0-3, in K; SENTEMPn are other   (min. 0)
          sensors, in C, and are not written)
ORIGIN    ``megara-dark``                                         schema
OBSERVER  observer, when given
BLOCKID   observing-block id (the file-name stem)                 ours
FRAMEIDX  1-based index of the frame among the block's valid ones ours
ATTEMPT   1-based attempt counter, retakes included               ours
INTLKOK   T: cover and shutter closed throughout (valid frame)    ours
INTLKWHY  why the frame is invalid (``''`` when valid)            ours
COVBEF    cover halves read back before integration               ours
COVAFT    cover halves read back after integration                ours
COVWORST  worst cover reading polled during the integration       ours
SHUTBEF   shutter read back before integration                    ours
SHUTAFT   shutter read back after integration                     ours
SHUTMAX   most open shutter state the controller saw (SHUTMAX)    ours
TEMPSTRT  CCD temperature at exposure start, K                    ours
TEMPEND   CCD temperature at readout, K                           ours
DARKMEAS  measured exposure start to readout start, s (kept for   ours
          a bias too, where DARKTIME must be 0)
SIMULATE  T: pixels come from the simulators                      ours
RDBADBLK  readout blocks received with a bad CRC and re-fetched   ours
RDROUNDS  readout rounds needed (1 when nothing went wrong)       ours
MDSWVER   megara-dark version that wrote the frame                ours
CHECKSUM  FITS checksum of the HDU                                FITS std.
DATASUM   FITS checksum of the data                               FITS std.
========  ======================================================  ==============

The reduction refuses frames with ``INTLKOK = F`` and a set of frames mixing
``SIMULATE = T`` and ``F``.

``IMAGETYP`` is deliberately absent. megaradrp infers the datatype of a
4212 x 4196 image from OBSMODE (``megaradrp.datamodel._OBSMODE_DATATYPES``:
``IMAGE_DARK``, ``IMAGE_BIAS``), and its master bias and master dark copy the
first raw header: a raw ``IMAGETYP = 'IMAGE_BIAS'`` ends up in the master bias,
whose schema (``master_bias_hdu_values``) demands ``'MASTER_BIAS'``, so
``numina run --validate`` rejects megaradrp's own product.

Lamp keywords (``LAMPI1S`` ...) and ``SPECLAMP`` are not written: this suite
does not read the calibration unit, and megaradrp's dark and bias checkers do
not look at them.

File names are ``<block_id>_<attempt:04d>.fits`` (``file_name``); a write in
progress is ``.<name>.partial`` in the same folder, which a crash may leave
behind and which is never a frame.

A write that fails (no space, a file-size limit, a read-only folder) removes
its partial file and raises :class:`FrameWriteError`, one line naming the
file, the reason and what to do: no file that looks whole but is not is ever
left under a frame's name.

Text from outside (the reason a frame is invalid, the observer's name) is
written through :func:`reduce.fits.cards.fits_text`, cut to one card.
"""

from __future__ import annotations

import logging
import math
import re
import uuid as uuidlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from drivers.errors import ConfigError, SequenceError
from reduce import rawframe
from reduce.errors import InputError
from reduce.fits.cards import Header, fits_text
from reduce.rawframe import Mode
from sequencer.interlock import InterlockEvidence

log = logging.getLogger(__name__)

#: Gains of amplifiers 1 and 2, e-/ADU (megaradrp detector component).
GAINS = (1.73, 1.6)
#: Nominal read noise of amplifiers 1 and 2, e- (megaradrp schema defaults).
READ_NOISES = (3.4, 3.4)
DETECTOR = "CCD2231-84-0-E74"

#: The values of OBSMODE (:class:`reduce.rawframe.Mode`).
MODES = frozenset(mode.value for mode in Mode)

#: Grating names of MEGARA (megaradrp's pseudo-slit box positions).
VPH_NAMES = frozenset(
    {
        *("LR-U", "LR-B", "LR-V", "LR-R", "LR-I", "LR-Z"),
        *("MR-U", "MR-UB", "MR-B", "MR-G", "MR-V", "MR-VR", "MR-R", "MR-RI"),
        *("MR-I", "MR-Z", "HR-R", "HR-I"),
    }
)

#: megaradrp's shipped configurations of MEGARA at GTC, (start, end, uuid);
#: numina accepts one for an image when start <= DATE-OBS < end.
INSCONFS = (
    (
        datetime(2017, 5, 7, 12, tzinfo=UTC),
        datetime(2025, 11, 1, 12, tzinfo=UTC),
        "ca3558e3-e50d-4bbc-86bd-da50a0998a48",
    ),
    (
        datetime(2025, 11, 1, 12, tzinfo=UTC),
        None,
        "9f3fecbf-376c-47ae-a188-313b7d829104",
    ),
)

_BLOCK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_FILE_RE = re.compile(
    r"(?P<block>[A-Za-z0-9][A-Za-z0-9._-]*)_(?P<attempt>\d{4,})\.fits"
)


class FrameWriteError(SequenceError):
    """A raw frame could not be written (no space, read-only, size limit)."""


@dataclass(frozen=True, kw_only=True)
class FrameMeta:
    """Everything the header of one raw frame records.

    Attributes
    ----------
    mode
        ``MegaraDarkImage`` or ``MegaraBiasImage``.
    exptime_s
        Requested exposure time, seconds (0 for a bias).
    darktime_s
        Exposure start to readout start, seconds, as measured.
    date_obs
        Start of the exposure (timezone-aware; written as UTC).
    block_id, block_uuid
        The observing block's id (file-name stem) and UUID.
    frame_index
        1-based index of the frame among the block's valid frames.
    attempt
        1-based attempt counter of the block, retakes included.
    uuid
        This frame's UUID.
    ccd_temp_start_k, ccd_temp_end_k
        CCD temperature at exposure start and at readout, kelvin.
    interlock
        Cover and shutter read back before, during and after the integration
        (:class:`sequencer.interlock.InterlockEvidence`; its cards ``COVBEF``
        to ``SHUTMAX``).
    valid, invalid_reason
        Whether cover and shutter stayed closed; why not (None when valid).
    simulated
        True for simulator data.
    readout_bad_blocks, readout_rounds
        Readout blocks re-fetched after a bad CRC; rounds of READ needed.
    software_version
        megara-dark version.
    observer, object
        Optional names; ``object`` defaults to ``DARK`` / ``BIAS``.
    vph, insmode
        The grating and focal-plane mode in place (recorded, not commanded).
    insconf
        Instrument configuration UUID; None picks it from ``date_obs``.
    """

    mode: str
    exptime_s: float
    darktime_s: float
    date_obs: datetime
    block_id: str
    block_uuid: str
    frame_index: int
    attempt: int
    uuid: str
    ccd_temp_start_k: float
    ccd_temp_end_k: float
    interlock: InterlockEvidence
    valid: bool
    invalid_reason: str | None
    simulated: bool
    readout_bad_blocks: int
    readout_rounds: int
    software_version: str
    observer: str | None = None
    object: str | None = None
    vph: str = "LR-B"
    insmode: Literal["LCB", "MOS"] = "LCB"
    insconf: str | None = None

    def __post_init__(self) -> None:
        where = f"frame {self.block_id!r} attempt {self.attempt}"
        if self.mode not in MODES:
            raise ConfigError(
                f"{where}: mode {self.mode!r}; expected one of {sorted(MODES)}"
            )
        _check_time(where, "exptime_s", self.exptime_s)
        _check_time(where, "darktime_s", self.darktime_s)
        if self.mode == "MegaraBiasImage" and self.exptime_s != 0:
            raise ConfigError(f"{where}: a bias has exptime_s 0, got {self.exptime_s}")
        if self.date_obs.tzinfo is None:
            raise ConfigError(
                f"{where}: date_obs {self.date_obs} has no time zone; pass an "
                "aware datetime (UTC)"
            )
        if not _BLOCK_ID_RE.fullmatch(self.block_id):
            raise ConfigError(
                f"block id {self.block_id!r} cannot name a file; use 1-64 "
                "letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        for name in ("block_uuid", "uuid"):
            _check_uuid(where, name, getattr(self, name))
        if self.insconf is not None:
            _check_uuid(where, "insconf", self.insconf)
        if not 1 <= self.frame_index <= self.attempt:
            raise ConfigError(
                f"{where}: frame_index {self.frame_index}; expected "
                f"1 <= frame_index <= attempt"
            )
        for name in ("ccd_temp_start_k", "ccd_temp_end_k"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{where}: {name} {value!r}; expected kelvin > 0")
        if self.valid == (self.invalid_reason is not None) or (
            self.invalid_reason is not None and not self.invalid_reason.strip()
        ):
            raise ConfigError(
                f"{where}: valid={self.valid} with invalid_reason "
                f"{self.invalid_reason!r}; a valid frame has no reason, an "
                "invalid one must have one"
            )
        if self.readout_bad_blocks < 0 or self.readout_rounds < 1:
            raise ConfigError(
                f"{where}: readout_bad_blocks {self.readout_bad_blocks} / "
                f"readout_rounds {self.readout_rounds}; expected >= 0 / >= 1"
            )
        if self.vph not in VPH_NAMES:
            raise ConfigError(
                f"{where}: VPH {self.vph!r}; expected one of {sorted(VPH_NAMES)}"
            )
        if self.insmode not in ("LCB", "MOS"):
            raise ConfigError(f"{where}: insmode {self.insmode!r}; expected LCB|MOS")


def _check_time(where: str, name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{where}: {name} {value!r}; expected seconds >= 0")


def _check_uuid(where: str, name: str, value: str) -> None:
    try:
        parsed = uuidlib.UUID(value)
    except (ValueError, TypeError, AttributeError) as err:
        raise ConfigError(f"{where}: {name} {value!r} is not a UUID") from err
    if str(parsed) != value.lower():
        raise ConfigError(
            f"{where}: {name} {value!r}; expected the canonical 8-4-4-4-12 form"
        )


def insconf_for(date_obs: datetime) -> str:
    """The megaradrp instrument configuration valid at ``date_obs``.

    Raises
    ------
    ConfigError
        If none of megaradrp's configurations of MEGARA at GTC covers the date.
    """
    for start, end, uuid in INSCONFS:
        if start <= date_obs and (end is None or date_obs < end):
            return uuid
    raise ConfigError(
        f"no MEGARA@GTC instrument configuration for DATE-OBS {date_obs}; "
        f"megaradrp's start on {INSCONFS[0][0]}: check the clock"
    )


def format_date_obs(date_obs: datetime) -> str:
    """``YYYY-MM-DDThh:mm:ss.sss`` in UTC, truncated to the millisecond."""
    utc = date_obs.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}"


#: Longest text value written, characters (FITS quotes doubled): what one
#: 80-column card holds, so that no value spills into CONTINUE cards.
MAX_TEXT = 68


def _text(text: str) -> str:
    """``text`` (from the hardware or a person) as a value on one card."""
    clean = fits_text(text, MAX_TEXT)
    if clean != text:
        log.warning("raw header: text %r written as %r", text[:200], clean)
    return clean


def build_header(meta: FrameMeta) -> Header:
    """The primary header of a raw frame (without the structural keywords).

    See the module docstring for the keywords and where they come from.
    """
    bias = meta.mode == "MegaraBiasImage"
    hdr = Header()
    cards: list[tuple[str, object, str]] = [
        ("INSTRUME", "MEGARA", "Name of the instrument"),
        ("ORIGIN", "megara-dark", "FITS file originator"),
        ("OBSMODE", meta.mode, "Observing mode"),
        ("OBSTYPE", "CALIBRATION", "Type of observation"),
        ("OBJECT", _text(meta.object or ("BIAS" if bias else "DARK")), "Object"),
        ("DATE-OBS", format_date_obs(meta.date_obs), "UTC start of the exposure"),
        ("EXPTIME", float(meta.exptime_s), "[s] Requested exposure time"),
        (
            "DARKTIME",
            0.0 if bias else float(meta.darktime_s),
            "[s] Exposure start to readout start",
        ),
        ("DARKMEAS", float(meta.darktime_s), "[s] Measured start to readout"),
        (
            "INSCONF",
            meta.insconf or insconf_for(meta.date_obs),
            "Instrument configuration UUID",
        ),
        ("INSMODE", meta.insmode, "Focal-plane mode (recorded)"),
        ("VPH", meta.vph, "Grating in place (recorded)"),
        ("UUID", meta.uuid, "UUID of this frame"),
        ("BLCKUUID", meta.block_uuid, "UUID of the observing block"),
        ("DETECTOR", DETECTOR, "Detector"),
        ("BUNIT", "ADU", "Unit of the data"),
        ("READMODE", "NORMAL", "Detector readout mode"),
        ("GAIN1", GAINS[0], "[e-/ADU] Gain of amplifier 1"),
        ("GAIN2", GAINS[1], "[e-/ADU] Gain of amplifier 2"),
        ("RDNOISE1", READ_NOISES[0], "[e-] Nominal read noise of amplifier 1"),
        ("RDNOISE2", READ_NOISES[1], "[e-] Nominal read noise of amplifier 2"),
        ("CCDTEMP0", float(meta.ccd_temp_start_k), "[K] CCD temperature at start"),
        ("BLOCKID", meta.block_id, "Observing block id"),
        ("FRAMEIDX", meta.frame_index, "Index among the block's valid frames"),
        ("ATTEMPT", meta.attempt, "Attempt counter, retakes included"),
        ("INTLKOK", meta.valid, "Cover and shutter closed throughout"),
        ("INTLKWHY", _text(meta.invalid_reason or ""), "Why the frame is invalid"),
        *meta.interlock.header_cards(),
        ("TEMPSTRT", float(meta.ccd_temp_start_k), "[K] CCD temperature at start"),
        ("TEMPEND", float(meta.ccd_temp_end_k), "[K] CCD temperature at readout"),
        ("SIMULATE", meta.simulated, "Pixels from the simulators"),
        ("RDBADBLK", meta.readout_bad_blocks, "Readout blocks re-fetched (bad CRC)"),
        ("RDROUNDS", meta.readout_rounds, "Readout rounds needed"),
        ("MDSWVER", _text(meta.software_version), "megara-dark version"),
    ]
    if meta.observer is not None:
        cards.append(("OBSERVER", _text(meta.observer), "Observer"))
    for key, value, comment in cards:
        hdr[key] = (value, comment)  # a comment too long is cut at column 80
    return hdr


def file_name(block_id: str, attempt: int) -> str:
    """``<block_id>_<attempt:04d>.fits``, the name of a raw frame."""
    if not _BLOCK_ID_RE.fullmatch(block_id) or attempt < 1:
        raise ConfigError(
            f"cannot name a frame for block {block_id!r} attempt {attempt}; "
            "expected a file-safe block id and attempt >= 1"
        )
    return f"{block_id}_{attempt:04d}.fits"


def parse_file_name(name: str) -> tuple[str, int] | None:
    """``(block_id, attempt)`` of a raw-frame file name, or None."""
    match = _FILE_RE.fullmatch(name)
    if match is None:
        return None
    return match["block"], int(match["attempt"])


def write_raw_frame(
    path: Path, pixels: npt.NDArray[np.uint16], meta: FrameMeta
) -> Path:
    """Write a raw frame with ``meta``'s header, atomically; never overwrite.

    See :func:`reduce.rawframe.write_raw_frame` (the partial file, the fsyncs,
    the rename).

    Raises
    ------
    ConfigError
        ``path`` (or a leftover partial file of it) exists, or the pixels
        are not a MEGARA raw frame.
    FrameWriteError
        The file system refused the write (no space, a file-size limit, a
        read-only folder); nothing of it was kept.
    """
    path = Path(path)
    header = build_header(meta)
    try:
        return rawframe.write_raw_frame(path, pixels, header)
    except InputError as err:
        raise ConfigError(str(err)) from None
    except OSError as err:
        raise _write_error(path, err) from err


def _write_error(path: Path, err: OSError) -> FrameWriteError:
    if err.errno is None:  # a short write carries no errno
        reason = f"short write, {err}: the disk is full or a file-size limit hit"
    else:
        reason = err.strerror or str(err)
    return FrameWriteError(
        f"{path.name}: cannot write the frame in {path.parent} ({reason}); "
        "nothing of it was kept; free space (or raise the file-size limit, or "
        "make the folder writable), then finish the run with --resume"
    )


def verify_raw_frame(path: Path) -> Header:
    """Check a raw frame's integrity; return its primary header.

    See :func:`reduce.rawframe.verify_raw_frame`: one HDU, complete, CHECKSUM
    and DATASUM matching, the layout of a raw frame, INSTRUME and OBSMODE.

    Raises
    ------
    ConfigError
        Naming the file and what is wrong.
    """
    try:
        return rawframe.verify_raw_frame(Path(path))
    except InputError as err:
        raise ConfigError(
            f"{_one_line(err)}; the frame is damaged or not one of ours: keep it "
            "aside, take it again"
        ) from None


def _one_line(message: object) -> str:
    return " ".join(str(message).split())

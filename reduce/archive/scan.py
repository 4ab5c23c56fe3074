"""Finding the raw MEGARA biases and darks of an archive, from headers only.

:func:`scan_archive` walks a folder tree and reads the primary header of
every file named ``*.fits``, ``*.fit`` or ``*.fts`` (any case), through the
one FITS reader (:class:`reduce.fits.reader.FitsFile`): a regular file only,
the header read a few blocks at a time, and the data unit that the header
declares (``NAXIS1 x NAXIS2 x |BITPIX|/8``, padded to 2880-byte blocks)
checked to lie inside the file. No pixel is read: an archive holds
thousands of 35 MB frames.

Each file becomes a :class:`RawEntry` (a MEGARA bias or dark with a raw
frame's layout and a usable DATE-OBS and EXPTIME) or a :class:`Skipped`
with its reason and a category for the summary (:func:`skipped_by_reason`).
A bad file is never an exception: a permission error, a file that vanished
during the walk, a folder that cannot be listed are all :class:`Skipped`.

Folder symbolic links are followed, each real folder visited once (so a
link back up the tree is no loop and a folder linked twice is read once).
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reduce.errors import InputError
from reduce.fits.cards import Header
from reduce.fits.reader import FitsFile
from reduce.rawframe import SIMULATED, Mode, check_layout

log = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fit", ".fts")
"""File-name endings considered (compared in lower case)."""

# Categories of skipped files, in the order a summary lists them.
NOT_REGULAR = "not a regular file"
UNREADABLE = "unreadable"
NOT_FITS = "not FITS"
TRUNCATED = "truncated"
BAD_HEADER = "bad header"
WRONG_LAYOUT = "wrong layout"
NOT_MEGARA = "not MEGARA"
NOT_BIAS_OR_DARK = "not a bias or dark"
OTHER = "other"

CATEGORIES = (
    NOT_REGULAR,
    UNREADABLE,
    NOT_FITS,
    TRUNCATED,
    BAD_HEADER,
    WRONG_LAYOUT,
    NOT_MEGARA,
    NOT_BIAS_OR_DARK,
    OTHER,
)
"""Every category of :attr:`Skipped.category`, in summary order."""

_DATE_OBS = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})T(?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})"
    r"(?:\.(?P<frac>\d+))?Z?\Z"
)
_DATE_OBS_FORM = "YYYY-MM-DDThh:mm:ss[.s...] (UTC)"


@dataclass(frozen=True)
class RawEntry:
    """A raw MEGARA bias or dark found in the archive (its header's facts).

    Attributes
    ----------
    path
        The file, as found under the archive's root.
    uuid
        The frame's ``UUID``, or None when it has none.
    block_uuid
        The observing block's ``BLCKUUID``, or None.
    mode
        ``OBSMODE``: bias or dark.
    date_obs
        ``DATE-OBS``, the UTC start of the exposure (timezone-aware).
    exptime_s
        ``EXPTIME``, seconds.
    simulated
        ``SIMULATE = T``: a frame of the simulators.
    file_id
        ``(st_dev, st_ino)``: the same file under two names has one.
    size
        File size, bytes.
    """

    path: Path
    uuid: str | None
    block_uuid: str | None
    mode: Mode
    date_obs: datetime
    exptime_s: float
    simulated: bool
    file_id: tuple[int, int]
    size: int


@dataclass(frozen=True)
class Skipped:
    """A file (or folder) of the archive that is not a usable raw bias or dark.

    Attributes
    ----------
    path
        The file or folder.
    reason
        One line: what was wrong and what was expected.
    category
        One of :data:`CATEGORIES`, for :func:`skipped_by_reason`.
    """

    path: Path
    reason: str
    category: str = OTHER


class _Skip(Exception):
    """Why a file is skipped (raised by the checks, caught by :func:`scan_file`)."""

    def __init__(self, category: str, reason: str) -> None:
        super().__init__(reason)
        self.category = category
        self.reason = reason


def scan_archive(root: Path) -> tuple[list[RawEntry], list[Skipped]]:
    """Every raw MEGARA bias and dark under ``root``, and what was skipped.

    Parameters
    ----------
    root
        The archive's top folder, searched at any depth.

    Returns
    -------
    tuple
        The frames found and the files skipped, each sorted by path.

    Raises
    ------
    InputError
        If ``root`` is not a folder (a bad file below it never raises).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(
            str(root), "not a folder; expected the root folder of a raw archive"
        )
    entries: list[RawEntry] = []
    skipped: list[Skipped] = []
    for path in _candidates(root, skipped):
        found = scan_file(path)
        if isinstance(found, RawEntry):
            entries.append(found)
        else:
            log.debug("skipped %s: %s", found.path, found.reason)
            skipped.append(found)
    entries.sort(key=lambda e: e.path.parts)
    skipped.sort(key=lambda s: s.path.parts)
    log.info(
        "%s: %d raw bias/dark frame(s), %d file(s) skipped",
        root,
        len(entries),
        len(skipped),
    )
    return entries, skipped


def skipped_by_reason(skipped: Iterable[Skipped]) -> dict[str, int]:
    """How many files were skipped per category, in :data:`CATEGORIES` order.

    Categories with no file are left out; an unknown category counts as
    ``other``.
    """
    counts = Counter(s.category if s.category in CATEGORIES else OTHER for s in skipped)
    return {category: counts[category] for category in CATEGORIES if counts[category]}


def _candidates(root: Path, skipped: list[Skipped]) -> Iterator[Path]:
    """FITS-named paths under ``root`` in sorted order; unlistable folders go
    to ``skipped``."""

    def unlistable(err: OSError) -> None:
        where = Path(err.filename) if err.filename else root
        reason = f"cannot list folder: {err.strerror}; expected a readable folder"
        skipped.append(Skipped(where, reason, UNREADABLE))

    visited: set[tuple[int, int]] = set()
    for top, folders, files in os.walk(root, onerror=unlistable, followlinks=True):
        try:
            info = os.stat(top)
        except OSError as err:
            unlistable(err)
            folders.clear()
            continue
        key = (info.st_dev, info.st_ino)
        if key in visited:  # a link to a folder already read (or a loop)
            log.debug("%s: folder already scanned under another name", top)
            folders.clear()
            continue
        visited.add(key)
        folders.sort()
        for name in sorted(files):
            if name.lower().endswith(FITS_SUFFIXES):
                yield Path(top) / name


def scan_file(path: Path) -> RawEntry | Skipped:
    """The header facts of one raw frame, or why it is not a usable one.

    Reads the primary header only; never raises for a bad file.
    """
    try:
        with _open(path) as fits:
            header = _primary_header(fits)
            mode = _mode(header)
            try:
                check_layout(header, str(path))
            except InputError as err:
                raise _Skip(WRONG_LAYOUT, err.detail) from None
            return RawEntry(
                path=path,
                uuid=_optional_text(header, "UUID"),
                block_uuid=_optional_text(header, "BLCKUUID"),
                mode=mode,
                date_obs=_date_obs(header),
                exptime_s=_exptime(header),
                simulated=_simulated(header),
                file_id=(fits.identity[0], fits.identity[1]),
                size=fits.size,
            )
    except _Skip as skip:
        return Skipped(path, skip.reason, skip.category)


def _open(path: Path) -> FitsFile:
    try:
        return FitsFile(path, "raw frame")
    except InputError as err:
        try:
            regular = stat.S_ISREG(os.stat(path).st_mode)
        except (OSError, ValueError):
            regular = True  # gone or forbidden: unreadable, not of another kind
        raise _Skip(UNREADABLE if regular else NOT_REGULAR, err.detail) from None


def _primary_header(fits: FitsFile) -> Header:
    """The primary header; the data unit it declares checked to be in the file."""
    if fits.size == 0:
        raise _Skip(TRUNCATED, "empty file (0 bytes); expected a raw frame")
    try:
        if os.pread(fits.fd, 9, 0) != b"SIMPLE  =":
            raise _Skip(
                NOT_FITS,
                f"does not start with SIMPLE ({fits.size} bytes): not a FITS file; "
                "expected a MEGARA raw frame",
            )
        return fits.primary().header
    except InputError as err:
        # The reader says "truncated" for a header cut before END and for a
        # data unit that ends past the end of the file.
        category = TRUNCATED if "truncated" in err.detail else BAD_HEADER
        raise _Skip(category, err.detail) from None
    except OSError as err:
        raise _Skip(UNREADABLE, f"cannot read the header: {err.strerror}") from None


def _mode(header: Header) -> Mode:
    """INSTRUME and OBSMODE: a MEGARA bias or dark."""
    instrument = header.get("INSTRUME")
    if instrument != "MEGARA":
        raise _Skip(NOT_MEGARA, f"INSTRUME={instrument!r}; expected 'MEGARA'")
    modes = [m.value for m in Mode]
    obsmode = header.get("OBSMODE")
    if obsmode is None:
        raise _Skip(BAD_HEADER, f"no OBSMODE; expected one of {modes}")
    if obsmode not in modes:
        raise _Skip(
            NOT_BIAS_OR_DARK,
            f"OBSMODE {obsmode!r}: not a bias or dark (expected one of {modes})",
        )
    return Mode(obsmode)


def _date_obs(header: Header) -> datetime:
    """DATE-OBS as a UTC datetime (fractions beyond microseconds dropped)."""
    value = header.get("DATE-OBS")
    if value is None:
        raise _Skip(BAD_HEADER, f"no DATE-OBS; expected {_DATE_OBS_FORM}")
    match = _DATE_OBS.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _Skip(BAD_HEADER, f"DATE-OBS={value!r}; expected {_DATE_OBS_FORM}")
    micro = int((match["frac"] or "0")[:6].ljust(6, "0"))
    try:
        return datetime.fromisoformat(
            f"{match['date']}T{match['h']}:{match['m']}:{match['s']}"
        ).replace(microsecond=micro, tzinfo=UTC)
    except ValueError as err:
        raise _Skip(
            BAD_HEADER,
            f"DATE-OBS={value!r} is no date ({err}); expected {_DATE_OBS_FORM}",
        ) from None


def _exptime(header: Header) -> float:
    value = header.get("EXPTIME")
    if value is None:
        raise _Skip(BAD_HEADER, "no EXPTIME; expected the exposure time in seconds")
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise _Skip(BAD_HEADER, f"EXPTIME={value!r}; expected a number of seconds >= 0")
    return float(value)


def _simulated(header: Header) -> bool:
    value = header.get(SIMULATED, False)
    if not isinstance(value, bool):
        raise _Skip(
            BAD_HEADER,
            f"{SIMULATED}={value!r}; expected T or F (simulated frames are never "
            "combined with real ones)",
        )
    return value


def _optional_text(header: Header, key: str) -> str | None:
    """A string card's value, or None when absent or blank."""
    value = header.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Skip(BAD_HEADER, f"{key}={value!r}; expected a string")
    return value.strip() or None

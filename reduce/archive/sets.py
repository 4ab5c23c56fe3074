"""Grouping an archive's raw frames into calibration sets.

Pure functions of the :class:`~reduce.archive.scan.RawEntry` list (no I/O).

A calibration set is frames of one mode, one exposure time and one origin
(simulated or real) taken together:

* frames that carry a block UUID (``BLCKUUID``) form one set per block; a
  block that mixes modes, exposure times or simulated and real frames is
  reported and gives no set (a product is never made from a mixed set);
* the others are grouped by mode, exposure time (within a relative
  tolerance) and origin, in time order, and split where a frame starts more
  than the previous frame's exposure time plus a gap after the previous one.

A set belongs to the observing night of its first frame (:func:`night_of`)
and is never cut at the night boundary: a series of one-hour darks started
in the morning runs past noon UTC, and half of it is no calibration set.

Duplicates are removed first: one frame under two paths (the same ``UUID``,
or the same file through a hard or symbolic link) counts once, the first
path in sorted order.
"""

from __future__ import annotations

import logging
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from reduce.archive.scan import RawEntry
from reduce.errors import SettingsError
from reduce.rawframe import Mode

log = logging.getLogger(__name__)

_MODE_WORD = {Mode.BIAS: "bias", Mode.DARK: "dark"}
_UNSAFE = re.compile(r"[^A-Za-z0-9-]")


def night_of(date_obs: datetime, boundary_hour_utc: float = 12.0) -> date:
    """The observing night of a frame: the UTC date of ``date_obs`` minus the
    boundary.

    Parameters
    ----------
    date_obs
        Start of the exposure, timezone-aware.
    boundary_hour_utc
        Hour (UTC, 0 <= h < 24) at which one night's calibrations end and
        the next night's begin. The default, noon, suits La Palma (UTC+0/+1):
        a frame at 01:00 UTC on 28 November belongs to the night of the 27th.

    Raises
    ------
    SettingsError
        A boundary outside [0, 24).
    ValueError
        A naive ``date_obs`` (its time zone unknown).
    """
    _check_boundary(boundary_hour_utc)
    if date_obs.utcoffset() is None:
        raise ValueError(f"DATE-OBS {date_obs.isoformat()} has no time zone; UTC?")
    utc = date_obs.astimezone(UTC)
    return (utc - timedelta(hours=boundary_hour_utc)).date()


@dataclass(frozen=True)
class CalibrationSet:
    """Frames of one mode, exposure time and origin taken together.

    Attributes
    ----------
    night
        The observing night of the first frame (:func:`night_of`).
    mode
        Bias or dark.
    exptime_s
        The frames' median EXPTIME, seconds.
    block_uuid
        The block's BLCKUUID, or None for a set grouped by time.
    simulated
        Frames of the simulators.
    frames
        Sorted by DATE-OBS, then path.
    id_suffix
        Added to :attr:`set_id` when another set would have the same id
        (``""`` otherwise; set by :func:`group_sets`).
    """

    night: date
    mode: Mode
    exptime_s: float
    block_uuid: str | None
    simulated: bool
    frames: tuple[RawEntry, ...]
    id_suffix: str = ""

    @property
    def first_obs(self) -> datetime:
        """DATE-OBS of the first frame."""
        return self.frames[0].date_obs

    @property
    def base_id(self) -> str:
        """The id before any suffix: night, mode, then the block's first 8
        characters or the first frame's time (HHMMSS)."""
        if self.block_uuid:
            tag = _UNSAFE.sub("_", self.block_uuid[:8])
        else:
            tag = f"{self.first_obs:%H%M%S}"
        return f"{self.night:%Y%m%d}_{_MODE_WORD[self.mode]}_{tag}"

    @property
    def set_id(self) -> str:
        """Readable id, unique among the sets of one :func:`group_sets` call
        (usable as a file name)."""
        return self.base_id + self.id_suffix

    @property
    def paths(self) -> tuple[Path, ...]:
        """The frames' paths, in order."""
        return tuple(frame.path for frame in self.frames)


@dataclass(frozen=True)
class SetProblem:
    """Frames left out of every set, or a set left without something it needs.

    Attributes
    ----------
    what
        The set's id, the block, or the file's path.
    reason
        One line: what was wrong and what was expected.
    files
        The files concerned.
    """

    what: str
    reason: str
    files: tuple[Path, ...]


def group_sets(
    entries: Iterable[RawEntry],
    *,
    boundary_hour_utc: float = 12.0,
    gap_s: float = 900.0,
    min_frames: int = 3,
    exptime_rtol: float = 1e-3,
) -> tuple[list[CalibrationSet], list[SetProblem]]:
    """Calibration sets of an archive's frames (see the module docstring).

    Parameters
    ----------
    entries
        The frames, in any order.
    boundary_hour_utc
        Night boundary, hour UTC (:func:`night_of`).
    gap_s
        Longest pause, seconds, between the end of one frame's exposure and
        the start of the next within a set grouped by time.
    min_frames
        Fewest frames a set needs; smaller ones are reported, not returned.
    exptime_rtol
        Relative difference of EXPTIME below which two frames count as one
        exposure time.

    Returns
    -------
    tuple
        The sets, by night then first frame; the problems (duplicates, mixed
        blocks, sets too small).

    Raises
    ------
    SettingsError
        An invalid parameter.
    """
    _check_settings(boundary_hour_utc, gap_s, min_frames, exptime_rtol)
    unique, problems = _deduplicate(entries)
    with_block: dict[str, list[RawEntry]] = defaultdict(list)
    by_time: dict[tuple[Mode, bool], list[RawEntry]] = defaultdict(list)
    for entry in unique:
        if entry.block_uuid is not None:
            with_block[entry.block_uuid].append(entry)
        else:
            by_time[(entry.mode, entry.simulated)].append(entry)
    candidates, mixed = _block_sets(with_block, boundary_hour_utc, exptime_rtol)
    for frames in by_time.values():
        for exposure in _by_exptime(frames, exptime_rtol):
            for run in _runs(exposure, gap_s):
                candidates.append(_make_set(run, None, boundary_hour_utc))
    candidates = _unique_ids(sorted(candidates, key=set_order))
    sets: list[CalibrationSet] = []
    small: list[_Ordered] = []
    for found in candidates:
        if len(found.frames) >= min_frames:
            sets.append(found)
            continue
        reason = f"{len(found.frames)} frame(s), fewer than the minimum {min_frames}"
        small.append((set_order(found), SetProblem(found.set_id, reason, found.paths)))
    problems += [p for _, p in sorted(mixed + small, key=lambda item: item[0])]
    log.info("%d calibration set(s), %d problem(s)", len(sets), len(problems))
    return sets, problems


def _check_boundary(boundary_hour_utc: float) -> None:
    if not 0.0 <= boundary_hour_utc < 24.0:
        raise SettingsError(
            f"night boundary {boundary_hour_utc!r} h UTC; expected 0 <= hour < 24"
        )


def _check_settings(
    boundary_hour_utc: float, gap_s: float, min_frames: int, exptime_rtol: float
) -> None:
    _check_boundary(boundary_hour_utc)
    if not gap_s >= 0.0:
        raise SettingsError(f"gap_s={gap_s!r}; expected seconds >= 0")
    if isinstance(min_frames, bool) or not isinstance(min_frames, int):
        raise SettingsError(f"min_frames={min_frames!r}; expected an integer >= 1")
    if min_frames < 1:
        raise SettingsError(f"min_frames={min_frames}; expected an integer >= 1")
    if not 0.0 <= exptime_rtol < 1.0:
        raise SettingsError(f"exptime_rtol={exptime_rtol!r}; expected 0 <= rtol < 1")


def _time_order(entry: RawEntry) -> tuple[datetime, tuple[str, ...]]:
    return (entry.date_obs, entry.path.parts)


def set_order(found: CalibrationSet) -> tuple[date, datetime, str]:
    return (found.night, found.first_obs, found.base_id)


def _deduplicate(
    entries: Iterable[RawEntry],
) -> tuple[list[RawEntry], list[SetProblem]]:
    """One entry per frame: the first by path of the copies of one UUID or file."""
    by_uuid: dict[str, RawEntry] = {}
    by_file: dict[tuple[int, int], RawEntry] = {}
    unique: list[RawEntry] = []
    problems: list[SetProblem] = []
    for entry in sorted(entries, key=lambda e: e.path.parts):
        kept = by_file.get(entry.file_id)
        how = "the same file: a hard or symbolic link"
        if kept is None and entry.uuid is not None:
            kept = by_uuid.get(entry.uuid)
            how = f"same UUID {entry.uuid}"
        if kept is not None:
            reason = f"duplicate of {kept.path} ({how}); counted once, as that file"
            problems.append(
                SetProblem(str(entry.path), reason, (entry.path, kept.path))
            )
            continue
        by_file[entry.file_id] = entry
        if entry.uuid is not None:
            by_uuid[entry.uuid] = entry
        unique.append(entry)
    return unique, problems


_Ordered = tuple[tuple[date, datetime, str], SetProblem]
"""A problem with its place in the output order (night, time, id)."""


def _block_sets(
    blocks: dict[str, list[RawEntry]], boundary_hour_utc: float, exptime_rtol: float
) -> tuple[list[CalibrationSet], list[_Ordered]]:
    """One set per block that mixes nothing; a problem per block that does."""
    sets: list[CalibrationSet] = []
    mixed: list[_Ordered] = []
    for block, frames in blocks.items():
        frames.sort(key=_time_order)
        mix = _mixture(frames, exptime_rtol)
        if not mix:
            sets.append(_make_set(frames, block, boundary_hour_utc))
            continue
        night = night_of(frames[0].date_obs, boundary_hour_utc)
        problem = SetProblem(
            f"{night:%Y%m%d} block {block}",
            f"{mix}; a calibration set is one mode, one exposure time and "
            "simulated or real frames only: no product from this block",
            tuple(f.path for f in frames),
        )
        mixed.append(((night, frames[0].date_obs, block), problem))
    return sets, mixed


def _relative_spread(values: Sequence[float]) -> float:
    """(max - min) / max of non-negative values; 0 when all are 0."""
    top = max(values)
    return 0.0 if top == 0 else (top - min(values)) / top


def _mixture(frames: Sequence[RawEntry], exptime_rtol: float) -> str:
    """What a block mixes (``""`` when nothing)."""
    mixes: list[str] = []
    modes = sorted({f.mode.value for f in frames})
    if len(modes) > 1:
        mixes.append(f"mixes modes {', '.join(modes)}")
    exptimes = sorted({f.exptime_s for f in frames})
    if _relative_spread(exptimes) > exptime_rtol:
        shown = ", ".join(f"{t:g}" for t in exptimes[:6])
        more = ", ..." if len(exptimes) > 6 else ""
        mixes.append(f"mixes exposure times {shown}{more} s")
    origins = {f.simulated for f in frames}
    if len(origins) > 1:
        mixes.append("mixes simulated and real frames")
    return "; ".join(mixes)


def _by_exptime(
    frames: Sequence[RawEntry], exptime_rtol: float
) -> list[list[RawEntry]]:
    """``frames`` in groups of one exposure time, each in time order.

    A group spans at most ``exptime_rtol`` relative to its longest time, so
    that a chain of small differences never merges distant times.
    """
    groups: list[list[RawEntry]] = []
    for entry in sorted(frames, key=lambda e: (e.exptime_s, *_time_order(e))):
        current = groups[-1] if groups else None
        if current and _relative_spread([current[0].exptime_s, entry.exptime_s]) <= (
            exptime_rtol
        ):
            current.append(entry)
        else:
            groups.append([entry])
    for group in groups:
        group.sort(key=_time_order)
    return groups


def _runs(frames: Sequence[RawEntry], gap_s: float) -> list[list[RawEntry]]:
    """``frames`` (in time order) split where one starts more than the
    previous one's exposure time plus ``gap_s`` after the previous one."""
    runs: list[list[RawEntry]] = []
    for entry in frames:
        if runs:
            previous = runs[-1][-1]
            pause = (entry.date_obs - previous.date_obs).total_seconds()
            if pause <= previous.exptime_s + gap_s:
                runs[-1].append(entry)
                continue
        runs.append([entry])
    return runs


def _make_set(
    frames: Sequence[RawEntry], block_uuid: str | None, boundary_hour_utc: float
) -> CalibrationSet:
    ordered = tuple(sorted(frames, key=_time_order))
    return CalibrationSet(
        night=night_of(ordered[0].date_obs, boundary_hour_utc),
        mode=ordered[0].mode,
        exptime_s=float(statistics.median(f.exptime_s for f in ordered)),
        block_uuid=block_uuid,
        simulated=ordered[0].simulated,
        frames=ordered,
    )


def _unique_ids(ordered: list[CalibrationSet]) -> list[CalibrationSet]:
    """``ordered`` with a suffix (``-2``, ``-3``...) on each id already taken."""
    taken: set[str] = set()
    result: list[CalibrationSet] = []
    for found in ordered:
        suffix, count = "", 1
        while found.base_id + suffix in taken:
            count += 1
            suffix = f"-{count}"
        taken.add(found.base_id + suffix)
        result.append(replace(found, id_suffix=suffix) if suffix else found)
    return result

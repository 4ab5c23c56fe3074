"""QC figures of one dark set, gathered from its products, frames and journal.

A dark set is a results folder ``WORK/obsid<ID>_results`` written by
``megara-dark run`` (or ``megara-dark reduce``) with ``master_dark.fits`` and
``task.json``. Where each figure comes from:

* per amplifier (``task.json`` ``qc.amplifiers``): dark current, read noise,
  hot pixels and columns, overscan level and drift;
* light-leak test: frames the reduction excluded as ``light_leak``, and the
  largest per-frame dark rate above the median of the frames used;
* per frame, from the run's journal ``WORK/run.journal`` (``frame_written``
  records): cover and shutter readings before, during and after integration
  and the CCD temperature; the cover close time is the longest of the run's
  blocks (a block that finds the cover closed takes no time to close it), as
  the lower end of the bracket the sequencer measured: what the close
  certainly took, whatever the serial latency (which the simulators' time
  scale magnifies).
  Frames of runs whose journal predates those fields fall back on the raw
  headers (``COVBEF``, ``SHUTBEF`` ...), and the close time is then "not
  measured".

The figures are judged against :class:`~sequencer.engineering.limits.Limit`
in :mod:`sequencer.engineering.verify`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.errors import ConfigError
from reduce.errors import InputError
from reduce.fits.reader import read_header
from reduce.rawframe import SIMULATED
from sequencer.engineering.limits import FIGURES
from sequencer.interlock import FIELDS, InterlockEvidence

log = logging.getLogger(__name__)

_PER_AMP_KEYS = {
    "dark_current": "dark_current",
    "read_noise": "read_noise",
    "hot_pixels": "hot_pixels",
    "hot_columns": "hot_columns",
    "glow_peak": "glow_peak",
    "overscan_level": "overscan_level",
    "overscan_drift": "overscan_drift",
}


@dataclass(frozen=True)
class Figure:
    """One measured figure (``amplifier`` None for a whole-set figure)."""

    name: str
    amplifier: int | None
    value: float | None
    unit: str

    @property
    def label(self) -> str:
        """``dark_current[amp 1]`` or ``cover_close_time``."""
        if self.amplifier is None:
            return self.name
        return f"{self.name}[amp {self.amplifier}]"


@dataclass(frozen=True)
class FrameEvidence:
    """Interlock readings of one frame of the set."""

    file: str
    valid: bool
    reason: str
    interlock: InterlockEvidence | None  # None: the header lacks it or is bad
    temperature_k: float | None
    source: str  # "journal" or "header"

    @property
    def shutter_closed(self) -> bool:
        return self.interlock is not None and self.interlock.shutter_closed

    @property
    def cover_closed(self) -> bool:
        return self.interlock is not None and self.interlock.cover_closed

    def readings(self) -> dict[str, str]:
        """The readings as the header writes them ("" each when unknown)."""
        if self.interlock is None:
            return dict.fromkeys(FIELDS, "")
        return self.interlock.strings()

    def to_dict(self) -> dict[str, Any]:
        """Flat, for ``verification.json``: the readings as header strings."""
        return {
            "file": self.file,
            "valid": self.valid,
            "reason": self.reason,
            **self.readings(),
            "temperature_k": self.temperature_k,
            "source": self.source,
        }


@dataclass
class DarkSet:
    """Everything verification knows about one master dark and its frames."""

    folder: Path
    block_id: str
    product_uuid: str
    date_obs: str
    exptime_s: float
    n_frames: int
    qa: str
    qa_reasons: list[str]
    simulated: bool
    figures: list[Figure] = field(default_factory=list)
    frames: list[FrameEvidence] = field(default_factory=list)
    cover_close_s: float | None = None
    cover_close_min_s: float | None = None
    frame_rates: dict[str, float] = field(default_factory=dict)

    @property
    def master_dark(self) -> Path:
        return self.folder / "master_dark.fits"

    @property
    def temperature_k(self) -> float | None:
        for f in self.figures:
            if f.name == "ccd_temperature":
                return f.value
        return None

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready description (paths as given, figures as a list)."""
        return {
            "folder": str(self.folder),
            "block": self.block_id,
            "product_uuid": self.product_uuid,
            "date_obs": self.date_obs,
            "exptime_s": self.exptime_s,
            "n_frames": self.n_frames,
            "qa": self.qa,
            "qa_reasons": self.qa_reasons,
            "simulated": self.simulated,
            "cover_close_s": self.cover_close_s,
            "cover_close_min_s": self.cover_close_min_s,
            "frames": [f.to_dict() for f in self.frames],
        }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from err
    except ValueError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return doc


def dark_results(folder: Path) -> Path:
    """The dark results folder to verify, given it or the run folder holding it.

    Raises
    ------
    ConfigError
        ``folder`` is not a dark results folder, nor a run folder with exactly
        one.
    """
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder; expected a results folder")
    if (folder / "task.json").is_file():
        if not (folder / "master_dark.fits").is_file():
            raise ConfigError(
                f"{folder}: holds no master_dark.fits; expected the results "
                "folder of a dark block (obsid<ID>_results)"
            )
        return folder
    found = sorted(p.parent for p in folder.glob("obsid*_results/master_dark.fits"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ConfigError(
            f"{folder}: no obsid<ID>_results folder with a master_dark.fits; "
            "expected a dark block's results folder or the run folder holding it"
        )
    names = ", ".join(p.name for p in found)
    raise ConfigError(f"{folder}: holds several dark results ({names}); give one")


def load_dark_set(folder: Path) -> DarkSet:
    """Gather the QC figures of the dark results ``folder`` (see module notes).

    Raises
    ------
    ConfigError
        The folder is not a dark set, or its task.json is not one we wrote.
    """
    folder = dark_results(folder)
    task = _read_json(folder / "task.json")
    result = (
        _read_json(folder / "result.json") if (folder / "result.json").is_file() else {}
    )
    try:
        if task.get("mode") != "MegaraDarkImage":
            raise KeyError("mode")
        qc = task["qc"]
        params = task["parameters"]
        dark = DarkSet(
            folder=folder,
            block_id=str(task["id"]),
            product_uuid=str(task["product"]["uuid"]),
            date_obs=str(task.get("time_start", "")),
            exptime_s=float(params["exptime_s"]),
            n_frames=int(qc["n_frames"]["value"]),
            qa=str(task["qa"]["flag"]),
            qa_reasons=[str(r) for r in task["qa"].get("reasons", [])],
            simulated=False,
        )
        for amp in qc["amplifiers"]:
            for name, key in _PER_AMP_KEYS.items():
                # Products older than a figure lack it: not measured.
                value = amp.get(key, {}).get("value")
                dark.figures.append(
                    Figure(
                        name,
                        int(amp["amplifier"]),
                        None if value is None else float(value),
                        FIGURES[name].unit,
                    )
                )
        rates = qc.get("frame_dark_rate", {}).get("values", {})
        dark.frame_rates = {str(k): float(v) for k, v in rates.items()}
        excluded = task.get("excluded", [])
        leaks = sum(1 for e in excluded if e.get("why") == "light_leak")
        inputs = [str(f["file"]) for f in task["inputs"]["frames"]]
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(
            f"{folder / 'task.json'}: missing or malformed {err}; expected the "
            "task.json of a master dark written by megara-dark"
        ) from None
    if result.get("qc") and result["qc"] != dark.qa:
        log.warning(
            "%s: result.json QC %s differs from task.json", folder, result["qc"]
        )
    dark.date_obs = _date_obs(dark.master_dark) or dark.date_obs
    _add_frame_evidence(dark, inputs)
    excess = (
        max(dark.frame_rates.values()) - _median(list(dark.frame_rates.values()))
        if dark.frame_rates
        else None
    )
    temps = [f.temperature_k for f in dark.frames if f.valid and f.temperature_k]
    dark.figures += [
        Figure("light_leak_frames", None, float(leaks), "frames"),
        Figure("light_leak_excess", None, excess, "e-/pix/s"),
        Figure("cover_close_time", None, dark.cover_close_min_s, "s"),
        Figure(
            "shutter_open_frames",
            None,
            float(sum(not f.shutter_closed for f in dark.frames)),
            "frames",
        ),
        Figure(
            "cover_open_frames",
            None,
            float(sum(not f.cover_closed for f in dark.frames)),
            "frames",
        ),
        Figure(
            "ccd_temperature", None, sum(temps) / len(temps) if temps else None, "K"
        ),
    ]
    return dark


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return 0.5 * (ordered[mid - 1] + ordered[mid])


def _date_obs(master: Path) -> str | None:
    try:
        value = read_header(master, "master dark").get("DATE-OBS")
    except InputError:
        return None
    return None if value is None else str(value)


def _journal_frames(workdir: Path) -> list[dict[str, Any]] | None:
    """``frame_written``/``frame_adopted`` records of the run (None: no journal)."""
    from sequencer.journal import Journal  # noqa: PLC0415

    path = workdir / "run.journal"
    if not path.is_file():
        return None
    wanted = {"frame_written", "frame_adopted"}
    return [r for r in Journal(path).records() if r["event"] in wanted]


def _add_frame_evidence(dark: DarkSet, inputs: list[str]) -> None:
    """Interlock readings of every frame of the block (journal, else headers)."""
    workdir = dark.folder.parent
    run_records = _journal_frames(workdir)
    if run_records is None:
        log.warning("%s: no run.journal beside the results; using raw headers", workdir)
    records = [r for r in run_records or [] if r.get("block") == dark.block_id]
    by_file = {str(r.get("file")): r for r in records}
    names = list(by_file) or [Path(p).name for p in inputs]
    # The run's slowest close (later blocks find the cover already closed),
    # as the bracket the sequencer measured (see DarkSequence.prepare).
    dark.cover_close_min_s = _largest(run_records or [], "cover_close_min_s")
    dark.cover_close_s = _largest(run_records or [], "cover_close_s")
    for name in names:
        record = by_file.get(name, {})
        if "shutter_max" in record:
            dark.frames.append(_from_journal(name, record))
            continue
        raw = _raw_path(workdir, name, inputs)
        dark.frames.append(_from_header(name, raw, record))
    dark.simulated = _simulated(workdir, names, inputs)


def _largest(records: list[dict[str, Any]], key: str) -> float | None:
    values = [float(r[key]) for r in records if isinstance(r.get(key), int | float)]
    return max(values) if values else None


def _temperature(start: object, end: object) -> float | None:
    values = [float(v) for v in (start, end) if isinstance(v, int | float)]
    values = [v for v in values if math.isfinite(v)]
    return sum(values) / len(values) if values else None


def _from_journal(name: str, r: dict[str, Any]) -> FrameEvidence:
    return FrameEvidence(
        file=name,
        valid=bool(r.get("valid")),
        reason=str(r.get("reason", "")),
        interlock=_interlock(name, InterlockEvidence.parse, r),
        temperature_k=_temperature(r.get("ccd_temp_start_k"), r.get("ccd_temp_end_k")),
        source="journal",
    )


def _raw_path(workdir: Path, name: str, inputs: list[str]) -> Path:
    for given in inputs:
        if Path(given).name == name and Path(given).is_file():
            return Path(given)
    return workdir / "data" / name


def _from_header(name: str, path: Path, record: dict[str, Any]) -> FrameEvidence:
    try:
        header = read_header(path, "raw frame")
    except InputError as err:
        raise ConfigError(
            f"{err.detail}: cannot read the frame's header of {path}; expected "
            "the raw frame of the journal or of task.json"
        ) from err
    return FrameEvidence(
        file=name,
        valid=bool(record.get("valid", header.get("INTLKOK", False))),
        reason=str(record.get("reason", header.get("INTLKWHY", ""))),
        interlock=_interlock(str(path), InterlockEvidence.from_header, header),
        temperature_k=_temperature(header.get("TEMPSTRT"), header.get("TEMPEND")),
        source="header",
    )


def _interlock(
    where: str, parse: Callable[[Any], InterlockEvidence], source: Any
) -> InterlockEvidence | None:
    """The evidence ``parse`` reads from ``source``; None (logged) if unusable."""
    try:
        return parse(source)
    except ValueError as err:
        log.warning("%s: no usable interlock evidence (%s)", where, err)
        return None


def _simulated(workdir: Path, names: list[str], inputs: list[str]) -> bool:
    for name in names[:1]:
        try:
            header = read_header(_raw_path(workdir, name, inputs), "raw frame")
        except InputError:
            return False
        return header.get(SIMULATED) is True
    return False

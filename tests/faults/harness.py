"""Run one row of the fault matrix: a real ``megara-dark run`` against the
built-in simulators with a scenario file, and what came out of it.

The catalogue is ``matrix.yaml`` beside this module. Each applicable row names
the faults to inject (a scenario, in the simulators' own format) and the
outcome expected; :func:`run_row` runs the command as a user would (its own
process, its own simulator processes, real pseudo-terminals), then
:func:`observe` reads back everything the run left behind and
:func:`mismatches` lists every way it differs from the row's expectation.

Used by ``tests/faults/test_matrix.py`` (one test per row), which
``benchmarks/fault_matrix.py`` runs to print the whole matrix as a table.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drivers.errors import ConfigError
from sequencer.journal import Journal
from sequencer.rawfits import verify_raw_frame
from sequencer.simlaunch import megara_dark
from simulators.faults import FaultKind, fault_from_dict

MATRIX = Path(__file__).with_name("matrix.yaml")
PHASES = ("preparing", "integrating", "reading", "writing", "reducing")
DEVICES = ("ccd", "cover_left", "cover_right")
BLOCK_ID = "dark"
#: What a reduced block leaves in ``obsid<ID>_results/``.
PRODUCTS = ("master_dark.fits", "processing.log", "result.json", "task.json")
#: A run that has not ended after this many wall seconds is a hang (a bug).
HANG_S = 240.0

# What the drivers log for each failed attempt they recover from (WARNING).
_RETRY_PATTERNS = {
    "ccd": re.compile(r"ccd: (attempt \d+/\d+ failed|transfer of frame \d+ cut)"),
    "cover_left": re.compile(r"cover left: attempt \d+/\d+ of .* failed"),
    "cover_right": re.compile(r"cover right: attempt \d+/\d+ of .* failed"),
}
_SUMMARY = re.compile(
    rf"^{BLOCK_ID}: (?:(?P<valid>\d+)/\d+ valid frames|(?P<used>\d+)/\d+ frames "
    r"used, (?P<excluded>\d+) excluded by the reduction), (?P<retaken>\d+) "
    r"retaken; (?P<verdict>.*?)(?:; products in .*)?$",
    re.MULTILINE,
)


# -- the catalogue -------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One fault kind at one phase: what to inject and what must happen."""

    id: str
    kind: str
    phase: str
    why: str
    faults: tuple[Mapping[str, Any], ...] = ()
    expect: Mapping[str, Any] = field(default_factory=dict)
    not_applicable: str | None = None
    known_failure: str | None = None
    run: Mapping[str, Any] = field(default_factory=dict)

    @property
    def applicable(self) -> bool:
        return self.not_applicable is None


@dataclass(frozen=True)
class Matrix:
    """The whole catalogue: shared settings and the rows."""

    settings: Mapping[str, Any]
    rows: tuple[Row, ...]

    def applicable(self) -> list[Row]:
        return [r for r in self.rows if r.applicable]


_ROW_KEYS = {
    "id",
    "kind",
    "phase",
    "why",
    "faults",
    "expect",
    "not_applicable",
    "known_failure",
    "run",
}


def load_matrix(path: Path = MATRIX) -> Matrix:
    """Read and check the catalogue (unknown keys, kinds and phases refused)."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    rows = []
    for i, raw in enumerate(doc["rows"]):
        unknown = set(raw) - _ROW_KEYS
        if unknown:
            raise ConfigError(f"{path} row #{i + 1}: unknown keys {sorted(unknown)}")
        row = Row(
            id=raw["id"],
            kind=raw["kind"],
            phase=raw["phase"],
            why=raw.get("why", ""),
            faults=tuple(raw.get("faults") or ()),
            expect=raw.get("expect") or {},
            not_applicable=raw.get("not_applicable"),
            known_failure=raw.get("known_failure"),
            run=raw.get("run") or {},
        )
        if row.kind != "none":
            FaultKind(row.kind)  # ValueError names an unknown kind
        if row.phase not in PHASES:
            raise ConfigError(f"{path} row {row.id}: unknown phase {row.phase!r}")
        for j, fault in enumerate(row.faults):
            fault_from_dict(fault, where=f"{path} row {row.id} fault #{j + 1}")
        if row.applicable and not row.expect:
            raise ConfigError(f"{path} row {row.id}: no expected outcome")
        rows.append(row)
    ids = [r.id for r in rows]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{path}: duplicate row ids")
    return Matrix(settings=doc["settings"], rows=tuple(rows))


# -- running a row ---------------------------------------------------------------


def make_master_bias(folder: Path, settings: Mapping[str, Any]) -> Path:
    """Run a clean bias block; return its master bias (for the darks)."""
    folder.mkdir(parents=True, exist_ok=True)
    blocks = folder / "bias.yaml"
    blocks.write_text(
        "id: bias\ninstrument: MEGARA\nmode: MegaraBiasImage\nexptime: 0.0\n"
        f"nframes: {int(settings.get('bias_frames', 3))}\n",
        encoding="utf-8",
    )
    config = write_config(folder, settings, scenario=None)
    work = folder / "work"
    command = [*megara_dark(), "run", str(blocks), "--config", str(config)]
    command += ["--workdir", str(work)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=HANG_S,
        check=False,
    )
    master = work / "obsidbias_results" / "master_bias.fits"
    if done.returncode != 0 or not master.is_file():
        raise RuntimeError(f"the bias run failed:\n{done.stdout}\n{done.stderr}")
    return master


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def write_config(
    folder: Path,
    settings: Mapping[str, Any],
    *,
    scenario: Path | None,
    overrides: Mapping[str, Any] | None = None,
) -> Path:
    """The instrument TOML: the matrix settings, a row's overrides, the scenario."""
    tables: dict[str, dict[str, Any]] = {
        name: dict(settings.get(name, {})) for name in ("simulator", "run", "ccd")
    }
    tables["cover"] = dict(settings.get("cover", {}))
    for name, table in (overrides or {}).items():
        tables.setdefault(name, {}).update(table)
    if scenario is not None:
        tables["simulator"]["scenario"] = str(scenario)
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    path = folder / "instrument.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_block(folder: Path, settings: Mapping[str, Any], master_bias: Path) -> Path:
    """The dark observing block every row runs."""
    block = {
        "id": BLOCK_ID,
        "instrument": "MEGARA",
        "mode": "MegaraDarkImage",
        "exptime": float(settings["block"]["exptime"]),
        "nframes": int(settings["block"]["nframes"]),
        "requirements": {"master_bias": str(master_bias)},
    }
    path = folder / "dark.yaml"
    path.write_text(yaml.safe_dump(block, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Actual:
    """What a run did, read back from its exit status, output and files."""

    exit: int | None  # None: it hung and was killed
    stdout: str
    stderr: str
    outcome: str = "unknown"  # completed | fault | aborted | hang | crashed
    error: str = ""
    valid_frames: int | None = None
    retaken: int | None = None
    qa: str | None = None
    retries: dict[str, int] = field(default_factory=dict)
    valid_files: list[str] = field(default_factory=list)
    invalid_files: list[str] = field(default_factory=list)
    damaged_files: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    journal_last: str | None = None
    master: bool = False
    products: list[str] = field(default_factory=list)
    traceback: bool = False

    def short(self) -> str:
        """One line for tables and assertion messages."""
        if self.outcome == "completed":
            return (
                f"completed {self.valid_frames} valid, {self.retaken} retaken, "
                f"QA {self.qa}, retries {self.retries or 0}"
            )
        return f"{self.outcome} (exit {self.exit}): {self.error[:160]}"


def run_row(
    row: Row, folder: Path, settings: Mapping[str, Any], master_bias: Path
) -> Actual:
    """Run ``megara-dark run`` for one row in ``folder``; return what it did."""
    folder.mkdir(parents=True, exist_ok=True)
    scenario = folder / "scenario.yaml"
    scenario.write_text(
        yaml.safe_dump({"faults": [dict(f) for f in row.faults]}, sort_keys=False),
        encoding="utf-8",
    )
    overrides: dict[str, Any] = {
        k: v for k, v in row.run.items() if k in ("simulator", "run", "ccd", "cover")
    }
    block_settings = {
        **settings,
        "block": {**settings["block"], **row.run.get("block", {})},
    }
    config = write_config(folder, settings, scenario=scenario, overrides=overrides)
    blocks = write_block(folder, block_settings, master_bias)
    work = folder / "work"
    command = [*megara_dark(), "run", str(blocks), "--config", str(config)]
    command += ["--workdir", str(work), "--log-level", "DEBUG"]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=HANG_S, check=False
        )
        actual = Actual(done.returncode, done.stdout, done.stderr)
    except subprocess.TimeoutExpired as hung:
        actual = Actual(None, _text(hung.stdout), _text(hung.stderr), outcome="hang")
    (folder / "stderr.log").write_text(actual.stderr, encoding="utf-8")
    observe(actual, work)
    return actual


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def observe(actual: Actual, work: Path) -> Actual:
    """Fill ``actual`` from the run's output and its work folder."""
    actual.traceback = "Traceback" in actual.stderr or "Traceback" in actual.stdout
    for device, pattern in _RETRY_PATTERNS.items():
        count = len(pattern.findall(actual.stderr))
        if count:
            actual.retries[device] = count
    summary = _SUMMARY.search(actual.stdout)
    if summary is not None:
        actual.valid_frames = (
            int(summary["valid"])
            if summary["valid"] is not None
            else int(summary["used"]) + int(summary["excluded"])
        )
        actual.retaken = int(summary["retaken"])
        verdict = summary["verdict"]
        if verdict.startswith("FAULT: "):
            actual.error = verdict.removeprefix("FAULT: ")
        elif verdict.startswith("QA "):  # "QA PARTIAL (the reasons)"
            actual.qa = verdict.removeprefix("QA ").split(" (", 1)[0]
    if actual.outcome != "hang":
        actual.outcome = {0: "completed", 1: "fault", 130: "aborted"}.get(
            actual.exit if actual.exit is not None else -1, "crashed"
        )
        if actual.outcome == "fault" and not actual.error:
            actual.error = (
                actual.stderr.strip().splitlines()[-1:][0]
                if (actual.stderr.strip())
                else ""
            )
    data = work / "data"
    if data.is_dir():
        for path in sorted(data.iterdir()):
            if not path.name.endswith(".fits"):
                actual.leftovers.append(path.name)
                continue
            try:
                header = verify_raw_frame(path)
            except ConfigError:
                actual.damaged_files.append(path.name)
                continue
            ok = header.get("INTLKOK") is True
            (actual.valid_files if ok else actual.invalid_files).append(path.name)
    journal = work / "run.journal"
    if journal.is_file():
        records = Journal(journal).records()
        actual.journal_last = records[-1]["event"] if records else None
    results = work / f"obsid{BLOCK_ID}_results"
    actual.master = (results / "master_dark.fits").is_file()
    actual.products = sorted(name for name in PRODUCTS if (results / name).is_file())
    result_json = results / "result.json"
    if actual.qa is None and result_json.is_file():
        actual.qa = json.loads(result_json.read_text())["qc"]
    return actual


def frame_names(count: int, start: int = 1) -> list[str]:
    """``dark_0001.fits`` ... for ``count`` attempts from ``start``."""
    return [f"{BLOCK_ID}_{i:04d}.fits" for i in range(start, start + count)]


def mismatches(row: Row, actual: Actual) -> list[str]:
    """Every way ``actual`` differs from the row's expectation (empty: as expected)."""
    want = row.expect
    found: list[str] = []

    def check(what: str, expected: Any, got: Any) -> None:
        if expected != got:
            found.append(f"{what}: expected {expected!r}, got {got!r}")

    check("outcome", want["outcome"], actual.outcome)
    check("exit status", want["exit"], actual.exit)
    if actual.traceback:
        found.append("a traceback was printed")
    if actual.damaged_files:
        found.append(f"damaged raw files: {actual.damaged_files}")
    if actual.leftovers:
        found.append(f"left-over files in data/: {actual.leftovers}")
    check("valid raw files", _names(want.get("valid_files", 0)), actual.valid_files)
    check(
        "invalid raw files", _names(want.get("invalid_files", [])), actual.invalid_files
    )
    expected_retries = {k: v for k, v in (want.get("retries") or {}).items() if v}
    check("retries per device", expected_retries, actual.retries)
    if want["outcome"] == "completed":
        check("valid frames reported", want["valid_frames"], actual.valid_frames)
        check("frames retaken", want.get("retaken", 0), actual.retaken)
        check("QA verdict", want["qa"], actual.qa)
        check("products", sorted(PRODUCTS), actual.products)
        check("journal's last event", "run_done", actual.journal_last)
    else:
        fragment = want["error"]
        if fragment not in actual.error:
            found.append(f"error: expected {fragment!r} in {actual.error!r}")
        if "journal" in want:
            check("journal's last event", want["journal"], actual.journal_last)
        check("master dark written", want.get("master", False), actual.master)
        # the run's own count of valid frames agrees with the files on disk
        check("valid frames reported", len(actual.valid_files), actual.valid_frames)
    return found


def _names(spec: int | Sequence[str]) -> list[str]:
    """Raw file names from a count (attempts 1..n) or an explicit list."""
    if isinstance(spec, int):
        return frame_names(spec)
    return list(spec)

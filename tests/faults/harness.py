"""Run one row of the fault matrix: a real ``megara-dark run`` against the
built-in simulators with a scenario file, and what came out of it.

The catalogue is ``matrix.yaml`` beside this module. Each applicable row names
the faults to inject (a scenario, in the simulators' own format) and the
outcome expected. :func:`row_spec` turns a row into a campaign run
(:class:`~sequencer.engineering.campaign_spec.RunSpec`); :func:`run_row` runs
it as the engineering campaign does (:func:`sequencer.engineering.campaign.run_one`:
the command in its own process, its own simulator processes, real
pseudo-terminals, everything it left read back by
:mod:`sequencer.engineering.trial`); :func:`mismatches` lists every way the
outcome differs from the row's expectation, the campaign's comparison
included.

Used by ``tests/faults/test_matrix.py`` (one test per row), which
``benchmarks/fault_matrix.py`` runs to print the whole matrix as a table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drivers.errors import ConfigError
from sequencer.engineering.campaign import run_one
from sequencer.engineering.campaign_spec import TABLES, Expectation, RunSpec
from sequencer.engineering.trial import (
    PRODUCTS,
    Observation,
    execute,
    run_argv,
    write_inputs,
)
from simulators.faults import FaultKind, fault_from_dict

MATRIX = Path(__file__).with_name("matrix.yaml")
PHASES = ("preparing", "integrating", "reading", "writing", "reducing")
DEVICES = ("ccd", "cover_left", "cover_right")
BLOCK_ID = "dark"
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


def _tables(
    settings: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """The configuration tables: the matrix settings, then a row's overrides."""
    return {
        name: {**settings.get(name, {}), **(overrides or {}).get(name, {})}
        for name in TABLES
    }


def make_master_bias(folder: Path, settings: Mapping[str, Any]) -> Path:
    """Run a clean bias block; return its master bias (for the darks)."""
    bias = {
        "id": "bias", "instrument": "MEGARA", "mode": "MegaraBiasImage",
        "exptime": 0.0, "nframes": int(settings.get("bias_frames", 3)),
    }  # fmt: skip
    inputs = write_inputs(folder, blocks=[bias], tables=_tables(settings))
    work = folder / "work"
    done = execute(run_argv(inputs, work), folder, timeout_s=HANG_S)
    master = work / "obsidbias_results" / "master_bias.fits"
    if done.exit_status != 0 or not master.is_file():
        raise RuntimeError(f"the bias run failed:\n{done.stdout}\n{done.stderr}")
    return master


def row_spec(row: Row, settings: Mapping[str, Any], master_bias: Path) -> RunSpec:
    """A row as a campaign run: its dark block, configuration, faults, outcome.

    The campaign's expectation holds what both vocabularies name (outcome,
    QA, frames and retakes of a completed run, the error's fragment); the
    rest of the row's expectation is :func:`mismatches`'.
    """
    block_settings = {**settings["block"], **row.run.get("block", {})}
    block = {
        "id": BLOCK_ID,
        "instrument": "MEGARA",
        "mode": "MegaraDarkImage",
        "exptime": float(block_settings["exptime"]),
        "nframes": int(block_settings["nframes"]),
        "requirements": {"master_bias": str(master_bias)},
    }
    tables = _tables(settings, row.run)
    want = row.expect
    completed = want["outcome"] == "completed"
    return RunSpec(
        name=row.id,
        blocks=[block],
        simulator=tables["simulator"],
        run=tables["run"],
        ccd=tables["ccd"],
        cover=tables["cover"],
        faults=[dict(f) for f in row.faults],
        expect=Expectation(
            outcome="done" if completed else want["outcome"],
            qa=want["qa"] if completed else None,
            retakes=want.get("retaken", 0) if completed else None,
            valid_frames=want["valid_frames"] if completed else None,
            message=None if completed else want["error"],
        ),
    )


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
    #: Where the campaign's judgement of the run differs from the row.
    campaign_differences: list[str] = field(default_factory=list)

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
    spec = row_spec(row, settings, master_bias)
    report, seen = run_one(spec, folder, timeout_s=HANG_S, log_level="DEBUG")
    actual = from_observation(seen)
    actual.campaign_differences = list(report.differences)
    return actual


def from_observation(seen: Observation) -> Actual:
    """The row's view of what the trial observed (plus the run's own summary)."""
    done = seen.finished
    hung = done.timed_out
    actual = Actual(None if hung else done.exit_status, done.stdout, done.stderr)
    actual.traceback = seen.traceback
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
    if hung:
        actual.outcome = "hang"
    else:
        actual.outcome = {0: "completed", 1: "fault", 130: "aborted"}.get(
            done.exit_status, "crashed"
        )
        if actual.outcome == "fault" and not actual.error:
            lines = actual.stderr.strip().splitlines()
            actual.error = lines[-1] if lines else ""
    actual.valid_files = list(seen.files.valid)
    actual.invalid_files = list(seen.files.invalid)
    actual.damaged_files = list(seen.files.damaged)
    actual.leftovers = list(seen.files.leftovers)
    actual.journal_last = seen.journal_last
    actual.products = seen.products.get(BLOCK_ID, [])
    actual.master = "master_dark.fits" in actual.products
    if actual.qa is None:
        actual.qa = seen.qa.get(BLOCK_ID)
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

    found += [f"campaign: {d}" for d in actual.campaign_differences]
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

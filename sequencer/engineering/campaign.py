"""Campaigns: many observing blocks on the simulators, each against its expectation.

:func:`run_campaign` prepares every run first (blocks, configuration,
scenario, all validated), then runs them one after the other as real
``megara-dark run`` processes, each starting its own simulators. For each run
it reads what happened from the exit status, the run's journal and its
products, verifies the last dark set (figures into the history database) and
compares with the expectation. Writing the inputs, running the command and
reading back its outcome are :mod:`sequencer.engineering.trial`'s. Layout of
the output folder::

    OUT/campaign.html, OUT/campaign.json    summary (written after every run)
    OUT/history.sqlite                      QC figures of every verified set
    OUT/runs/<name>/blocks.yaml, instrument.toml, scenario.yaml
    OUT/runs/<name>/work                    the run folder (frames, products)
    OUT/runs/<name>/stdout.txt, stderr.txt  what the run printed
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.errors import ConfigError
from sequencer.engineering.campaign_spec import Campaign, RunSpec, check_faults
from sequencer.engineering.figures import load_dark_set
from sequencer.engineering.history import History
from sequencer.engineering.limits import VerifySettings
from sequencer.engineering.trial import (
    Inputs,
    Observation,
    run_argv,
    write_inputs,
)
from sequencer.engineering.trial import execute as trial_execute
from sequencer.engineering.trial import observe as trial_observe
from sequencer.engineering.verify import Verdict, verify, write_report

log = logging.getLogger(__name__)


@dataclass
class Seen:
    """What one run did."""

    outcome: str = "not run"
    exit_status: int | None = None
    message: str = ""
    valid_frames: int = 0
    invalid_frames: int = 0
    retakes: int = 0
    qa: dict[str, str] = field(default_factory=dict)
    verify: str | None = None
    figures: dict[str, float | None] = field(default_factory=dict)
    temperature_k: float | None = None
    wall_s: float = 0.0
    report: str | None = None
    last_block: str | None = None

    @property
    def last_qa(self) -> str | None:
        """QA flag of the run's last planned block (None: it was not reduced)."""
        return self.qa.get(self.last_block or "")


@dataclass
class RunReport:
    """One run: its settings, what was expected, what was seen."""

    spec: RunSpec
    folder: Path
    seen: Seen = field(default_factory=Seen)
    differences: list[str] = field(default_factory=list)

    @property
    def matched(self) -> bool:
        return self.seen.outcome != "not run" and not self.differences

    def to_json_dict(self) -> dict[str, Any]:
        s = self.seen
        return {
            "name": self.spec.name,
            "simulator": self.spec.simulator,
            "faults": self.spec.faults,
            "expected": self.spec.expect.to_json_dict(),
            "seen": {
                "outcome": s.outcome, "exit_status": s.exit_status,
                "message": s.message, "valid_frames": s.valid_frames,
                "invalid_frames": s.invalid_frames, "retakes": s.retakes,
                "qa": s.qa, "verify": s.verify, "figures": s.figures,
                "ccd_temperature_k": s.temperature_k, "wall_s": round(s.wall_s, 3),
                "verify_report": s.report,
            },
            "matched": self.matched,
            "differences": self.differences,
            "folder": str(self.folder),
        }  # fmt: skip


def prepare(spec: RunSpec, folder: Path) -> tuple[Path, Path]:
    """Write a run's blocks, configuration and scenario; validate them.

    Returns
    -------
    tuple of Path
        The blocks file and the configuration file to run.
    """
    inputs = write_inputs(
        folder,
        blocks=spec.blocks,
        tables=spec.tables,
        faults=spec.faults,
        source=f"run {spec.name!r}",
    )
    return inputs.blocks, inputs.config


def observe(report: RunReport, seen: Observation) -> None:
    """Fill ``report.seen`` from what the trial observed (exit status, journal)."""
    out = report.seen
    out.exit_status = seen.finished.exit_status
    out.outcome = seen.outcome
    out.message = seen.error
    out.wall_s = seen.finished.wall_s
    out.last_block = seen.last_block
    for block in seen.journal.blocks.values() if seen.journal is not None else ():
        out.valid_frames += len(block.valid_files)
        out.invalid_frames += len(block.invalid_files)
        out.retakes += block.retakes
        if block.qa:
            out.qa[block.block] = block.qa


def examine(
    report: RunReport, settings: VerifySettings, history: History, pages: bool
) -> None:
    """Verify the run's last dark set, if any; record it; ``pages``: HTML report."""
    work = report.folder / "work"
    folders = sorted(
        work.glob("obsid*_results/master_dark.fits"), key=lambda p: p.stat().st_mtime
    )
    if not folders:
        return
    try:
        dark = load_dark_set(folders[-1].parent)
    except Exception as err:  # one bad product must not stop the campaign
        log.warning("%s: cannot verify %s: %s", report.spec.name, folders[-1], err)
        report.seen.verify = "error"
        report.seen.message = report.seen.message or f"verification failed: {err}"
        return
    verdict: Verdict = verify(dark, settings)
    if pages:
        page = write_report(verdict, report.folder)
        report.seen.report = str(page / "report.html")
    history.record(verdict, source=f"campaign:{report.spec.name}")
    seen = report.seen
    seen.verify = "pass" if verdict.passed else "fail"
    seen.temperature_k = dark.temperature_k
    for check in verdict.checks:
        if check.figure.name in ("dark_current", "read_noise", "hot_pixels"):
            seen.figures[check.figure.label] = check.figure.value


def compare(report: RunReport) -> None:
    """List where what was seen differs from what was expected."""
    e, s, out = report.spec.expect, report.seen, report.differences
    if s.outcome != e.outcome:
        out.append(f"outcome: expected {e.outcome}, seen {s.outcome}")
    if e.qa is not None and s.last_qa != e.qa:
        out.append(f"qa: expected {e.qa}, seen {s.last_qa or 'none'}")
    if e.retakes is not None and s.retakes != e.retakes:
        out.append(f"retakes: expected {e.retakes}, seen {s.retakes}")
    if e.valid_frames is not None and s.valid_frames != e.valid_frames:
        out.append(f"valid frames: expected {e.valid_frames}, seen {s.valid_frames}")
    if e.verify is not None and s.verify != e.verify:
        out.append(f"verify: expected {e.verify}, seen {s.verify or 'no dark set'}")
    if e.message is not None and e.message.lower() not in s.message.lower():
        out.append(f"message: expected to contain {e.message!r}, seen {s.message!r}")


def execute(
    report: RunReport,
    blocks: Path,
    config: Path,
    timeout_s: float,
    *,
    log_level: str = "WARNING",
) -> Observation:
    """Run one ``megara-dark run`` process; fill ``report.seen``.

    A run still going after ``timeout_s`` wall seconds is killed (outcome
    ``timeout``). On Ctrl-C the run, in the same process group, got the same
    SIGINT: it is left to stop safely, recorded, and the interrupt re-raised.

    Returns
    -------
    Observation
        Everything the trial saw (raw files, products, output), for callers
        that judge more than the campaign's expectation.
    """
    work = report.folder / "work"
    argv = run_argv(Inputs(blocks, config, None), work, "--log-level", log_level)
    finished = trial_execute(argv, report.folder, timeout_s=timeout_s)
    seen = trial_observe(work, finished)
    observe(report, seen)
    if finished.interrupted:
        raise KeyboardInterrupt
    return seen


def run_one(
    spec: RunSpec, folder: Path, *, timeout_s: float, log_level: str = "WARNING"
) -> tuple[RunReport, Observation]:
    """Prepare, run and judge one run of a campaign (no verification).

    Returns the report (``seen`` and ``differences`` filled) and everything
    the trial observed.
    """
    report = RunReport(spec, folder)
    blocks, config = prepare(spec, folder)
    seen = execute(report, blocks, config, timeout_s, log_level=log_level)
    compare(report)
    return report, seen


@dataclass
class CampaignResult:
    """All runs of a campaign, as far as they went."""

    campaign: Campaign
    out: Path
    history: Path
    runs: list[RunReport]
    started: datetime
    interrupted: bool = False

    @property
    def matched(self) -> bool:
        return not self.interrupted and all(r.matched for r in self.runs)


def run_campaign(
    campaign: Campaign,
    out: Path,
    *,
    settings: VerifySettings,
    history: Path | None = None,
    timeout_s: float = 1800.0,
    run_reports: bool = True,
    progress: Callable[[RunReport], None] | None = None,
    summary: Callable[[CampaignResult], None] | None = None,
) -> CampaignResult:
    """Prepare and run every run of ``campaign`` into ``out`` (see module notes).

    ``summary`` is called after every run (to rewrite the summary report), and
    once more at the end.
    """
    check_faults(campaign)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(
            f"{out}: already exists and is not empty; choose another --out"
        )
    reports = [RunReport(spec, out / "runs" / spec.name) for spec in campaign.runs]
    planned = [prepare(r.spec, r.folder) for r in reports]
    result = CampaignResult(
        campaign, out, history or out / "history.sqlite", reports, datetime.now(UTC)
    )
    with History(result.history) as db:
        try:
            for report, (blocks, config) in zip(reports, planned, strict=True):
                try:
                    execute(report, blocks, config, timeout_s)
                finally:
                    examine(report, settings, db, run_reports)
                    compare(report)
                if progress is not None:
                    progress(report)
                if summary is not None:
                    summary(result)
        except KeyboardInterrupt:
            result.interrupted = True
            log.warning("campaign interrupted; the summary covers the runs done")
    if summary is not None:
        summary(result)
    return result

"""Campaigns: many observing blocks on the simulators, each against its expectation.

:func:`run_campaign` prepares every run first (blocks, configuration,
scenario, all validated), then runs them one after the other as real
``megara-dark run`` processes, each starting its own simulators. For each run
it reads what happened from the exit status, the run's journal and its
products, verifies the last dark set (figures into the history database) and
compares with the expectation. Layout of the output folder::

    OUT/campaign.html, OUT/campaign.json    summary (written after every run)
    OUT/history.sqlite                      QC figures of every verified set
    OUT/runs/<name>/blocks.yaml, instrument.toml, scenario.yaml
    OUT/runs/<name>/work                    the run folder (frames, products)
    OUT/runs/<name>/stdout.txt, stderr.txt  what the run printed
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from drivers.errors import ConfigError
from sequencer.config import parse_config
from sequencer.engineering.campaign_spec import Campaign, RunSpec, check_faults
from sequencer.engineering.cli import RUN_CLI
from sequencer.engineering.figures import load_dark_set
from sequencer.engineering.history import History
from sequencer.engineering.limits import VerifySettings
from sequencer.engineering.verify import Verdict, verify, write_report
from sequencer.journal import Journal, replay

log = logging.getLogger(__name__)

_EXIT_OUTCOME = {0: "done", 1: "fault", 2: "error", 130: "aborted", 143: "aborted"}


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
    from sequencer.blocks import load_blocks  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(spec.blocks, Path):
        blocks = spec.blocks
    else:
        blocks = folder / "blocks.yaml"
        blocks.write_text(yaml.safe_dump_all(spec.blocks, sort_keys=False), "utf-8")
    try:
        load_blocks(blocks)
    except ConfigError as err:
        raise ConfigError(f"run {spec.name!r}: {err}") from None
    simulator = dict(spec.simulator)
    if spec.faults:
        scenario = folder / "scenario.yaml"
        scenario.write_text(yaml.safe_dump({"faults": spec.faults}), "utf-8")
        simulator["scenario"] = scenario.name
    doc = {"simulator": simulator, "run": dict(spec.run)}
    try:
        parse_config(doc, source=f"run {spec.name!r}", base=folder)
    except ConfigError as err:
        raise ConfigError(str(err)) from None
    config = folder / "instrument.toml"
    config.write_text(_toml(doc), "utf-8")
    return blocks, config


def _toml(doc: dict[str, dict[str, Any]]) -> str:
    """A TOML document of flat tables (strings, numbers, booleans)."""
    lines = []
    for table, values in doc.items():
        lines.append(f"[{table}]")
        for key, value in values.items():
            if isinstance(value, str):
                text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            elif isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = repr(value)
            lines.append(f"{key} = {text}")
        lines.append("")
    return "\n".join(lines)


def observe(report: RunReport, done: subprocess.CompletedProcess[str]) -> None:
    """Fill ``report.seen`` from the exit status, the journal and stderr."""
    seen = report.seen
    seen.exit_status = done.returncode
    seen.outcome = _EXIT_OUTCOME.get(done.returncode, f"exit {done.returncode}")
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("megara-dark")]
    journal = report.folder / "work" / "run.journal"
    if journal.is_file():
        state = replay(Journal(journal).records())
        seen.last_block = state.planned[-1] if state.planned else None
        for block in state.blocks.values():
            seen.valid_frames += len(block.valid_files)
            seen.invalid_frames += len(block.invalid_files)
            seen.retakes += block.retakes
            if block.qa:
                seen.qa[block.block] = block.qa
        if state.faults:
            seen.message = state.faults[-1]
    if not seen.message and errors:
        seen.message = errors[-1]


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
        write_report(verdict, report.folder)
        assert verdict.report_dir is not None
        report.seen.report = str(verdict.report_dir / "report.html")
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


def execute(report: RunReport, blocks: Path, config: Path, timeout_s: float) -> None:
    """Run one ``megara-dark run`` process; fill ``report.seen``.

    A run still going after ``timeout_s`` wall seconds is killed (outcome
    ``timeout``). On Ctrl-C the run, in the same process group, got the same
    SIGINT: it is left to stop safely, recorded, and the interrupt re-raised.
    """
    argv = [
        sys.executable, "-c", RUN_CLI, "run", str(blocks), "--config", str(config),
        "--workdir", str(report.folder / "work"), "--log-level", "WARNING",
    ]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    interrupted = timed_out = False
    try:
        out, errs = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, errs = proc.communicate()
        timed_out = True
    except KeyboardInterrupt:
        out, errs = proc.communicate()
        interrupted = True
    done = subprocess.CompletedProcess(argv, proc.returncode, out, errs)
    observe(report, done)
    if timed_out:
        report.seen.outcome = "timeout"
        report.seen.message = f"no end within {timeout_s:g} s; killed"
    report.seen.wall_s = time.monotonic() - start
    (report.folder / "stdout.txt").write_text(done.stdout, "utf-8")
    (report.folder / "stderr.txt").write_text(done.stderr, "utf-8")
    if interrupted:
        raise KeyboardInterrupt


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

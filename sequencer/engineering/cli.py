"""``megara-dark verify``, ``trend`` and ``campaign``: the engineering commands.

Registered on the main ``megara-dark`` group by :mod:`sequencer.cli`. User
mistakes raise ConfigError (one line, exit status 2 from the group's
``main``); a figure out of limits, or a campaign outcome that differs from
what was expected, exits with status 1.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from drivers.errors import ConfigError
from sequencer.engineering.archive_cli import archive
from sequencer.engineering.limits import FIGURES

EXIT_OK, EXIT_FAILED = 0, 1


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("transitions").setLevel(logging.WARNING)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


_LOG_LEVEL = click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="WARNING",
    show_default=True,
)
_CONFIG = click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Instrument configuration (TOML) with the [verify] limits and history.",
)
_HISTORY = click.option(
    "--history",
    type=click.Path(path_type=Path, dir_okay=False),
    help="History database [default: [verify] history of the configuration, "
    "else megara-dark-runs/history.sqlite].",
)


def _run_blocks(
    blocks: Path, config_path: Path | None, workdir: Path | None, quiet_stdout: bool
) -> Path:
    """Run ``blocks`` with ``megara-dark run``; return the last dark's results.

    The run is the real command in a child process (its progress display,
    signal handling and exit statuses are those users know); a run that does
    not finish ends verification with its exit status. With ``quiet_stdout``
    the run's stdout goes to stderr (stdout is for the JSON verdict).
    """
    from reduce.rawframe import Mode  # noqa: PLC0415
    from sequencer.blocks import load_blocks  # noqa: PLC0415
    from sequencer.simlaunch import megara_dark  # noqa: PLC0415

    plan = load_blocks(blocks)  # refuse bad blocks before anything runs
    darks = [b for b in plan if b.mode is Mode.DARK]
    if not darks:
        raise ConfigError(f"{blocks}: no MegaraDarkImage block; nothing to verify")
    if workdir is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        workdir = Path("megara-dark-runs") / stamp
    argv = [*megara_dark(), "run", str(blocks), "--workdir", str(workdir)]
    if config_path is not None:
        argv += ["--config", str(config_path)]
    stdout = sys.stderr if quiet_stdout else None
    status = subprocess.run(argv, check=False, stdout=stdout).returncode
    if status != 0:
        click.echo(
            f"megara-dark: the run did not finish (exit status {status}); "
            f"nothing verified; its folder: {workdir}",
            err=True,
        )
        raise SystemExit(status)
    return workdir / f"obsid{darks[-1].id}_results"


@click.command()
@click.argument(
    "results", required=False, type=click.Path(path_type=Path, file_okay=False)
)
@click.option(
    "--run",
    "blocks",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Run these observing blocks first, then verify the last dark block.",
)
@_CONFIG
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Run folder for --run [default: megara-dark-runs/<UTC date and time>].",
)
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the dated report folder goes [default: the run folder].",
)
@_HISTORY
@click.option("--no-history", is_flag=True, help="Do not record the figures.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@_LOG_LEVEL
def verify(
    results: Path | None,
    blocks: Path | None,
    config: Path | None,
    workdir: Path | None,
    report_dir: Path | None,
    history: Path | None,
    no_history: bool,
    as_json: bool,
    log_level: str,
) -> None:
    """Check a dark set's QC figures against the configured limits.

    RESULTS is a dark block's results folder (obsid<ID>_results) or the run
    folder holding it; with --run, the blocks are run first. Writes a dated
    report folder (report.html, verdict.json); exit status 1 when a figure
    is out of limits.
    """
    from sequencer.config import load_config  # noqa: PLC0415
    from sequencer.engineering.figures import load_dark_set  # noqa: PLC0415
    from sequencer.engineering.history import History  # noqa: PLC0415
    from sequencer.engineering.plots import pyplot  # noqa: PLC0415
    from sequencer.engineering.verify import verify as judge  # noqa: PLC0415
    from sequencer.engineering.verify import write_report  # noqa: PLC0415

    _logging(log_level)
    if (results is None) == (blocks is None):
        raise click.UsageError("give either RESULTS (a results folder) or --run BLOCKS")
    settings = load_config(config).verify
    pyplot()  # fail now, before any run, if matplotlib is missing
    folder = (
        results if blocks is None else _run_blocks(blocks, config, workdir, as_json)
    )
    if folder is None:  # refused above: one of the two is given
        raise click.UsageError("give either RESULTS (a results folder) or --run BLOCKS")
    dark = load_dark_set(folder)
    verdict = judge(dark, settings)
    page = write_report(verdict, report_dir or dark.folder.parent)
    if not no_history:
        with History(history or settings.history) as db:
            db.record(verdict)
    if as_json:
        click.echo(json.dumps(verdict.to_json_dict(), indent=2))
    else:
        for line in verdict.summary_lines():
            click.echo(line)
        click.echo(f"report: {page / 'report.html'}")
    raise SystemExit(EXIT_OK if verdict.passed else EXIT_FAILED)


@click.command()
@click.argument("figure", type=click.Choice(list(FIGURES)), metavar="FIGURE")
@click.option(
    "--against",
    type=click.Choice(["date", "temperature"]),
    default="date",
    show_default=True,
)
@_CONFIG
@_HISTORY
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output folder [default: 'trends' beside the history database].",
)
@click.option(
    "--simulated/--real",
    default=None,
    help="Only simulated (or only real) dark sets [default: both].",
)
@_LOG_LEVEL
def trend(
    figure: str,
    against: str,
    config: Path | None,
    history: Path | None,
    out: Path | None,
    simulated: bool | None,
    log_level: str,
) -> None:
    """Plot FIGURE from the history against date or CCD temperature (PNG, HTML)."""
    from sequencer.config import load_config  # noqa: PLC0415
    from sequencer.engineering.trend import trend as draw  # noqa: PLC0415

    _logging(log_level)
    settings = load_config(config).verify
    db = history or settings.history
    doc = draw(
        db,
        figure,
        against,
        out or db.parent / "trends",
        settings.limit(figure),
        simulated=simulated,
    )
    click.echo(f"{figure}: {len(doc['points'])} point(s) against {against}")
    for name, fit in doc["fits"].items():
        doubling = fit["doubling_k"]
        click.echo(
            f"  {name}: ln slope {fit['log_slope_per_k']:.4g} /K"
            + (f", doubles every {doubling:.3g} K" if doubling else "")
        )
    click.echo(f"plot: {doc['png']}")
    click.echo(f"page: {doc['html']}")


@click.command()
@click.argument("campaign_file", type=click.Path(path_type=Path, dir_okay=False))
@_CONFIG
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output folder [default: megara-dark-runs/campaign-<name>-<UTC time>].",
)
@click.option(
    "--history",
    type=click.Path(path_type=Path, dir_okay=False),
    help="History database for the runs' QC figures [default: OUT/history.sqlite].",
)
@click.option(
    "--run-reports/--no-run-reports",
    default=True,
    show_default=True,
    help="Write a verification report page for every run's dark set.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=1.0),
    default=1800.0,
    show_default=True,
    help="Wall seconds after which a run is killed and counted as 'timeout'.",
)
@_LOG_LEVEL
def campaign(
    campaign_file: Path,
    config: Path | None,
    out: Path | None,
    history: Path | None,
    run_reports: bool,
    timeout_s: float,
    log_level: str,
) -> None:
    """Run the observing blocks of CAMPAIGN_FILE on the simulators, with faults.

    Every run states its expected outcome; the summary (campaign.html,
    campaign.json) says what was expected and what was seen. Exit status 1
    when any run differs from its expectation.
    """
    from sequencer.config import load_config  # noqa: PLC0415
    from sequencer.engineering.campaign import (  # noqa: PLC0415
        CampaignResult,
        RunReport,
        run_campaign,
    )
    from sequencer.engineering.campaign_report import write_summary  # noqa: PLC0415
    from sequencer.engineering.campaign_spec import load_campaign  # noqa: PLC0415
    from sequencer.engineering.plots import pyplot  # noqa: PLC0415

    _logging(log_level)
    # Ctrl-C stops the campaign as it stops its runs, even when it was
    # started with SIGINT ignored (a background job of a script): each
    # `megara-dark run` installs its own handler and would abort alone.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    spec = load_campaign(campaign_file)
    settings = load_config(config).verify
    pyplot()
    if out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        out = Path("megara-dark-runs") / f"campaign-{spec.name}-{stamp}"

    def progress(run: RunReport) -> None:
        s = run.seen
        verdict = "as expected" if run.matched else "; ".join(run.differences)
        click.echo(
            f"{run.spec.name}: {s.outcome} ({s.valid_frames} valid, "
            f"{s.invalid_frames} invalid frames, {s.retakes} retakes, QA "
            f"{s.last_qa or '-'}, verify {s.verify or '-'}, {s.wall_s:.1f} s): "
            f"{verdict}"
        )

    def summary(result: CampaignResult) -> None:
        write_summary(result, settings)

    result = run_campaign(
        spec,
        out,
        settings=settings,
        history=history,
        timeout_s=timeout_s,
        run_reports=run_reports,
        progress=progress,
        summary=summary,
    )
    doc = write_summary(result, settings, final=True)
    t = doc["totals"]
    click.echo(
        f"campaign {spec.name}: {t['matched']}/{t['runs']} run(s) as expected, "
        f"{t['differed']} differed, {t['not_run']} not run; "
        f"report: {out / 'campaign.html'}"
    )
    if result.interrupted:
        raise SystemExit(130)
    raise SystemExit(EXIT_OK if result.matched else EXIT_FAILED)


COMMANDS = (verify, trend, campaign, archive)

"""The ``megara-dark`` command line.

``run`` (the Dark mode end to end), ``simulate`` (the hardware simulators),
``reduce`` (master bias and dark from raw frames) and ``diagram`` (the
sequencer's state machine). User errors are one line on stderr and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from drivers.errors import ConfigError, MegaraDarkError
from reduce.cli import reduce_command
from reduce.runtime import configure_process
from sequencer import __version__

if TYPE_CHECKING:
    from rich.console import Console

    from sequencer.blocks import ObservingBlock
    from sequencer.run import BlockResult, Run
    from sequencer.session import Session

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ABORTED = 0, 1, 2, 130


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="megara-dark")
def cli() -> None:
    """Control, acquisition and reduction of MEGARA's Dark observing mode."""


@cli.command(
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def simulate(args: tuple[str, ...]) -> None:
    """Start the CCD-controller and cover simulators (see 'simulate --help')."""
    # The simulators are their own program (python -m simulators): the
    # sequencer does not import them, and exec keeps one process so that
    # SIGINT/SIGTERM reach the simulators directly.
    argv = [sys.executable, "-m", "simulators", *args]
    sys.stdout.flush()
    os.execv(sys.executable, argv)


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
)
def diagram(fmt: str) -> None:
    """Print the Dark-mode state machine, drawn from the table it runs."""
    from sequencer.diagram import graphviz, mermaid  # noqa: PLC0415

    click.echo(mermaid() if fmt == "mermaid" else graphviz(), nl=False)


@cli.command()
@click.argument(
    "blocks", required=False, type=click.Path(path_type=Path, dir_okay=False)
)
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Instrument configuration (TOML). Default: the built-in simulators.",
)
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder for the raw frames, the journal and the products "
    "[default: a new megara-dark-runs/<UTC date and time>].",
)
@click.option(
    "--resume",
    "resume",
    metavar="[WORKDIR]",
    is_flag=False,
    flag_value="",
    default=None,
    help="Finish the interrupted run in WORKDIR (or in --workdir), on the "
    "observing blocks, configuration and devices that its folder records.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print progress on stdout as JSON lines (one event per line) instead of "
    "the live display; the summary goes to stderr.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
def run(
    blocks: Path | None,
    config: Path | None,
    workdir: Path | None,
    resume: str | None,
    as_json: bool,
    log_level: str,
) -> None:
    """Run the observing BLOCKS (YAML) and reduce them: the Dark mode end to end.

    A new run records its BLOCKS, its --config and the devices it connects
    to in its run folder; 'megara-dark run --resume WORKDIR' finishes it on
    those, and needs nothing else. On a terminal a live display shows the
    block, frame k/N, the exposure countdown and the readout; with --json the
    same news is printed as JSON lines; otherwise only the log (stderr) and
    the summary (stdout).
    """
    from sequencer.runfolder import InputFile  # noqa: PLC0415
    from sequencer.session import open_session  # noqa: PLC0415

    console = _terminal_console() if not as_json else None
    _setup_logging(log_level, console)
    workdir = _run_folder(workdir, resume, blocks)
    session = open_session(
        workdir,
        resume=resume is not None,
        blocks=InputFile.read(blocks, "observing blocks") if blocks else None,
        config=InputFile.read(config, "instrument configuration") if config else None,
    )
    try:
        status = _run_session(session, as_json, console)
    finally:
        session.close()
    raise SystemExit(status)


def _run_folder(workdir: Path | None, resume: str | None, blocks: Path | None) -> Path:
    """The run folder from --workdir and --resume [WORKDIR]."""
    if resume:
        folder = Path(resume)
        if workdir is not None and workdir.absolute() != folder.absolute():
            raise click.UsageError(
                f"--resume {resume} and --workdir {workdir} name two run folders; "
                "give one"
            )
        return folder
    if workdir is not None:
        return workdir
    if resume is not None:
        raise click.UsageError(
            "--resume needs the run folder: megara-dark run --resume WORKDIR"
        )
    if blocks is None:
        raise click.UsageError(
            "give the observing BLOCKS file (megara-dark run BLOCKS), or finish a "
            "run with: megara-dark run --resume WORKDIR"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return Path("megara-dark-runs") / stamp


def _run_session(session: Session, as_json: bool, console: Console | None) -> int:
    """Run an opened session; print the summary; return the exit status."""
    from sequencer.progress import (  # noqa: PLC0415
        EventSink,
        JsonLines,
        LiveDisplay,
        Reporter,
        Silent,
    )
    from sequencer.run import Run  # noqa: PLC0415

    workdir = session.workdir
    if session.finished is not None:
        _say(session.finished, err=as_json)
        return EXIT_OK
    for note in session.notes:
        _say(f"megara-dark: {note}", err=True)
    display = LiveDisplay(console) if console is not None else None
    sink: EventSink = JsonLines(sys.stdout) if as_json else display or Silent()
    reporter = Reporter(sink)
    the_run = Run(session, reporter=reporter)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, the_run.request_abort)
    with display if display is not None else contextlib.nullcontext():
        results = the_run.execute()
    status, lines = _summary(results, session.plan, the_run)
    finished = status == EXIT_OK
    if finished and the_run.stop_signal is not None:
        # Asked to stop after the last readout: the products are safe, and
        # the exit status still says that the run was stopped.
        status = 128 + the_run.stop_signal
    for line in lines:
        _say(line, err=as_json)
    _say(f"run folder: {workdir}", err=as_json)
    reporter.emit(
        "run_done",
        status="aborted" if status > EXIT_USAGE else "ok" if not status else "failed",
        exit=status,
        workdir=str(workdir),
        blocks=[_block_json(r) for r in results],
    )
    if status > EXIT_USAGE and finished:
        _say(
            f"megara-dark: {the_run.stop_reason} received after the last readout; "
            f"the run finished and its products are complete in {workdir}",
            err=True,
        )
    elif status > EXIT_USAGE:
        _say(_stopped_line(the_run, results, workdir), err=True)
    elif status == EXIT_FAILED:
        _say(_fault_line(session, results), err=as_json)
    return status


def _say(line: str, *, err: bool = False) -> None:
    """Print a summary line; a closed stdout (``run | head``) is not an error."""
    from sequencer.progress import stdout_closed  # noqa: PLC0415

    try:
        click.echo(line, err=err)
    except BrokenPipeError:
        stdout_closed()


def _terminal_console() -> Console | None:
    """A rich console for the live display, when stdout is a terminal."""
    if not sys.stdout.isatty():
        return None
    from rich.console import Console  # noqa: PLC0415

    return Console()


def _setup_logging(level: str, console: Console | None) -> None:
    """Log on stderr; above the live display when both share the terminal."""
    handler: logging.Handler
    if console is not None and sys.stderr.isatty():
        from rich.logging import RichHandler  # noqa: PLC0415

        handler = RichHandler(console=console, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s", datefmt="%H:%M:%S"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S"
            )
        )
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # transitions narrates every callback at INFO; our own log says what matters.
    logging.getLogger("transitions").setLevel(logging.WARNING)


def _summary(
    results: list[BlockResult], plan: list[ObservingBlock], the_run: Run
) -> tuple[int, list[str]]:
    """The exit status and one line per block that ran."""
    status = EXIT_OK
    lines = []
    for result in results:
        outcome = result.outcome
        if outcome.error is not None:
            verdict, status = f"FAULT: {outcome.error}", EXIT_FAILED
        elif outcome.aborted:
            verdict = "ABORTED"
            status = 128 + (the_run.stop_signal or signal.SIGINT)
        else:
            verdict = f"QA {result.qa}" if result.qa else "done"
            if result.reasons:
                verdict += f" ({'; '.join(result.reasons)})"
        if result.excluded:  # valid frames the reduction left out: not used
            used = outcome.valid_frames - len(result.excluded)
            counted = (
                f"{used}/{result.block.nframes} frames used, "
                f"{len(result.excluded)} excluded by the reduction"
            )
        else:
            counted = f"{outcome.valid_frames}/{result.block.nframes} valid frames"
        lines.append(
            f"{result.block.id}: {counted}, {outcome.retaken} retaken; {verdict}"
            + (f"; products in {result.products}" if result.products else "")
        )
        lines += [
            f"  excluded {why}" if why.startswith(name) else f"  excluded {name}: {why}"
            for name, why in result.excluded
        ]
    if status == EXIT_OK and len(results) < len(plan):
        status = EXIT_FAILED
    return status, lines


def _block_json(result: BlockResult) -> dict[str, Any]:
    outcome = result.outcome
    return {
        "block": result.block.id,
        "valid": outcome.valid_frames,
        "nframes": result.block.nframes,
        "retaken": outcome.retaken,
        "invalid_files": [p.name for p in result.invalid],
        "excluded": [{"file": n, "reason": why} for n, why in result.excluded],
        "reasons": list(result.reasons),
        "aborted": outcome.aborted,
        "fault": str(outcome.error) if outcome.error is not None else None,
        "qa": result.qa,
        "products": str(result.products) if result.products else None,
    }


def _stopped_line(the_run: Run, results: list[BlockResult], workdir: Path) -> str:
    """The one-line summary of a run stopped by a signal."""
    from sequencer.runfolder import resume_command  # noqa: PLC0415

    last = results[-1] if results else None
    kept = sum(len(r.frames) + len(r.invalid) for r in results)
    where = (
        f" in block {last.block.id} at {last.outcome.valid_frames}/"
        f"{last.block.nframes} valid frames"
        if last is not None
        else ""
    )
    safe = last.outcome.safe_state if last is not None else None
    return (
        f"megara-dark: stopped by {the_run.stop_reason or 'request'}{where}; "
        f"exposure aborted, read back {safe or 'not read back'}; {kept} frame(s) "
        f"kept in {workdir / 'data'}; finish with: {resume_command(workdir)}"
    )


def _fault_line(session: Session, results: list[BlockResult]) -> str:
    """What to do after a fault: commands that act on this run's own devices."""
    from drivers.errors import DeviceError, ProtocolError  # noqa: PLC0415
    from sequencer.runfolder import reset_command, resume_command  # noqa: PLC0415

    workdir = session.workdir
    error = results[-1].outcome.error if results else None
    resume = f"finish the run with: {resume_command(workdir)}"
    hardware = isinstance(error, DeviceError | ProtocolError)
    if hardware and session.config.devices is not None:
        return (
            "megara-dark: next: check the hardware the fault names, make it safe "
            f"with: {reset_command(workdir)}; then {resume}"
        )
    if hardware:  # the built-in simulators stopped with the run
        return (
            "megara-dark: next: the built-in simulators stopped with the run "
            f"(nothing to reset); {resume}"
        )
    return f"megara-dark: next: once the cause is fixed, {resume}"


@cli.command()
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Instrument configuration (TOML) naming the devices to make safe.",
)
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Run folder: make safe the devices its run recorded.",
)
@click.option(
    "--simulators",
    is_flag=True,
    help="Start the built-in simulators and reset those (a demonstration).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="WARNING",
    show_default=True,
)
def reset(
    config: Path | None, workdir: Path | None, simulators: bool, log_level: str
) -> None:
    """Make the instrument safe after a fault: abort, close shutter and cover.

    Acts only on the devices it is told about: those of --config, or those
    a run folder recorded (--workdir), or, with --simulators, built-in
    simulators started for the occasion. Check the mechanism the fault named
    first. Exit status 0 when the cover and the shutter read back closed and
    no exposure runs, 1 otherwise.
    """
    from sequencer.reset import reset_instrument, reset_target  # noqa: PLC0415

    _setup_logging(log_level, None)
    target = reset_target(config=config, workdir=workdir, simulators=simulators)
    click.echo(f"reset: {target.describe()}")
    outcome = reset_instrument(target)
    report = outcome.report
    for line in outcome.devices:
        click.echo(f"reset: read {line}")
    for step in report.steps:
        click.echo(f"reset: {step}")
    if report.error is not None:
        click.echo(f"megara-dark: reset failed: {report.error}", err=True)
    verdict = "safe" if report.safe else "NOT SAFE"
    click.echo(f"reset: {verdict}: {report.summary()}")
    raise SystemExit(EXIT_OK if report.safe else EXIT_FAILED)


cli.add_command(reduce_command)

# Engineering verification, trends and campaigns (sequencer/engineering/).
from sequencer.engineering.cli import COMMANDS as _ENGINEERING  # noqa: E402

for _command in _ENGINEERING:
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point: user errors become one line, exit status 2."""
    configure_process()  # before anything imports numpy
    try:
        cli.main(prog_name="megara-dark", standalone_mode=False)
    except click.exceptions.Exit as done:
        raise SystemExit(done.exit_code) from None
    except click.Abort:
        raise SystemExit(EXIT_ABORTED) from None
    except click.ClickException as err:
        click.echo(f"megara-dark: error: {err.format_message()}", err=True)
        raise SystemExit(err.exit_code) from None
    except ConfigError as err:
        click.echo(f"megara-dark: error: {err}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    except MegaraDarkError as err:
        click.echo(f"megara-dark: {err}", err=True)
        raise SystemExit(EXIT_FAILED) from None
    except OSError as err:  # the file system refused a write (space, permissions)
        where = err.filename if err.filename is not None else "a file"
        click.echo(
            f"megara-dark: {where}: {err.strerror or err}; check the free space and "
            "the permissions of the run folder, then finish the run with: "
            "megara-dark run --resume WORKDIR",
            err=True,
        )
        raise SystemExit(EXIT_FAILED) from None

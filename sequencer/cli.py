"""The ``megara-dark`` command line.

``run`` (the Dark mode end to end), ``simulate`` (the hardware simulators),
``reduce`` (master bias and dark from raw frames) and ``diagram`` (the
sequencer's state machine). User errors are one line on stderr and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from drivers.errors import ConfigError, MegaraDarkError
from reduce.cli import reduce_command
from sequencer import __version__

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
@click.argument("blocks", type=click.Path(path_type=Path, dir_okay=False))
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
@click.option("--resume", is_flag=True, help="Finish a run that was interrupted.")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
def run(
    blocks: Path,
    config: Path | None,
    workdir: Path | None,
    resume: bool,
    log_level: str,
) -> None:
    """Run the observing BLOCKS (YAML) and reduce them: the Dark mode end to end."""
    from sequencer.blocks import load_blocks  # noqa: PLC0415
    from sequencer.config import load_config  # noqa: PLC0415
    from sequencer.run import Run  # noqa: PLC0415

    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # transitions narrates every callback at INFO; our own log says what matters.
    logging.getLogger("transitions").setLevel(logging.WARNING)
    if workdir is None:
        if resume:
            raise click.UsageError("--resume needs the --workdir of the run to finish")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        workdir = Path("megara-dark-runs") / stamp
    plan = load_blocks(blocks)
    instrument = load_config(config)
    the_run = Run(plan, instrument, workdir, resume=resume)
    signal.signal(signal.SIGINT, the_run.request_abort)
    signal.signal(signal.SIGTERM, the_run.request_abort)
    results = the_run.execute()
    status = EXIT_OK
    for result in results:
        outcome = result.outcome
        if outcome.error is not None:
            verdict, status = f"FAULT: {outcome.error}", EXIT_FAILED
        elif outcome.aborted:
            verdict, status = "ABORTED", EXIT_ABORTED
        else:
            verdict = f"QA {result.qa}" if result.qa else "done"
        click.echo(
            f"{result.block.id}: {outcome.valid_frames}/{result.block.nframes} valid "
            f"frames, {outcome.retaken} retaken; {verdict}"
            + (f"; products in {result.products}" if result.products else "")
        )
    if status == EXIT_OK and len(results) < len(plan):
        status = EXIT_FAILED
    click.echo(f"run folder: {workdir}")
    raise SystemExit(status)


cli.add_command(reduce_command)


def main() -> None:
    """Console-script entry point: user errors become one line, exit status 2."""
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

"""The ``megara-dark`` command line.

Subcommands: ``simulate`` (the hardware simulators). The Dark run, the
reduction and the state diagram arrive as ``run``, ``reduce`` and ``diagram``.
"""

from __future__ import annotations

import os
import sys

import click

from sequencer import __version__


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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="megara-dark")

"""``megara-dark reduce``: reduce numina-style blocks of raw frames.

Like ``numina run``::

    megara-dark reduce OB.yaml --datadir RAW --workdir WORK

One line per block on stdout (id, frames used, QA flag, product folder).
A bad input is one line on stderr naming the file, block or key, and exit
status 2; a processing failure is one line and exit status 1. The click
layer only parses options and reports: the work is
:func:`reduce.batch.run_reduction_file`.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import sys
from pathlib import Path
from typing import NoReturn

import click

from reduce.digests import prefetch_reduction_file
from reduce.errors import InputError, ReductionError, SettingsError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2


def _fail(message: str, status: int) -> NoReturn:
    click.echo(f"megara-dark reduce: error: {message}", err=True)
    raise SystemExit(status)


@click.command("reduce")
@click.argument("ob_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--datadir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="Folder of the raw frames named in the blocks.",
)
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="Folder that receives obsid<ID>_results/ for each block.",
)
@click.option(
    "--method",
    type=click.Choice(["median", "noise_clip"]),
    default="median",
    show_default=True,
    help="median: megaradrp's; noise_clip: reject outliers beyond 5 modelled sigma.",
)
@click.option(
    "--min-frames",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Fewer usable frames in a block is an error.",
)
@click.option(
    "--qc-config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="QC thresholds and light-leak settings (TOML, see docs/products.md).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the products of blocks already reduced in --workdir.",
)
@click.option(
    "--exact",
    is_flag=True,
    help="FITPACK overscan spline (scipy): bit-identical to megaradrp (needs scipy).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Worker threads (default: one per CPU, at most 8).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="WARNING",
    show_default=True,
)
def reduce_command(
    ob_file: Path,
    datadir: Path,
    workdir: Path,
    method: str,
    min_frames: int,
    qc_config: Path | None,
    overwrite: bool,
    exact: bool,
    threads: int | None,
    log_level: str,
) -> None:
    """Reduce the blocks of OB_FILE (YAML) into master biases and darks."""
    # Hash the frames on another core while numpy and astropy are imported
    # (about a third of a second, otherwise spent on one core): the
    # reduction modules are imported here, not at the top of this module.
    digests = prefetch_reduction_file(ob_file, datadir)
    # The imports make ~10^5 long-lived objects: no collection while they
    # are made, then they are frozen out of every later collection.
    gc.disable()
    from reduce.batch import run_reduction_file  # noqa: PLC0415
    from reduce.settings import Options  # noqa: PLC0415

    gc.freeze()
    gc.enable()

    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(message)s",
        stream=sys.stderr,
    )
    try:
        if exact and importlib.util.find_spec("scipy") is None:
            raise SettingsError("--exact needs scipy, which is not installed")
        options = Options.from_qc_file(
            qc_config,
            method="noise_clip" if method == "noise_clip" else "median",
            min_frames=min_frames,
            exact=exact,
            threads=threads,
        )
        results = run_reduction_file(
            ob_file, datadir, workdir, options, digests, overwrite=overwrite
        )
    except (InputError, SettingsError) as err:
        _fail(str(err), EXIT_INPUT)
    except ReductionError as err:
        _fail(str(err), EXIT_FAILED)
    except OSError as err:
        _fail(f"{err.filename or 'I/O'}: {err.strerror or err}", EXIT_FAILED)
    status = EXIT_OK
    for result in results:
        excluded = f", {len(result.excluded)} excluded" if result.excluded else ""
        click.echo(
            f"{result.block_id}: {result.n_used} frames{excluded}; QA {result.qa}; "
            f"{result.product} ({result.seconds:.2f} s)"
        )
        for reason in result.reasons:
            click.echo(f"  {reason}")
    raise SystemExit(status)

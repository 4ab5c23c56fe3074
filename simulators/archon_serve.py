"""``python -m simulators.archon``: the simulated Archon on a loopback TCP port.

Serves one :class:`~simulators.archon.ArchonModel` with the shared
:class:`~simulators.server.DeviceServer` (127.0.0.1 only; one client at a
time, a second connection is accepted and closed at once; a ``FETCH`` streams
its blocks lazily) and prints one JSON line when it is ready::

    {"device": "ccd", "url": "socket://127.0.0.1:40123", "protocol": "archon"}

then serves until SIGINT or SIGTERM and exits 0. Errors in the options are
one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
from pathlib import Path

import click

from drivers.errors import ConfigError
from drivers.files import read_user_text
from simulators.archon import ArchonModel
from simulators.clock import SimClock
from simulators.faults import FaultBook, load_scenario
from simulators.server import DeviceServer
from simulators.stopping import StopSignals
from simulators.synthesis import Detector, DetectorConfig

log = logging.getLogger(__name__)

PROG = "python -m simulators.archon"


def _positive(what: str, value: float, *, zero: bool = False) -> None:
    if not (math.isfinite(value) and (value >= 0 if zero else value > 0)):
        relation = ">= 0" if zero else "> 0"
        raise ConfigError(f"{what} must be a finite number {relation}, got {value!r}")


def serve(model: ArchonModel, server: DeviceServer) -> None:
    """Serve until SIGINT or SIGTERM; the ready line goes to stdout first."""
    signals = StopSignals(threading.Event())
    signals.install()
    server.start()
    try:
        line = {"device": model.name, "url": server.url, "protocol": "archon"}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        signals.wait()
    finally:
        server.close()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="TCP port on 127.0.0.1 (0: any free one; a real Archon listens on 4242).",
)
@click.option(
    "--time-scale",
    type=float,
    default=1.0,
    show_default=True,
    help="Simulated seconds per real second (1000: a 3600 s dark takes 3.6 s).",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Detector seed.")
@click.option(
    "--run-key",
    type=click.IntRange(0, 2**63 - 1),
    default=0,
    show_default=True,
    help="Key of this run's frame noise.",
)
@click.option(
    "--first-frame",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Frame counter at start: the first readout makes frame N+1.",
)
@click.option(
    "--readout-s",
    type=float,
    default=40.0,
    show_default=True,
    help="Time to read the whole CCD, simulated seconds.",
)
@click.option(
    "--ccd-temperature",
    type=float,
    default=163.15,
    show_default=True,
    help="CCD temperature in K (STATUS: MOD2/TEMPA, in C).",
)
@click.option(
    "--light",
    type=float,
    default=0.0,
    show_default=True,
    help="Light at the shutter, e-/s/pix (0: the cover in front of it is shut).",
)
@click.option(
    "--acf",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="ACF to power up with (default: simulators/megara.acf).",
)
@click.option("--blank", is_flag=True, help="Power up with an empty configuration.")
@click.option(
    "--scenario",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML file of faults to inject (see docs/operations.md).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="WARNING",
    show_default=True,
    help="Logging on stderr (DEBUG shows every command and reply).",
)
def archon(
    port: int,
    time_scale: float,
    seed: int,
    run_key: int,
    first_frame: int,
    readout_s: float,
    ccd_temperature: float,
    light: float,
    acf: Path | None,
    blank: bool,
    scenario: Path | None,
    log_level: str,
) -> None:
    """Emulate MEGARA's STA Archon CCD controller (and its shutter)."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _positive("readout time (s)", readout_s)
    _positive("CCD temperature (K)", ccd_temperature)
    _positive("light at the shutter (e-/s/pix)", light, zero=True)
    clock = SimClock(time_scale)
    faults = FaultBook(load_scenario(scenario) if scenario is not None else ())
    model = ArchonModel(
        clock,
        Detector(DetectorConfig(seed=seed)),
        faults=faults,
        acf=None if acf is None else read_user_text(acf, "ACF"),
        blank=blank,
        readout_s=readout_s,
        temperature_k=ccd_temperature,
        light_at_shutter=lambda: light,
        run_key=run_key,
        first_frame=first_frame,
    )
    server = DeviceServer(model, clock, faults, transport="tcp", port=port, seed=seed)
    serve(model, server)


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors become one line on stderr and exit status 2."""
    try:
        archon.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.Abort:
        return 130
    except click.ClickException as err:
        click.echo(f"{PROG}: error: {err.format_message()}", err=True)
        return err.exit_code
    except ConfigError as err:
        click.echo(f"{PROG}: error: {err}", err=True)
        return 2
    except OSError as err:
        click.echo(f"{PROG}: error: {err}", err=True)
        return 1
    return 0

"""``megara-dark simulate``: the CCD controller and both cover halves in one process.

Starts the three device simulators, plus a control port for run-time fault
injection: the CCD controller, an STA Archon (:mod:`simulators.archon`), on a
loopback TCP port as the real one listens on the network; each cover half,
an Alnitak controller on a serial line, on its own pseudo-terminal (default)
or loopback TCP port (``--transport tcp``). It prints one JSON line per device
once all are ready::

    {"device": "ccd", "url": "socket://127.0.0.1:4242", "transport": "tcp",
     "protocol": "archon"}
    {"device": "cover_left", "url": "/dev/pts/6", "transport": "pty"}
    {"device": "cover_right", "url": "/dev/pts/7", "transport": "pty"}
    {"control": "socket://127.0.0.1:40123", "pid": 4242, "time_scale": 1.0,
     "seed": 1, "run_key": 6120386324577046131,
     "token_file": "/tmp/megara-dark-sim-k2j4w1/control.token"}

(the last line is one line). ``run_key`` keys the frames' noise to this
session: ``--run-key N`` sets it, otherwise it is drawn at random, so two
sessions never repeat each other's frames and one can be reproduced by giving
its key again. ``token_file`` holds the secret every control request must
carry (:mod:`simulators.control_token`); it is removed when the simulators
exit.

It then serves until SIGINT or SIGTERM and exits 0. A parent program that
starts it (``megara-dark run``) passes ``--watch-fd FD``, the read end of a pipe
whose write end only the parent holds: when the parent dies, even by SIGKILL,
the kernel closes that end, the read returns end-of-file and the simulators
stop. On Linux the process also asks for SIGTERM when its parent dies
(``prctl(PR_SET_PDEATHSIG)``); the pipe is the portable path and covers a
parent that died before that request was made.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import secrets
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from drivers.errors import ConfigError
from simulators.archon import ArchonModel
from simulators.clock import SimClock
from simulators.control import ControlServer
from simulators.control_token import TokenFile
from simulators.cover import CoverModel
from simulators.device import DeviceModel
from simulators.faults import FaultBook, load_scenario
from simulators.server import DeviceServer, Transport
from simulators.stopping import StopSignals
from simulators.synthesis import Detector, DetectorConfig

log = logging.getLogger(__name__)

PROG = "megara-dark simulate"
#: Run keys are integers in [0, 2**63): they fit a signed 64-bit integer (TOML).
RUN_KEY_LIMIT = 2**63


@dataclass(frozen=True, kw_only=True)
class SimulatorSettings:
    """Everything that shapes one simulator process."""

    transport: Transport = "pty"
    time_scale: float = 1.0
    seed: int = 1
    ccd_temperature_k: float = 163.15
    readout_s: float = 40.0
    cover_motion_s: float = 6.0
    cover_initial: str = "open"
    ambient_light_e_per_s: float = 20.0
    ports: tuple[int, int, int] = (0, 0, 0)
    control_port: int = 0
    first_frame: int = 0  # the CCD's frame counter at start (a resumed run)
    run_key: int = 0  # keys the frames' noise to a run (the CLI draws one)

    def __post_init__(self) -> None:
        checks = {
            "time scale": self.time_scale,
            "CCD temperature (K)": self.ccd_temperature_k,
            "readout time (s)": self.readout_s + 1.0,
            "cover motion time (s)": self.cover_motion_s + 1.0,
            "ambient light (e-/s/pix)": self.ambient_light_e_per_s + 1.0,
        }
        for what, value in checks.items():
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{what} must be a finite positive number")
        if not 0 <= self.run_key < RUN_KEY_LIMIT:
            raise ConfigError(
                f"run key must be an integer in [0, 2**63), got {self.run_key}"
            )


class SimulatorSet:
    """The three device simulators and the control port, wired together."""

    def __init__(
        self, settings: SimulatorSettings, faults: FaultBook, token: TokenFile
    ) -> None:
        self.settings = settings
        self.token = token
        self.clock = SimClock(settings.time_scale)
        self.faults = faults
        self.covers = {
            name: CoverModel(
                name,
                self.clock,
                faults,
                motion_s=settings.cover_motion_s,
                initial="open" if settings.cover_initial == "open" else "closed",
            )
            for name in ("cover_left", "cover_right")
        }
        self.ccd = ArchonModel(
            self.clock,
            Detector(DetectorConfig(seed=settings.seed)),
            faults=faults,
            readout_s=settings.readout_s,
            temperature_k=settings.ccd_temperature_k,
            light_at_shutter=self._light_at_shutter,
            first_frame=settings.first_frame,
            run_key=settings.run_key,
        )
        models: list[DeviceModel] = [
            self.ccd,
            self.covers["cover_left"],
            self.covers["cover_right"],
        ]
        self.servers = [
            DeviceServer(
                model,
                self.clock,
                faults,
                transport="tcp" if model is self.ccd else settings.transport,
                port=port,
                seed=settings.seed + i,
            )
            for i, (model, port) in enumerate(zip(models, settings.ports, strict=True))
        ]
        self.control = ControlServer(
            self.clock,
            faults,
            self.describe,
            token=token.token,
            port=settings.control_port,
        )

    def _light_at_shutter(self) -> float:
        """Light reaching the shutter (e-/s/pix): through whatever cover is open."""
        opened = sum(c.open_fraction() for c in self.covers.values()) / 2.0
        return self.settings.ambient_light_e_per_s * opened

    def describe(self) -> dict[str, Any]:
        return {
            server.model.name: {"url": server.url, "commands": server.model.commands}
            for server in self.servers
        }

    def start(self) -> None:
        for server in self.servers:
            server.start()
        self.control.start()

    def close(self) -> None:
        for server in self.servers:
            server.close()
        self.control.close()

    def announce(self) -> list[dict[str, Any]]:
        """The JSON lines printed when the simulators are ready."""
        lines: list[dict[str, Any]] = [
            {
                "device": server.model.name,
                "url": server.url,
                "transport": server.transport,
                **({"protocol": "archon"} if server.model is self.ccd else {}),
            }
            for server in self.servers
        ]
        lines.append(
            {
                "control": self.control.url,
                "pid": os.getpid(),
                "time_scale": self.settings.time_scale,
                "seed": self.settings.seed,
                "run_key": self.settings.run_key,
                "token_file": str(self.token.path),
            }
        )
        return lines


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def ask_for_signal_on_parent_death(sig: int = signal.SIGTERM) -> bool:
    """Linux: have the kernel send ``sig`` when the parent process dies.

    Returns False where the call is not available (other systems, no libc);
    the watched pipe (:func:`watch_parent`) still covers those.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def watch_parent(fd: int, stop: threading.Event) -> threading.Thread:
    """Set ``stop`` when ``fd`` (the parent's pipe) reaches end of file."""

    def watch() -> None:
        try:
            while os.read(fd, 512):
                pass  # the parent never writes; anything read is ignored
        except OSError as err:
            log.warning("parent pipe fd %d: %s; stopping", fd, err)
        else:
            log.warning("parent process gone (pipe fd %d closed): stopping", fd)
        finally:
            os.close(fd)
        stop.set()

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


def serve(
    settings: SimulatorSettings, faults: FaultBook, *, watch_fd: int | None = None
) -> None:
    """Run the simulators until SIGINT, SIGTERM or end of file on ``watch_fd``."""
    stop = threading.Event()
    signals = StopSignals(stop)
    signals.install()
    if watch_fd is not None:
        ask_for_signal_on_parent_death()
        watch_parent(watch_fd, stop)
    with TokenFile() as token:
        sims = SimulatorSet(settings, faults, token)
        sims.start()
        try:
            for line in sims.announce():
                sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            signals.wait()
        finally:
            sims.close()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--transport",
    type=click.Choice(["pty", "tcp"]),
    default="pty",
    show_default=True,
    help="Cover halves on pseudo-terminals, or TCP ports on 127.0.0.1 (the CCD"
    " controller, an Archon, is always on TCP).",
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
    "--scenario",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML file of faults to inject (see docs/operations.md).",
)
@click.option(
    "--ccd-temperature",
    type=float,
    default=163.15,
    show_default=True,
    help="CCD temperature in K.",
)
@click.option(
    "--readout-s", type=float, default=40.0, show_default=True, help="Readout time (s)."
)
@click.option(
    "--cover-motion-s",
    type=float,
    default=6.0,
    show_default=True,
    help="Time for a cover half to open or close (s).",
)
@click.option(
    "--cover-initial",
    type=click.Choice(["open", "closed"]),
    default="open",
    show_default=True,
    help="Where the cover halves start.",
)
@click.option(
    "--ambient-light",
    type=float,
    default=20.0,
    show_default=True,
    help="Light at the shutter with the cover fully open (e-/s/pix).",
)
@click.option(
    "--port",
    "ports",
    type=int,
    nargs=3,
    default=(0, 0, 0),
    help="TCP ports for ccd, cover_left, cover_right (0: any free port).",
)
@click.option("--control-port", type=int, default=0, help="Control TCP port (0: any).")
@click.option(
    "--first-frame",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="CCD frame counter at start: the first exposure is frame N+1, with the "
    "pixels frame N+1 always has for this seed and run key (a resumed run "
    "continues here).",
)
@click.option(
    "--run-key",
    type=click.IntRange(min=0, max=RUN_KEY_LIMIT - 1),
    default=None,
    help="Key of this run's frame noise, an integer in [0, 2**63) (default: a "
    "random one, printed as run_key in the control line). Same seed, run key "
    "and --first-frame: the same frames.",
)
@click.option(
    "--watch-fd",
    type=int,
    default=None,
    help="Stop when this inherited file descriptor (the read end of the parent's "
    "pipe) reaches end of file, i.e. when the parent program dies.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="WARNING",
    show_default=True,
    help="Logging on stderr (DEBUG shows every command and reply).",
)
def simulate(
    transport: Transport,
    time_scale: float,
    seed: int,
    scenario: Path | None,
    ccd_temperature: float,
    readout_s: float,
    cover_motion_s: float,
    cover_initial: str,
    ambient_light: float,
    ports: tuple[int, int, int],
    control_port: int,
    first_frame: int,
    run_key: int | None,
    watch_fd: int | None,
    log_level: str,
) -> None:
    """Emulate MEGARA's CCD controller and focal-plane cover halves."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    settings = SimulatorSettings(
        transport=transport,
        time_scale=time_scale,
        seed=seed,
        ccd_temperature_k=ccd_temperature,
        readout_s=readout_s,
        cover_motion_s=cover_motion_s,
        cover_initial=cover_initial,
        ambient_light_e_per_s=ambient_light,
        ports=ports,
        control_port=control_port,
        first_frame=first_frame,
        run_key=secrets.randbits(63) if run_key is None else run_key,
    )
    faults = FaultBook(load_scenario(scenario) if scenario is not None else ())
    if watch_fd is not None:
        try:
            os.fstat(watch_fd)
        except OSError as err:
            raise ConfigError(
                f"--watch-fd {watch_fd}: not an open file descriptor ({err.strerror})"
            ) from None
    serve(settings, faults, watch_fd=watch_fd)


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors become one line on stderr and exit status 2."""
    try:
        simulate.main(args=argv, prog_name=PROG, standalone_mode=False)
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

"""Start the built-in simulators as a subprocess and learn their URLs.

The sequencer never imports the simulators: it runs ``python -m simulators``
(the same program as ``megara-dark simulate``) as a child process, reads the
JSON lines it prints when ready, and stops it with SIGTERM at the end.

The simulators never outlive the program that started them, even one killed
with SIGKILL: the child gets ``--watch-fd FD``, the read end of a pipe whose
write end only this process holds; when this process dies the kernel closes
it and the simulators see end of file and stop (see
:mod:`simulators.launcher`). Their stderr is drained by a thread, so that a
chatty simulator can never block on a full pipe.

:func:`megara_dark` finds the installed ``megara-dark`` command, for the
programs (tests, benchmarks) that run it, or ``megara-dark simulate``, as a
user would.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from drivers.errors import DeviceError, MegaraDarkError

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
#: Bytes of the simulators' stderr kept (the tail; enough for any error).
STDERR_KEEP = 64 * 1024


class _Drain:
    """Reads a pipe to its end in a thread, keeping the last bytes."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.pipe = pipe
        self.tail = b""
        self.thread = threading.Thread(target=self._run, name="sim-stderr", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        fd = self.pipe.fileno()
        while chunk := os.read(fd, 65536):
            self.tail = (self.tail + chunk)[-STDERR_KEEP:]

    def text(self, timeout_s: float = 5.0) -> str:
        self.thread.join(timeout_s)
        return self.tail.decode(errors="replace")


@dataclass
class SimulatorProcess:
    """A running simulator set: its process, device URLs and control port."""

    proc: subprocess.Popen[bytes]
    urls: dict[str, str] = field(default_factory=dict)
    control: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    lifeline: int | None = None  # write end of the pipe the simulators watch
    drain: _Drain | None = None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        """Signal the simulators and wait for their exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode

    def close(self) -> None:
        """Stop the simulators if still running and release the pipes."""
        try:
            if self.proc.poll() is None:
                self.stop()
        finally:
            if self.lifeline is not None:
                os.close(self.lifeline)
                self.lifeline = None
            if self.drain is not None:
                self.drain.text()
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_text(self) -> str:
        """What the simulators wrote on stderr (its tail, after they exited)."""
        if self.drain is None:
            return ""
        return self.drain.text()

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def megara_dark() -> list[str]:
    """The installed ``megara-dark`` command: beside this interpreter, else on PATH.

    For programs that run the command as a user would (tests, benchmarks).

    Raises
    ------
    MegaraDarkError
        The command is installed in neither place.
    """
    beside = Path(sys.executable).with_name("megara-dark")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("megara-dark")
    if found is None:
        raise MegaraDarkError(
            f"megara-dark is not installed beside {sys.executable} nor on PATH; "
            "install the project: pip install -e ."
        )
    return [found]


def default_command() -> list[str]:
    """``python -m simulators`` with this interpreter."""
    return [sys.executable, "-m", "simulators"]


def start_simulators(
    args: Sequence[str],
    *,
    command: Sequence[str] | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
    stderr_to_pipe: bool = True,
    tied: bool = True,
) -> SimulatorProcess:
    """Start the simulators with ``args``; return once they announced their URLs.

    With ``tied`` (the default) the simulators stop when this process dies,
    however it dies.

    Raises
    ------
    DeviceError
        The simulators exited or said nothing within ``ready_timeout_s``.
    """
    argv = [*(command or default_command()), *args]
    lifeline: int | None = None
    pass_fds: tuple[int, ...] = ()
    if tied:
        watched, lifeline = os.pipe()  # both close-on-exec; only `watched` passed
        argv += ["--watch-fd", str(watched)]
        pass_fds = (watched,)
    log.info("starting simulators: %s", " ".join(argv))
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if stderr_to_pipe else None,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # a Ctrl-C at the terminal goes to us, not them
            pass_fds=pass_fds,
        )
    except BaseException:
        if lifeline is not None:
            os.close(lifeline)
        raise
    finally:
        for fd in pass_fds:
            os.close(fd)  # the child holds its copy; ours would keep the pipe open
    if proc.stdout is None:  # Popen(stdout=PIPE) always gives one
        raise RuntimeError("simulator started without its stdout pipe")
    sim = SimulatorProcess(proc, lifeline=lifeline)
    if proc.stderr is not None:
        sim.drain = _Drain(proc.stderr)
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + ready_timeout_s
    buf = b""
    try:
        while not sim.control:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or proc.poll() is not None:
                break
            if not selector.select(timeout=remaining):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                record = json.loads(line)
                if "device" in record:
                    sim.urls[record["device"]] = record["url"]
                else:
                    sim.control = record["control"]
                    sim.info = record
    finally:
        selector.close()
    if not sim.control:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr = sim.stderr_text().strip().splitlines()
        sim.close()
        why = stderr[-1] if stderr else "no output"
        raise DeviceError(f"the simulators did not start: {why}")
    log.info("simulators ready (pid %d): %s", proc.pid, sim.urls)
    return sim

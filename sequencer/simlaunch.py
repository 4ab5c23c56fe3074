"""Start the built-in simulators as a subprocess and learn their URLs.

The sequencer never imports the simulators: it runs ``python -m simulators``
(the same program as ``megara-dark simulate``) as a child process, reads the
JSON lines it prints when ready, and stops it with SIGTERM at the end.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from drivers.errors import DeviceError

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0


@dataclass
class SimulatorProcess:
    """A running simulator set: its process, device URLs and control port."""

    proc: subprocess.Popen[bytes]
    urls: dict[str, str] = field(default_factory=dict)
    control: str = ""
    info: dict[str, Any] = field(default_factory=dict)

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
        if self.proc.poll() is None:
            self.stop()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def stderr_text(self) -> str:
        """What the simulators wrote on stderr (after they exited)."""
        if self.proc.stderr is None:
            return ""
        return self.proc.stderr.read().decode(errors="replace")

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_command() -> list[str]:
    """``python -m simulators`` with this interpreter."""
    return [sys.executable, "-m", "simulators"]


def start_simulators(
    args: Sequence[str],
    *,
    command: Sequence[str] | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
    stderr_to_pipe: bool = True,
) -> SimulatorProcess:
    """Start the simulators with ``args``; return once they announced their URLs.

    Raises
    ------
    DeviceError
        The simulators exited or said nothing within ``ready_timeout_s``.
    """
    argv = [*(command or default_command()), *args]
    log.info("starting simulators: %s", " ".join(argv))
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if stderr_to_pipe else None,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # a Ctrl-C at the terminal goes to us, not them
    )
    assert proc.stdout is not None
    sim = SimulatorProcess(proc)
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
    log.info("simulators ready: %s", sim.urls)
    return sim

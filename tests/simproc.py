"""Start ``megara-dark simulate`` as a subprocess and read the URLs it prints."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 60.0


def megara_dark() -> list[str]:
    """The installed ``megara-dark`` command beside this interpreter."""
    beside = Path(sys.executable).with_name("megara-dark")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("megara-dark")
    if found is None:
        raise RuntimeError("megara-dark is not installed: pip install -e '.[test]'")
    return [found]


@dataclass
class SimProcess:
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
            self.stop(signal.SIGKILL)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def stderr_text(self) -> str:
        """What the simulators wrote on stderr (after they exited)."""
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")


def start_simulators(
    *args: str, ready_timeout_s: float = READY_TIMEOUT_S
) -> SimProcess:
    """Start the simulators with ``args`` and wait for their ready lines."""
    proc = subprocess.Popen(
        [*megara_dark(), "simulate", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    sim = SimProcess(proc)
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
        sim.stop(signal.SIGKILL)
        stderr = sim.stderr_text()
        sim.close()
        raise RuntimeError(f"simulators did not become ready: {stderr.strip()}")
    return sim

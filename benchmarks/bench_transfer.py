"""Full-frame FETCH from the simulated Archon against a plain pyserial read.

Requirement (issue "Foundation", carried over to the Archon): one raw frame
(4212 x 4196 x 2 bytes = 35,347,104 bytes) read from the CCD simulator through
pyserial and the codec's :class:`drivers.protocol.archon_framer.Framer`
reaches at least 70 % of the throughput of a plain pyserial read of the same
number of bytes over the same kind of link, measured in the same run.

The Archon is on loopback TCP only (a real one listens on port 4242), so the
link is TCP; the pseudo-terminal of the old CCD protocol has no Archon
equivalent. Its binary blocks carry no checksum, so the per-block CRC of the
old protocol is gone too. Measured, interleaved, ``--repeat`` times:

* reference ``read(N)``: a TCP server thread in this process sends N bytes as
  fast as it can when asked; the client asks and takes them with one pyserial
  ``port.read(N)``;
* reference ``select+read``: the same, read in a loop of ``select`` and
  non-blocking ``port.read(1 MiB)``, the chunks joined at the end;
* simulator: ``megara-dark simulate`` in a subprocess (time scale 100000,
  readout 0 s) holding a 0 s dark taken by the driver; a hand-written loop
  on its own pyserial connection sends ``FETCH`` of the frame's 34,519 blocks
  of 1024 bytes (each behind its ``<xx:`` header) and runs ``select`` +
  ``port.read(1 MiB)`` + ``Framer.feed`` until the framer returns the whole
  reply. Every run's bytes are compared with the first run's after the
  clock stops.

Each path gets one untimed warm-up run first. The reference is the faster of
the two plain reads (median MB/s); the ratio is simulator / reference. Exit
status 1 if the ratio misses the target.

Run: ``python benchmarks/bench_transfer.py [--repeat 7]``. The machine's
cores are shared by the simulator and this client, so expect a spread of
10-20 % between runs; ``--repeat`` trades time for a steadier median.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import serial

from drivers.archon import COLS, ROWS, ArchonCcdController
from drivers.config import CcdConfig
from drivers.interfaces import ControllerState
from drivers.protocol import archon as proto
from drivers.protocol.archon_framer import Framer
from drivers.protocol.archon_status import BufferStatus, FrameStatus, parse_key_values

#: Bytes of one raw MEGARA frame.
FRAME_BYTES = ROWS * COLS * 2
#: FETCH blocks of one frame.
FRAME_BLOCKS = proto.blocks_for(FRAME_BYTES)
#: Minimum throughput ratio simulator / plain read (requirement).
TARGET = 0.70
#: Bytes asked of pyserial per non-blocking read.
READ_SIZE = 1 << 20
#: Wall seconds without a byte before a transfer is declared stalled.
STALL_S = 10.0
#: The request the reference peer waits for before it streams the frame.
GO = b"GO\n"


# -- the plain reference peer ------------------------------------------------


def reference_payload() -> bytes:
    """N seeded pseudo-random bytes (what the reference peer sends)."""
    rng = np.random.default_rng(20261128)
    data: bytes = rng.integers(0, 256, size=FRAME_BYTES, dtype=np.uint8).tobytes()
    return data


class TcpPeer:
    """A loopback TCP server thread that ``sendall``s the payload on :data:`GO`."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        with self._listener:
            self._listener.settimeout(0.1)
            while not self._stop.is_set():
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    continue
                with conn:
                    self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(0.1)
        while not self._stop.is_set():
            try:
                request = conn.recv(64)
            except TimeoutError:
                continue
            if not request:
                return
            if request.endswith(GO):
                conn.settimeout(None)
                conn.sendall(self.payload)
                conn.settimeout(0.1)


@contextlib.contextmanager
def reference_peer(payload: bytes) -> Iterator[str]:
    """Start a reference peer on loopback TCP; yield its pyserial URL."""
    peer = TcpPeer(payload)
    peer.start()
    try:
        yield peer.url
    finally:
        peer.close()


def open_plain(url: str, timeout: float | None) -> Any:
    """A pyserial port on ``url`` (pseudo-terminals and sockets need no baud)."""
    return serial.serial_for_url(url, baudrate=115200, timeout=timeout)


def plain_read_all(port: Any, nbytes: int) -> float:
    """Ask the peer, then one ``port.read(nbytes)``; seconds taken."""
    port.timeout = STALL_S
    start = time.perf_counter()
    port.write(GO)
    data = port.read(nbytes)
    seconds = time.perf_counter() - start
    if len(data) != nbytes:
        raise RuntimeError(f"reference read got {len(data)} of {nbytes} bytes")
    return seconds


def plain_read_loop(port: Any, nbytes: int) -> float:
    """Ask the peer, then ``select`` + non-blocking reads, joined; seconds."""
    port.timeout = 0
    fd = port.fileno()
    chunks: list[bytes] = []
    got = 0
    start = time.perf_counter()
    port.write(GO)
    while got < nbytes:
        if not select.select([fd], [], [], STALL_S)[0]:
            raise RuntimeError(f"reference read stalled at {got} of {nbytes} bytes")
        chunk = port.read(READ_SIZE)
        chunks.append(chunk)
        got += len(chunk)
    data = b"".join(chunks)
    seconds = time.perf_counter() - start
    if len(data) != nbytes:
        raise RuntimeError(f"reference read got {len(data)} of {nbytes} bytes")
    return seconds


# -- the simulator -------------------------------------------------------------


@dataclass(frozen=True)
class Simulator:
    """A running ``megara-dark simulate`` and its device URLs."""

    process: subprocess.Popen[str]
    urls: dict[str, str]


def simulator_command(link: str) -> list[str]:
    """A fast simulator; ``link`` (pty or tcp) is the covers' (the CCD: TCP)."""
    exe = shutil.which("megara-dark", path=os.path.dirname(sys.executable))
    head = [exe, "simulate"] if exe else [sys.executable, "-m", "simulators"]
    return [*head, "--transport", link, "--time-scale", "100000", "--readout-s", "0"]


@contextlib.contextmanager
def simulator(link: str = "tcp") -> Iterator[Simulator]:
    """Run the simulators (covers on ``link``) until the block ends."""
    process = subprocess.Popen(
        simulator_command(link), stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        urls: dict[str, str] = {}
        for line in process.stdout:
            item = json.loads(line)
            if "control" in item:
                break
            urls[item["device"]] = item["url"]
        else:
            raise RuntimeError(f"simulator exited with status {process.wait()}")
        yield Simulator(process, urls)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def take_dark(ccd: ArchonCcdController, exptime_s: float = 0.0) -> None:
    """Expose ``exptime_s`` (dark) and wait until the frame is READY."""
    ccd.expose(exptime_s, dark=True)
    deadline = time.monotonic() + 30.0
    while ccd.status().state is not ControllerState.READY:
        if time.monotonic() > deadline:
            raise RuntimeError("ccd simulator did not reach READY")
        time.sleep(0.002)


class ArchonLine:
    """Commands to the Archon simulator with bare pyserial and the codec."""

    def __init__(self, url: str) -> None:
        self.port = open_plain(url, timeout=5.0)
        self.id = proto.MAX_ID

    def close(self) -> None:
        self.port.close()

    def next_id(self) -> int:
        self.id = proto.next_id(self.id)
        return self.id

    def ask(self, text: str) -> str:
        """Send one command; the payload of its text reply."""
        self.port.timeout = 5.0
        command = proto.Command(self.next_id(), text)
        self.port.write(proto.encode_command(command))
        reply = proto.decode_reply(self.port.read_until(b"\n"))
        if reply.id != command.id or not reply.ok:
            raise RuntimeError(f"ccd simulator answered {reply!r} to {text!r}")
        return reply.text

    def locate(self) -> BufferStatus:
        """The buffer of the latest complete frame, locked."""
        frame = FrameStatus.from_key_values(parse_key_values(self.ask("FRAME")))
        buffer = frame.latest_complete()
        if buffer is None or buffer.nbytes != FRAME_BYTES:
            raise RuntimeError(f"no complete full frame in the simulator: {frame!r}")
        self.ask(proto.lock_command(buffer.number))
        return buffer

    def fetch(self, buffer: BufferStatus) -> tuple[float, bytes]:
        """FETCH the frame by hand (select, read, Framer.feed); seconds and bytes."""
        port = self.port
        port.timeout = 0
        fd = port.fileno()
        framer = Framer()
        reply_id = self.next_id()
        framer.expect_binary(reply_id, FRAME_BLOCKS)
        command = proto.Command(
            reply_id, proto.fetch_command(buffer.base, FRAME_BLOCKS)
        )
        data: bytes | None = None
        start = time.perf_counter()
        port.write(proto.encode_command(command))
        while data is None:
            if not select.select([fd], [], [], STALL_S)[0]:
                got = framer.blocks_received(reply_id)
                raise RuntimeError(f"FETCH stalled after {got} blocks")
            for reply in framer.feed(port.read(READ_SIZE)):
                if reply.id != reply_id or reply.binary is None:
                    raise RuntimeError(f"unexpected {reply!r} during FETCH")
                data = reply.binary
        seconds = time.perf_counter() - start
        if len(data) != FRAME_BLOCKS * proto.BLOCK_SIZE:
            raise RuntimeError(f"FETCH delivered {len(data)} bytes")
        return seconds, data


# -- measuring and reporting -----------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """Throughputs of one path over repeated runs, MB/s (1 MB = 1e6 bytes)."""

    name: str
    rates: tuple[float, ...]

    @classmethod
    def of(cls, name: str, seconds: list[float], nbytes: int) -> Figure:
        return cls(name, tuple(nbytes / s / 1e6 for s in seconds))

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    def row(self) -> str:
        return (
            f"{self.name:42} {self.median:8.1f} "
            f"{min(self.rates):8.1f} {max(self.rates):8.1f}"
        )


FIGURE_HEADER = f"{'path':42} {'median':>8} {'min':>8} {'max':>8}   (MB/s)"


@dataclass(frozen=True)
class Verdict:
    """One requirement: measured ratio against its target."""

    what: str
    ratio: float
    target: float
    above: bool = True  # the ratio must be >= target (else <= target)

    @property
    def passed(self) -> bool:
        return self.ratio >= self.target if self.above else self.ratio <= self.target

    def row(self) -> str:
        sign = ">=" if self.above else "<="
        result = "PASS" if self.passed else "FAIL"
        return f"{self.what:42} {self.ratio:8.2f} {sign} {self.target:4.2f}  {result}"


VERDICT_HEADER = f"{'requirement':42} {'ratio':>8} {'target':>7}  result"


def best_reference(figures: list[Figure]) -> Figure:
    """The fastest plain read (by median): the reference to compare against."""
    return max(figures, key=lambda f: f.median)


def measure(payload: bytes, repeat: int) -> tuple[list[Figure], Verdict]:
    """All figures and the verdict on the requirement.

    The simulator and the reference peer run side by side for the whole
    measurement and the three paths take turns, so that a slow spell of the
    machine hits all of them.
    """
    nbytes = len(payload)
    whole: list[float] = []
    loop: list[float] = []
    sim_s: list[float] = []
    with simulator() as sim, reference_peer(payload) as url:
        ccd = ArchonCcdController.from_config(CcdConfig(url=sim.urls["ccd"]))
        ccd.connect()
        take_dark(ccd)
        ccd.close_link()  # the simulator serves one client at a time
        line = ArchonLine(sim.urls["ccd"])
        port = open_plain(url, timeout=STALL_S)
        try:
            buffer = line.locate()
            # One untimed warm-up of each path (first-touch page faults,
            # socket buffer growth), then the timed runs.
            plain_read_all(port, nbytes)
            plain_read_loop(port, nbytes)
            first = line.fetch(buffer)[1]
            for _ in range(repeat):
                whole.append(plain_read_all(port, nbytes))
                loop.append(plain_read_loop(port, nbytes))
                seconds, data = line.fetch(buffer)
                if data != first:
                    raise RuntimeError("two FETCHes of one buffer differ")
                sim_s.append(seconds)
        finally:
            port.close()
            line.close()
    references = [
        Figure.of("plain pyserial read(N), TCP peer", whole, nbytes),
        Figure.of("plain pyserial select+read(1 MiB), TCP peer", loop, nbytes),
    ]
    measured = Figure.of("simulator FETCH + Framer.feed", sim_s, FRAME_BYTES)
    reference = best_reference(references)
    verdict = Verdict(
        "simulator / best plain read", measured.median / reference.median, TARGET
    )
    return [*references, measured], verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per path")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    payload = reference_payload()
    print(
        f"frame: {FRAME_BYTES} bytes ({FRAME_BLOCKS} FETCH blocks), loopback TCP;"
        f" {args.repeat} runs per path; MB = 1e6 bytes of frame"
    )
    figures, verdict = measure(payload, args.repeat)
    print(FIGURE_HEADER)
    for figure in figures:
        print(figure.row())
    print()
    print(VERDICT_HEADER)
    print(verdict.row())
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())

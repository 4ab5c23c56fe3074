"""Full-frame transfer from the CCD simulator against a plain pyserial read.

Requirement (issue "Foundation"): one raw frame (4212 x 4196 x 2 bytes =
35,347,104 bytes) read from the CCD simulator through pyserial, the codec's
:meth:`drivers.protocol.ccd.Framer.feed_decoded` and a CRC check of every
block reaches at least 70 % of the throughput of a plain pyserial read of the
same number of bytes over the same kind of link, measured in the same run.

For each link (a pseudo-terminal, then loopback TCP) the script measures,
interleaved, ``--repeat`` times:

* reference ``read(N)``: a peer thread in this process (writing to a pty
  master, or a TCP server thread) sends N bytes as fast as it can when asked;
  the client asks and takes them with one pyserial ``port.read(N)``;
* reference ``select+read``: the same, read in a loop of ``select`` and
  non-blocking ``port.read(1 MiB)``, the chunks joined at the end;
* simulator: ``megara-dark simulate`` in a subprocess (time scale 100000,
  readout 0 s) holding a 0 s DARK whose frame was already synthesised by a
  first FRAME (not timed); the client sends ``READ`` and runs a hand-written
  loop (``select`` + ``port.read(1 MiB)`` + ``feed_decoded`` + ``crc_ok`` per
  block) until ``OK READ 540``, then joins the payloads. The whole-frame CRC
  is checked after the clock stops.

Each path gets one untimed warm-up run first. The reference is the faster of
the two plain reads (median MB/s); the ratio is simulator / reference. The
table lists medians with the min-max spread. Exit status 1 if a ratio misses
the target.

Run: ``python benchmarks/bench_transfer.py [--repeat 7] [--links pty,tcp]``.
The machine's cores are shared by the simulator and this client, so expect a
spread of 10-20 % between runs; ``--repeat`` trades time for a steadier median.
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
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import serial

from drivers.protocol import ccd as proto

#: Bytes of one raw MEGARA frame.
FRAME_BYTES = proto.FRAME_BYTES
#: Minimum throughput ratio simulator / plain read (requirement).
TARGET = 0.70
#: Bytes asked of pyserial per non-blocking read.
READ_SIZE = 1 << 20
#: Wall seconds without a byte before a transfer is declared stalled.
STALL_S = 10.0
#: The request a reference peer waits for before it streams the frame.
GO = b"GO\n"
LINKS = ("pty", "tcp")


# -- plain reference peers ---------------------------------------------------


def reference_payload() -> bytes:
    """N seeded pseudo-random bytes (what the reference peers send)."""
    rng = np.random.default_rng(20261128)
    data: bytes = rng.integers(0, 256, size=FRAME_BYTES, dtype=np.uint8).tobytes()
    return data


class _Peer:
    """A thread that sends ``payload`` whole each time it reads :data:`GO`."""

    url: str

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        raise NotImplementedError


class PtyPeer(_Peer):
    """Writes to the master side of a raw pseudo-terminal (``os.write``)."""

    def __init__(self, payload: bytes) -> None:
        super().__init__(payload)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave, termios.TCSANOW)
        self.url = os.ttyname(self._slave)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self._master], [], [], 0.1)
                if ready and os.read(self._master, 64).endswith(GO):
                    view = memoryview(self.payload)
                    while view:
                        view = view[os.write(self._master, view) :]
        finally:
            os.close(self._master)
            os.close(self._slave)


class TcpPeer(_Peer):
    """A loopback TCP server thread that ``sendall``s the payload."""

    def __init__(self, payload: bytes) -> None:
        super().__init__(payload)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self._listener.getsockname()[1]}"

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
def reference_peer(link: str, payload: bytes) -> Iterator[str]:
    """Start a reference peer on ``link`` (pty or tcp); yield its pyserial URL."""
    peer: _Peer = PtyPeer(payload) if link == "pty" else TcpPeer(payload)
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
    """The command line of a fast simulator on ``link`` (pty or tcp)."""
    exe = shutil.which("megara-dark", path=os.path.dirname(sys.executable))
    head = [exe, "simulate"] if exe else [sys.executable, "-m", "simulators"]
    return [
        *head,
        "--transport",
        link,
        "--time-scale",
        "100000",
        "--readout-s",
        "0",
    ]


@contextlib.contextmanager
def simulator(link: str) -> Iterator[Simulator]:
    """Run the simulators on ``link`` until the block ends."""
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


class CcdLine:
    """Commands to the CCD simulator with bare pyserial and the codec."""

    def __init__(self, url: str) -> None:
        self.port = open_plain(url, timeout=5.0)
        self.mid = 0

    def close(self) -> None:
        self.port.close()

    def next_mid(self) -> int:
        self.mid = proto.next_mid(self.mid)
        return self.mid

    def ask(self, make: Callable[[int], proto.Command]) -> proto.DeviceReply:
        """Send one command; return its (single-line) decoded reply."""
        self.port.timeout = 5.0
        command = make(self.next_mid())
        self.port.write(proto.encode_command(command))
        reply = proto.decode_reply(self.port.read_until(b"\n"))
        if reply.mid != command.mid or isinstance(reply, proto.ErrorReply):
            raise RuntimeError(f"ccd simulator answered {reply!r} to {command!r}")
        return reply

    def prepare_frame(self) -> proto.FrameInfo:
        """Take a 0 s dark and make the simulator synthesise it (FRAME)."""
        self.ask(lambda mid: proto.Expose(mid, 0.0, proto.ExposureKind.DARK))
        deadline = time.monotonic() + 30.0
        while True:
            status = self.ask(proto.GetStatus)
            assert isinstance(status, proto.Status)
            if status.state is proto.ControllerState.READY:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"ccd simulator not READY: {status!r}")
            time.sleep(0.01)
        info = self.ask(proto.GetFrame)
        assert isinstance(info, proto.FrameInfo)
        if info.nbytes != FRAME_BYTES:
            raise RuntimeError(f"simulator frame has {info.nbytes} bytes")
        return info

    def read_frame(self, info: proto.FrameInfo) -> tuple[float, bytes]:
        """READ all blocks by hand (framer + CRC per block); seconds and bytes."""
        port = self.port
        port.timeout = 0
        fd = port.fileno()
        framer = proto.Framer()
        payloads: list[bytes] = []
        mid = self.next_mid()
        start = time.perf_counter()
        port.write(proto.encode_command(proto.Read(mid)))
        done = False
        while not done:
            if not select.select([fd], [], [], STALL_S)[0]:
                raise RuntimeError(f"READ stalled after {len(payloads)} blocks")
            for reply in framer.feed_decoded(port.read(READ_SIZE)):
                if isinstance(reply, proto.DataBlock):
                    if not reply.crc_ok:
                        raise RuntimeError(f"block {reply.index} failed its CRC")
                    payloads.append(reply.payload)
                elif isinstance(reply, proto.ReadDone):
                    done = True
                else:
                    raise RuntimeError(f"unexpected {reply!r} during READ")
        data = b"".join(payloads)
        seconds = time.perf_counter() - start
        if len(payloads) != info.blocks or proto.crc32(data) != info.crc:
            raise RuntimeError("READ delivered a frame that fails its frame CRC")
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

    def row(self, link: str) -> str:
        return (
            f"{link:4} {self.name:38} {self.median:8.1f} "
            f"{min(self.rates):8.1f} {max(self.rates):8.1f}"
        )


FIGURE_HEADER = f"{'link':4} {'path':38} {'median':>8} {'min':>8} {'max':>8}"


@dataclass(frozen=True)
class Verdict:
    """One requirement: measured ratio against its target."""

    link: str
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
        return (
            f"{self.link:4} {self.what:38} {self.ratio:8.2f} "
            f"{sign} {self.target:4.2f}  {result}"
        )


VERDICT_HEADER = f"{'link':4} {'requirement':38} {'ratio':>8} {'target':>7}  result"


def best_reference(figures: list[Figure]) -> Figure:
    """The fastest plain read (by median): the reference to compare against."""
    return max(figures, key=lambda f: f.median)


def run_link(link: str, payload: bytes, repeat: int) -> tuple[list[Figure], Verdict]:
    """All figures for one link and the verdict on the requirement.

    The simulator and the reference peer run side by side for the whole
    measurement and the three paths take turns, so that a slow spell of the
    machine hits all of them.
    """
    nbytes = len(payload)
    whole: list[float] = []
    loop: list[float] = []
    sim_s: list[float] = []
    with simulator(link) as sim, reference_peer(link, payload) as url:
        line = CcdLine(sim.urls["ccd"])
        port = open_plain(url, timeout=STALL_S)
        try:
            info = line.prepare_frame()
            # One untimed warm-up of each path (first-touch page faults,
            # socket buffer growth), then the timed runs.
            plain_read_all(port, nbytes)
            plain_read_loop(port, nbytes)
            line.read_frame(info)
            for _ in range(repeat):
                whole.append(plain_read_all(port, nbytes))
                loop.append(plain_read_loop(port, nbytes))
                sim_s.append(line.read_frame(info)[0])
        finally:
            port.close()
            line.close()
    references = [
        Figure.of("plain pyserial read(N)", whole, nbytes),
        Figure.of("plain pyserial select+read(1 MiB)", loop, nbytes),
    ]
    measured = Figure.of("simulator READ+feed_decoded+CRC", sim_s, FRAME_BYTES)
    reference = best_reference(references)
    verdict = Verdict(
        link, "simulator / best plain read", measured.median / reference.median, TARGET
    )
    return [*references, measured], verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per path")
    parser.add_argument(
        "--links", default=",".join(LINKS), help="comma-separated: pty,tcp"
    )
    args = parser.parse_args()
    links = [name for name in args.links.split(",") if name]
    if not links or any(name not in LINKS for name in links) or args.repeat < 1:
        parser.error("--links takes pty and/or tcp; --repeat must be >= 1")
    payload = reference_payload()
    print(f"frame: {FRAME_BYTES} bytes; {args.repeat} runs per path; MB = 1e6 bytes")
    print(FIGURE_HEADER)
    verdicts = []
    for link in links:
        figures, verdict = run_link(link, payload, args.repeat)
        for figure in figures:
            print(figure.row(link), flush=True)
        verdicts.append(verdict)
    print()
    print(VERDICT_HEADER)
    for verdict in verdicts:
        print(verdict.row())
    return 0 if all(v.passed for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Our Archon driver against a plain socket (FETCH) and sdss-archon (connect).

Issue 14, item 6, measured against one ``python -m simulators.archon --port 0
--time-scale 1000`` subprocess holding a 1 s dark (1 ms of wall time), every
path in the same run, taking turns (the order rotating from run to run):

1. Fetch of the full frame (35,347,104 bytes, 34,519 blocks of 1024 bytes,
   each behind its ``<xx:`` header):

   * ``ArchonCcdController.read_frame()``: FRAME, LOCK, FETCH framed into one
     buffer, FRAME again, LOCK0, the big-endian pixel array;
   * the bare ``ArchonLink.fetch()`` of the same buffer (FETCH read straight
     into its rows, headers checked);
   * the reference: a plain ``socket`` on a connection of its own sends the
     same FETCH line and ``recv_into``\\s a preallocated buffer until the
     exact number of bytes has come (headers and all; nothing checked).

   The simulator serves one client at a time: the driver's connection is
   closed while the plain one is open (connecting is not timed). The first,
   untimed run of each path checks that the driver's pixels are the plain
   read's payloads. Throughput is frame bytes per second on every path, so
   a ratio is a ratio of times. Target: the driver (``read_frame()``) at
   least 70 % of the plain read's throughput (medians).

2. Connecting and reading the configuration: ``ArchonCcdController.connect()``
   (SYSTEM, STATUS, the configuration read with RCONFIG in pipelined windows
   of 64 lines until a window comes back empty, the timing core reset)
   against sdss-archon's ``ArchonController.start()`` (its RCONFIG of all
   16384 lines in chunks of 100, the window parameters and a reset), each
   from opening the TCP connection to the end of the call, alternating on
   the same simulator (the first run of each, untimed, counts the command
   lines sent). Ours stops at the first window of 64 empty lines,
   sdss-archon reads all 16384 lines whatever they hold: the ratio compares
   the two clients as they are, not the same work.

Run: ``python benchmarks/bench_archon.py [--repeat 5]``. Prints medians
(min-max) and the ratios. The target is reported, not enforced: the exit
status is 0 whatever the ratios (1 only if a path fails or the bytes
differ). Needs the test extra (``pip install -e '.[test]'``: sdss-archon).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import selectors
import socket
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from bench_transfer import (
    FIGURE_HEADER,
    FRAME_BLOCKS,
    FRAME_BYTES,
    STALL_S,
    VERDICT_HEADER,
    Figure,
    Verdict,
    take_dark,
)

from drivers.archon import ArchonCcdController
from drivers.config import CcdConfig
from drivers.protocol import archon as proto
from drivers.protocol.archon_status import BufferStatus, FrameStatus, parse_key_values
from drivers.transport import SerialLink

#: Smallest fetch throughput of the driver, as a fraction of the plain read's.
TARGET = 0.70
#: The dark the frame comes from, simulated seconds (1 ms at time scale 1000).
EXPTIME_S = 1.0
#: Bytes of one FETCH block on the wire.
WIRE_BLOCK = proto.BINARY_HEADER_SIZE + proto.BLOCK_SIZE
#: The name of the reference path.
REFERENCE = "plain socket FETCH + recv_into (reference)"


@contextlib.contextmanager
def archon_simulator() -> Iterator[str]:
    """Run ``python -m simulators.archon`` at time scale 1000; yield its URL."""
    argv = [sys.executable, "-m", "simulators.archon", "--port", "0"]
    process = subprocess.Popen(
        [*argv, "--time-scale", "1000"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout=60.0):
                raise RuntimeError("the Archon simulator did not announce itself")
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the simulator exited with status {process.wait()}")
        yield str(json.loads(line)["url"])
    finally:
        process.terminate()
        try:
            process.wait(timeout=20.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def host_port(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("socket://").rpartition(":")
    return host, int(port)


# -- 1. fetch ------------------------------------------------------------------


def plain_fetch(url: str, buffer: BufferStatus) -> tuple[float, bytearray]:
    """FETCH on a plain socket, ``recv_into`` until every byte is in; seconds."""
    nbytes = FRAME_BLOCKS * WIRE_BLOCK
    data = bytearray(nbytes)
    view = memoryview(data)
    line = proto.encode_command(
        proto.Command(0, proto.fetch_command(buffer.base, FRAME_BLOCKS))
    )
    with socket.create_connection(host_port(url), timeout=STALL_S) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        got = 0
        start = time.perf_counter()
        sock.sendall(line)
        while got < nbytes:
            count = sock.recv_into(view[got:])
            if not count:
                raise RuntimeError(f"the simulator closed after {got} bytes")
            got += count
        seconds = time.perf_counter() - start
    if data[:4] != b"<00:" or data[-WIRE_BLOCK:][:4] != b"<00:":
        raise RuntimeError(f"plain FETCH got {bytes(data[:8])!r}...")
    return seconds, data


def driver_read(ccd: ArchonCcdController) -> tuple[float, Any]:
    """Seconds of one ``read_frame()`` and its pixels; one FETCH expected."""
    start = time.perf_counter()
    readout = ccd.read_frame()
    seconds = time.perf_counter() - start
    if readout.rounds != 1 or readout.pixels.nbytes != FRAME_BYTES:
        raise RuntimeError(f"read_frame() needed {readout.rounds} transfers")
    return seconds, readout.pixels


def link_fetch(ccd: ArchonCcdController, buffer: BufferStatus) -> float:
    """Seconds of one bare ``ArchonLink.fetch`` of the frame's blocks."""
    rows = np.empty((FRAME_BLOCKS, WIRE_BLOCK), dtype=np.uint8)
    start = time.perf_counter()
    ccd.archon.fetch(buffer.base, rows)  # raises unless every block came whole
    return time.perf_counter() - start


def check_same(plain: bytearray, pixels: Any) -> None:
    """The plain read's payloads are the driver's pixels (little-endian)."""
    blocks = np.frombuffer(plain, dtype=np.uint8).reshape(FRAME_BLOCKS, WIRE_BLOCK)
    payload = blocks[:, proto.BINARY_HEADER_SIZE :].reshape(-1)[:FRAME_BYTES]
    if payload.tobytes() != np.asarray(pixels, dtype="<u2").tobytes():
        raise RuntimeError("read_frame() and the plain FETCH differ")


def plain_turn(
    ccd: ArchonCcdController, url: str, buffer: BufferStatus
) -> tuple[float, bytearray]:
    """:func:`plain_fetch` while the driver's connection is closed."""
    ccd.close_link()  # the simulator serves one client at a time
    try:
        return plain_fetch(url, buffer)
    finally:
        ccd.archon.link.open()


def measure_fetch(url: str, repeat: int) -> list[Figure]:
    """The three fetch paths, taking turns (in rotating order) after a warm-up."""
    ccd = ArchonCcdController.from_config(CcdConfig(url=url))
    try:
        ccd.connect()
        take_dark(ccd, EXPTIME_S)
        frame = FrameStatus.from_key_values(
            parse_key_values(ccd.archon.command("FRAME"))
        )
        buffer = frame.latest_complete()
        if buffer is None or buffer.nbytes != FRAME_BYTES:
            raise RuntimeError(f"no complete full frame in the simulator: {frame}")
        pixels = driver_read(ccd)[1]  # the warm-up of each path, checked
        link_fetch(ccd, buffer)
        check_same(plain_turn(ccd, url, buffer)[1], pixels)
        del pixels
        paths: list[tuple[str, Callable[[], float]]] = [
            ("driver read_frame()", lambda: driver_read(ccd)[0]),
            ("bare ArchonLink.fetch()", lambda: link_fetch(ccd, buffer)),
            (REFERENCE, lambda: plain_turn(ccd, url, buffer)[0]),
        ]
        times: dict[str, list[float]] = {name: [] for name, _ in paths}
        for run in range(repeat):
            turn = run % len(paths)
            for name, path in paths[turn:] + paths[:turn]:
                times[name].append(path())
    finally:
        ccd.close_link()
    order = [REFERENCE, *(name for name, _ in paths[:2])]
    return [Figure.of(name, times[name], FRAME_BYTES) for name in order]


# -- 2. connect and read the configuration ---------------------------------------


def sdss_archon() -> Any:
    """sdss-archon's ``archon.controller``, without sdsstools' file warnings."""
    warnings.filterwarnings(
        "ignore",
        r"unclosed file <_io\.TextIOWrapper name='[^']*(archon\.yml|pyproject\.toml)'",
        ResourceWarning,
    )
    import archon.controller  # type: ignore[import-untyped]  # noqa: PLC0415

    return archon.controller


class CountingLink(SerialLink):
    """A link that counts the command lines written through it."""

    def __init__(self, url: str) -> None:
        super().__init__(url, device="ccd")
        self.lines = 0

    def write(self, data: bytes) -> None:
        self.lines += data.count(b"\n")
        super().write(data)


def ours_connect(url: str, *, count: bool = False) -> tuple[float, int]:
    """Seconds of ``connect()`` on a fresh driver; the lines sent if ``count``."""
    link = CountingLink(url) if count else SerialLink(url, device="ccd")
    ccd = ArchonCcdController(link, CcdConfig(url=url))
    start = time.perf_counter()
    ccd.connect()
    seconds = time.perf_counter() - start
    ccd.close_link()
    return seconds, link.lines if isinstance(link, CountingLink) else 0


async def sdss_start(url: str, *, count: bool = False) -> tuple[float, int]:
    """Seconds of sdss-archon's ``start()``; the commands sent if ``count``."""
    controller = sdss_archon().ArchonController("megara", *host_port(url))
    sent: list[str] = []
    if count:
        send = controller.send_command

        def counted(text: str, *args: Any, **kwargs: Any) -> Any:
            sent.append(text)
            return send(text, *args, **kwargs)

        controller.send_command = counted
    try:
        start = time.perf_counter()
        await controller.start()
        return time.perf_counter() - start, len(sent)
    finally:
        await controller.stop()


def measure_connect(
    url: str, repeat: int
) -> tuple[list[float], list[float], tuple[int, int]]:
    """``connect()`` and ``start()`` seconds, alternating after a warm-up.

    The warm-up counts the command lines each sends (not timed).
    """
    ours_lines = ours_connect(url, count=True)[1]
    theirs_lines = asyncio.run(sdss_start(url, count=True))[1]
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(repeat):
        ours.append(ours_connect(url)[0])
        theirs.append(asyncio.run(sdss_start(url))[0])
    return ours, theirs, (ours_lines, theirs_lines)


def seconds_row(name: str, samples: list[float]) -> str:
    return (
        f"{name:42} {statistics.median(samples):8.3f} "
        f"{min(samples):8.3f} {max(samples):8.3f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per path")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    with archon_simulator() as url:
        fetches = measure_fetch(url, args.repeat)
        ours, theirs, sent = measure_connect(url, args.repeat)
    plain, read, bare = fetches  # the reference first
    print(
        f"1. fetch of one frame: {FRAME_BYTES} bytes in {FRAME_BLOCKS} blocks,"
        f" loopback TCP, {args.repeat} runs per path; MB = 1e6 bytes of frame"
    )
    print(FIGURE_HEADER)
    print("\n".join(f.row() for f in fetches))
    verdicts = [
        Verdict("read_frame() / plain socket", read.median / plain.median, TARGET),
        Verdict(
            "ArchonLink.fetch() / plain socket", bare.median / plain.median, TARGET
        ),
    ]
    print()
    print(VERDICT_HEADER + " (reported, not enforced)")
    print("\n".join(v.row() for v in verdicts))
    print(f"\n2. connect and read the configuration, {args.repeat} runs each")
    print(f"{'path':42} {'median':>8} {'min':>8} {'max':>8}   (seconds)")
    print(seconds_row("ours: ArchonCcdController.connect()", ours))
    print(seconds_row("sdss-archon: ArchonController.start()", theirs))
    print(f"command lines sent: ours {sent[0]}, sdss-archon {sent[1]}")
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"ours / sdss-archon (medians): {ratio:.3f} ({1 / ratio:.1f} x faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

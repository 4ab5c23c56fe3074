"""Driver overhead: command round trips and full-frame readout vs plain pyserial.

Requirements (issue "Drivers", carried over to the Archon), measured against
``megara-dark simulate`` (time scale 100000, readout 0 s) in the same run as
their references:

1. Round trip of ``ArchonCcdController.status()`` over loopback TCP (the
   Archon's link): ``STATUS`` then ``FRAME``, each waited for, parsed into
   the driver's state. Reference: the same two command lines
   (``b'>00STATUS\\n'``, ``b'>01FRAME\\n'``) written with plain pyserial on
   a connection of its own, each reply read back with ``port.read_until(
   b'\\n')`` or with ``select`` + non-blocking ``port.read(4096)`` until LF;
   the faster (by median) is the reference. The simulator serves one client
   at a time, so each path connects for its block of 100 calls and closes
   after it (untimed). The same for the cover driver,
   ``SerialCoverHalf.status()`` against a plain ``b'>S000\\n'``, on a
   second descriptor of the same pseudo-terminal. The driver's median may
   be at most 20 % longer than the reference's. The 99th percentiles are
   printed for information: on a shared two-core machine they measure the
   scheduler more than the code.
2. ``ArchonCcdController.read_frame()`` (FRAME, LOCK, FETCH of 34,519 blocks
   framed into one buffer, FRAME again, LOCK0, big-endian pixels) over
   loopback TCP, against a plain pyserial read of the same 35,347,104 bytes
   from a peer thread (the reference of ``bench_transfer.py``): at least
   70 % of its throughput. The paths take turns, after one untimed warm-up
   of each. ``bench_archon.py`` compares the same ``read_frame()`` with a
   plain socket reading the simulator's own FETCH.

Run: ``python benchmarks/bench_driver.py [--calls 2000] [--repeat 5]``. Prints
the tables and exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import select
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bench_transfer import (
    FIGURE_HEADER,
    FRAME_BYTES,
    STALL_S,
    VERDICT_HEADER,
    Figure,
    Verdict,
    best_reference,
    open_plain,
    plain_read_all,
    plain_read_loop,
    reference_payload,
    reference_peer,
    simulator,
    take_dark,
)

from drivers.archon import ArchonCcdController
from drivers.config import CcdConfig, CoverConfig
from drivers.cover import SerialCoverHalf
from drivers.transport import SerialLink

#: Largest driver round trip, as a multiple of the plain one (median).
ROUND_TRIP_TARGET = 1.20
#: Smallest readout throughput, as a fraction of the plain read's.
READOUT_TARGET = 0.70
#: Calls per block when driver and plain round trips alternate.
BLOCK = 100
#: What ``ArchonCcdController.status()`` sends, as plain command lines.
CCD_LINES = (b">00STATUS\n", b">01FRAME\n")
COVER_LINES = (b">S000\n",)

#: A path of round trips: entered around each block, yields the call to time.
Path = Callable[[], contextlib.AbstractContextManager[Callable[[], object]]]


# -- round trips -------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """Round-trip times of one path, seconds."""

    name: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        return statistics.quantiles(self.samples, n=100, method="inclusive")[98]

    def row(self, device: str) -> str:
        return (
            f"{device:5} {self.name:34} {self.median * 1e6:9.0f} "
            f"{self.p99 * 1e6:9.0f} {min(self.samples) * 1e6:9.0f}"
        )


LATENCY_HEADER = (
    f"{'dev':5} {'path':34} {'median':>9} {'p99':>9} {'min':>9}   (microseconds)"
)


def plain_until(port: Any, lines: tuple[bytes, ...]) -> None:
    """Write each line, read its reply with ``read_until(b'\\n')``.

    ``port`` has a timeout of a few seconds (set once: pyserial reconfigures
    the line with ``tcsetattr`` each time the timeout is set).
    """
    for line in lines:
        port.write(line)
        if not port.read_until(b"\n").endswith(b"\n"):
            raise RuntimeError(f"no reply line to {line!r}")


def plain_select(port: Any, lines: tuple[bytes, ...]) -> None:
    """Write each line, ``select`` + non-blocking reads until LF.

    ``port`` has a timeout of 0 (non-blocking reads).
    """
    fd = port.fileno()
    for line in lines:
        port.write(line)
        reply = b""
        while not reply.endswith(b"\n"):
            if not select.select([fd], [], [], 2.0)[0]:
                raise RuntimeError(f"no reply line to {line!r}")
            reply += port.read(4096)


def time_calls(call: Callable[[], object], n: int, into: list[float]) -> None:
    """Append the wall time of each of ``n`` calls of ``call`` to ``into``."""
    clock = time.perf_counter
    for _ in range(n):
        start = clock()
        call()
        into.append(clock() - start)


def plain_paths(url: str, lines: tuple[bytes, ...], reconnect: bool) -> list[Path]:
    """The two plain paths; ``reconnect``: a connection of their own per block."""
    ports: dict[str, Any] = {}

    def path(name: str, timeout: float, how: Callable[[Any], None]) -> Path:
        @contextlib.contextmanager
        def enter() -> Iterator[Callable[[], object]]:
            if name not in ports:
                ports[name] = open_plain(url, timeout=timeout)
            port = ports[name]
            try:
                yield lambda: how(port)
            finally:
                if reconnect:
                    ports.pop(name).close()

        return enter

    return [
        path("until", 2.0, lambda port: plain_until(port, lines)),
        path("select", 0.0, lambda port: plain_select(port, lines)),
    ]


def compare_round_trips(
    device: str, paths: list[Path], n: int
) -> tuple[list[Latency], Verdict]:
    """Driver (first path) vs plain round trips, alternating in blocks."""
    names = [
        f"driver {device}.status()",
        "plain write + read_until(LF)",
        "plain write + select/read(4096)",
    ]
    samples: list[list[float]] = [[] for _ in paths]
    for path in paths:  # warm-up, untimed
        with path() as call:
            time_calls(call, BLOCK, [])
    done = 0
    while done < n:
        size = min(BLOCK, n - done)
        for path, into in zip(paths, samples, strict=True):
            with path() as call:
                time_calls(call, size, into)
        done += size
    figures = [Latency(name, tuple(s)) for name, s in zip(names, samples, strict=True)]
    driver, *plain = figures
    reference = min(plain, key=lambda f: f.median)
    verdict = Verdict(
        f"{device} status(): driver / plain median",
        driver.median / reference.median,
        ROUND_TRIP_TARGET,
        above=False,
    )
    return figures, verdict


def p99_note(figures: list[Latency]) -> str:
    """Ratios printed for information: p99, and the median against each plain."""
    driver, *plain = figures
    reference = min(plain, key=lambda f: f.median)
    each = ", ".join(f"{driver.median / f.median:.2f}" for f in plain)
    return (
        f"information: p99 ratio {driver.p99 / reference.p99:.2f}; "
        f"median ratio to each plain path {each}"
    )


def round_trips(calls: int) -> tuple[list[str], list[Verdict]]:
    """Requirement 1 (CCD over TCP, cover over a pty); table rows and verdicts."""
    rows: list[str] = []
    verdicts: list[Verdict] = []
    with simulator("pty") as sim:
        ccd_url = sim.urls["ccd"]
        ccd = ArchonCcdController.from_config(CcdConfig(url=ccd_url))
        cover_url = sim.urls["cover_left"]
        cover = SerialCoverHalf(
            SerialLink(cover_url, device="cover left"),
            CoverConfig(url=cover_url, name="left"),
        )

        @contextlib.contextmanager
        def ccd_driver() -> Iterator[Callable[[], object]]:
            ccd.archon.link.open()
            try:
                yield ccd.status
            finally:
                ccd.close_link()

        @contextlib.contextmanager
        def cover_driver() -> Iterator[Callable[[], object]]:
            yield cover.status

        try:
            ccd.connect()
            ccd.close_link()
            cover.connect()
            for device, driver, url, lines, reconnect in (
                ("ccd", ccd_driver, ccd_url, CCD_LINES, True),
                ("cover", cover_driver, cover_url, COVER_LINES, False),
            ):
                paths = [driver, *plain_paths(url, lines, reconnect)]
                figures, verdict = compare_round_trips(device, paths, calls)
                rows += [f.row(device) for f in figures]
                rows.append(f"{device:5} {p99_note(figures)}")
                verdicts.append(verdict)
        finally:
            ccd.close_link()
            cover.close_link()
    return rows, verdicts


# -- full-frame readout ----------------------------------------------------------


def driver_read(ccd: ArchonCcdController) -> float:
    """Seconds of one ``read_frame()``; checks that nothing was re-fetched."""
    start = time.perf_counter()
    readout = ccd.read_frame()
    seconds = time.perf_counter() - start
    if readout.rounds != 1 or readout.pixels.nbytes != FRAME_BYTES:
        raise RuntimeError(f"readout needed {readout.rounds} rounds")
    return seconds


def readout(payload: bytes, repeat: int) -> tuple[list[str], Verdict]:
    """Requirement 2 over loopback TCP; table rows and the verdict."""
    nbytes = len(payload)
    whole: list[float] = []
    loop: list[float] = []
    drv: list[float] = []
    with simulator() as sim, reference_peer(payload) as url:
        ccd = ArchonCcdController.from_config(CcdConfig(url=sim.urls["ccd"]))
        port = open_plain(url, timeout=STALL_S)
        try:
            ccd.connect()
            take_dark(ccd)
            plain_read_all(port, nbytes)
            plain_read_loop(port, nbytes)
            driver_read(ccd)
            for _ in range(repeat):
                whole.append(plain_read_all(port, nbytes))
                loop.append(plain_read_loop(port, nbytes))
                drv.append(driver_read(ccd))
        finally:
            port.close()
            ccd.close_link()
    references = [
        Figure.of("plain pyserial read(N), TCP peer", whole, nbytes),
        Figure.of("plain pyserial select+read(1 MiB), TCP peer", loop, nbytes),
    ]
    driver = Figure.of("driver read_frame()", drv, FRAME_BYTES)
    reference = best_reference(references)
    verdict = Verdict(
        "read_frame() / best plain read",
        driver.median / reference.median,
        READOUT_TARGET,
    )
    return [f.row() for f in (*references, driver)], verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="round trips/path")
    parser.add_argument("--repeat", type=int, default=5, help="readouts per path")
    args = parser.parse_args()
    if min(args.calls, args.repeat) < 1:
        parser.error("--calls and --repeat must be >= 1")
    verdicts: list[Verdict] = []
    print(f"round trips (ccd: loopback TCP, cover: pty): {args.calls} calls per path")
    print(LATENCY_HEADER)
    rows, found = round_trips(args.calls)
    print("\n".join(rows), flush=True)
    verdicts += found
    print()
    print(f"full-frame readout: {FRAME_BYTES} bytes, {args.repeat} runs per path")
    print(FIGURE_HEADER)
    rows, verdict = readout(reference_payload(), args.repeat)
    print("\n".join(rows), flush=True)
    verdicts.append(verdict)
    print()
    print(VERDICT_HEADER)
    for verdict in verdicts:
        print(verdict.row())
    return 0 if all(v.passed for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Driver overhead: command round trips and full-frame readout vs plain pyserial.

Requirements (issue "Drivers"), measured against ``megara-dark simulate``
(time scale 100000, readout 0 s) in the same run as their references:

1. Round trip of ``SerialCcdController.status()`` over a pseudo-terminal,
   median and 99th percentile over ``--calls`` calls, against the same bytes
   (``b'>01 STATUS\\n'``, then the reply line) written and read with plain
   pyserial on the same port: the driver's median may be at most 20 % longer.
   The same for the cover driver, ``SerialCoverHalf.status()`` against a plain
   ``b'>S000\\n'``. The plain round trip is measured two ways, with
   ``port.read_until(b'\\n')`` and with ``select`` + non-blocking
   ``port.read(4096)`` until LF; the faster (by median) is the reference.
   Driver and plain calls alternate in blocks of 100 on the same
   pseudo-terminal. The 99th percentiles are printed for information: on a
   shared two-core machine they measure the scheduler more than the code.
2. ``SerialCcdController.read_frame()`` (FRAME, READ, every block CRC-checked
   into a preallocated buffer, whole-frame CRC) over a pseudo-terminal and
   over loopback TCP, against a plain pyserial read of the same 35,347,104
   bytes from a peer thread over the same kind of link (the reference of
   ``bench_transfer.py``): at least 70 % of its throughput. The paths take
   turns, after one untimed warm-up of each.

Run: ``python benchmarks/bench_driver.py [--calls 2000] [--repeat 5]``. Prints
the tables and exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import select
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench_transfer import (
    FIGURE_HEADER,
    FRAME_BYTES,
    LINKS,
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
)

from drivers.ccd import SerialCcdController
from drivers.config import CcdConfig, CoverConfig
from drivers.cover import SerialCoverHalf
from drivers.protocol import ccd as proto
from drivers.transport import SerialLink

#: Largest driver round trip, as a multiple of the plain one (median).
ROUND_TRIP_TARGET = 1.20
#: Smallest readout throughput, as a fraction of the plain read's.
READOUT_TARGET = 0.70
#: Calls per block when driver and plain round trips alternate.
BLOCK = 100


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


def plain_until(port: Any, command: bytes) -> None:
    """Write ``command``, read the reply with ``read_until(b'\\n')``.

    ``port`` has a timeout of a few seconds (set once: pyserial reconfigures
    the line with ``tcsetattr`` each time the timeout is set).
    """
    port.write(command)
    if not port.read_until(b"\n").endswith(b"\n"):
        raise RuntimeError(f"no reply line to {command!r}")


def plain_select(port: Any, command: bytes) -> None:
    """Write ``command``, ``select`` + non-blocking reads until LF.

    ``port`` has a timeout of 0 (non-blocking reads).
    """
    fd = port.fileno()
    port.write(command)
    reply = b""
    while not reply.endswith(b"\n"):
        if not select.select([fd], [], [], 2.0)[0]:
            raise RuntimeError(f"no reply line to {command!r}")
        reply += port.read(4096)


def time_calls(call: Callable[[], object], n: int, into: list[float]) -> None:
    """Append the wall time of each of ``n`` calls of ``call`` to ``into``."""
    clock = time.perf_counter
    for _ in range(n):
        start = clock()
        call()
        into.append(clock() - start)


def compare_round_trips(
    device: str, driver_call: Callable[[], object], url: str, command: bytes, n: int
) -> tuple[list[Latency], Verdict]:
    """Driver vs plain round trips, alternating in blocks on one port."""
    blocking = open_plain(url, timeout=2.0)
    polled = open_plain(url, timeout=0)
    paths: dict[str, tuple[Callable[[], object], list[float]]] = {
        f"driver {device}.status()": (driver_call, []),
        "plain write + read_until(LF)": (lambda: plain_until(blocking, command), []),
        "plain write + select/read(4096)": (
            lambda: plain_select(polled, command),
            [],
        ),
    }
    try:
        for call, _ in paths.values():  # warm-up, untimed
            time_calls(call, BLOCK, [])
        done = 0
        while done < n:
            size = min(BLOCK, n - done)
            for call, samples in paths.values():
                time_calls(call, size, samples)
            done += size
    finally:
        blocking.close()
        polled.close()
    figures = [Latency(name, tuple(samples)) for name, (_, samples) in paths.items()]
    driver, *plain = figures
    reference = min(plain, key=lambda f: f.median)
    verdict = Verdict(
        "pty",
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
    """Requirement 1 on pseudo-terminals; table rows and verdicts."""
    rows: list[str] = []
    verdicts: list[Verdict] = []
    with simulator("pty") as sim:
        ccd_url = sim.urls["ccd"]
        ccd = SerialCcdController(
            SerialLink(ccd_url, device="ccd"), CcdConfig(url=ccd_url)
        )
        cover_url = sim.urls["cover_left"]
        cover = SerialCoverHalf(
            SerialLink(cover_url, device="cover left"),
            CoverConfig(url=cover_url, name="left"),
        )
        try:
            ccd.connect()
            cover.connect()
            for device, call, url, command in (
                ("ccd", ccd.status, ccd_url, b">01 STATUS\n"),
                ("cover", cover.status, cover_url, b">S000\n"),
            ):
                figures, verdict = compare_round_trips(
                    device, call, url, command, calls
                )
                rows += [f.row(device) for f in figures]
                rows.append(f"{device:5} {p99_note(figures)}")
                verdicts.append(verdict)
        finally:
            ccd.close_link()
            cover.close_link()
    return rows, verdicts


# -- full-frame readout ----------------------------------------------------------


def prepare_frame(ccd: SerialCcdController) -> None:
    """A 0 s dark, READY, synthesised by a first FRAME (not timed)."""
    ccd.expose(0.0, dark=True)
    deadline = time.monotonic() + 30.0
    while ccd.status().state is not proto.ControllerState.READY:
        if time.monotonic() > deadline:
            raise RuntimeError("ccd simulator did not reach READY")
        time.sleep(0.01)
    ccd.frame_info()


def driver_read(ccd: SerialCcdController) -> float:
    """Seconds of one ``read_frame()``; checks that nothing was re-fetched."""
    start = time.perf_counter()
    readout = ccd.read_frame()
    seconds = time.perf_counter() - start
    if readout.rounds != 1 or readout.pixels.nbytes != FRAME_BYTES:
        raise RuntimeError(f"readout needed {readout.rounds} rounds")
    return seconds


def readout(link: str, payload: bytes, repeat: int) -> tuple[list[str], Verdict]:
    """Requirement 2 on ``link``; table rows and the verdict."""
    nbytes = len(payload)
    whole: list[float] = []
    loop: list[float] = []
    drv: list[float] = []
    with simulator(link) as sim, reference_peer(link, payload) as url:
        ccd_url = sim.urls["ccd"]
        ccd = SerialCcdController(
            SerialLink(ccd_url, device="ccd"), CcdConfig(url=ccd_url)
        )
        port = open_plain(url, timeout=STALL_S)
        try:
            ccd.connect()
            prepare_frame(ccd)
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
        Figure.of("plain pyserial read(N)", whole, nbytes),
        Figure.of("plain pyserial select+read(1 MiB)", loop, nbytes),
    ]
    driver = Figure.of("driver read_frame()", drv, FRAME_BYTES)
    reference = best_reference(references)
    verdict = Verdict(
        link,
        "read_frame() / best plain read",
        driver.median / reference.median,
        READOUT_TARGET,
    )
    return [f.row(link) for f in (*references, driver)], verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="round trips/path")
    parser.add_argument("--repeat", type=int, default=5, help="readouts per path")
    parser.add_argument(
        "--links", default=",".join(LINKS), help="readout links: pty,tcp"
    )
    args = parser.parse_args()
    links = [name for name in args.links.split(",") if name]
    if any(name not in LINKS for name in links) or min(args.calls, args.repeat) < 1:
        parser.error("--links takes pty and/or tcp; --calls, --repeat must be >= 1")
    verdicts: list[Verdict] = []
    print(f"round trips over a pseudo-terminal: {args.calls} calls per path")
    print(LATENCY_HEADER)
    rows, found = round_trips(args.calls)
    print("\n".join(rows), flush=True)
    verdicts += found
    print()
    print(f"full-frame readout: {FRAME_BYTES} bytes, {args.repeat} runs per path")
    print(FIGURE_HEADER)
    payload = reference_payload()
    for link in links:
        rows_link, verdict = readout(link, payload, args.repeat)
        print("\n".join(rows_link), flush=True)
        verdicts.append(verdict)
    print()
    print(VERDICT_HEADER)
    for verdict in verdicts:
        print(verdict.row())
    return 0 if all(v.passed for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())

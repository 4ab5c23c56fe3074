"""Throughput of the CCD codec's receive path on one full raw frame.

A 35 MB frame (4212 x 4196 big-endian uint16) is encoded as the controller
sends it: 540 DATA blocks of 64 KiB, then ``OK READ 540``. The stream is cut
into reads of a given size (what a serial port or socket hands the driver)
and pushed through

* ``Framer.feed_decoded`` + ``DataBlock.crc_ok`` + joining the payloads into
  the frame (the driver's path),
* ``Framer.feed`` + ``decode_reply`` + CRC + join (the generic path),

against the reference: a plain ``b"".join`` of the same payloads, the least
any receiver must do. Ratios above 1 mean slower than the reference.

Run: ``python benchmarks/bench_codec.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import numpy as np

from drivers.protocol.ccd import (
    COLS,
    DEFAULT_BLOCK_SIZE,
    ROWS,
    DataBlock,
    Framer,
    ReadDone,
    crc32,
    decode_reply,
    encode_data_header,
    encode_reply,
)


def make_stream(block_size: int) -> tuple[bytes, list[bytes]]:
    """A seeded frame's READ stream and its block payloads."""
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 65536, size=(ROWS, COLS), dtype=np.uint16)
    data = frame.astype(">u2").tobytes()
    payloads = [data[i : i + block_size] for i in range(0, len(data), block_size)]
    parts = []
    for index, payload in enumerate(payloads):
        parts.append(encode_data_header(1, index, len(payload), crc32(payload)))
        parts.append(payload)
    parts.append(encode_reply(ReadDone(1, len(payloads))))
    return b"".join(parts), payloads


def best_of(repeat: int, job: Callable[[], int]) -> float:
    """Shortest wall time of ``repeat`` runs of ``job``, seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    return min(times)


def fast_path(reads: list[bytes]) -> int:
    framer = Framer()
    payloads = []
    for chunk in reads:
        for reply in framer.feed_decoded(chunk):
            if isinstance(reply, DataBlock):
                if not reply.crc_ok:
                    raise AssertionError(f"bad CRC in block {reply.index}")
                payloads.append(reply.payload)
    return len(b"".join(payloads))


def generic_path(reads: list[bytes]) -> int:
    framer = Framer()
    payloads = []
    for chunk in reads:
        for frame in framer.feed(chunk):
            reply = decode_reply(frame)
            if isinstance(reply, DataBlock):
                if not reply.crc_ok:
                    raise AssertionError(f"bad CRC in block {reply.index}")
                payloads.append(reply.payload)
    return len(b"".join(payloads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    stream, payloads = make_stream(DEFAULT_BLOCK_SIZE)
    mb = len(stream) / 1e6
    total = sum(len(p) for p in payloads)
    print(f"stream: {mb:.1f} MB, {len(payloads)} blocks of {DEFAULT_BLOCK_SIZE} bytes")
    reference = best_of(args.repeat, lambda: len(b"".join(payloads)))
    crc_only = best_of(args.repeat, lambda: sum(crc32(p) & 1 for p in payloads))
    print(f"reference b''.join of payloads: {mb / reference:8.0f} MB/s")
    print(f"CRC-32 of every payload:        {mb / crc_only:8.0f} MB/s")
    print(f"{'read size':>10} {'path':>8} {'MB/s':>8} {'x join':>8}")
    for read_size in (4096, 65536, 1 << 20):
        reads = [stream[i : i + read_size] for i in range(0, len(stream), read_size)]
        for name, path in (("fast", fast_path), ("generic", generic_path)):
            if path(reads) != total:
                raise AssertionError(f"{name} path lost bytes")
            seconds = best_of(args.repeat, functools.partial(path, reads))
            print(
                f"{read_size:>10} {name:>8} {mb / seconds:8.0f} "
                f"{seconds / reference:8.1f}"
            )


if __name__ == "__main__":
    main()

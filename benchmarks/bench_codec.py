"""Throughput of the Archon codec's receive path on one full raw frame.

A 35 MB frame (4212 x 4196 uint16, little-endian as the Archon holds it) is
encoded as the controller answers ``FETCH``: 34,519 binary blocks, each
``<xx:`` + 1024 bytes, no terminator (the last block padded). The stream is
cut into reads of a given size (what a socket hands the driver) and pushed
through

* ``Framer.expect_binary`` + ``Framer.feed`` (the driver's path: whole blocks
  at hand are checked and copied in one numpy operation), until the framer
  returns the reply holding all the payloads;
* ``decode_reply(block, binary=True)`` for every 1028-byte block cut by hand
  from the joined reads, then a join of the payloads (the generic decoder,
  block by block),

against the reference: a plain ``b"".join`` of the same payloads, the least
any receiver must do. Ratios above 1 mean slower than the reference. The
old protocol's CRC-32 per block has no Archon equivalent (its blocks carry
no checksum), so neither has its column.

Run: ``python benchmarks/bench_codec.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import numpy as np

from drivers.archon import COLS, ROWS
from drivers.protocol.archon import (
    BINARY_HEADER_SIZE,
    BLOCK_SIZE,
    blocks_for,
    decode_reply,
    encode_binary_reply,
)
from drivers.protocol.archon_framer import Framer

#: The message id of the FETCH.
REPLY_ID = 0x2A
#: Bytes of one block on the wire.
BLOCK_FRAME = BINARY_HEADER_SIZE + BLOCK_SIZE


def make_stream() -> tuple[bytes, list[bytes]]:
    """A seeded frame's FETCH stream and its block payloads."""
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 65536, size=(ROWS, COLS), dtype=np.uint16)
    data = frame.astype("<u2").tobytes()
    stream = encode_binary_reply(REPLY_ID, data)
    payloads = [
        stream[at + BINARY_HEADER_SIZE : at + BLOCK_FRAME]
        for at in range(0, len(stream), BLOCK_FRAME)
    ]
    return stream, payloads


def best_of(repeat: int, job: Callable[[], int]) -> float:
    """Shortest wall time of ``repeat`` runs of ``job``, seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    return min(times)


def framer_path(reads: list[bytes], nblocks: int) -> int:
    framer = Framer()
    framer.expect_binary(REPLY_ID, nblocks)
    data: bytes | None = None
    for chunk in reads:
        for reply in framer.feed(chunk):
            data = reply.binary
    if data is None:
        raise AssertionError("the framer returned no reply")
    return len(data)


def generic_path(reads: list[bytes], nblocks: int) -> int:
    buffer = bytearray()
    payloads = []
    for chunk in reads:
        buffer += chunk
        whole = len(buffer) - len(buffer) % BLOCK_FRAME
        for at in range(0, whole, BLOCK_FRAME):
            reply = decode_reply(bytes(buffer[at : at + BLOCK_FRAME]), binary=True)
            if reply.id != REPLY_ID or reply.binary is None:
                raise AssertionError(f"block of another reply: {reply.id:02X}")
            payloads.append(reply.binary)
        del buffer[:whole]
    if len(payloads) != nblocks or buffer:
        raise AssertionError(f"{len(payloads)} blocks, {len(buffer)} bytes left")
    return len(b"".join(payloads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    stream, payloads = make_stream()
    nblocks = blocks_for(ROWS * COLS * 2)
    mb = len(stream) / 1e6
    total = sum(len(p) for p in payloads)
    print(
        f"stream: {mb:.1f} MB, {len(payloads)} blocks of {BLOCK_SIZE} bytes"
        f" + {BINARY_HEADER_SIZE}-byte headers"
    )
    reference = best_of(args.repeat, lambda: len(b"".join(payloads)))
    print(f"reference b''.join of payloads: {mb / reference:8.0f} MB/s (of stream)")
    print(f"{'read size':>10} {'path':>8} {'MB/s':>8} {'x join':>8}")
    for read_size in (4096, 65536, 1 << 20):
        reads = [stream[i : i + read_size] for i in range(0, len(stream), read_size)]
        for name, path in (("framer", framer_path), ("generic", generic_path)):
            if path(reads, nblocks) != total:
                raise AssertionError(f"{name} path lost bytes")
            seconds = best_of(args.repeat, functools.partial(path, reads, nblocks))
            print(
                f"{read_size:>10} {name:>8} {mb / seconds:8.0f} "
                f"{seconds / reference:8.1f}"
            )


if __name__ == "__main__":
    main()

"""Talk to ``megara-dark simulate`` with nothing but pyserial and docs/protocols.md.

These clients deliberately do not import our codecs: they are written from
the document alone, as a new user or a third-party driver would write them,
so that the simulators are checked against the document rather than against
code that shares their assumptions.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Callable

import numpy as np
import pytest
import serial

from tests.docs_exchanges import exchanges
from tests.simproc import SimProcess

pytestmark = pytest.mark.sim

TIME_SCALE = "1000"


@pytest.fixture(params=["pty", "tcp"])
def sim(
    request: pytest.FixtureRequest, simulators: Callable[..., SimProcess]
) -> SimProcess:
    return simulators(
        "--transport",
        request.param,
        "--time-scale",
        TIME_SCALE,
        "--cover-motion-s",
        "6",
        "--readout-s",
        "40",
    )


def line(port: serial.SerialBase, timeout_s: float = 5.0) -> bytes:
    """Read one LF-terminated line."""
    port.timeout = timeout_s
    data = port.read_until(b"\n")
    assert data.endswith(b"\n"), f"no complete line within {timeout_s} s: {data!r}"
    return data


def ask(port: serial.SerialBase, command: bytes) -> bytes:
    port.write(command)
    return line(port)


def test_cover_closes_with_the_public_alnitak_bytes(sim: SimProcess) -> None:
    with serial.serial_for_url(sim.urls["cover_left"], baudrate=9600) as port:
        assert ask(port, b">P000\n") == b"*P98000\n"
        assert ask(port, b">S000\r") == b"*S98002\n"  # open at start, CR accepted
        assert ask(port, b">C000\r\n") == b"*C98000\n"
        assert ask(port, b">S000\n") == b"*S98100\n"  # motor running, moving
        deadline = time.monotonic() + 5.0
        status = b""
        while time.monotonic() < deadline:
            status = ask(port, b">S000\n")
            if status == b"*S98001\n":
                break
            time.sleep(0.002)
        assert status == b"*S98001\n"  # stopped, light off, closed
        version = ask(port, b">V000\n")
        assert re.fullmatch(rb"\*V98\d{3}\n", version)
        assert ask(port, b">X000\n").startswith(b"*?98")  # our error extension


def test_documented_cover_exchanges_at_rest(sim: SimProcess) -> None:
    """Replay the document's first cover exchange (ping, firmware) byte for byte."""
    first = exchanges("cover")[0]
    with serial.serial_for_url(sim.urls["cover_right"], baudrate=9600) as port:
        for direction, data in first.steps:
            if direction == "->":
                port.write(data)
            else:
                assert line(port) == data


def test_ccd_dark_exposure_and_full_readout_from_the_document(
    sim: SimProcess,
) -> None:
    with serial.serial_for_url(sim.urls["ccd"], baudrate=115200) as port:
        assert ask(port, b">01 PING\n").startswith(b"<01 OK MEGARA-CCD ")
        assert ask(port, b">02 EXPOSE 3600.000 DARK\n") == b"<02 OK\n"
        state = b""
        for mid in range(3, 250):
            status = ask(port, b">%02X STATUS\n" % mid)
            fields = dict(f.split(b"=", 1) for f in status.split(b" OK ", 1)[1].split())
            assert fields[b"SHUTTER"] == b"CLOSED"  # a dark keeps it shut
            state = fields[b"STATE"]
            if state == b"READY":
                break
            time.sleep(0.05)
        assert state == b"READY"

        info = ask(port, b">FA FRAME\n")
        assert info.startswith(b"<FA OK FRAME=1 ")
        desc = dict(f.split(b"=", 1) for f in info[len(b"<FA OK ") : -1].split())
        nbytes, block = int(desc[b"BYTES"]), int(desc[b"BLOCKSIZE"])
        nblocks = int(desc[b"BLOCKS"])
        assert (desc[b"ROWS"], desc[b"COLS"], desc[b"BITPIX"]) == (
            b"4212",
            b"4196",
            b"16",
        )
        assert nbytes == 4212 * 4196 * 2
        assert nblocks == -(-nbytes // block)
        assert (desc[b"DARK"], desc[b"SHUTMAX"]) == (b"1", b"CLOSED")

        port.write(b">FB READ\n")
        frame = bytearray(nbytes)
        for k in range(nblocks):
            header = line(port)
            match = re.fullmatch(rb"<FB DATA (\d+) (\d+) ([0-9A-F]{8})\n", header)
            assert match, header
            index, length, crc = int(match[1]), int(match[2]), int(match[3], 16)
            assert index == k
            port.timeout = 5.0
            payload = port.read(length)
            assert len(payload) == length
            assert zlib.crc32(payload) == crc, f"block {k}: CRC mismatch"
            frame[k * block : k * block + length] = payload
        assert line(port) == b"<FB OK READ %d\n" % nblocks
        assert zlib.crc32(frame) == int(desc[b"CRC"], 16)

        # Re-fetching one block gives the same bytes.
        port.write(b">FC READ 7 1\n")
        header = line(port)
        length = int(header.split()[3])
        assert port.read(length) == bytes(frame[7 * block : 7 * block + length])
        assert line(port) == b"<FC OK READ 1\n"
        assert ask(port, b">FD CLEAR\n") == b"<FD OK\n"
        assert ask(port, b">FE FRAME\n").startswith(b"?FE ERR 201 ")

    pixels = np.frombuffer(bytes(frame), dtype=">u2").reshape(4212, 4196)
    overscan = pixels[100:2000, 4146:4196]
    data = pixels[100:2000, 100:4100]
    # An hour's dark sits a few ADU above the bias, far below saturation.
    assert 500 < np.median(overscan) < 5000
    assert 0 < np.median(data) - np.median(overscan) < 20


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (b">10 FOO\n", rb"\?10 ERR 101 .+\n"),
        (b">11 EXPOSE -1 DARK\n", rb"\?11 ERR 102 .+\n"),
        (b">12 EXPOSE 10 GREY\n", rb"\?12 ERR 102 .+\n"),
        (b">1x STATUS\n", rb"\?-- ERR 100 .+\n"),
        (b"hello\n", rb"\?-- ERR 100 .+\n"),
        (b">13 READ\n", rb"\?13 ERR 201 .+\n"),
        (b">14 ABORT\n", rb"\?14 ERR 202 .+\n"),
        (b"\xff\xfe\n", rb"\?-- ERR 100 .+\n"),
        (b">15 " + b"X" * 2000 + b"\n", rb"\?15 ERR 100 .+\n"),
    ],
)
def test_bad_ccd_commands_get_the_protocol_error_reply(
    sim: SimProcess, command: bytes, reply: bytes
) -> None:
    with serial.serial_for_url(sim.urls["ccd"], baudrate=115200) as port:
        assert re.fullmatch(reply, ask(port, command))
        # The controller is still there and answering afterwards.
        assert ask(port, b">20 PING\n").startswith(b"<20 OK ")

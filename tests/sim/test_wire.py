"""Talk to ``megara-dark simulate`` with nothing but pyserial and docs/protocols.md.

These clients deliberately do not import our codecs: they are written from
the document alone, as a new user or a third-party driver would write them,
so that the simulators are checked against the document rather than against
code that shares their assumptions. The cover halves are tried on both of
their transports; the CCD controller, an STA Archon, is always on loopback
TCP, as the real one is on the network.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import serial

from tests.docs_exchanges import exchanges
from tests.simproc import SimProcess

pytestmark = pytest.mark.sim

TIME_SCALE = "1000"
OPTIONS = ("--time-scale", TIME_SCALE, "--cover-motion-s", "6", "--readout-s", "40")
#: MEGARA's frame: 4196 pixels x 4212 lines of 16 bits, in 1024-byte blocks.
WIDTH, HEIGHT = 4196, 4212
FRAME_BYTES = WIDTH * HEIGHT * 2
FRAME_BLOCKS = -(-FRAME_BYTES // 1024)
#: ``BUF1BASE``, ``BUF2BASE``: where FETCH reads buffers 1 and 2.
BUF1, BUF2 = 0xA0000000, 0xC0000000


@pytest.fixture(params=["pty", "tcp"])
def sim(
    request: pytest.FixtureRequest, simulators: Callable[..., SimProcess]
) -> SimProcess:
    return simulators("--transport", request.param, *OPTIONS)


@pytest.fixture
def archon(simulators: Callable[..., SimProcess]) -> Iterator[serial.SerialBase]:
    """A connection to the simulated Archon (its URL: TCP on 127.0.0.1)."""
    url = simulators(*OPTIONS).urls["ccd"]
    assert re.fullmatch(r"socket://127\.0\.0\.1:[0-9]+", url)
    with serial.serial_for_url(url, timeout=5.0) as port:
        yield port


def line(port: serial.SerialBase, timeout_s: float = 5.0) -> bytes:
    """Read one LF-terminated line."""
    port.timeout = timeout_s
    data: bytes = port.read_until(b"\n")
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


class Archon:
    """Commands ``>xxTEXT`` with ids that count up and wrap, as a host sends them."""

    def __init__(self, port: serial.SerialBase) -> None:
        self.port = port
        self.id = 0

    def send(self, text: bytes) -> bytes:
        """Send ``text`` as the next command; its id, as two hex digits."""
        self.id = (self.id + 1) % 256
        self.port.write(b">%02X%s\n" % (self.id, text))
        return b"%02X" % self.id

    def ok(self, text: bytes) -> bytes:
        """The payload of the ``<xx`` reply to ``text``."""
        ident = self.send(text)
        reply = line(self.port)
        assert reply.startswith(b"<" + ident), (text, reply[:80])
        return reply[3:-1]

    def values(self, text: bytes) -> dict[bytes, bytes]:
        """The ``KEY=VALUE`` list answered to ``text`` (STATUS, FRAME)."""
        return dict(token.split(b"=", 1) for token in self.ok(text).split())

    def fetch(self, address: int, nblocks: int) -> bytes:
        """``FETCH``: ``nblocks`` blocks ``<xx:`` + 1024 bytes; their payloads."""
        ident = self.send(b"FETCH%08X%08X" % (address, nblocks))
        self.port.timeout = 30.0
        data = self.port.read(nblocks * 1028)
        assert len(data) == nblocks * 1028, f"{len(data)} bytes of {nblocks} blocks"
        blocks = np.frombuffer(data, dtype=np.uint8).reshape(nblocks, 1028)
        header = np.frombuffer(b"<" + ident + b":", dtype=np.uint8)
        assert (blocks[:, :4] == header).all(), "a block without its header"
        return blocks[:, 4:].tobytes()


def test_ccd_dark_exposure_and_full_readout_from_the_document(
    archon: serial.SerialBase,
) -> None:
    ccd = Archon(archon)
    assert ccd.ok(b"SYSTEM").startswith(b"BACKPLANE_TYPE=")
    # A dark as sdss-archon's expose() starts one: 3600 s, shutter shut.
    assert ccd.ok(b"HOLDTIMING") == b""
    for name in (b"AUTOFLUSH", b"EXPOSURES", b"READOUT", b"ABORTEXPOSURE"):
        assert ccd.ok(b"FASTLOADPARAM %s 0" % name) == b""
    for name, value in ((b"OPENSHUTTER", 0), (b"READOUT", 1), (b"INTCS", 360000)):
        assert ccd.ok(b"FASTLOADPARAM %s %d" % (name, value)) == b""
    assert ccd.ok(b"FASTLOADPARAM EXPOSURES 1") == b""
    assert ccd.ok(b"RELEASETIMING") == b""
    frame: dict[bytes, bytes] = {}
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        assert ccd.values(b"STATUS")[b"MOD2/DINPUTS"] == b"4"  # shut, always
        frame = ccd.values(b"FRAME")
        if frame[b"WBUF"] == b"1" and frame[b"BUF1COMPLETE"] == b"1":
            break
        time.sleep(0.05)
    assert (frame[b"WBUF"], frame[b"BUF1COMPLETE"]) == (b"1", b"1")
    assert int(frame[b"BUF1BASE"]) == BUF1
    assert (frame[b"BUF1FRAME"], frame[b"BUF1SAMPLE"]) == (b"1", b"0")
    assert (int(frame[b"BUF1WIDTH"]), int(frame[b"BUF1HEIGHT"])) == (WIDTH, HEIGHT)
    start, end = (int(frame[b"BUF1%sTIMESTAMP" % e], 16) for e in (b"RE", b"FE"))
    assert end - start == pytest.approx(3600 * 10**8, rel=1e-6)  # ticks of 10 ns

    assert ccd.ok(b"LOCK1") == b""
    assert b"%08X%08X" % (BUF1, FRAME_BLOCKS) == b"A0000000000086D7"  # the doc's
    data = ccd.fetch(BUF1, FRAME_BLOCKS)
    assert ccd.ok(b"LOCK0") == b""
    assert data[FRAME_BYTES:] == b"\xff" * (len(data) - FRAME_BYTES)  # filler
    # Fetching one block again gives the same bytes.
    assert ccd.fetch(BUF1 + 7 * 1024, 1) == data[7 * 1024 : 8 * 1024]
    # Buffer 2 holds no frame: refused.
    ident = ccd.send(b"FETCH%08X%08X" % (BUF2, 1))
    assert line(archon) == b"?" + ident + b"\n"

    pixels = np.frombuffer(data[:FRAME_BYTES], dtype="<u2").reshape(HEIGHT, WIDTH)
    overscan = pixels[100:2000, 4146:4196]
    image = pixels[100:2000, 100:4100]
    # An hour's dark sits a few ADU above the bias, far below saturation.
    assert 500 < np.median(overscan) < 5000
    assert 0 < np.median(image) - np.median(overscan) < 20


def test_documented_archon_exposure_commands(archon: serial.SerialBase) -> None:
    """Replay the document's sdss-archon ``expose(1.0)``, byte for byte but the
    ``STATUS`` reply, whose keys the document shows only some of."""
    (exposure,) = [
        e for e in exchanges("archon") if ("->", b">14HOLDTIMING\n") in e.steps
    ]
    for direction, data in exposure.steps:
        if direction == "->":
            archon.write(data)
            continue
        reply = line(archon)
        if data.startswith(b"<1B"):  # STATUS
            assert reply.startswith(b"<1B")
            assert set(data[3:].split()) <= set(reply[3:].split()), reply
        else:
            assert reply == data


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        # Refused, ?xx: a bad argument, a parameter no PARAMETERn declares, a
        # FETCH of no complete frame, an address in no buffer, no block.
        (b">11FASTLOADPARAM INTCS -1\n", b"?11\n"),
        (b">12LOCK7\n", b"?12\n"),
        (b">13STATUS NOW\n", b"?13\n"),
        (b">14RCONFIG4000\n", b"?14\n"),
        (b">21FASTLOADPARAM NOSUCHPARAMETER 1\n", b"?21\n"),
        (b">15FETCHA000000000000001\n", b"?15\n"),
        (b">16FETCH0000000000000001\n", b"?16\n"),
        (b">17FETCHA000000000000000\n", b"?17\n"),
        (b">18FETCHA0000000\n", b"?18\n"),
        # No reply at all: a verb it does not know, a line it cannot read, a
        # line longer than it keeps (a valid WCONFIG but for its length).
        (b">10FOO\n", None),
        (b">10PING\n", None),
        (b">10status\n", None),
        (b">1xSTATUS\n", None),
        (b">1aSTATUS\n", None),
        (b"hello\n", None),
        (b"\xff\xfe\n", None),
        (b">19SYSTEM\xff\n", None),
        pytest.param(
            b">20WCONFIG3000CONFIG/9=" + b"X" * 200_000 + b"\n", None, id="200 kB"
        ),
    ],
)
def test_bad_ccd_commands_get_the_archon_answer(
    archon: serial.SerialBase, command: bytes, reply: bytes | None
) -> None:
    """``?xx`` for a command it cannot carry out, nothing for one it cannot read."""
    archon.write(command)
    if reply is not None:
        assert line(archon) == reply
    # Still there and answering, and nothing more came before it.
    assert ask(archon, b">7ESTATUS\n").startswith(b"<7EVALID=1 ")
    assert ask(archon, b">7FRCONFIG3000\n") == b"<7F\n"  # nothing written

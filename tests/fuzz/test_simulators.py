"""The simulators answer garbage as their protocols say, and keep serving.

Over a real ``megara-dark simulate`` process (TCP, so that a test can connect
again after a hang-up), garbage lines go to a device, the replies are checked,
and a valid status command must still be answered: a cover answers each line
with ``*?98ccc``; the Archon a bad argument with ``?xx``, a line it cannot
read or a verb it does not know with nothing (docs/protocols.md). In-process,
the Archon's model gets any line, valid or not, in any pieces: it answers
nothing, ``?xx``, ``<xx`` + text or a ``FETCH``'s blocks, and logs no error
(its guard against its own bugs answers ``?xx`` and logs one).
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from logging.handlers import BufferingHandler

import numpy as np
import numpy.typing as npt
import pytest
import serial
from hypothesis import assume, given
from hypothesis import strategies as st

from drivers.errors import ProtocolError
from drivers.protocol import archon, cover
from drivers.protocol.archon import Verb
from drivers.protocol.archon_framer import CommandFramer
from simulators.archon import ArchonModel
from simulators.clock import SimClock
from simulators.device import Reply
from simulators.synthesis import SHAPE
from tests.fuzz.strategies import archon_lines, cuts, fuzz, split
from tests.simproc import SimProcess, control_token, start_simulators

COVER_STATUS = re.compile(rb"\*S98[01]0[0-3]\n")
CCD_STATUS = re.compile(rb"<7EVALID=1 COUNT=[0-9]+ LOG=0 POWER=[0-5] POWERGOOD=1 .+\n")
BLOCK = archon.BINARY_HEADER_SIZE + archon.BLOCK_SIZE


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    process = start_simulators("--transport", "tcp", "--time-scale", "1000")
    try:
        yield process
    finally:
        process.close()


@pytest.fixture(scope="module")
def cover_port(sim: SimProcess) -> Iterator[serial.SerialBase]:
    with serial.serial_for_url(sim.urls["cover_left"], timeout=5.0) as port:
        yield port


@pytest.fixture(scope="module")
def ccd_port(sim: SimProcess) -> Iterator[serial.SerialBase]:
    assert sim.urls["ccd"].startswith("socket://127.0.0.1:")
    with serial.serial_for_url(sim.urls["ccd"], timeout=5.0) as port:
        yield port


def line(port: serial.SerialBase) -> bytes:
    data: bytes = port.read_until(b"\n")
    assert data.endswith(b"\n"), f"no complete reply within 5 s: {data!r}"
    return data


TERMINATOR = st.sampled_from([b"\n", b"\r", b"\r\n"])
#: Bytes of one garbage line: anything but CR and LF, biased to the grammar's.
GARBAGE_BYTE = st.one_of(
    st.integers(0, 255).filter(lambda b: b not in (10, 13)),
    st.sampled_from(list(b">*<?- =0123456789ABCDEFOSPXDATA")),
)


def garbage_lines(max_len: int) -> st.SearchStrategy[list[bytes]]:
    body = st.lists(GARBAGE_BYTE, max_size=max_len).map(bytes)
    return st.lists(st.tuples(body, TERMINATOR).map(b"".join), min_size=1, max_size=6)


@pytest.mark.sim
@fuzz(40)
@given(garbage_lines(48))
def test_cover_answers_garbage_with_error_replies_and_keeps_serving(
    cover_port: serial.SerialBase, lines: list[bytes]
) -> None:
    stream = b"".join(lines)
    frames = cover.Framer().feed(stream)
    codes = []
    for frame in frames:
        try:
            cover.decode_command(frame)
        except cover.BadCommand as err:
            codes.append(err.code)
    assume(len(codes) == len(frames))  # garbage, not a valid command by chance
    cover_port.write(stream)
    replies = [line(cover_port) for _ in frames]
    assert replies == [b"*?98%03d\n" % code.value for code in codes]
    cover_port.write(b">S000\n")
    assert COVER_STATUS.fullmatch(line(cover_port))
    assert cover_port.in_waiting == 0  # one reply per line, nothing more


def refusal(frame: bytes) -> bytes | None:
    """The Archon's answer to a line it does not carry out: b"" (none) or ?xx;
    None to a command it carries out (its answer depends on its state)."""
    try:
        command = archon.decode_command(frame)
    except ProtocolError:
        return b""  # a line it cannot read
    try:
        archon.split_command(command.text)
    except ProtocolError:
        known = any(command.text.startswith(verb.value) for verb in Verb)
        return b"?%02X\n" % command.id if known else b""  # bad argument, or unknown
    return None


def until_status(port: serial.SerialBase) -> bytes:
    """The Archon's replies before the one to ``>7ESTATUS`` (which is checked)."""
    before = b""
    while not (reply := line(port)).startswith(b"<7E"):
        before += reply
    assert CCD_STATUS.fullmatch(reply), reply
    return before


@pytest.mark.sim
@fuzz(40)
@given(st.lists(archon_lines(valid=False), min_size=1, max_size=6))
def test_ccd_answers_garbage_as_the_archon_does_and_keeps_serving(
    ccd_port: serial.SerialBase, lines: list[bytes]
) -> None:
    stream = b"".join(lines) + b"\n"
    answers = [refusal(frame) for frame in CommandFramer().feed(stream)]
    assume(None not in answers)  # garbage, not a valid command by chance
    ccd_port.write(stream + b">7ESTATUS\n")
    assert until_status(ccd_port) == b"".join(a or b"" for a in answers)
    assert ccd_port.in_waiting == 0  # nothing more


@pytest.mark.sim
def test_a_megabyte_without_terminator_is_cut_not_buffered(
    cover_port: serial.SerialBase, ccd_port: serial.SerialBase
) -> None:
    """Endless input is cut: the cover answers one error, the Archon nothing."""
    flood = bytes(range(14, 256)) * 4400  # ~1 MiB, no CR or LF
    cover_port.write(flood + b"\n>S000\n")
    assert line(cover_port) == b"*?98002\n"
    assert COVER_STATUS.fullmatch(line(cover_port))
    # A valid WCONFIG but for its length: cut, so never written.
    ccd_port.write(b">01RCONFIG0000\n")
    before = line(ccd_port)
    ccd_port.write(b">02WCONFIG0000CONFIG/1=" + b"x" * 2**20 + b"\n>7ESTATUS\n")
    assert until_status(ccd_port) == b""
    ccd_port.write(b">01RCONFIG0000\n")
    assert line(ccd_port) == before


# -- the Archon model, in-process -------------------------------------------------


class Zeros:
    """Frames of zeros: cheap (what is fuzzed here is the wire, not pixels)."""

    def frame(self, **_: object) -> npt.NDArray[np.uint16]:
        return np.zeros(SHAPE, dtype=np.uint16)


def archon_with_a_frame() -> tuple[ArchonModel, SimClock]:
    """A fresh model with a complete frame in buffer 1, on a clock that stands."""
    clock = SimClock(scale=1e-9)  # moves only when the test advances it
    model = ArchonModel(clock, Zeros(), readout_s=1.0)
    setup = ["HOLDTIMING", "FASTLOADPARAM READOUT 1", "FASTLOADPARAM EXPOSURES 1"]
    for n, text in enumerate([*setup, "RELEASETIMING"]):
        reply = model.handle(b">%02X%s\n" % (n, text.encode()))
        assert b"".join(reply.chunks) == b"<%02X\n" % n
    clock.advance(5.0)
    return model, clock


@contextmanager
def logged_errors() -> Iterator[list[logging.LogRecord]]:
    """The errors the simulators log meanwhile (an internal error is one)."""
    handler = BufferingHandler(capacity=10**6)
    handler.setLevel(logging.ERROR)
    logging.getLogger("simulators").addHandler(handler)
    try:
        yield handler.buffer
    finally:
        logging.getLogger("simulators").removeHandler(handler)


def fetched_blocks(chunks: Iterable[bytes], header: bytes) -> int:
    """How many binary blocks ``chunks`` hold; each must start with ``header``."""
    count = 0
    for chunk in chunks:
        assert len(chunk) % BLOCK == 0, len(chunk)
        heads = {chunk[at : at + len(header)] for at in range(0, len(chunk), BLOCK)}
        assert heads <= {header}, heads
        count += len(chunk) // BLOCK
    return count


def check_answer(frame: bytes, reply: Reply) -> None:
    """``reply`` is nothing, ``?xx``, ``<xx`` + text, or the blocks of a FETCH."""
    expected = refusal(frame)
    if expected is not None:
        assert b"".join(reply.chunks) == expected, frame[:80]
        return
    command = archon.decode_command(frame)
    verb, _ = archon.split_command(command.text)
    ident = b"%02X" % command.id
    if reply.readout is not None:
        assert verb is Verb.FETCH
        nblocks = archon.parse_fetch(command.text)[1]
        assert fetched_blocks(reply.chunks, b"<" + ident + b":") == nblocks
        return
    data = b"".join(reply.chunks)
    if verb in (Verb.WARMBOOT, Verb.REBOOT):
        assert data == b""
    else:
        text = re.fullmatch(rb"<" + ident + rb"[\x20-\x7e]*\n", data)
        assert data == b"?" + ident + b"\n" or text, (frame[:80], data[:80])


@fuzz(300)
@given(st.lists(archon_lines(), min_size=1, max_size=12), cuts)
def test_archon_model_answers_any_line_as_the_archon_does(
    lines: list[bytes], cut_at: list[int]
) -> None:
    """Valid or not, in any pieces: well-formed answers, no internal error."""
    stream = b"".join(lines) + b"\n"
    model, clock = archon_with_a_frame()
    framer = model.new_framer()
    frames: list[bytes] = []
    with logged_errors() as errors:
        for piece in split(stream, cut_at):
            for frame in framer.feed(piece):
                frames.append(frame)
                check_answer(frame, model.handle(frame))
                clock.advance(0.25)  # readouts run on between commands
        status = b"".join(model.handle(b">7ESTATUS\n").chunks)
        model.wait_synthesis(10.0)
    assert frames == model.new_framer().feed(stream)  # pieces change nothing
    assert CCD_STATUS.fullmatch(status), status
    assert errors == []


#: A value of more decimal digits than Python's int() reads (4300): no
#: example of the fuzz above has one (max_digits), these do.
HUGE = b"9" * 5000


@pytest.mark.parametrize(
    "texts",
    [
        pytest.param([b"LOADPARAM INTCS " + HUGE], id="LOADPARAM"),
        pytest.param([b"FASTLOADPARAM INTCS " + HUGE], id="FAST"),
        pytest.param([b"WCONFIG3000LINECOUNT=" + HUGE, b"APPLYCDS"], id="CDS"),
        pytest.param(
            [b"WCONFIG3000PARAMETER0=IntCS=" + HUGE, b"LOADPARAMS"],
            id="PARAMS",
        ),
    ],
)
def test_a_number_too_long_to_read_is_no_internal_error(texts: list[bytes]) -> None:
    model, _ = archon_with_a_frame()
    with logged_errors() as errors:
        for n, text in enumerate(texts, 0x10):
            reply = b"".join(model.handle(b">%02X%s\n" % (n, text)).chunks)
    assert reply in (b"<%02X\n" % n, b"?%02X\n" % n)
    assert errors == []


#: A valid WCONFIG but for its length, one byte past the limit.
OVERLONG = b">01WCONFIG3000CONFIG/9="
OVERLONG += b"x" * (archon.MAX_TEXT_FRAME - len(OVERLONG) + 1) + b"\n"


@pytest.mark.parametrize(
    "at",
    [
        pytest.param(len(OVERLONG) - 1, id="LF alone"),
        pytest.param(archon.MAX_TEXT_FRAME, id="LF with the last bytes"),
        pytest.param(0, id="all at once"),
    ],
)
def test_a_line_past_the_limit_is_never_carried_out(at: int) -> None:
    """The Archon's framer cuts it (nothing is answered), however it arrives."""
    model, _ = archon_with_a_frame()
    framer = model.new_framer()
    frames = framer.feed(OVERLONG[:at]) + framer.feed(OVERLONG[at:])
    assert all(len(frame) <= archon.MAX_TEXT_FRAME for frame in frames)
    assert [b"".join(model.handle(frame).chunks) for frame in frames] == [b""]
    assert b"".join(model.handle(b">02RCONFIG3000\n").chunks) == b"<02\n"


# -- the control port -------------------------------------------------------------


def control_connection(sim: SimProcess) -> socket.socket:
    host, _, port = sim.control.removeprefix("socket://").rpartition(":")
    conn = socket.create_connection((host, int(port)), timeout=5.0)
    return conn


def ask(conn: socket.socket, data: bytes, buf: bytearray) -> dict[str, object]:
    conn.sendall(data)
    while b"\n" not in buf:
        chunk = conn.recv(65536)
        assert chunk, "the control port hung up"
        buf += chunk
    reply, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    decoded = json.loads(reply)
    assert isinstance(decoded, dict)
    return decoded


def hung_up(conn: socket.socket, buf: bytearray) -> bool:
    """Whether the server closed the connection (after what ``buf`` holds)."""
    try:
        return buf == b"" and conn.recv(1) == b""
    except ConnectionResetError:
        return True


def signed(request: bytes, token: str) -> tuple[bytes, bool]:
    """``request`` with the token added if it is a JSON object; and whether it is."""
    try:
        value = json.loads(request)
    except ValueError:
        return request, False
    if not isinstance(value, dict):
        return request, False
    return json.dumps({**value, "token": token}).encode(), True


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
FAULT_KEYS = st.sampled_from(
    ["device", "kind", "params", "after_commands", "at_time", "on_readout", "times"]
)
REQUESTS = st.one_of(
    st.binary(max_size=100).map(lambda b: b.replace(b"\n", b"")),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(FAULT_KEYS, JSON | st.integers(-(10**400), 10**400)).map(
        lambda f: json.dumps({"op": "inject", "fault": f}).encode()
    ),
)


@pytest.mark.sim
@fuzz(60)
@given(st.lists(st.tuples(REQUESTS, st.booleans()), min_size=1, max_size=5))
def test_control_port_answers_bad_requests_and_keeps_serving(
    sim: SimProcess, requests: list[tuple[bytes, bool]]
) -> None:
    """Signed requests are answered on an open line; unsigned ones close it."""
    token = control_token(sim)
    status = json.dumps({"op": "status", "token": token}).encode() + b"\n"
    for raw, sign in requests:
        request, authorised = signed(raw, token) if sign else (raw, False)
        with control_connection(sim) as conn:
            buf = bytearray()
            reply = ask(conn, request + b"\n", buf)
            assert isinstance(reply.get("ok"), bool)
            if not reply["ok"]:
                assert isinstance(reply.get("error"), str)
            if authorised:
                assert ask(conn, status, buf)["ok"] is True  # still open
            else:
                assert reply["ok"] is False
                assert "token" in str(reply["error"])
                assert hung_up(conn, buf)
    with control_connection(sim) as conn:
        assert ask(conn, status, bytearray())["ok"] is True


@pytest.mark.sim
def test_control_port_survives_hostile_clients(sim: SimProcess) -> None:
    """Deep nesting, huge numbers, an endless line, clients that leave early."""
    token = control_token(sim)
    status = json.dumps({"op": "status", "token": token}).encode() + b"\n"
    with control_connection(sim) as conn:
        buf = bytearray()
        huge = {"device": "ccd", "kind": "short_fetch", "at_time": 10**400}
        request = {"op": "inject", "fault": huge, "token": token}
        assert ask(conn, json.dumps(request).encode() + b"\n", buf)["ok"] is False
        assert ask(conn, status, buf)["ok"] is True  # signed: the line stays open
    with control_connection(sim) as conn:
        buf = bytearray()
        deep = ask(conn, b"[" * 100_000 + b"]" * 100_000 + b"\n", buf)
        assert deep["ok"] is False
        assert hung_up(conn, buf)
    with control_connection(sim) as conn:
        conn.sendall(b"x" * 70_000)
        buf = bytearray()
        assert ask(conn, b"", buf)["ok"] is False  # request line too long
        assert hung_up(conn, buf)
    for _ in range(3):
        with control_connection(sim) as rude:
            rude.sendall(status * 50)
            rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    with control_connection(sim) as conn:
        assert ask(conn, status, bytearray())["ok"] is True

"""The simulators, as real processes, answer garbage with errors and keep serving.

One ``megara-dark simulate`` process per module (TCP, so that a test can also
connect again after a hang-up); every example writes random garbage lines to
a device through pyserial, checks that each line the device frames gets the
protocol's error reply (cover ``*?98ccc``, CCD ``?MID ERR 1xx ...``), and then
that a valid status command still gets a correct reply.

The expected number of replies comes from the framing rules of
docs/protocols.md (one reply per non-empty line, overlong lines cut).
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator

import pytest
import serial
from hypothesis import assume, given
from hypothesis import strategies as st

from drivers.protocol import ccd, cover
from tests.fuzz.strategies import fuzz
from tests.simproc import SimProcess, control_token, start_simulators

pytestmark = pytest.mark.sim

COVER_STATUS = re.compile(rb"\*S98[01]0[0-3]\n")
CCD_STATUS = re.compile(
    rb"<7E OK STATE=[A-Z]+ EXPREQ=[0-9.]+ ELAPSED=[0-9.]+ SHUTTER=[A-Z]+ "
    rb"TEMP=[0-9.]+ FRAME=[0-9]+ DARK=[01]\n"
)


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
    with serial.serial_for_url(sim.urls["ccd"], timeout=5.0) as port:
        yield port


def line(port: serial.SerialBase) -> bytes:
    data = port.read_until(b"\n")
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


@fuzz(40)
@given(garbage_lines(1100))
def test_ccd_answers_garbage_with_error_replies_and_keeps_serving(
    ccd_port: serial.SerialBase, lines: list[bytes]
) -> None:
    stream = b"".join(lines)
    frames = ccd.CommandFramer().feed(stream)
    refusals = []
    for frame in frames:
        try:
            ccd.decode_command(frame)
        except ccd.BadCommand as err:
            refusals.append(err.reply())
    assume(len(refusals) == len(frames))
    ccd_port.write(stream)
    for expected in refusals:
        reply = ccd.decode_reply(line(ccd_port))
        assert isinstance(reply, ccd.ErrorReply)
        assert (reply.mid, reply.code) == (expected.mid, expected.code)
        assert 100 <= reply.code < 200
    ccd_port.write(b">7E STATUS\n")
    assert CCD_STATUS.fullmatch(line(ccd_port))
    assert ccd_port.in_waiting == 0


def test_a_megabyte_without_terminator_costs_one_error_reply(
    cover_port: serial.SerialBase, ccd_port: serial.SerialBase
) -> None:
    """Endless input is cut, not buffered: one error, then business as usual."""
    flood = bytes(range(14, 256)) * 4400  # ~1 MiB, no CR or LF
    cover_port.write(flood + b"\n>S000\n")
    assert line(cover_port) == b"*?98002\n"
    assert COVER_STATUS.fullmatch(line(cover_port))
    ccd_port.write(flood + b"\n>7E STATUS\n")
    refusal = ccd.decode_reply(line(ccd_port))
    assert isinstance(refusal, ccd.ErrorReply)
    assert refusal.code == ccd.ErrorCode.MALFORMED
    assert CCD_STATUS.fullmatch(line(ccd_port))


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


def test_control_port_survives_hostile_clients(sim: SimProcess) -> None:
    """Deep nesting, huge numbers, an endless line, clients that leave early."""
    token = control_token(sim)
    status = json.dumps({"op": "status", "token": token}).encode() + b"\n"
    with control_connection(sim) as conn:
        buf = bytearray()
        huge = {"device": "ccd", "kind": "bad_crc", "at_time": 10**400}
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

"""The Alnitak cover codec against literal bytes and the protocol document."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import ProtocolError
from drivers.protocol.cover import (
    ACK_COMMANDS,
    MAX_FRAME,
    PRODUCT_ID,
    Ack,
    BadCommand,
    Brightness,
    Command,
    CoverState,
    ErrorCode,
    ErrorReply,
    Filler,
    Firmware,
    Framer,
    Light,
    Motor,
    Request,
    Status,
    decode_ack,
    decode_brightness,
    decode_command,
    decode_firmware,
    decode_reply,
    decode_status,
    encode_command,
    encode_reply,
    encode_status,
)
from tests.docs_exchanges import Exchange, exchanges

COVER_EXCHANGES = exchanges("cover")


# -- the document ------------------------------------------------------------------


def test_document_has_cover_exchanges_for_every_command() -> None:
    sent = {
        data[1:2] for ex in COVER_EXCHANGES for way, data in ex.steps if way == "->"
    }
    assert {c.value for c in Command} <= sent
    received = [data for ex in COVER_EXCHANGES for way, data in ex.steps if way == "<-"]
    assert any(data.startswith(b"*?") for data in received)  # a bad command too


def _decode_or_code(data: bytes) -> Request | ErrorCode:
    """The request, or the error code the device owes for a bad command."""
    try:
        return decode_command(data)
    except BadCommand as err:
        return err.code


@pytest.mark.parametrize(
    "exchange", COVER_EXCHANGES, ids=[f"line{ex.line}" for ex in COVER_EXCHANGES]
)
def test_document_exchange_replays_against_codec(exchange: Exchange) -> None:
    steps = exchange.steps
    assert steps, f"empty exchange at protocols.md:{exchange.line}"
    assert [way for way, _ in steps] == ["->", "<-"] * (len(steps) // 2)
    for (_, sent), (_, answer) in zip(steps[::2], steps[1::2], strict=True):
        reply = decode_reply(answer)
        assert encode_reply(reply) == answer
        request = _decode_or_code(sent)
        if isinstance(request, ErrorCode):
            assert reply == ErrorReply(request), (sent, answer)
            continue
        assert encode_command(request) == sent
        assert not isinstance(reply, ErrorReply), (sent, answer)
        if isinstance(reply, Status):
            assert request.command is Command.STATUS
        elif isinstance(reply, Firmware):
            assert request.command is Command.FIRMWARE
        else:
            assert reply.command is request.command
        if isinstance(reply, Ack):
            assert reply.filler is request.filler


# -- literal bytes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "data"),
    [
        (Request(Command.PING), b">P000\n"),
        (Request(Command.OPEN), b">O000\n"),
        (Request(Command.CLOSE), b">C000\n"),
        (Request(Command.STATUS), b">S000\n"),
        (Request(Command.FIRMWARE), b">V000\n"),
        (Request(Command.LIGHT_ON), b">L000\n"),
        (Request(Command.LIGHT_OFF), b">D000\n"),
        (Request(Command.GET_BRIGHTNESS), b">J000\n"),
        (Request(Command.SET_BRIGHTNESS, brightness=7), b">B007\n"),
        (Request(Command.SET_BRIGHTNESS, brightness=255), b">B255\n"),
        (Request(Command.CLOSE, filler=Filler.LETTERS), b">COOO\n"),
    ],
)
def test_command_literal_bytes(request_: Request, data: bytes) -> None:
    assert encode_command(request_) == data
    assert decode_command(data) == request_


def test_bare_command_encodes_with_digit_filler() -> None:
    assert encode_command(Command.STATUS) == b">S000\n"
    assert len(encode_command(Command.CLOSE)) == 6  # what INDI writes


@pytest.mark.parametrize("end", [b"\r", b"\n", b"\r\n"])
def test_command_accepts_every_terminator(end: bytes) -> None:
    assert decode_command(b">C000" + end) == Request(Command.CLOSE)


@pytest.mark.parametrize(
    ("reply", "data"),
    [
        (Ack(Command.PING), b"*P98000\n"),
        (Ack(Command.OPEN), b"*O98000\n"),
        (Ack(Command.CLOSE), b"*C98000\n"),
        (Ack(Command.LIGHT_ON), b"*L98000\n"),
        (Ack(Command.LIGHT_OFF), b"*D98000\n"),
        (Ack(Command.PING, 99, Filler.LETTERS), b"*P99OOO\n"),
        (Status(Motor.STOPPED, Light.OFF, CoverState.OPEN), b"*S98002\n"),
        (Status(Motor.RUNNING, Light.OFF, CoverState.NEITHER), b"*S98100\n"),
        (Status(Motor.STOPPED, Light.OFF, CoverState.CLOSED), b"*S98001\n"),
        (Status(Motor.STOPPED, Light.ON, CoverState.TIMED_OUT), b"*S98013\n"),
        (Firmware(213), b"*V98213\n"),
        (Firmware(7), b"*V98007\n"),
        (Brightness(Command.SET_BRIGHTNESS, 128), b"*B98128\n"),
        (Brightness(Command.GET_BRIGHTNESS, 0), b"*J98000\n"),
        (ErrorReply(ErrorCode.UNKNOWN_COMMAND), b"*?98001\n"),
        (ErrorReply(ErrorCode.MALFORMED), b"*?98002\n"),
        (ErrorReply(ErrorCode.OUT_OF_RANGE), b"*?98003\n"),
    ],
)
def test_reply_literal_bytes(reply: object, data: bytes) -> None:
    assert encode_reply(reply) == data  # type: ignore[arg-type]
    assert decode_reply(data) == reply
    assert len(data) == 8  # what INDI reads


def test_status_helpers() -> None:
    closed = Status(Motor.STOPPED, Light.OFF, CoverState.CLOSED)
    assert encode_status(closed) == b"*S98001\n"
    assert decode_status(b"*S98001\n").is_closed
    assert not decode_status(b"*S98101\n").is_closed  # still driving
    assert not decode_status(b"*S98003\n").is_closed  # timed out
    assert decode_status(b"*S98001\r\n") == closed
    assert PRODUCT_ID == 98


def test_typed_decoders_check_what_came_back() -> None:
    assert decode_firmware(b"*V98213\n").version == 213
    assert decode_ack(b"*C98000\n", Command.CLOSE).command is Command.CLOSE
    assert decode_brightness(b"*J98042\n", Command.GET_BRIGHTNESS).value == 42
    with pytest.raises(ProtocolError, match=r"cover: got b'\*O98000\\n'"):
        decode_ack(b"*O98000\n", Command.CLOSE)
    with pytest.raises(ProtocolError, match="expected a status reply"):
        decode_status(b"*V98213\n")
    with pytest.raises(ProtocolError, match="expected a firmware reply"):
        decode_firmware(b"*S98001\n")
    with pytest.raises(ProtocolError, match="expected a brightness reply"):
        decode_brightness(b"*B98042\n", Command.GET_BRIGHTNESS)
    with pytest.raises(ProtocolError, match=r"refused the command .*unknown command"):
        decode_status(b"*?98001\n")


# -- bad frames --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b">X000\n", ErrorCode.UNKNOWN_COMMAND),
        (b">H000\n", ErrorCode.UNKNOWN_COMMAND),
        (b">s000\n", ErrorCode.UNKNOWN_COMMAND),
        (b">\xff000\n", ErrorCode.UNKNOWN_COMMAND),
        (b">S000", ErrorCode.MALFORMED),
        (b">S00\n", ErrorCode.MALFORMED),
        (b">S0000\n", ErrorCode.MALFORMED),
        (b"S0000\n", ErrorCode.MALFORMED),
        (b"\n", ErrorCode.MALFORMED),
        (b">S12x\n", ErrorCode.MALFORMED),
        (b">SO0O\n", ErrorCode.MALFORMED),
        (b">B12a\n", ErrorCode.MALFORMED),
        (b">B-12\n", ErrorCode.MALFORMED),
        (b">B256\n", ErrorCode.OUT_OF_RANGE),
        (b">B999\n", ErrorCode.OUT_OF_RANGE),
    ],
)
def test_bad_command_raises_with_code(data: bytes, code: ErrorCode) -> None:
    with pytest.raises(BadCommand) as info:
        decode_command(data)
    assert info.value.code is code
    assert isinstance(info.value, ProtocolError)
    message = str(info.value)
    assert message.startswith("cover: ")
    assert repr(data) in message
    assert "expected" in message


@pytest.mark.parametrize(
    "data",
    [
        b"*S98001",  # no terminator
        b"*S9800\n",  # short
        b"*S980012\n",  # long
        b"S98001\n",  # no star
        b"*S9x001\n",  # product id not digits
        b"*S98004\n",  # cover 4
        b"*S98201\n",  # motor 2
        b"*S98OOO\n",  # letters in a status
        b"*X98000\n",  # unknown letter
        b"*C98001\n",  # ack that is not 000
        b"*J98256\n",  # brightness out of range
        b"*V98OOO\n",  # version not digits
        b"*?98009\n",  # unknown error code
        b"\xff\xfe\n",
    ],
)
def test_bad_reply_raises_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_reply(data)
    assert str(info.value).startswith("cover: ")
    assert repr(data) in str(info.value)


def test_dataclasses_reject_impossible_values() -> None:
    with pytest.raises(ProtocolError, match="brightness"):
        Request(Command.SET_BRIGHTNESS)
    with pytest.raises(ProtocolError, match="brightness"):
        Request(Command.SET_BRIGHTNESS, brightness=256)
    with pytest.raises(ProtocolError, match="only set-brightness"):
        Request(Command.STATUS, brightness=1)
    with pytest.raises(ProtocolError, match="acknowledgement"):
        Ack(Command.STATUS)
    with pytest.raises(ProtocolError, match="product id"):
        Status(Motor.STOPPED, Light.OFF, CoverState.OPEN, product_id=100)
    with pytest.raises(ProtocolError, match="firmware"):
        Firmware(1000)


# -- round trips -------------------------------------------------------------------

requests = st.one_of(
    st.builds(
        Request,
        st.sampled_from([c for c in Command if c is not Command.SET_BRIGHTNESS]),
        st.none(),
        st.sampled_from(Filler),
    ),
    st.builds(
        Request,
        st.just(Command.SET_BRIGHTNESS),
        st.integers(0, 255),
        st.just(Filler.DIGITS),
    ),
)
products = st.integers(0, 99)
replies = st.one_of(
    st.builds(
        Ack,
        st.sampled_from(sorted(ACK_COMMANDS, key=str)),
        products,
        st.sampled_from(Filler),
    ),
    st.builds(
        Brightness,
        st.sampled_from([Command.SET_BRIGHTNESS, Command.GET_BRIGHTNESS]),
        st.integers(0, 255),
        products,
    ),
    st.builds(
        Status,
        st.sampled_from(Motor),
        st.sampled_from(Light),
        st.sampled_from(CoverState),
        products,
    ),
    st.builds(Firmware, st.integers(0, 999), products),
    st.builds(ErrorReply, st.sampled_from(ErrorCode), products),
)


@given(requests)
def test_command_round_trip(request_: Request) -> None:
    data = encode_command(request_)
    assert len(data) == 6
    assert decode_command(data) == request_


@given(replies)
def test_reply_round_trip(reply: object) -> None:
    data = encode_reply(reply)  # type: ignore[arg-type]
    assert len(data) == 8
    assert decode_reply(data) == reply


@given(st.binary(max_size=12))
def test_decode_command_raises_only_bad_command(data: bytes) -> None:
    request = _decode_or_code(data)
    if not isinstance(request, ErrorCode):
        assert encode_command(request).rstrip(b"\n") == data.rstrip(b"\r\n")


@given(st.binary(max_size=12))
def test_decode_reply_raises_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_reply(data)


# -- framing -----------------------------------------------------------------------


def test_framer_handles_split_frames() -> None:
    framer = Framer()
    assert framer.feed(b">S0") == []
    assert framer.pending == b">S0"
    assert framer.feed(b"00") == []
    assert framer.feed(b"\n>P") == [b">S000\n"]
    assert framer.feed(b"000\n") == [b">P000\n"]
    assert framer.pending == b""


def test_framer_handles_merged_frames() -> None:
    framer = Framer()
    assert framer.feed(b">P000\n>S000\n>V0") == [b">P000\n", b">S000\n"]
    assert framer.feed(b"00\n") == [b">V000\n"]


@pytest.mark.parametrize(
    ("stream", "frames"),
    [
        (b">S000\r>P000\r", [b">S000\r", b">P000\r"]),
        (b">S000\n>P000\n", [b">S000\n", b">P000\n"]),
        (b">S000\r\n>P000\r\n", [b">S000\r", b">P000\r"]),
        (b">S000\n\n\r\n>P000\r\r", [b">S000\n", b">P000\r"]),  # blank lines
        (b">S000\n\r>P000\n", [b">S000\n", b">P000\n"]),  # LFCR is not CRLF
    ],
)
def test_framer_cr_lf_crlf(stream: bytes, frames: list[bytes]) -> None:
    assert Framer().feed(stream) == frames
    split = Framer()  # the same stream, one byte at a time
    out = [f for i in range(len(stream)) for f in split.feed(stream[i : i + 1])]
    assert out == frames


def test_framer_crlf_split_between_feeds() -> None:
    framer = Framer()
    assert framer.feed(b">S000\r") == [b">S000\r"]
    assert framer.feed(b"\n>P000\r") == [b">P000\r"]  # the LF is not a frame


def test_framer_bounds_garbage_without_terminator() -> None:
    framer = Framer()
    assert framer.feed(b"x" * 10_000) == []
    assert len(framer.pending) == MAX_FRAME
    assert framer.discarded == 10_000 - MAX_FRAME
    (frame,) = framer.feed(b"yy\n>S000\n")[:1]
    assert frame == b"x" * MAX_FRAME + b"\n"
    with pytest.raises(BadCommand) as info:
        decode_command(frame)
    assert info.value.code is ErrorCode.MALFORMED


def test_framer_recovers_after_overflow() -> None:
    framer = Framer(max_frame=8)
    assert framer.feed(b"0123456789abc\n>S000\n") == [b"01234567\n", b">S000\n"]
    assert framer.discarded == 5


@given(st.lists(st.sampled_from([b">S000", b">P000", b">B128"]), max_size=6), st.data())
def test_framer_any_split_gives_same_frames(
    bodies: list[bytes], data: st.DataObject
) -> None:
    ends = [data.draw(st.sampled_from([b"\r", b"\n", b"\r\n"])) for _ in bodies]
    stream = b"".join(b + e for b, e in zip(bodies, ends, strict=True))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    framer = Framer()
    frames: list[bytes] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        frames += framer.feed(stream[last:cut])
        last = cut
    assert [f.rstrip(b"\r\n") for f in frames] == bodies
    assert [decode_command(f).command.value for f in frames] == [b[1:2] for b in bodies]

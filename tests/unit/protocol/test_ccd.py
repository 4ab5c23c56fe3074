"""The CCD controller codec against literal bytes and the protocol document."""

from __future__ import annotations

import zlib
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import ProtocolError
from drivers.protocol.ccd import (
    MAX_LINE,
    Abort,
    Ack,
    BadCommand,
    Clear,
    Command,
    CommandFramer,
    ControllerState,
    DataBlock,
    DeviceReply,
    ErrorCode,
    ErrorReply,
    Expose,
    ExposureKind,
    FrameInfo,
    Framer,
    GetFrame,
    GetShutter,
    GetStatus,
    GetTemperature,
    Identity,
    MoveShutter,
    Ping,
    Read,
    ReadDone,
    ShutterPosition,
    ShutterState,
    ShutterTarget,
    Status,
    Temperature,
    Verb,
    block_count,
    crc32,
    decode_command,
    decode_reply,
    encode_command,
    encode_data_header,
    encode_reply,
    next_mid,
    printable,
)
from tests.docs_exchanges import Exchange, exchanges

CCD_EXCHANGES = exchanges("ccd")

# The worked example of docs/protocols.md: pixels 1000, 1001, 10, 15420.
EXAMPLE_PAYLOAD = bytes.fromhex("03E803E9000A3C3C")
EXAMPLE_BLOCK = b"<1F DATA 0 8 29B96754\n\x03\xe8\x03\xe9\x00\n<<"


# -- the document ------------------------------------------------------------------


def _verb(data: bytes) -> bytes:
    return data[4:].split(b" ")[0].rstrip(b"\r\n")


def test_document_has_ccd_exchanges_for_every_verb_and_reply_kind() -> None:
    sent = {_verb(d) for ex in CCD_EXCHANGES for way, d in ex.steps if way == "->"}
    assert {v.value.encode() for v in Verb} <= sent
    kinds = {
        type(decode_reply(d))
        for ex in CCD_EXCHANGES
        for way, d in ex.steps
        if way == "<-"
    }
    assert kinds == set(get_args(DeviceReply))
    codes = {
        r.code
        for ex in CCD_EXCHANGES
        for way, d in ex.steps
        if way == "<-" and isinstance(r := decode_reply(d), ErrorReply)
    }
    assert {100, 101, 102, 200, 201, 202, 203} <= codes


@pytest.mark.parametrize("exchange", CCD_EXCHANGES, ids=lambda ex: f"line{ex.line}")
def test_document_exchange_replays_against_the_codec(exchange: Exchange) -> None:
    owed: bytes | None = None
    for way, data in exchange.steps:
        if way == "->":
            try:
                command = decode_command(data)
            except BadCommand as bad:  # the document shows the reply it owes
                owed = encode_reply(bad.reply())
                continue
            assert encode_command(command) == data
            continue
        reply = decode_reply(data)
        assert encode_reply(reply) == data
        if owed is not None:
            assert data == owed
            owed = None
    assert owed is None


@pytest.mark.parametrize("exchange", CCD_EXCHANGES, ids=lambda ex: f"line{ex.line}")
def test_document_replies_frame_back_one_by_one(exchange: Exchange) -> None:
    replies = [data for way, data in exchange.steps if way == "<-"]
    framer = Framer()
    frames = [f for byte in b"".join(replies) for f in framer.feed(bytes([byte]))]
    assert frames == replies


def test_document_data_blocks_carry_their_true_crc_except_the_bad_one() -> None:
    blocks = [
        (ex, decode_reply(data))
        for ex in CCD_EXCHANGES
        for way, data in ex.steps
        if way == "<-" and data[3:9] == b" DATA "
    ]
    bad = [b for _, b in blocks if isinstance(b, DataBlock) and not b.crc_ok]
    good = [b for _, b in blocks if isinstance(b, DataBlock) and b.crc_ok]
    assert len(bad) == 1
    assert bad[0].crc == 0x29B96755
    assert len(good) >= 3
    for block in good:
        assert block.crc == zlib.crc32(block.payload)


def test_worked_example_bytes_and_crc() -> None:
    assert crc32(EXAMPLE_PAYLOAD) == 0x29B96754
    assert crc32(b"123456789") == 0xCBF43926  # the CRC-32 check value
    block = decode_reply(EXAMPLE_BLOCK)
    assert block == DataBlock(0x1F, 0, EXAMPLE_PAYLOAD, 0x29B96754)
    assert isinstance(block, DataBlock)
    assert block.crc_ok
    assert encode_reply(DataBlock.build(0x1F, 0, EXAMPLE_PAYLOAD)) == EXAMPLE_BLOCK


# -- commands, literal bytes --------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "data"),
    [
        (Ping(0x1A), b">1A PING\n"),
        (GetStatus(0x00), b">00 STATUS\n"),
        (Expose(0xFF, 3600, ExposureKind.DARK), b">FF EXPOSE 3600.000 DARK\n"),
        (Expose(0x01, 0.5, ExposureKind.LIGHT), b">01 EXPOSE 0.500 LIGHT\n"),
        (Abort(0x02), b">02 ABORT\n"),
        (MoveShutter(0x03, ShutterTarget.CLOSE), b">03 SHUTTER CLOSE\n"),
        (MoveShutter(0x04, ShutterTarget.OPEN), b">04 SHUTTER OPEN\n"),
        (GetShutter(0x05), b">05 SHUTTER\n"),
        (GetTemperature(0x06), b">06 TEMP\n"),
        (GetFrame(0x07), b">07 FRAME\n"),
        (Read(0x08), b">08 READ\n"),
        (Read(0x09, 17), b">09 READ 17\n"),
        (Read(0x0A, 17, 1), b">0A READ 17 1\n"),
        (Clear(0xAB), b">AB CLEAR\n"),
    ],
)
def test_command_literal_bytes(command: Command, data: bytes) -> None:
    assert encode_command(command) == data
    assert decode_command(data) == command


@pytest.mark.parametrize("ending", [b"\n", b"\r", b"\r\n"])
def test_command_accepts_lf_cr_crlf(ending: bytes) -> None:
    assert decode_command(b">1A STATUS" + ending) == GetStatus(0x1A)


def test_command_accepts_plain_decimal_seconds() -> None:
    assert decode_command(b">01 EXPOSE 10 DARK\n") == Expose(1, 10.0, ExposureKind.DARK)
    assert decode_command(b">01 EXPOSE 0.25 LIGHT\n").exptime_s == 0.25  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "mid", "code"),
    [
        (b"STATUS\n", None, ErrorCode.MALFORMED),
        (b">1a STATUS\n", None, ErrorCode.MALFORMED),
        (b">1G STATUS\n", None, ErrorCode.MALFORMED),
        (b">1ASTATUS\n", 0x1A, ErrorCode.MALFORMED),
        (b">1A\n", 0x1A, ErrorCode.MALFORMED),
        (b">1A  STATUS\n", 0x1A, ErrorCode.MALFORMED),
        (b">1A STATUS \n", 0x1A, ErrorCode.MALFORMED),
        (b">1A STAT\xffUS\n", 0x1A, ErrorCode.MALFORMED),
        (b">1A STA\tTUS\n", 0x1A, ErrorCode.MALFORMED),
        (b">1A STATUS", 0x1A, ErrorCode.MALFORMED),  # no terminator: cut line
        (b">1A FOO\n", 0x1A, ErrorCode.UNKNOWN_COMMAND),
        (b">1A status\n", 0x1A, ErrorCode.UNKNOWN_COMMAND),
        (b">1A PING 1\n", 0x1A, ErrorCode.BAD_ARGUMENT),
        (b">1A EXPOSE\n", 0x1A, ErrorCode.BAD_ARGUMENT),
        (b">1A EXPOSE 10\n", 0x1A, ErrorCode.BAD_ARGUMENT),
        (b">1A EXPOSE 10 BIAS\n", 0x1A, ErrorCode.BAD_ARGUMENT),
        (b">1A EXPOSE -1 DARK\n", 0x1A, ErrorCode.BAD_ARGUMENT),
        (b">1A EXPOSE nan DARK\n", 0x1A, ErrorCode.BAD_ARGUMENT),
        (b">1A EXPOSE inf DARK\n", 0x1A, ErrorCode.BAD_ARGUMENT),
        (b">1A EXPOSE 1e3 DARK\n", 0x1A, ErrorCode.BAD_ARGUMENT),
        (b">1A EXPOSE 1. DARK\n", 0x1A, ErrorCode.BAD_ARGUMENT),
        (b">1A EXPOSE 1 DARK X\n", 0x1A, ErrorCode.BAD_ARGUMENT),
        (b">1A SHUTTER HALF\n", 0x1A, ErrorCode.BAD_ARGUMENT),
        (b">1A SHUTTER OPEN NOW\n", 0x1A, ErrorCode.BAD_ARGUMENT),
        (b">1A READ -1\n", 0x1A, ErrorCode.BAD_ARGUMENT),
        (b">1A READ 0 0\n", 0x1A, ErrorCode.BAD_ARGUMENT),
        (b">1A READ 0 1 2\n", 0x1A, ErrorCode.BAD_ARGUMENT),
        (b">1A READ x\n", 0x1A, ErrorCode.BAD_ARGUMENT),
    ],
)
def test_bad_commands_carry_the_reply_owed(
    data: bytes, mid: int | None, code: ErrorCode
) -> None:
    with pytest.raises(BadCommand) as caught:
        decode_command(data)
    assert caught.value.mid == mid
    assert caught.value.code is code
    assert isinstance(caught.value, ProtocolError)
    assert "ccd" in str(caught.value)
    reply = encode_reply(caught.value.reply())
    shown = b"--" if mid is None else b"%02X" % mid
    assert reply.startswith(b"?" + shown + b" ERR %d " % code)
    assert reply.endswith(b"\n")
    assert reply.count(b"\n") == 1
    assert all(0x20 <= b < 0x7F for b in reply[:-1])


def test_command_constructors_refuse_impossible_values() -> None:
    with pytest.raises(ValueError, match="exposure time"):
        Expose(1, -1.0, ExposureKind.DARK)
    with pytest.raises(ValueError, match="exposure time"):
        Expose(1, float("inf"), ExposureKind.DARK)
    with pytest.raises(ValueError, match="count"):
        Read(1, None, 3)
    with pytest.raises(ValueError, match="count"):
        Read(1, 0, 0)
    with pytest.raises(ValueError, match="message id"):
        encode_command(Ping(256))


# -- replies, literal bytes --------------------------------------------------------

STATUS = Status(
    0x1A,
    state=ControllerState.IDLE,
    exptime_s=0.0,
    elapsed_s=0.0,
    shutter=ShutterState.CLOSED,
    temperature_k=163.15,
    frame=0,
    dark=True,
)
FRAME_INFO = FrameInfo(
    0x22,
    frame=3,
    rows=4212,
    cols=4196,
    bitpix=16,
    nbytes=35347104,
    block_size=65536,
    blocks=540,
    exptime_s=3600.0,
    dark=True,
    temp_start_k=163.15,
    temp_end_k=163.2,
    shutter_max=ShutterState.CLOSED,
    crc=0x00ABCDEF,
)


@pytest.mark.parametrize(
    ("reply", "data"),
    [
        (Ack(0x1A), b"<1A OK\n"),
        (Identity(0x01, "1.0.0"), b"<01 OK MEGARA-CCD 1.0.0\n"),
        (
            Identity(0x01, "1.0.0", simulated=True),
            b"<01 OK MEGARA-CCD 1.0.0 SIMULATOR\n",
        ),
        (
            STATUS,
            b"<1A OK STATE=IDLE EXPREQ=0.000 ELAPSED=0.000 SHUTTER=CLOSED "
            b"TEMP=163.15 FRAME=0 DARK=1\n",
        ),
        (ShutterPosition(0xFF, ShutterState.OPEN), b"<FF OK SHUTTER=OPEN\n"),
        (Temperature(0x00, 173.15), b"<00 OK TEMP=173.15\n"),
        (
            FRAME_INFO,
            b"<22 OK FRAME=3 ROWS=4212 COLS=4196 BITPIX=16 BYTES=35347104 "
            b"BLOCKSIZE=65536 BLOCKS=540 EXPTIME=3600.000 DARK=1 TEMPSTART=163.15 "
            b"TEMPEND=163.20 SHUTMAX=CLOSED CRC=00ABCDEF\n",
        ),
        (ReadDone(0x33, 540), b"<33 OK READ 540\n"),
        (
            ErrorReply(0x1A, ErrorCode.UNKNOWN_COMMAND, "unknown command FOO"),
            b"?1A ERR 101 unknown command FOO\n",
        ),
        (ErrorReply(None, ErrorCode.MALFORMED, "bad"), b"?-- ERR 100 bad\n"),
        (DataBlock(0x05, 7, b"", 0), b"<05 DATA 7 0 00000000\n"),
    ],
)
def test_reply_literal_bytes(reply: DeviceReply, data: bytes) -> None:
    assert encode_reply(reply) == data
    assert decode_reply(data) == reply


@pytest.mark.parametrize(
    "data",
    [
        b"<01 OK MEGARA-CCD 1.0.0 SIMULATED\n",
        b"<01 OK MEGARA-CCD 1.0.0 simulator\n",
        b"<01 OK MEGARA-CCD 1.0.0 SIMULATOR SIMULATOR\n",
        b"<01 OK MEGARA-CCD SIMULATOR\n",
    ],
)
def test_only_the_exact_simulator_word_marks_a_simulator(data: bytes) -> None:
    """One word, SIMULATOR, in third place: anything else is not a simulator."""
    try:
        reply = decode_reply(data)
    except ProtocolError:
        return
    assert isinstance(reply, Identity)
    assert not reply.simulated


def test_document_has_the_simulator_identity_exchange() -> None:
    pings = [
        (ex.steps[i][1], ex.steps[i + 1][1])
        for ex in CCD_EXCHANGES
        for i in range(len(ex.steps) - 1)
        if ex.steps[i] == ("->", b">01 PING\n")
    ]
    assert (b">01 PING\n", b"<01 OK MEGARA-CCD 1.0.0 SIMULATOR\n") in pings
    reply = decode_reply(b"<01 OK MEGARA-CCD 1.0.0 SIMULATOR\n")
    assert isinstance(reply, Identity)
    assert reply.simulated


def test_status_extra_fields_survive_a_round_trip() -> None:
    data = (
        b"<1A OK STATE=READY EXPREQ=1.000 ELAPSED=1.000 SHUTTER=CLOSED "
        b"TEMP=163.15 FRAME=2 DARK=1 VOLTS=12.1 MODE=fast\n"
    )
    status = decode_reply(data)
    assert isinstance(status, Status)
    assert status.extra == (("VOLTS", "12.1"), ("MODE", "fast"))
    assert encode_reply(status) == data


def test_unknown_error_code_is_kept_as_a_number() -> None:
    reply = decode_reply(b"?07 ERR 302 cryostat pressure high\n")
    assert reply == ErrorReply(7, 302, "cryostat pressure high")
    assert isinstance(reply, ErrorReply)
    assert reply.category == "hardware"
    known = decode_reply(b"?07 ERR 200 busy\n")
    assert isinstance(known, ErrorReply)
    assert known.code is ErrorCode.BUSY
    assert known.category == "state"


def test_frame_info_block_span() -> None:
    assert FRAME_INFO.block_span(0) == (0, 65536)
    assert FRAME_INFO.block_span(539) == (539 * 65536, 35347104)
    assert block_count(35347104, 65536) == 540
    assert block_count(16, 8) == 2


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n",
        b"<1A OK",  # no LF
        b"<1A OK \n",
        b"<1a OK\n",
        b"<1A ok\n",
        b"<1A OK STATE=IDLE\n",
        b"<1A OK STATE=NAPPING EXPREQ=0.000 ELAPSED=0.000 SHUTTER=CLOSED "
        b"TEMP=163.15 FRAME=0 DARK=1\n",
        b"<1A OK STATE=IDLE EXPREQ=-1.000 ELAPSED=0.000 SHUTTER=CLOSED "
        b"TEMP=163.15 FRAME=0 DARK=1\n",
        b"<1A OK STATE=IDLE ELAPSED=0.000 EXPREQ=0.000 SHUTTER=CLOSED "
        b"TEMP=163.15 FRAME=0 DARK=1\n",
        b"<1A OK STATE=IDLE EXPREQ=0.000 ELAPSED=0.000 SHUTTER=CLOSED "
        b"TEMP=163.15 FRAME=0 DARK=2\n",
        b"<1A OK SHUTTER=AJAR\n",
        b"<1A OK TEMP=hot\n",
        b"<1A OK READ\n",
        b"<1A OK WHAT IS THIS\n",
        b"?1A ERR 1 short\n",
        b"?1A ERR 101\n",
        b"?1A ERROR 101 x\n",
        b"<1A DATA 0 8 29B96754\n\x03\xe8",  # payload short
        b"<1A DATA 0 1 29B96754\n\x03\xe8",  # payload long
        b"<1A DATA 0 8 29b96754\n" + EXAMPLE_PAYLOAD,
        b"<1A DATA x 8 29B96754\n" + EXAMPLE_PAYLOAD,
        b"\xff\xfe garbage\n",
    ],
)
def test_bad_replies_raise_protocol_error_naming_ccd(data: bytes) -> None:
    with pytest.raises(ProtocolError, match=r"^ccd: .*expected"):
        decode_reply(data)


def test_protocol_error_quotes_long_frames_truncated() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_reply(b"<1A " + b"X" * 5000 + b"\n")
    message = str(caught.value)
    assert "(5005 bytes)" in message
    assert len(message) < 400


def test_reply_encoder_refuses_bad_messages() -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        encode_reply(ErrorReply(1, ErrorCode.INTERNAL, "two\nlines"))
    with pytest.raises(ValueError, match="3 digits"):
        encode_reply(ErrorReply(1, 42, "x"))


def test_crc_mismatch_is_detected() -> None:
    good = DataBlock.build(1, 0, EXAMPLE_PAYLOAD)
    assert good.crc_ok
    assert not DataBlock(1, 0, EXAMPLE_PAYLOAD, good.crc ^ 1).crc_ok
    flipped = bytes([EXAMPLE_PAYLOAD[0] ^ 0x01]) + EXAMPLE_PAYLOAD[1:]
    assert not DataBlock(1, 0, flipped, good.crc).crc_ok


def test_helpers() -> None:
    assert next_mid(0xFE) == 0xFF
    assert next_mid(0xFF) == 0x00
    assert printable(b"ab\x00\xff\n") == "ab\\x00\\xff\\n"
    assert printable(b"x" * 50, limit=4) == "xxxx..."


# -- hypothesis round trips ----------------------------------------------------

mids = st.integers(0, 255)
millis = st.integers(0, 36_000_000).map(lambda n: n / 1000)
centis = st.integers(0, 99_999).map(lambda n: n / 100)
counts = st.integers(0, 10**9 - 1)

commands = st.one_of(
    st.builds(Ping, mids),
    st.builds(GetStatus, mids),
    st.builds(Expose, mids, millis, st.sampled_from(ExposureKind)),
    st.builds(Abort, mids),
    st.builds(MoveShutter, mids, st.sampled_from(ShutterTarget)),
    st.builds(GetShutter, mids),
    st.builds(GetTemperature, mids),
    st.builds(GetFrame, mids),
    st.builds(Read, mids),
    st.builds(Read, mids, counts),
    st.builds(Read, mids, counts, st.integers(1, 10**9 - 1)),
    st.builds(Clear, mids),
)

replies = st.one_of(
    st.builds(Ack, mids),
    st.builds(Identity, mids, st.from_regex(r"[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True)),
    st.builds(
        Status,
        mids,
        st.sampled_from(ControllerState),
        millis,
        millis,
        st.sampled_from(ShutterState),
        centis,
        counts,
        st.booleans(),
    ),
    st.builds(ShutterPosition, mids, st.sampled_from(ShutterState)),
    st.builds(Temperature, mids, centis),
    st.builds(
        FrameInfo,
        mids,
        counts,
        counts,
        counts,
        st.sampled_from([8, 16, 32]),
        counts,
        counts,
        counts,
        millis,
        st.booleans(),
        centis,
        centis,
        st.sampled_from(ShutterState),
        st.integers(0, 0xFFFFFFFF),
    ),
    st.builds(ReadDone, mids, counts),
    st.builds(
        ErrorReply,
        st.one_of(st.none(), mids),
        st.sampled_from(ErrorCode),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1),
    ),
    st.builds(DataBlock.build, mids, counts, st.binary(max_size=64)),
)


@given(commands)
def test_command_round_trip(command: Command) -> None:
    data = encode_command(command)
    assert decode_command(data) == command
    assert CommandFramer().feed(data) == [data]


@given(replies)
def test_reply_round_trip(reply: DeviceReply) -> None:
    data = encode_reply(reply)
    assert decode_reply(data) == reply
    assert Framer().feed(data) == [data]


@given(st.lists(replies, min_size=1, max_size=8), st.data())
def test_framer_splits_any_chunking_of_a_reply_stream(
    stream: list[DeviceReply], data: st.DataObject
) -> None:
    frames = [encode_reply(r) for r in stream]
    joined = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(joined)), max_size=10)))
    framer = Framer()
    got: list[bytes] = []
    for a, b in zip([0, *cuts], [*cuts, len(joined)], strict=True):
        got += framer.feed(joined[a:b])
    assert got == frames
    fast = Framer()
    decoded: list[DeviceReply] = []
    for a, b in zip([0, *cuts], [*cuts, len(joined)], strict=True):
        decoded += fast.feed_decoded(bytearray(joined[a:b]))
    assert decoded == stream


# -- framers ---------------------------------------------------------------------


def test_framer_takes_data_payload_containing_lf_and_lt() -> None:
    stream = EXAMPLE_BLOCK + b"<1F OK READ 1\n"
    for cut in range(len(stream) + 1):
        framer = Framer()
        frames = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert frames == [EXAMPLE_BLOCK, b"<1F OK READ 1\n"], cut
        assert framer.pending == 0


def test_framer_payload_split_at_every_position_fast_path() -> None:
    payload = bytes(range(256)) * 4 + b"\n<\n<"
    block = DataBlock.build(0x42, 3, payload)
    data = encode_reply(block)
    for cut in range(len(data) + 1):
        framer = Framer()
        first = framer.feed_decoded(data[:cut])
        assert framer.feed_decoded(data[cut:]) == ([] if first else [block])
        assert (first or [block]) == [block]


def test_framer_merged_frames_in_one_read() -> None:
    frames = [
        b"<01 OK\n",
        EXAMPLE_BLOCK,
        encode_data_header(0x1F, 1, 0, 0),
        b"?02 ERR 201 no frame\n",
        b"<1F OK READ 2\n",
    ]
    assert Framer().feed(b"".join(frames)) == frames


def test_framer_cuts_overlong_lines_and_resynchronises() -> None:
    framer = Framer()
    garbage = b"\xaa" * (3 * MAX_LINE)
    out = framer.feed(garbage[:1500]) + framer.feed(garbage[1500:] + b"\n<01 OK\n")
    assert out == [b"\xaa" * MAX_LINE, b"<01 OK\n"]
    assert framer.pending == 0
    with pytest.raises(ProtocolError, match="ccd"):
        decode_reply(out[0])


def test_framer_memory_stays_bounded_under_garbage() -> None:
    framer = Framer()
    for _ in range(200):
        framer.feed(b"x" * 10_000)
        assert framer.pending <= MAX_LINE


def test_framer_refuses_huge_data_length_as_a_plain_line() -> None:
    header = b"<01 DATA 0 999999999 00000000\n"
    framer = Framer()
    assert framer.feed(header + b"<01 OK\n") == [header, b"<01 OK\n"]
    with pytest.raises(ProtocolError, match="ccd"):
        decode_reply(header)


def test_feed_decoded_keeps_frames_after_a_bad_one() -> None:
    framer = Framer()
    with pytest.raises(ProtocolError):
        framer.feed_decoded(b"<01 BOGUS\n<02 OK\n")
    assert framer.feed_decoded(b"") == [Ack(2)]


def test_command_framer_line_endings_split_and_merged() -> None:
    framer = CommandFramer()
    assert framer.feed(b">01 PING\r") == [b">01 PING\r"]
    # The LF of a CRLF split across reads is not an empty command.
    assert framer.feed(b"\n>02 STA") == []
    assert framer.feed(b"TUS\r\n>03 TEMP\n\n\r>04") == [
        b">02 STATUS\r\n",
        b">03 TEMP\n",
    ]
    assert framer.feed(b" CLEAR\n") == [b">04 CLEAR\n"]


def test_command_framer_cuts_overlong_lines() -> None:
    framer = CommandFramer()
    frames = framer.feed(b">1A " + b"A" * 3000)
    assert frames == [(b">1A " + b"A" * 3000)[:MAX_LINE]]
    assert framer.feed(b"AAAA\n>1B PING\n") == [b">1B PING\n"]
    with pytest.raises(BadCommand) as caught:
        decode_command(frames[0])
    assert caught.value.code is ErrorCode.MALFORMED
    assert caught.value.mid == 0x1A


def test_full_frame_through_framer_and_crc() -> None:
    """A frame's worth of 64 KiB blocks in 4 KiB reads: every block, every CRC."""
    payload = bytes(range(256)) * (35347104 // 256 // 8)  # 4.4 MB is enough here
    size = 65536
    blocks = [payload[i : i + size] for i in range(0, len(payload), size)]
    stream = b"".join(
        encode_reply(DataBlock.build(1, i, b)) for i, b in enumerate(blocks)
    )
    framer = Framer()
    got: list[DeviceReply] = []
    for i in range(0, len(stream), 4096):
        got += framer.feed_decoded(stream[i : i + 4096])
    assert [g.payload for g in got if isinstance(g, DataBlock)] == blocks
    assert all(isinstance(g, DataBlock) and g.crc_ok for g in got)

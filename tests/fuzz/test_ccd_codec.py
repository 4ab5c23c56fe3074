"""Fuzzing the CCD controller's codec and framers (drivers/protocol/ccd.py).

Documented behaviour under test: neither framer raises; a line longer than
``max_line`` is delivered cut short and the rest dropped, a DATA header
announcing more than ``max_block`` bytes is delivered as a plain line, so the
buffers stay bounded; ``decode_command`` raises only :class:`BadCommand`,
whose error reply always encodes; ``decode_reply`` and
``Framer.feed_decoded`` raise only :class:`ProtocolError`, and the frames
after a bad one stay queued. Framing does not depend on where the stream was
cut, and pixel payloads may hold any byte.
"""

from __future__ import annotations

import contextlib

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
    decode_command,
    decode_reply,
    encode_command,
    encode_reply,
)
from tests.fuzz.strategies import cuts, fuzz, split, stream_bytes

mids = st.integers(0, 255)
millis = st.integers(0, 36_000_000).map(lambda n: n / 1000)
centis = st.integers(0, 99_999).map(lambda n: n / 100)
counts = st.integers(0, 10**9 - 1)
TERMINATORS = st.sampled_from([b"\n", b"\r", b"\r\n"])

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
#: Payloads biased towards the bytes that break naive readers: LF, '<', '?'.
payloads = st.one_of(
    st.binary(max_size=80),
    st.lists(st.sampled_from(list(b"\n<?> DATA OK\r\x00\xff")), max_size=80).map(bytes),
)
replies: st.SearchStrategy[DeviceReply] = st.one_of(
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
        st.just(16),
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
    st.builds(DataBlock.build, mids, counts, payloads),
    # A block whose CRC is wrong still frames and decodes (the host re-reads it).
    st.builds(DataBlock, mids, counts, payloads, st.integers(0, 0xFFFFFFFF)),
)


def command_stream() -> st.SearchStrategy[bytes]:
    """Random bytes and mangled command lines (wrong MIDs, spaces, lengths)."""
    mangled = st.builds(
        lambda head, verb, args, end: head + verb + args + end,
        st.sampled_from([b">01 ", b">1a ", b">0F  ", b"", b">", b">FF\t"]),
        st.sampled_from([b"PING", b"STATUS", b"EXPOSE", b"READ", b"FOO", b""]),
        st.sampled_from([b"", b" 1", b" -5 DARK", b" 1.5e3 DARK", b" 0 0", b" X"]),
        TERMINATORS,
    )
    lines = st.lists(st.one_of(mangled, stream_bytes(80)), max_size=8).map(b"".join)
    return st.one_of(stream_bytes(), lines)


def feed_commands(
    framer: CommandFramer, chunks: list[bytes], limit: int
) -> list[bytes]:
    frames: list[bytes] = []
    for chunk in chunks:
        frames += framer.feed(chunk)
        assert len(framer._buf) <= limit  # bounded while no terminator comes
    return frames


def attempt(frame: bytes) -> Command | BadCommand:
    """The command in ``frame``, or the BadCommand it raised."""
    try:
        return decode_command(frame)
    except BadCommand as err:
        return err


def outcome(frame: bytes) -> object:
    """What the controller makes of one frame: the command, or its error reply."""
    result = attempt(frame)
    return result.reply() if isinstance(result, BadCommand) else result


@fuzz(300)
@given(command_stream(), cuts, st.sampled_from([8, 24, MAX_LINE]))
def test_command_framer_is_bounded_and_split_invariant(
    data: bytes, cut_at: list[int], max_line: int
) -> None:
    """Cut anywhere, the controller answers the same (a CRLF may lose its LF)."""
    expected = CommandFramer(max_line).feed(data)
    frames = feed_commands(CommandFramer(max_line), split(data, cut_at), max_line)
    assert [outcome(f) for f in frames] == [outcome(f) for f in expected]
    for frame in frames:
        assert 1 <= len(frame) <= max_line + 2  # + the LF of a CRLF


@fuzz(400)
@given(command_stream())
def test_decode_command_raises_only_bad_command_whose_reply_encodes(
    data: bytes,
) -> None:
    for frame in CommandFramer().feed(data) or [data]:
        result = attempt(frame)
        if isinstance(result, BadCommand):
            assert isinstance(result.code, ErrorCode)
            assert 100 <= result.code < 200  # bad input is a syntax error, never 5xx
            wire = encode_reply(result.reply())
            assert decode_reply(wire) == result.reply()
        else:
            assert decode_command(encode_command(result)) == result


@fuzz(200)
@given(st.lists(st.tuples(commands, TERMINATORS), min_size=1, max_size=10), cuts)
def test_merged_commands_split_anywhere_decode_as_sent(
    sent: list[tuple[object, bytes]], cut_at: list[int]
) -> None:
    stream = b"".join(encode_command(c)[:-1] + end for c, end in sent)  # type: ignore[arg-type]
    frames = feed_commands(CommandFramer(), split(stream, cut_at), MAX_LINE)
    assert [decode_command(f) for f in frames] == [c for c, _ in sent]


def reply_stream() -> st.SearchStrategy[bytes]:
    """Random bytes, and valid replies cut short, mangled or glued to garbage."""
    valid = replies.map(encode_reply)
    truncated = st.tuples(valid, st.integers(0, 200)).map(lambda t: t[0][: t[1]])
    header = st.builds(
        lambda mid, idx, n, end: b"<%02X DATA %d %d 00000000%s" % (mid, idx, n, end),
        mids,
        st.integers(0, 99),
        st.sampled_from([0, 1, 7, 64, 65, 10**6, 10**9 - 1]),
        st.sampled_from([b"\n", b"\r\n", b""]),
    )
    pieces = st.one_of(valid, truncated, header, stream_bytes(60))
    return st.one_of(stream_bytes(), st.lists(pieces, max_size=8).map(b"".join))


@fuzz(300)
@given(reply_stream(), cuts, st.sampled_from([(16, 64), (MAX_LINE, 1 << 22)]))
def test_reply_framer_is_bounded_split_invariant_and_decodes_only_protocol_errors(
    data: bytes, cut_at: list[int], limits: tuple[int, int]
) -> None:
    max_line, max_block = limits
    expected = Framer(max_line, max_block).feed(data)
    framer = Framer(max_line, max_block)
    frames: list[bytes] = []
    for chunk in split(data, cut_at):
        frames += framer.feed(chunk)
        # A line is bounded by max_line, a block by its header plus max_block.
        assert framer.pending <= max_line + max_block
    assert frames == expected
    for frame in frames:
        with contextlib.suppress(ProtocolError):
            decode_reply(frame)


@fuzz(300)
@given(reply_stream(), cuts)
def test_feed_decoded_raises_only_protocol_error_and_keeps_the_rest(
    data: bytes, cut_at: list[int]
) -> None:
    """Each bad frame costs one ProtocolError; the good ones still come out."""
    framed = Framer().feed(data)
    good: list[DeviceReply] = []
    bad = 0
    for frame in framed:
        try:
            good.append(decode_reply(frame))
        except ProtocolError:
            bad += 1
    framer = Framer()
    got: list[DeviceReply] = []
    errors = 0
    for chunk in split(data, cut_at):
        pending: bytes = chunk
        for _ in range(len(framed) + 2):  # each call stops at a bad frame
            try:
                replies = framer.feed_decoded(pending)
            except ProtocolError:
                errors += 1
                replies = [ProtocolError]  # type: ignore[list-item]
            else:
                got += replies
            pending = b""
            if not replies:
                break
        else:
            raise AssertionError("feed_decoded(b'') never ran dry")
    assert (got, errors) == (good, bad)


@fuzz(200)
@given(st.lists(replies, min_size=1, max_size=10), cuts)
def test_merged_replies_split_anywhere_decode_as_sent(
    sent: list[DeviceReply], cut_at: list[int]
) -> None:
    stream = b"".join(encode_reply(r) for r in sent)
    framer = Framer()
    chunks = split(stream, cut_at)
    assert [decode_reply(f) for c in chunks for f in framer.feed(c)] == sent
    fast = Framer()
    assert [r for c in chunks for r in fast.feed_decoded(c)] == sent
    assert framer.pending == fast.pending == 0


@fuzz(200)
@given(st.binary(min_size=1, max_size=200), replies, cuts)
def test_a_reply_after_a_garbage_line_decodes(
    garbage: bytes, reply: DeviceReply, cut_at: list[int]
) -> None:
    """Garbage never wedges the host's framer once a line ends."""
    stream = garbage.replace(b"\n", b"") + b"\n" + encode_reply(reply)
    framer = Framer()
    frames = [f for c in split(stream, cut_at) for f in framer.feed(c)]
    assert decode_reply(frames[-1]) == reply

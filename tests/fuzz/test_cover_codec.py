"""Fuzzing the Alnitak cover codec and its framer (drivers/protocol/cover.py).

Documented behaviour under test: the :class:`Framer` never raises and keeps at
most ``max_frame`` bytes; ``decode_command`` raises only :class:`BadCommand`
(a ProtocolError carrying the error code the device owes); ``decode_reply``
and the typed decoders raise only :class:`ProtocolError`. Framing does not
depend on where the byte stream was cut.
"""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import ProtocolError
from drivers.protocol.cover import (
    MAX_FRAME,
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
)
from tests.fuzz.strategies import cuts, fuzz, split, stream_bytes

TERMINATORS = st.sampled_from([b"\n", b"\r", b"\r\n"])

requests = st.one_of(
    st.builds(
        Request,
        st.sampled_from([c for c in Command if c is not Command.SET_BRIGHTNESS]),
        st.none(),
        st.sampled_from(Filler),
    ),
    st.builds(Request, st.just(Command.SET_BRIGHTNESS), st.integers(0, 255)),
)
products = st.integers(0, 99)
replies = st.one_of(
    st.builds(
        Ack,
        st.sampled_from([Command.PING, Command.OPEN, Command.CLOSE, Command.LIGHT_ON]),
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


def feed_all(framer: Framer, chunks: list[bytes]) -> list[bytes]:
    """Feed every chunk; check the buffer bound after each call."""
    frames: list[bytes] = []
    for chunk in chunks:
        frames += framer.feed(chunk)
        assert len(framer.pending) <= framer.max_frame
    return frames


def attempt(frame: bytes) -> Request | BadCommand:
    """The request in ``frame``, or the BadCommand it raised."""
    try:
        return decode_command(frame)
    except BadCommand as err:
        return err


def check_frame(frame: bytes, max_frame: int) -> None:
    assert frame[-1:] in (b"\r", b"\n")
    assert 2 <= len(frame) <= max_frame + 1
    assert b"\r" not in frame[:-1]
    assert b"\n" not in frame[:-1]


@fuzz(300)
@given(stream_bytes(), cuts, st.sampled_from([1, 5, 8, MAX_FRAME]))
def test_framer_on_random_bytes_is_bounded_and_split_invariant(
    data: bytes, cut_at: list[int], max_frame: int
) -> None:
    whole = Framer(max_frame)
    expected = whole.feed(data)
    chunked = Framer(max_frame)
    frames = feed_all(chunked, split(data, cut_at))
    assert frames == expected
    assert chunked.pending == whole.pending
    assert chunked.discarded == whole.discarded
    for frame in frames:
        check_frame(frame, max_frame)
    # Nothing is lost silently: every byte is framed, pending or counted.
    body = sum(len(f) - 1 for f in frames) + len(chunked.pending)
    kept = sum(1 for b in data if b not in (0x0A, 0x0D))
    assert body + chunked.discarded == kept


@fuzz(300)
@given(stream_bytes(max_size=60))
def test_decode_command_raises_only_bad_command_with_a_code(data: bytes) -> None:
    result = attempt(data)
    if isinstance(result, BadCommand):
        assert isinstance(result.code, ErrorCode)
        # The simulator's answer to it always encodes to the 8-byte error reply.
        reply = encode_reply(ErrorReply(result.code))
        assert decode_reply(reply) == ErrorReply(result.code)
    else:
        assert encode_command(result).rstrip(b"\n") == data.rstrip(b"\r\n")


@fuzz(300)
@given(stream_bytes(max_size=40))
def test_reply_decoders_raise_only_protocol_error(data: bytes) -> None:
    decoders = [
        decode_reply,
        decode_status,
        decode_firmware,
        lambda f: decode_ack(f, Command.CLOSE),
        lambda f: decode_brightness(f, Command.GET_BRIGHTNESS),
    ]
    for decode in decoders:
        with contextlib.suppress(ProtocolError):
            decode(data)


@fuzz(200)
@given(st.lists(st.tuples(requests, TERMINATORS), min_size=1, max_size=12), cuts)
def test_merged_commands_split_anywhere_decode_as_sent(
    sent: list[tuple[Request, bytes]], cut_at: list[int]
) -> None:
    stream = b"".join(encode_command(r)[:-1] + end for r, end in sent)
    frames = feed_all(Framer(), split(stream, cut_at))
    assert [decode_command(f) for f in frames] == [r for r, _ in sent]


@fuzz(200)
@given(st.lists(replies, min_size=1, max_size=12), cuts)
def test_merged_replies_split_anywhere_decode_as_sent(
    sent: list[object], cut_at: list[int]
) -> None:
    stream = b"".join(encode_reply(r) for r in sent)  # type: ignore[arg-type]
    frames = feed_all(Framer(), split(stream, cut_at))
    assert [decode_reply(f) for f in frames] == sent


@fuzz(200)
@given(stream_bytes(max_size=200), requests, cuts)
def test_a_valid_command_after_garbage_and_a_terminator_decodes(
    garbage: bytes, request: Request, cut_at: list[int]
) -> None:
    """Truncated or random input never wedges the framer: the next line is clean."""
    stream = garbage + b"\n" + encode_command(request)
    frames = feed_all(Framer(), split(stream, cut_at))
    assert frames, "the valid command produced no frame"
    assert decode_command(frames[-1]) == request
    for frame in frames[:-1]:
        with contextlib.suppress(BadCommand):
            decode_command(frame)


@fuzz(200)
@given(requests, st.integers(0, 4), cuts)
def test_truncated_commands_never_decode_as_something_else(
    request: Request, keep: int, cut_at: list[int]
) -> None:
    """A command cut short, then terminated, is refused (it is never a command)."""
    truncated = encode_command(request)[:keep] + b"\n"
    frames = feed_all(Framer(), split(truncated, cut_at))
    for frame in frames:
        result = attempt(frame)
        assert isinstance(result, BadCommand), f"truncated {frame!r} decoded"
        assert result.code in (ErrorCode.MALFORMED, ErrorCode.UNKNOWN_COMMAND)

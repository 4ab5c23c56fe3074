"""The Archon codec against literal bytes, sdss-archon's exchanges and the document."""

from __future__ import annotations

import ast
import re
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import ConfigError, ProtocolError
from drivers.protocol.archon import (
    BLOCK_SIZE,
    BUFFER_BASES,
    MAX_CONFIG_LINES,
    MAX_ID,
    MAX_PARAMETER,
    Command,
    Power,
    Reply,
    SampleMode,
    Verb,
    blocks_for,
    decode_command,
    decode_reply,
    encode_binary_reply,
    encode_command,
    encode_reply,
    fetch_command,
    lock_command,
    next_id,
    param_command,
    parse_fetch,
    parse_lock,
    parse_param,
    split_command,
)
from drivers.protocol.archon_acf import (
    ConfigLine,
    config_line,
    encode_config_entry,
    format_acf,
    parse_acf,
    parse_config_entry,
    parse_config_line,
    parse_rconfig,
    rconfig_command,
)
from drivers.protocol.archon_framer import CommandFramer, Framer
from drivers.protocol.archon_status import (
    BufferStatus,
    FrameStatus,
    encode_key_values,
    parse_key_values,
)
from tests.docs_exchanges import DOC, Exchange, exchanges
from tests.unit.protocol import archon_exchanges as sdss

ARCHON_EXCHANGES = exchanges("archon")
_SECTION_RE = re.compile(r"<!-- BEGIN archon -->\n(.*?)<!-- END archon -->", re.S)
_BINARY_BLOCK_RE = re.compile(r"^```exchange-binary archon\n(.*?)^```", re.M | re.S)


# -- the document ------------------------------------------------------------------


def _section(doc: Path = DOC) -> str:
    match = _SECTION_RE.search(doc.read_text(encoding="utf-8"))
    assert match is not None, "docs/protocols.md has no Archon section"
    return match[1]


def _literal(node: ast.expr) -> bytes | int:
    """A sum of bytes literals, each maybe repeated: all a binary line may hold."""
    if isinstance(node, ast.Constant) and isinstance(node.value, bytes | int):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
        left, right = _literal(node.left), _literal(node.right)
        if isinstance(node.op, ast.Add) and isinstance(left, bytes):
            assert isinstance(right, bytes)
            return left + right
        if isinstance(node.op, ast.Mult) and isinstance(left, bytes):
            assert isinstance(right, int)
            return left * right
    raise AssertionError(f"not a sum of bytes literals: {ast.unparse(node)}")


def _binary_exchanges() -> list[list[tuple[str, bytes]]]:
    found = []
    for block in _BINARY_BLOCK_RE.findall(_section()):
        steps = []
        for line in block.splitlines():
            direction, _, expression = line.strip().partition(" ")
            assert direction in ("->", "<-"), line
            value = _literal(ast.parse(expression, mode="eval").body)
            assert isinstance(value, bytes), line
            steps.append((direction, value))
        found.append(steps)
    return found


BINARY_EXCHANGES = _binary_exchanges()


def test_document_has_the_archon_section() -> None:
    assert _section().startswith("## The STA Archon protocol (CCD controller)\n")


def test_document_shows_every_kind_of_exchange() -> None:
    sent = [
        split_command(decode_command(data).text)[0]
        for steps in [ex.steps for ex in ARCHON_EXCHANGES] + BINARY_EXCHANGES
        for way, data in steps
        if way == "->"
    ]
    assert {Verb.SYSTEM, Verb.STATUS, Verb.FRAME, Verb.LOCK, Verb.FETCH} <= set(sent)
    assert {Verb.RCONFIG, Verb.WCONFIG, Verb.FASTLOADPARAM, Verb.APPLYALL} <= set(sent)
    replies = [data for ex in ARCHON_EXCHANGES for way, data in ex.steps if way == "<-"]
    assert any(data.startswith(b"?") for data in replies)
    ids = [
        decode_command(d).id
        for ex in ARCHON_EXCHANGES
        for w, d in ex.steps
        if w == "->"
    ]
    assert ids[ids.index(0xFF) : ids.index(0xFF) + 2] == [0xFF, 0x00]
    assert len(BINARY_EXCHANGES) == 2


def _check_meaning(command: Command, reply: Reply) -> None:
    """What the reply must hold for the command it answers."""
    verb, _ = split_command(command.text)
    if not reply.ok:
        return
    if verb in (Verb.STATUS, Verb.SYSTEM):
        assert parse_key_values(reply.text)
    elif verb is Verb.FRAME:
        FrameStatus.from_key_values(parse_key_values(reply.text))
    elif verb is Verb.RCONFIG:
        parse_rconfig(command.text)
        parse_config_entry(reply.text)
    else:
        assert reply.text == "", (command, reply)
        if verb is Verb.WCONFIG:
            assert config_line(**vars(parse_config_line(command.text))) == command.text
        elif verb is Verb.FASTLOADPARAM:
            assert param_command(*parse_param(command.text)) == command.text
        elif verb is Verb.LOCK:
            assert lock_command(parse_lock(command.text)) == command.text


@pytest.mark.parametrize(
    "exchange", ARCHON_EXCHANGES, ids=[f"line{ex.line}" for ex in ARCHON_EXCHANGES]
)
def test_document_exchange_replays_against_codec(exchange: Exchange) -> None:
    steps = exchange.steps
    assert steps, f"empty exchange at protocols.md:{exchange.line}"
    assert [way for way, _ in steps] == ["->", "<-"] * (len(steps) // 2)
    for (_, sent), (_, answer) in zip(steps[::2], steps[1::2], strict=True):
        command = decode_command(sent)
        assert encode_command(command) == sent
        reply = decode_reply(answer)
        assert encode_reply(reply) == answer
        assert reply.id == command.id
        _check_meaning(command, reply)
    stream = b"".join(data for way, data in steps if way == "<-")
    assert Framer().feed(stream) == [decode_reply(d) for w, d in steps if w == "<-"]
    host = b"".join(data for way, data in steps if way == "->")
    assert CommandFramer().feed(host) == [d for w, d in steps if w == "->"]


@pytest.mark.parametrize("steps", BINARY_EXCHANGES, ids=["window", "two-blocks"])
def test_document_binary_exchange_replays_against_codec(
    steps: list[tuple[str, bytes]],
) -> None:
    framer = Framer()
    frame: FrameStatus | None = None
    raw = b""
    for way, data in steps:
        if way == "->":
            command = decode_command(data)
            assert encode_command(command) == data
            verb, _ = split_command(command.text)
            if verb is Verb.FETCH:
                framer.expect_binary(command.id, parse_fetch(command.text)[1])
            raw = b""
            continue
        raw += data
        replies = framer.feed(data)
        if not replies:  # a block of a longer transfer
            continue
        (reply,) = replies
        assert reply.id == command.id
        if reply.binary is None:
            assert encode_reply(reply) == raw
            _check_meaning(command, reply)
            if verb is Verb.FRAME:
                frame = FrameStatus.from_key_values(parse_key_values(reply.text))
            continue
        assert encode_binary_reply(reply.id, reply.binary) == raw
        assert framer.buffered == 0
        if frame is not None:  # the window: FRAME told what FETCH to send
            buffer = frame.latest_complete()
            assert buffer is not None
            assert buffer.fetch_command() == command.text
            pixels = struct.unpack(f"<{buffer.nbytes // 2}H", reply.binary[:16])
            assert pixels == (10000, 15370, 15370, 10001, 2620, 2620, 10002, 10003)
            assert reply.binary[16:] == b"\xff" * (BLOCK_SIZE - 16)


# -- literal bytes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "data"),
    [
        (Command(0x01, "SYSTEM"), b">01SYSTEM\n"),
        (Command(0xFF, "STATUS"), b">FFSTATUS\n"),
        (Command(0x00, "LOCK0"), b">00LOCK0\n"),
        (Command(0x2A, "FETCHA0000000000086D7"), b">2AFETCHA0000000000086D7\n"),
        (
            Command(0x0B, "FASTLOADPARAM IntMS 3600000"),
            b">0BFASTLOADPARAM IntMS 3600000\n",
        ),
    ],
)
def test_command_literal_bytes(command: Command, data: bytes) -> None:
    assert encode_command(command) == data
    assert decode_command(data) == command


def test_command_accepts_crlf_as_azcam_sends_it() -> None:
    # azcam's SocketInterface.send appends "\r\n" to every Archon command.
    assert decode_command(b">01STATUS\r\n") == Command(1, "STATUS")


@pytest.mark.parametrize(
    ("reply", "data"),
    [
        (Reply(0x01), b"<01\n"),
        (Reply(0x1F, ok=False), b"?1F\n"),
        (Reply(0xAB, text="POWER=4 POWERGOOD=1"), b"<ABPOWER=4 POWERGOOD=1\n"),
        (Reply(0x05, text=":not binary"), b"<05:not binary\n"),
        (Reply(0x07, binary=b"\n" * BLOCK_SIZE), b"<07:" + b"\n" * BLOCK_SIZE),
    ],
)
def test_reply_literal_bytes(reply: Reply, data: bytes) -> None:
    assert encode_reply(reply) == data
    assert decode_reply(data, binary=reply.binary is not None) == reply


def test_helpers_literal_text() -> None:
    assert fetch_command(0xA0000000, 34519) == "FETCHA0000000000086D7"
    assert parse_fetch("FETCHC000000000000258") == (0xC0000000, 600)
    assert lock_command(2) == "LOCK2"
    assert parse_lock("LOCK0") == 0
    assert param_command(Verb.FASTLOADPARAM, "IntCS", 100) == "FASTLOADPARAM IntCS 100"
    assert parse_param("FASTPREPPARAM Exposures 1") == (
        Verb.FASTPREPPARAM,
        "Exposures",
        1,
    )
    assert config_line(0, "CONFIG/1", "1") == "WCONFIG0000CONFIG/1=1"
    assert rconfig_command(MAX_CONFIG_LINES - 1) == "RCONFIG3FFF"
    assert blocks_for(4196 * 4212 * 2) == 34519
    assert blocks_for(1024) == 1
    assert blocks_for(1025) == 2
    assert next_id(0xFE) == 0xFF
    assert next_id(0xFF) == 0x00
    assert Power(4) is Power.ON


@pytest.mark.parametrize(
    ("text", "verb", "argument"),
    [
        ("FETCHLOG", Verb.FETCHLOG, ""),
        ("FETCH0000000000000001", Verb.FETCH, "0000000000000001"),
        ("LOADPARAMS", Verb.LOADPARAMS, ""),
        ("LOADPARAM Exposures 1", Verb.LOADPARAM, " Exposures 1"),
        ("APPLYMOD0A", Verb.APPLYMOD, "0A"),  # camerad: zero-based hex
        ("APPLYMOD11", Verb.APPLYMOD, "11"),  # sdss-archon: decimal module number
        ("APPLYALL", Verb.APPLYALL, ""),
        ("WCONFIG0004PARAMETER1=Lines=100", Verb.WCONFIG, "0004PARAMETER1=Lines=100"),
    ],
)
def test_split_command(text: str, verb: Verb, argument: str) -> None:
    assert split_command(text) == (verb, argument)


# -- sdss-archon's exchanges -------------------------------------------------------


@pytest.mark.parametrize(
    "pair",
    [
        sdss.SYSTEM_HARDWARE,
        sdss.STATUS_DEFAULT,
        sdss.EMPTY_DEFAULT,
        sdss.STATUS_VALUES,
        sdss.STATUS_POWER_BAD,
        sdss.STATUS_REFUSED,
        sdss.SYSTEM_VALUES,
        sdss.SYSTEM_MODTYPE,
        sdss.FRAME_SMALL,
        sdss.LOCK_BUFFER_2,
        sdss.UNLOCK_ALL,
        sdss.PING_PONG,
        sdss.PING_REFUSED,
    ],
)
def test_sdss_archon_text_exchange(pair: tuple[bytes, bytes]) -> None:
    sent, answer = pair
    command, reply = decode_command(sent), decode_reply(answer)
    assert reply.id == command.id
    if reply.ok and command.text in ("STATUS", "SYSTEM", "FRAME"):
        values = parse_key_values(reply.text)
        assert encode_key_values(values) == reply.text.rstrip(" ")


def test_sdss_archon_status_values() -> None:
    values = parse_key_values(decode_reply(sdss.STATUS_POWER_BAD[1]).text)
    assert Power(int(values["POWER"])) is Power.ON
    assert values["POWERGOOD"] == "0"
    system = parse_key_values(decode_reply(sdss.SYSTEM_HARDWARE[1]).text)
    assert system["MOD_PRESENT"] == "FFF"
    assert system["MOD12_TYPE"] == "11"
    assert len(system) == 6 + 4 * 12


def test_sdss_archon_fetch_sequence() -> None:
    frame_text = decode_reply(sdss.FRAME_FETCH[1]).text
    values = parse_key_values(frame_text)
    assert values["BUF2BASE"] == "3221225472"
    # Its mock leaves out TIMER, RBUF and buffer 3's geometry, which a real
    # controller sends; we need RBUF, and say so.
    with pytest.raises(ProtocolError, match=r"lacks.*RBUF.*BUF3SAMPLE"):
        FrameStatus.from_key_values(values)
    frame = FrameStatus.from_key_values(
        values
        | {"RBUF": "0", "BUF3SAMPLE": "0", "BUF3BASE": "3758096384"}
        | {"BUF3FRAME": "0", "BUF3WIDTH": "0", "BUF3HEIGHT": "0"}
        | {"BUF1FRAME": "1", "BUF2FRAME": "2"}
    )
    buffer = frame.buffer(2)
    assert buffer.fetch_command() == decode_command(sdss.FETCH_BUFFER_2[0]).text
    framer = Framer()
    framer.expect_binary(0x0C, 600)
    data = sdss.FETCH_BUFFER_2[1]
    replies = [
        r for at in range(0, len(data), 5000) for r in framer.feed(data[at : at + 5000])
    ]
    assert replies == [Reply(0x0C, binary=b"0" * (600 * BLOCK_SIZE))]
    assert len(replies[0].binary or b"") == buffer.nbytes == 640 * 480 * 2


def test_sdss_archon_binary_reply_padded_with_spaces() -> None:
    framer = Framer()
    framer.expect_binary(0x0E, 1)
    (reply,) = framer.feed(sdss.BINARY_ONE_BLOCK[1])
    assert reply.binary is not None
    assert reply.binary.strip() == b"12345"


def test_sdss_archon_ping_is_no_command_we_know() -> None:
    assert decode_command(sdss.PING_PONG[0]).text == "PING"
    with pytest.raises(ProtocolError, match="unknown command 'PING'"):
        split_command("PING")


@pytest.mark.parametrize(("sent", "answer", "entry"), sdss.RCONFIG_REPLIES)
def test_sdss_archon_rconfig(
    sent: bytes, answer: bytes, entry: tuple[str, str] | None
) -> None:
    parse_rconfig(decode_command(sent).text)
    assert parse_config_entry(decode_reply(answer).text) == entry
    assert encode_config_entry(entry) == decode_reply(answer).text


def test_sdss_archon_write_config_fixture() -> None:
    lines = parse_acf(sdss.CONFIG_FIXTURE_ACF)
    assert len(lines) == 18
    sent = [config_line(n, key, value) for n, (key, value) in enumerate(lines)]
    assert tuple(sent[:5]) == sdss.CONFIG_FIXTURE_WCONFIG


def test_sdss_archon_boss_acf() -> None:
    assert parse_acf(sdss.BOSS_EXTRA_ACF) == sdss.BOSS_EXTRA_CONFIG


def test_sdss_archon_expose_commands() -> None:
    for text in sdss.EXPOSE_ONE_SECOND:
        verb, _ = split_command(text)
        if verb is Verb.FASTLOADPARAM:
            assert param_command(*parse_param(text)) == text


# -- round trips -------------------------------------------------------------------

_ids = st.integers(0, MAX_ID)
_printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E))
_word = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="="),
    min_size=1,
    max_size=12,
)
_value = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="="),
    max_size=12,
)
_key = st.from_regex(r"[A-Za-z0-9_]{1,8}(/[A-Za-z0-9_]{1,8}){0,2}", fullmatch=True)


@given(_ids, _printable.filter(bool))
def test_command_round_trip(message_id: int, text: str) -> None:
    command = Command(message_id, text)
    assert decode_command(encode_command(command)) == command


@given(_ids, st.booleans(), _printable)
def test_text_reply_round_trip(message_id: int, ok: bool, text: str) -> None:
    reply = Reply(message_id, ok, text if ok else "")
    assert decode_reply(encode_reply(reply)) == reply


@given(_ids)
def test_ids_wrap(message_id: int) -> None:
    assert next_id(message_id) == (message_id + 1) % 256
    assert f"{next_id(message_id):02X}" != f"{message_id:02X}"


@given(st.dictionaries(_word, _value))
def test_key_values_round_trip(values: dict[str, str]) -> None:
    assert parse_key_values(encode_key_values(values)) == values
    assert parse_key_values(encode_key_values(values) + " ") == values


@given(st.integers(0, MAX_CONFIG_LINES - 1), _key, _printable)
def test_config_line_round_trip(index: int, key: str, value: str) -> None:
    text = config_line(index, key, value)
    assert parse_config_line(text) == ConfigLine(index, key, value)
    assert parse_rconfig(rconfig_command(index)) == index
    assert parse_config_entry(encode_config_entry((key, value))) == (key, value)


@given(st.dictionaries(_key, _printable, max_size=20))
def test_acf_round_trip(entries: dict[str, str]) -> None:
    lines = list(entries.items())
    assert parse_acf(format_acf(lines)) == lines


def test_acf_quotes_as_archongui_does() -> None:
    text = format_acf([("MOD1/XVP_ENABLE1", "1"), ("LINE1", "X; GOTO Main")])
    assert text == '[CONFIG]\nMOD1\\XVP_ENABLE1=1\nLINE1="X; GOTO Main"\n'
    assert format_acf([("CONSTANT0", "# Clock levels")]).endswith("=# Clock levels\n")


_buffers = st.builds(
    BufferStatus,
    number=st.just(1),
    complete=st.booleans(),
    sample=st.sampled_from(SampleMode),
    base=st.sampled_from(BUFFER_BASES),
    frame=st.integers(0, 10**6),
    width=st.integers(0, 5000),
    height=st.integers(0, 5000),
    timestamp=st.integers(0, 2**64 - 1),
    mode=st.integers(0, 2),
    pixels=st.integers(0, 5000),
    lines=st.integers(0, 5000),
    re_timestamp=st.integers(0, 2**64 - 1),
    fe_timestamp=st.integers(0, 2**64 - 1),
)


@given(
    st.lists(_buffers, min_size=1, max_size=3), st.integers(0, 2**64 - 1) | st.none()
)
def test_frame_status_round_trip(
    buffers: list[BufferStatus], timer: int | None
) -> None:
    numbered = tuple(
        BufferStatus(**(vars(b) | {"number": n})) for n, b in enumerate(buffers, 1)
    )
    frame = FrameStatus(rbuf=0, wbuf=len(numbered), buffers=numbered, timer=timer)
    text = encode_key_values(frame.to_key_values())
    assert FrameStatus.from_key_values(parse_key_values(text)) == frame


def _stream_strategy() -> st.SearchStrategy[list[Reply]]:
    text = st.builds(Reply, _ids, st.just(True), _printable)
    refused = st.builds(Reply, _ids, st.just(False))
    binary = st.builds(
        lambda i, n, fill: Reply(i, binary=(fill * BLOCK_SIZE)[: n * BLOCK_SIZE]),
        _ids,
        st.integers(1, 3),
        st.sampled_from([b"\n", b"<01:", b"?01\n", b"\x00\xff", b"<"]).map(
            lambda b: b * 4
        ),
    )
    return st.lists(st.one_of(text, refused, binary), max_size=8)


@given(_stream_strategy(), st.data())
def test_framer_in_any_chunks(replies: list[Reply], data: st.DataObject) -> None:
    replies = list({reply.id: reply for reply in replies}.values())  # one per id
    framer = Framer()
    for reply in replies:
        if reply.binary is not None:
            framer.expect_binary(reply.id, len(reply.binary) // BLOCK_SIZE)
    stream = b"".join(encode_reply(reply) for reply in replies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    got: list[Reply] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += framer.feed(stream[start:end])
    assert got == replies
    assert framer.buffered == 0


@given(
    st.lists(st.builds(Command, _ids, _printable.filter(bool)), max_size=8), st.data()
)
def test_command_framer_in_any_chunks(
    commands: list[Command], data: st.DataObject
) -> None:
    stream = b"".join(encode_command(command) for command in commands)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    framer = CommandFramer()
    frames: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        frames += framer.feed(stream[start:end])
    assert [decode_command(frame) for frame in frames] == commands


# -- the framers -------------------------------------------------------------------


def test_framer_byte_by_byte_through_a_readout() -> None:
    stream = (
        b"<01\n"
        + encode_binary_reply(0x02, b"\n<02:?02\n" * 200)
        + b"<03:text, not binary\n"
    )
    framer = Framer()
    framer.expect_binary(0x02, 2)
    got = [reply for byte in stream for reply in framer.feed(bytes([byte]))]
    assert [r.id for r in got] == [1, 2, 3]
    assert got[1].binary is not None
    assert got[1].binary[:1800] == b"\n<02:?02\n" * 200
    assert got[1].binary[1800:] == b"\xff" * (2 * BLOCK_SIZE - 1800)
    assert got[2].text == ":text, not binary"


def test_framer_counts_blocks_and_forgets_a_refused_fetch() -> None:
    framer = Framer()
    framer.expect_binary(0x10, 3)
    assert framer.feed(encode_binary_reply(0x10, b"x" * 1500)) == []
    assert framer.blocks_received(0x10) == 2
    assert framer.feed(b"?10\n") == [Reply(0x10, ok=False)]
    assert framer.blocks_received(0x10) == 0
    assert framer.feed(b"<10:abc\n") == [Reply(0x10, text=":abc")]


def test_framer_cancel_after_a_short_fetch() -> None:
    framer = Framer()
    framer.expect_binary(0x20, 4)
    framer.feed(encode_binary_reply(0x20, b"x", nblocks=3))
    assert framer.cancel_binary(0x20) == 3
    assert framer.cancel_binary(0x20) == 0


def test_encode_binary_reply_cuts_and_pads() -> None:
    data = encode_binary_reply(0x01, b"ab" * 1024, nblocks=1)
    assert data == b"<01:" + b"ab" * 512
    data = encode_binary_reply(0x01, b"a", nblocks=2, fill=0)
    assert data == b"<01:a" + b"\x00" * 1023 + b"<01:" + b"\x00" * 1024


def test_command_framer_drops_an_endless_line() -> None:
    framer = CommandFramer(max_text=16)
    frames = framer.feed(b">01STATUS\n>02" + b"A" * 30)
    assert frames[0] == b">01STATUS\n"
    with pytest.raises(ProtocolError, match="unparseable command"):
        decode_command(frames[1])
    assert framer.feed(b"AAAA\n>03FRAME\n") == [b">03FRAME\n"]


def test_command_framer_keeps_crlf() -> None:
    assert CommandFramer().feed(b">01STATUS\r\n>02") == [b">01STATUS\r\n"]


# -- FRAME -------------------------------------------------------------------------


def test_frame_status_reads_the_document_frame() -> None:
    (exchange,) = [
        ex for ex in ARCHON_EXCHANGES if any(b"FRAME\n" in d for _, d in ex.steps)
    ]
    frame = FrameStatus.from_key_values(
        parse_key_values(decode_reply(exchange.steps[1][1]).text)
    )
    buffer = frame.latest_complete()
    assert buffer is not None
    assert (buffer.number, buffer.width, buffer.height) == (1, 4196, 4212)
    assert buffer.nbytes == 35_347_104
    assert buffer.fetch_command() == "FETCHA0000000000086D7"
    assert (buffer.fe_timestamp - buffer.re_timestamp) / 1e8 == 3600.0
    assert [b.base for b in frame.buffers] == list(BUFFER_BASES)
    assert frame.wbuf == 1
    assert frame.timer is not None


def test_frame_status_32_bit_samples() -> None:
    buffer = BufferStatus(
        number=1, complete=True, sample=SampleMode.BITS32, base=0xA0000000,
        frame=1, width=10, height=10, timestamp=0,
    )  # fmt: skip
    assert buffer.nbytes == 400
    assert buffer.fetch_command() == "FETCHA000000000000001"


def test_frame_status_with_no_complete_buffer() -> None:
    values = {"RBUF": "0", "WBUF": "1"} | {
        f"BUF1{key}": "0"
        for key in (
            "SAMPLE",
            "COMPLETE",
            "BASE",
            "FRAME",
            "WIDTH",
            "HEIGHT",
            "TIMESTAMP",
        )
    }
    frame = FrameStatus.from_key_values(values)
    assert frame.latest_complete() is None
    assert len(frame.buffers) == 1


# -- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"STATUS\n",
        b">1aSTATUS\n",  # lowercase hex
        b">1STATUS\n",
        b">01\n",
        b">01STATUS",  # no terminator
        b">01STA\tTUS\n",
        b">01STATUS\r\r\n",
        b">01\xe9\n",
    ],
)
def test_decode_command_refuses(data: bytes) -> None:
    with pytest.raises(
        ProtocolError, match=r"unparseable command .*expected b'>xxCOMMAND"
    ):
        decode_command(data)


@pytest.mark.parametrize(
    "data",
    [b"", b"<01", b"<1\n", b"<ab\n", b"?01junk\n", b"!01\n", b"<01\r\n", b"<01\x00\n"],
)
def test_decode_reply_refuses(data: bytes) -> None:
    with pytest.raises(
        ProtocolError,
        match=r"unparseable reply .*expected b'<xx\.\.\.\\n' or b'\?xx\\n'",
    ):
        decode_reply(data)


@pytest.mark.parametrize(
    "data", [b"<01:" + b"x" * 1023, b"<01" + b"x" * 1025, b"?01:" + b"x" * 1024]
)
def test_decode_binary_block_refuses(data: bytes) -> None:
    with pytest.raises(ProtocolError, match="unparseable binary block"):
        decode_reply(data, binary=True)


@pytest.mark.parametrize(
    ("stream", "match"),
    [
        (b"hello\n", "unparseable reply b'hello"),
        (b"<0x", "unparseable reply b'<0x'"),
        (b"<QF:" + b"\x00" * 10, "unparseable reply b'<QF:"),  # camerad's auto-fetch
        (b"?01 error\n", "unparseable reply b'\\?01 error"),
        (b"<01" + b"x" * 70_000, "runs past 65536 bytes"),
        (b"<05PONG\n", "text reply b'<05P'... to FETCH 05"),
    ],
)
def test_framer_refuses_and_empties(stream: bytes, match: str) -> None:
    framer = Framer()
    framer.expect_binary(0x05, 1)
    with pytest.raises(ProtocolError, match=match):
        framer.feed(stream)
    assert framer.buffered == 0
    assert framer.blocks_received(0x05) == 0
    assert framer.feed(b"<05:x\n") == [Reply(0x05, text=":x")]  # no transfer left


def test_framer_refuses_bad_expectations() -> None:
    framer = Framer()
    framer.expect_binary(0x01, 1)
    with pytest.raises(ProtocolError, match="cannot expect 1 blocks for id 01"):
        framer.expect_binary(0x01, 1)
    with pytest.raises(ProtocolError, match="cannot expect 0 blocks"):
        framer.expect_binary(0x02, 0)
    with pytest.raises(ProtocolError, match="does not fit two hex digits"):
        framer.expect_binary(0x100, 1)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("PING", "unknown command 'PING'"),
        ("status", "unknown command"),
        ("STATUS1", "bad argument '1' to STATUS; expected none"),
        ("LOCK4", "bad argument '4' to LOCK"),
        ("LOCK", "bad argument '' to LOCK"),
        ("FETCHa000000000000001", "bad argument"),
        ("FETCHA00000000000001", "bad argument"),
        ("RCONFIG12345", "bad argument"),
        ("WCONFIG0000NOEQUALS", "bad argument"),
        ("FASTLOADPARAM IntMS", "bad argument"),
        ("FASTLOADPARAM IntMS -1", "bad argument"),
        ("FASTLOADPARAM  IntMS 1", "bad argument"),
        ("APPLYMOD123", "bad argument"),
    ],
)
def test_split_command_refuses(text: str, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        split_command(text)


def test_argument_helpers_refuse() -> None:
    with pytest.raises(ProtocolError, match="asks for no block"):
        parse_fetch("FETCHA000000000000000")
    with pytest.raises(ProtocolError, match="is no FETCH command"):
        parse_fetch("LOCK1")
    with pytest.raises(ProtocolError, match="expected an address and a block count"):
        fetch_command(0x1_0000_0000, 1)
    with pytest.raises(ProtocolError, match="no frame buffer 4"):
        lock_command(4)
    with pytest.raises(ProtocolError, match=rf"expected 0\.\.{MAX_PARAMETER}"):
        param_command(Verb.FASTLOADPARAM, "IntMS", MAX_PARAMETER + 1)
    with pytest.raises(ProtocolError, match=rf"expected 0\.\.{MAX_PARAMETER}"):
        parse_param(f"FASTLOADPARAM IntMS {MAX_PARAMETER + 1}")
    with pytest.raises(ProtocolError, match="sets no parameter"):
        param_command(Verb.HOLDTIMING, "IntMS", 1)
    with pytest.raises(
        ProtocolError, match=r"configuration line 16384; expected 0\.\.3FFF"
    ):
        parse_config_line("WCONFIG4000KEY=1")
    with pytest.raises(ProtocolError, match="configuration line 16384"):
        parse_rconfig("RCONFIG4000")
    with pytest.raises(ProtocolError, match="bad configuration line"):
        config_line(0, "MOD1//X", "1")
    with pytest.raises(ProtocolError, match="RCONFIG reply 'LINE0' has no '='"):
        parse_config_entry("LINE0")
    with pytest.raises(ProtocolError, match="does not fit two hex digits"):
        next_id(256)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("POWER=4 POWERGOOD", "malformed token 'POWERGOOD'"),
        ("=4", "malformed token '=4'"),
        ("A=1=2", "malformed token 'A=1=2'"),
        ("A=1 A=2", "key A twice"),
    ],
)
def test_parse_key_values_refuses(text: str, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        parse_key_values(text)


def test_encode_key_values_refuses() -> None:
    with pytest.raises(ProtocolError, match="'A=b c' is no valid KEY=VALUE token"):
        encode_key_values({"A": "b c"})


_FRAME_OK = {"RBUF": "0", "WBUF": "1"} | {
    f"BUF1{key}": "0"
    for key in ("SAMPLE", "COMPLETE", "BASE", "FRAME", "WIDTH", "HEIGHT", "TIMESTAMP")
}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"BUF1WIDTH": "4x"}, "BUF1WIDTH='4x' is not a decimal integer"),
        ({"BUF1TIMESTAMP": "G"}, "BUF1TIMESTAMP='G' is not a hexadecimal integer"),
        ({"BUF1COMPLETE": "2"}, "BUF1COMPLETE=2"),
        ({"BUF1SAMPLE": "2"}, "BUF1SAMPLE=2"),
        ({"WBUF": "2"}, "WBUF=2; expected 0..1"),
        ({"TIMER": "xyz"}, "TIMER='xyz'"),
    ],
)
def test_frame_status_refuses(change: dict[str, str], match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        FrameStatus.from_key_values(_FRAME_OK | change)


def test_frame_status_refuses_missing_fields() -> None:
    with pytest.raises(ProtocolError, match=r"lacks \['BUF1COMPLETE'\]"):
        FrameStatus.from_key_values({"RBUF": "0", "WBUF": "0"})
    values = dict(_FRAME_OK)
    del values["BUF1BASE"]
    with pytest.raises(ProtocolError, match=r"lacks \['BUF1BASE'\]"):
        FrameStatus.from_key_values(values)


def test_values_refused_at_construction() -> None:
    with pytest.raises(ProtocolError, match="a command needs a name"):
        Command(1, "")
    with pytest.raises(ProtocolError, match="not printable ASCII"):
        Command(1, "STATUS\n")
    with pytest.raises(ProtocolError, match="an error reply"):
        Reply(1, ok=False, text="x")
    with pytest.raises(ProtocolError, match="binary data of 10 bytes"):
        Reply(1, binary=b"x" * 10)
    with pytest.raises(ProtocolError, match="at least one block"):
        encode_binary_reply(1, b"x", nblocks=0)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("ADXCDS=0\n", r"no \[CONFIG\] section"),
        ("[CONFIG]\nADXCDS\n", "ACF line 2: 'ADXCDS'; expected KEY=VALUE"),
        ("[CONFIG]\nMOD1\\\\X=1\n", "ACF line 2"),  # a doubled backslash
        ("[CONFIG]\nA B=1\n", "ACF line 2"),
        ("[CONFIG]\nA=1\nB=2\nA=3\n", "line 4: A again \\(first on line 2\\)"),
        ("[CONFIG]\nA=\x01\n", "ACF line 2"),
    ],
)
def test_parse_acf_refuses(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_acf(text)


def test_parse_acf_refuses_too_many_lines() -> None:
    text = "[CONFIG]\n" + "".join(f"L{n}=0\n" for n in range(MAX_CONFIG_LINES + 1))
    with pytest.raises(ConfigError, match="16385 \\[CONFIG\\] lines"):
        parse_acf(text)


def test_parse_acf_reads_windows_files_slashes_and_comments() -> None:
    text = "; saved by hand\r\n[SYSTEM]\r\nX=1\r\n[CONFIG]\r\nMOD2/HEATERAP=15\r\n\r\n# c\r\n"
    assert parse_acf(text) == [("MOD2/HEATERAP", "15")]


def test_framer_in_one_chunk_refusal_after_blocks() -> None:
    framer = Framer()
    framer.expect_binary(0x10, 3)
    stream = encode_binary_reply(0x10, b"x" * 1500) + b"?10\n"
    assert framer.feed(stream) == [Reply(0x10, ok=False)]
    assert framer.blocks_received(0x10) == 0


def test_framer_text_reply_between_blocks() -> None:
    block1, block2 = (
        encode_binary_reply(0x10, b"a" * 1024),
        encode_binary_reply(0x10, b"b" * 1024),
    )
    framer = Framer()
    framer.expect_binary(0x10, 2)
    assert framer.feed(block1 + b"<0F\n" + block2) == [
        Reply(0x0F),
        Reply(0x10, binary=b"a" * 1024 + b"b" * 1024),
    ]

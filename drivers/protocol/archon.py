"""The STA Archon CCD controller protocol, spoken over TCP (port 4242).

Every command is one line ``>xxCOMMAND\\n``: ``xx`` is a message id of two
uppercase hex digits chosen by the host, echoed in the answer. The controller
answers ``<xx`` + an ASCII payload + ``\\n`` (success, payload often empty),
``?xx\\n`` (failure, no detail), or nothing at all to a command it does not
recognise. ``FETCH`` is answered with one binary reply per requested block:
``<xx:`` + exactly 1024 bytes and no terminator, so a reader must know how many
blocks to expect. A real exchange (the controller of SDSS-V's BOSS, quoted in
sdss-archon's ``docs/sphinx/controller.rst``; payload abbreviated here)::

    -> b'>01SYSTEM\\n'
    <- b'<01BACKPLANE_TYPE=1 BACKPLANE_REV=5 ... MOD12_ID=013F95EDEF775096 \\n'

``STATUS``, ``SYSTEM`` and ``FRAME`` answer space-separated ``KEY=VALUE``
lists (the real controller leaves a trailing space, as above). ``FRAME``
describes the three frame buffers (:class:`~drivers.protocol.archon_status.
FrameStatus`, with the ``KEY=VALUE`` lists); pixels are read by
locking a buffer (``LOCKn``; ``LOCK0`` unlocks all), ``FETCH`` + the buffer's
base address and the block count as 8 hex digits each, then ``LOCK0``.
Configuration lines (``RCONFIG``/``WCONFIG``) and ACF files live in
:mod:`drivers.protocol.archon_acf`; the byte stream is cut into replies by
:mod:`drivers.protocol.archon_framer`.

Where the facts come from (details in ``docs/protocols.md``): sdss-archon
(``archon/controller/command.py``, ``controller.py``, ``maskbits.py`` and its
tests), Caltech's camera-interface (``camerad/archon_controller.cpp`` and its
``emulator/``), azcam (``azcam/tools/archon``), and the Archon manual as those
clients quote it. Ours, not the manual's: the limit :data:`MAX_TEXT_FRAME`,
and the strictness of the decoders (uppercase hex ids, printable ASCII).
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass

from drivers.errors import ProtocolError, shown

log = logging.getLogger(__name__)

#: TCP port of the controller.
PORT = 4242
#: Terminator of commands and text replies.
TERMINATOR = b"\n"
#: Payload bytes of one binary reply to ``FETCH``.
BLOCK_SIZE = 1024
#: ``<xx:`` in front of every binary block.
BINARY_HEADER_SIZE = 4
#: Largest message id; the next id after it is 0.
MAX_ID = 0xFF
#: Lines of configuration memory, ``RCONFIG0000`` .. ``RCONFIG3FFF``.
MAX_CONFIG_LINES = 16384
#: Frame buffers in the usual (``BIGBUF=0``) configuration.
FRAME_BUFFERS = 3
#: ``BUFnBASE`` of buffers 1..3 with ``BIGBUF=0`` (clients use ``BUFnBASE``).
BUFFER_BASES = (0xA0000000, 0xC0000000, 0xE0000000)
#: ``BUFnBASE`` of buffers 1..2 with ``BIGBUF=1``.
BIGBUF_BASES = (0xA0000000, 0xD0000000)
#: ``TIMER`` and the ``BUFn*TIMESTAMP`` fields count ticks of 10 ns.
TIMER_HZ = 100_000_000
#: Largest timing-script parameter value (20 bits).
MAX_PARAMETER = 0xFFFFF
#: Longest integration one exposure can be given, seconds: ``IntCS`` (in
#: centiseconds) at its largest.
MAX_INTEGRATION_S = MAX_PARAMETER / 100
#: Filler after the frame in the last ``FETCH`` block (what sdss-archon says).
PAD_BYTE = 0xFF
#: Longest text line (terminator excluded) a framer keeps; our own limit.
MAX_TEXT_FRAME = 65536

_DEVICE = "archon"
_ID = rb"[0-9A-F]{2}"
_COMMAND_RE = re.compile(rb">(" + _ID + rb")([\x20-\x7e]+)\r?\n")
_REPLY_RE = re.compile(rb"([<?])(" + _ID + rb")([\x20-\x7e]*)\n")
_PRINTABLE_RE = re.compile(r"[\x20-\x7e]*")
#: What may begin a reply: ``<`` or ``?``, two hex digits, one more byte.


class Verb(enum.Enum):
    """Command names, as the line starts (the argument, if any, follows)."""

    SYSTEM = "SYSTEM"
    STATUS = "STATUS"
    FRAME = "FRAME"
    TIMER = "TIMER"
    FETCHLOG = "FETCHLOG"
    LOCK = "LOCK"
    FETCH = "FETCH"
    RCONFIG = "RCONFIG"
    WCONFIG = "WCONFIG"
    CLEARCONFIG = "CLEARCONFIG"
    APPLYALL = "APPLYALL"
    APPLYSYSTEM = "APPLYSYSTEM"
    APPLYCDS = "APPLYCDS"
    APPLYMOD = "APPLYMOD"
    APPLYDIO = "APPLYDIO"
    LOADTIMING = "LOADTIMING"
    LOADPARAMS = "LOADPARAMS"
    LOADPARAM = "LOADPARAM"
    PREPPARAM = "PREPPARAM"
    FASTLOADPARAM = "FASTLOADPARAM"
    FASTPREPPARAM = "FASTPREPPARAM"
    HOLDTIMING = "HOLDTIMING"
    RELEASETIMING = "RELEASETIMING"
    RESETTIMING = "RESETTIMING"
    POWERON = "POWERON"
    POWEROFF = "POWEROFF"
    POLLON = "POLLON"
    POLLOFF = "POLLOFF"
    WARMBOOT = "WARMBOOT"
    REBOOT = "REBOOT"


_PARAM = r" ([A-Za-z_][A-Za-z0-9_]*) ([0-9]+)"
#: Shape of the argument of the verbs that take one (others take none).
_ARGUMENTS: dict[Verb, re.Pattern[str]] = {
    Verb.LOCK: re.compile(r"[0-3]"),
    Verb.FETCH: re.compile(r"[0-9A-F]{16}"),
    Verb.RCONFIG: re.compile(r"[0-9A-F]{4}"),
    Verb.WCONFIG: re.compile(r"[0-9A-F]{4}[^=]+=.*"),
    # sdss-archon sends the decimal module number (APPLYMOD11), Caltech's
    # camerad the zero-based index as two hex digits (APPLYMOD0A): take both.
    Verb.APPLYMOD: re.compile(r"[0-9A-F]{1,2}"),
    Verb.APPLYDIO: re.compile(r"[0-9A-F]{1,2}"),
    Verb.LOADPARAM: re.compile(r" [A-Za-z_][A-Za-z0-9_]*(?: [0-9]+)?"),
    Verb.PREPPARAM: re.compile(r" [A-Za-z_][A-Za-z0-9_]*(?: [0-9]+)?"),
    Verb.FASTLOADPARAM: re.compile(_PARAM),
    Verb.FASTPREPPARAM: re.compile(_PARAM),
}
#: Verbs by length, longest first, so FETCHLOG is not read as FETCH + "LOG".
_BY_LENGTH = sorted(Verb, key=lambda verb: -len(verb.value))


class Power(enum.Enum):
    """``POWER`` in the ``STATUS`` reply."""

    UNKNOWN = 0
    NOT_CONFIGURED = 1
    OFF = 2
    INTERMEDIATE = 3
    ON = 4
    STANDBY = 5


class SampleMode(enum.Enum):
    """``BUFnSAMPLE``: pixels of 16 bits (0) or 32 bits (1), little-endian."""

    BITS16 = 0
    BITS32 = 1


def _check_id(message_id: int) -> None:
    if not 0 <= message_id <= MAX_ID:
        raise ProtocolError(
            f"{_DEVICE}: message id {message_id!r} does not fit two hex digits (0..FF)"
        )


def _check_text(text: str, what: str) -> None:
    if _PRINTABLE_RE.fullmatch(text) is None:
        raise ProtocolError(
            f"{_DEVICE}: {what} {shown(text)} holds a byte that is not printable ASCII"
        )


def next_id(message_id: int) -> int:
    """The id after ``message_id``: ids run 00..FF and wrap to 00."""
    _check_id(message_id)
    return (message_id + 1) % (MAX_ID + 1)


@dataclass(frozen=True)
class Command:
    """One command line: ``>{id:02X}{text}\\n``."""

    id: int
    text: str

    def __post_init__(self) -> None:
        _check_id(self.id)
        if not self.text:
            raise ProtocolError(f"{_DEVICE}: a command needs a name, got ''")
        _check_text(self.text, "command")


@dataclass(frozen=True)
class Reply:
    """One reply: text (``ok`` or not) or the data of a whole ``FETCH``.

    Parameters
    ----------
    id
        The message id of the command answered.
    ok
        False for ``?xx`` (which carries no text).
    text
        Payload of a ``<xx...`` reply, terminator excluded.
    binary
        For ``FETCH``: the payloads of all its blocks, joined (a multiple of
        :data:`BLOCK_SIZE` bytes); None for text replies.
    """

    id: int
    ok: bool = True
    text: str = ""
    binary: bytes | None = None

    def __post_init__(self) -> None:
        _check_id(self.id)
        _check_text(self.text, "reply payload")
        if not self.ok and (self.text or self.binary is not None):
            raise ProtocolError(f"{_DEVICE}: an error reply ?xx carries nothing")
        if self.binary is not None and (
            self.text or not self.binary or len(self.binary) % BLOCK_SIZE
        ):
            raise ProtocolError(
                f"{_DEVICE}: binary data of {len(self.binary)} bytes; expected a"
                f" positive multiple of {BLOCK_SIZE} and no text"
            )


def encode_command(command: Command) -> bytes:
    """The bytes of ``command`` (the driver's side)."""
    return f">{command.id:02X}{command.text}\n".encode("ascii")


def decode_command(frame: bytes) -> Command:
    """A command line from the host (the simulator's side); CR LF is accepted."""
    match = _COMMAND_RE.fullmatch(frame)
    if match is None:
        raise ProtocolError(
            f"{_DEVICE}: unparseable command {shown(frame)}; expected b'>xxCOMMAND\\n'"
            " (xx: two uppercase hex digits, COMMAND: printable ASCII)"
        )
    return Command(int(match[1], 16), match[2].decode("ascii"))


def encode_reply(reply: Reply) -> bytes:
    """The bytes of ``reply`` (the simulator's side)."""
    if reply.binary is not None:
        return encode_binary_reply(reply.id, reply.binary)
    if not reply.ok:
        return f"?{reply.id:02X}\n".encode("ascii")
    return f"<{reply.id:02X}{reply.text}\n".encode("ascii")


def encode_binary_reply(
    reply_id: int, data: bytes, *, nblocks: int | None = None, fill: int = PAD_BYTE
) -> bytes:
    """``data`` as ``FETCH`` sends it: ``<xx:`` + 1024 bytes, per block.

    Parameters
    ----------
    reply_id
        The id of the ``FETCH`` command.
    data
        The bytes from the buffer's base address on.
    nblocks
        Blocks to send (``data`` cut or padded to fit); default: as many as
        ``data`` needs.
    fill
        The byte that pads the last block.
    """
    _check_id(reply_id)
    count = blocks_for(len(data)) if nblocks is None else nblocks
    if count < 1:
        raise ProtocolError(f"{_DEVICE}: a binary reply has at least one block")
    size = count * BLOCK_SIZE
    body = data[:size].ljust(size, bytes((fill,)))
    header = f"<{reply_id:02X}:".encode("ascii")
    return b"".join(
        header + body[at : at + BLOCK_SIZE] for at in range(0, size, BLOCK_SIZE)
    )


def decode_reply(frame: bytes, *, binary: bool = False) -> Reply:
    """One reply frame (the driver's side): text with terminator, or one block.

    A text payload may begin with ``:``, so only the caller, who knows that a
    ``FETCH`` is under way, can say that ``<xx:`` starts a ``binary`` block.
    """
    if binary:
        head = frame[:BINARY_HEADER_SIZE]
        if len(frame) != BINARY_HEADER_SIZE + BLOCK_SIZE or not (
            re.fullmatch(rb"<" + _ID + rb":", head)
        ):
            raise ProtocolError(
                f"{_DEVICE}: unparseable binary block {shown(frame)} of"
                f" {len(frame)} bytes; expected b'<xx:' + {BLOCK_SIZE} bytes"
            )
        return Reply(int(head[1:3], 16), binary=frame[BINARY_HEADER_SIZE:])
    match = _REPLY_RE.fullmatch(frame)
    if match is None or (match[1] == b"?" and match[3]):
        raise ProtocolError(
            f"{_DEVICE}: unparseable reply {shown(frame)};"
            " expected b'<xx...\\n' or b'?xx\\n'"
        )
    return Reply(int(match[2], 16), match[1] == b"<", match[3].decode("ascii"))


def split_command(text: str) -> tuple[Verb, str]:
    """The verb of a command's text and its argument (checked for shape)."""
    for verb in _BY_LENGTH:
        if text.startswith(verb.value):
            argument = text[len(verb.value) :]
            shape = _ARGUMENTS.get(verb)
            if (shape is None and not argument) or (
                shape is not None and shape.fullmatch(argument)
            ):
                return verb, argument
            raise ProtocolError(
                f"{_DEVICE}: bad argument {argument!r} to {verb.value}; expected "
                + (f"one matching {shape.pattern!r}" if shape else "none")
            )
    raise ProtocolError(f"{_DEVICE}: unknown command {shown(text)}")


def _argument(text: str, verb: Verb) -> str:
    found, argument = split_command(text)
    if found is not verb:
        raise ProtocolError(f"{_DEVICE}: {shown(text)} is no {verb.value} command")
    return argument


def blocks_for(nbytes: int) -> int:
    """``FETCH`` blocks that hold ``nbytes`` bytes (at least one)."""
    return max(1, -(-nbytes // BLOCK_SIZE))


def fetch_command(base: int, nblocks: int) -> str:
    """``FETCH`` of ``nblocks`` blocks from address ``base`` (8 hex digits each)."""
    if not 0 <= base <= 0xFFFFFFFF or not 1 <= nblocks <= 0xFFFFFFFF:
        raise ProtocolError(
            f"{_DEVICE}: FETCH of {nblocks!r} blocks at {base!r}; expected an"
            " address and a block count 1.. that fit 8 hex digits each"
        )
    return f"FETCH{base:08X}{nblocks:08X}"


def parse_fetch(text: str) -> tuple[int, int]:
    """The address and block count of a ``FETCH`` command's text."""
    argument = _argument(text, Verb.FETCH)
    address, nblocks = int(argument[:8], 16), int(argument[8:], 16)
    if nblocks == 0:
        raise ProtocolError(f"{_DEVICE}: {text!r} asks for no block; expected 1..")
    return address, nblocks


def lock_command(buffer: int) -> str:
    """``LOCKn``: lock frame buffer ``n`` (1..3) against writing; 0 unlocks all."""
    if not 0 <= buffer <= FRAME_BUFFERS:
        raise ProtocolError(f"{_DEVICE}: no frame buffer {buffer!r}; expected 0..3")
    return f"LOCK{buffer}"


def parse_lock(text: str) -> int:
    """The buffer number of a ``LOCKn`` command's text (0: unlock all)."""
    return int(_argument(text, Verb.LOCK))


def param_command(verb: Verb, name: str, value: int) -> str:
    """``FASTLOADPARAM name value`` (or ``FASTPREPPARAM``)."""
    if verb not in (Verb.FASTLOADPARAM, Verb.FASTPREPPARAM):
        raise ProtocolError(f"{_DEVICE}: {verb.value} sets no parameter")
    if not 0 <= value <= MAX_PARAMETER:
        raise ProtocolError(
            f"{_DEVICE}: parameter {name} = {value!r}; expected 0..{MAX_PARAMETER}"
        )
    text = f"{verb.value} {name} {value}"
    split_command(text)  # checks the name
    return text


def parse_param(text: str) -> tuple[Verb, str, int]:
    """Verb, name and value of a ``FASTLOADPARAM``/``FASTPREPPARAM`` command."""
    verb, argument = split_command(text)
    if verb not in (Verb.FASTLOADPARAM, Verb.FASTPREPPARAM):
        raise ProtocolError(f"{_DEVICE}: {shown(text)} sets no parameter value")
    _, name, value = argument.split(" ")
    if len(value.lstrip("0")) > len(str(MAX_PARAMETER)) or int(value) > MAX_PARAMETER:
        raise ProtocolError(
            f"{_DEVICE}: parameter {name} = {value}; expected 0..{MAX_PARAMETER}"
        )
    return verb, name, int(value)

"""The CCD controller's wire protocol: ASCII commands, binary pixel blocks.

The controller reads out MEGARA's e2v CCD231-84 (raw frame 4212 rows x 4196
columns, uint16, two amplifiers) and drives the shutter. The protocol is our
own, shaped like professional controllers' (STA Archon, Leach/ARC): every
command carries a two-hex-digit message id (MID) that the reply echoes, errors
have their own reply with a numeric code, and pixels travel in blocks, each
checked by a CRC-32. A real exchange with the simulator (a 1 s dark, read out
in 540 blocks of 64 KiB; detector seed 1, run key 0: the first pixels are
1427, 1424, 1425 ADU)::

    -> b'>1A EXPOSE 1.000 DARK\\n'
    <- b'<1A OK\\n'
    -> b'>1B STATUS\\n'
    <- b'<1B OK STATE=READY EXPREQ=1.000 ELAPSED=1.000 SHUTTER=CLOSED '
       b'TEMP=163.15 FRAME=1 DARK=1\\n'
    -> b'>1C READ\\n'
    <- b'<1C DATA 0 65536 78983CE4\\n\\x05\\x93\\x05\\x90\\x05\\x91' ...
       (65536 bytes of pixels in all, then 539 more DATA blocks)
    <- b'<1C OK READ 540\\n'
    -> b'>1D FOO\\n'
    <- b'?1D ERR 101 unknown command FOO; expected one of PING STATUS ...\\n'

Identity. PING is answered ``OK MEGARA-CCD <firmware>``; a simulator adds one
word, ``SIMULATOR``, so that every host can tell it from the hardware by the
grammar alone (``b'<01 OK MEGARA-CCD 1.0.0 SIMULATOR\\n'``). A real controller
never sends that word; :class:`Identity` decodes it as ``simulated=True``.

Grammar (``docs/protocols.md`` has the full ABNF, every command and the error
table):

* command: ``>`` MID SP VERB *(SP ARG) terminator; the terminator is LF, CR or
  CRLF (the controller accepts all three; we send LF).
* success: ``<`` MID SP ``OK`` [SP payload] LF.
* error: ``?`` MID SP ``ERR`` SP CODE SP message LF, MID ``--`` when the
  command's own MID could not be read.
* data block: ``<`` MID SP ``DATA`` SP INDEX SP LENGTH SP CRC LF, then exactly
  LENGTH raw bytes (which may contain LF). CRC is the CRC-32 (zlib/IEEE) of
  those bytes as 8 uppercase hex digits. Pixels are big-endian uint16, row
  major; all blocks but the last have the frame's BLOCKSIZE bytes.

Two framers split the byte streams: :class:`CommandFramer` on the controller's
side (lines ending in LF, CR or CRLF), :class:`Framer` on the host's side
(LF lines and DATA blocks). Neither raises: a line longer than
:data:`MAX_LINE` is delivered cut short, without its terminator, and the
decoders reject it. :meth:`Framer.feed_decoded` is the driver's fast path: it
builds each block's payload with a single copy of the received bytes.
"""

from __future__ import annotations

import enum
import logging
import math
import re
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final, NoReturn

from drivers.errors import ProtocolError

log = logging.getLogger(__name__)

_DEVICE: Final = "ccd"

#: Raw frame geometry of the e2v CCD231-84 as the controller reads it out.
ROWS: Final = 4212
COLS: Final = 4196
BITPIX: Final = 16
#: Bytes of one raw frame (big-endian uint16 pixels).
FRAME_BYTES: Final = ROWS * COLS * 2
#: The controller's usual block size, bytes.
DEFAULT_BLOCK_SIZE: Final = 65536
#: Largest DATA block the :class:`Framer` accepts, bytes.
MAX_BLOCK_SIZE: Final = 4 * 1024 * 1024
#: Longest line (terminator included) a framer keeps, bytes.
MAX_LINE: Final = 1024
#: Product name answered to PING.
PRODUCT: Final = "MEGARA-CCD"
#: The word after the firmware by which a simulator identifies itself to PING.
SIMULATOR_MARK: Final = "SIMULATOR"
#: What we send at the end of a line.
TERMINATOR: Final = b"\n"


class Verb(enum.Enum):
    """Command verbs (the wire word is the value)."""

    PING = "PING"
    STATUS = "STATUS"
    EXPOSE = "EXPOSE"
    ABORT = "ABORT"
    SHUTTER = "SHUTTER"
    TEMP = "TEMP"
    FRAME = "FRAME"
    READ = "READ"
    CLEAR = "CLEAR"


class ControllerState(enum.Enum):
    """What the controller is doing (status field ``STATE``)."""

    IDLE = "IDLE"
    EXPOSING = "EXPOSING"
    READING = "READING"
    READY = "READY"
    ERROR = "ERROR"


class ShutterState(enum.Enum):
    """Where the shutter is (status field ``SHUTTER``)."""

    CLOSED = "CLOSED"
    OPEN = "OPEN"
    MOVING = "MOVING"
    FAULT = "FAULT"


class ExposureKind(enum.Enum):
    """``DARK`` keeps the shutter shut; ``LIGHT`` opens it for the exposure."""

    DARK = "DARK"
    LIGHT = "LIGHT"


class ShutterTarget(enum.Enum):
    """Argument of the engineering command ``SHUTTER OPEN|CLOSE``."""

    OPEN = "OPEN"
    CLOSE = "CLOSE"


class ErrorCode(enum.IntEnum):
    """Error reply codes: 1xx syntax, 2xx state, 3xx hardware, 5xx internal."""

    #: The line does not follow the command grammar.
    MALFORMED = 100
    #: The verb is not one of :class:`Verb`.
    UNKNOWN_COMMAND = 101
    #: Missing, extra or invalid argument.
    BAD_ARGUMENT = 102
    #: An exposure or a readout is in progress.
    BUSY = 200
    #: FRAME or READ with no frame ready in the controller's memory.
    NO_FRAME = 201
    #: ABORT with no exposure or readout in progress.
    NOTHING_TO_ABORT = 202
    #: READ asked for blocks beyond the frame's last block.
    BLOCK_OUT_OF_RANGE = 203
    #: The controller is in state ERROR; send CLEAR.
    IN_ERROR_STATE = 204
    #: The shutter did not reach the commanded position.
    SHUTTER_FAULT = 300
    #: The CCD is too warm to expose.
    TEMPERATURE_OUT_OF_RANGE = 301
    #: The controller failed internally.
    INTERNAL = 500


# -- helpers ---------------------------------------------------------------------


def crc32(payload: bytes | bytearray | memoryview) -> int:
    """CRC-32 of ``payload`` (zlib/IEEE 802.3, the one in gzip and PNG)."""
    return zlib.crc32(payload) & 0xFFFFFFFF


def block_count(nbytes: int, block_size: int) -> int:
    """Number of blocks of ``block_size`` bytes that carry ``nbytes`` bytes."""
    return -(-nbytes // block_size)


def next_mid(mid: int) -> int:
    """The message id after ``mid`` (wraps from 0xFF to 0x00)."""
    return (mid + 1) & 0xFF


def printable(data: bytes, limit: int = 40) -> str:
    """``data`` as one printable ASCII string (escaped, cut at ``limit`` bytes).

    The controller uses it to quote bad input inside an error message, which
    must stay on one line of printable ASCII.
    """
    text = repr(bytes(data[:limit]))[2:-1]
    return text + "..." if len(data) > limit else text


def _show(data: bytes | bytearray | memoryview, limit: int = 80) -> str:
    shown = repr(bytes(data[:limit]))
    return f"{shown}... ({len(data)} bytes)" if len(data) > limit else shown


def _fail(what: str, seen: bytes | bytearray | memoryview, expected: str) -> NoReturn:
    raise ProtocolError(f"{_DEVICE}: {what} {_show(seen)}; expected {expected}")


def _fmt_mid(mid: int | None) -> str:
    return "--" if mid is None else f"{mid:02X}"


def _check_mid(mid: int) -> None:
    if not 0 <= mid <= 0xFF:
        raise ValueError(f"ccd: message id must be 0..255, got {mid}")


def _check_seconds(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"ccd: {name} must be a finite number >= 0, got {value!r}")


# -- commands (host -> controller) -----------------------------------------------


@dataclass(frozen=True)
class Ping:
    """``PING``: answered ``OK MEGARA-CCD <firmware>[ SIMULATOR]`` (Identity)."""

    mid: int
    verb: ClassVar[Verb] = Verb.PING


@dataclass(frozen=True)
class GetStatus:
    """``STATUS``: answered with a :class:`Status`."""

    mid: int
    verb: ClassVar[Verb] = Verb.STATUS


@dataclass(frozen=True)
class Expose:
    """``EXPOSE <seconds> DARK|LIGHT``: start an exposure of ``exptime_s`` seconds.

    Sent with millisecond resolution.
    """

    mid: int
    exptime_s: float
    kind: ExposureKind
    verb: ClassVar[Verb] = Verb.EXPOSE

    def __post_init__(self) -> None:
        _check_seconds("exposure time", self.exptime_s)


@dataclass(frozen=True)
class Abort:
    """``ABORT``: stop the exposure or readout, close the shutter, drop the frame."""

    mid: int
    verb: ClassVar[Verb] = Verb.ABORT


@dataclass(frozen=True)
class MoveShutter:
    """``SHUTTER OPEN|CLOSE`` (engineering; refused while exposing or reading)."""

    mid: int
    target: ShutterTarget
    verb: ClassVar[Verb] = Verb.SHUTTER


@dataclass(frozen=True)
class GetShutter:
    """``SHUTTER`` with no argument: answered with a :class:`ShutterPosition`."""

    mid: int
    verb: ClassVar[Verb] = Verb.SHUTTER


@dataclass(frozen=True)
class GetTemperature:
    """``TEMP``: answered with a :class:`Temperature`."""

    mid: int
    verb: ClassVar[Verb] = Verb.TEMP


@dataclass(frozen=True)
class GetFrame:
    """``FRAME``: describe the frame ready in memory (:class:`FrameInfo`)."""

    mid: int
    verb: ClassVar[Verb] = Verb.FRAME


@dataclass(frozen=True)
class Read:
    """``READ [FIRST [COUNT]]``: stream blocks FIRST..FIRST+COUNT-1 (default all)."""

    mid: int
    first: int | None = None
    count: int | None = None
    verb: ClassVar[Verb] = Verb.READ

    def __post_init__(self) -> None:
        if self.first is not None and self.first < 0:
            raise ValueError(f"ccd: READ first block must be >= 0, got {self.first}")
        if self.count is not None and (self.first is None or self.count < 1):
            raise ValueError("ccd: READ count needs a first block and must be >= 1")


@dataclass(frozen=True)
class Clear:
    """``CLEAR``: drop the frame in memory, back to IDLE."""

    mid: int
    verb: ClassVar[Verb] = Verb.CLEAR


Command = (
    Ping
    | GetStatus
    | Expose
    | Abort
    | MoveShutter
    | GetShutter
    | GetTemperature
    | GetFrame
    | Read
    | Clear
)

_NO_ARGS: dict[Verb, type[Ping | GetStatus | Abort | GetTemperature | GetFrame | Clear]]
_NO_ARGS = {
    Verb.PING: Ping,
    Verb.STATUS: GetStatus,
    Verb.ABORT: Abort,
    Verb.TEMP: GetTemperature,
    Verb.FRAME: GetFrame,
    Verb.CLEAR: Clear,
}


class BadCommand(ProtocolError):
    """A command line the controller must refuse, with the error reply it owes.

    Attributes
    ----------
    mid
        The command's message id, or ``None`` when it could not be read.
    code
        The error code of the reply.
    detail
        The reply's message (printable ASCII, one line).
    """

    def __init__(self, mid: int | None, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{_DEVICE}: command refused with {int(code)}: {detail}")
        self.mid = mid
        self.code = code
        self.detail = detail

    def reply(self) -> ErrorReply:
        """The error reply the controller sends for this command."""
        return ErrorReply(self.mid, self.code, self.detail)


def encode_command(command: Command) -> bytes:
    """The bytes the host sends for ``command`` (LF-terminated)."""
    _check_mid(command.mid)
    args: list[str] = []
    match command:
        case Expose(exptime_s=seconds, kind=kind):
            args = [f"{seconds:.3f}", kind.value]
        case MoveShutter(target=target):
            args = [target.value]
        case Read(first=first, count=count):
            args = [str(n) for n in (first, count) if n is not None]
    words = " ".join([f">{command.mid:02X}", command.verb.value, *args])
    return words.encode("ascii") + TERMINATOR


_MID_RE = re.compile(rb">([0-9A-F]{2})")
_SECONDS_RE = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")
_COUNT_RE = re.compile(r"[0-9]{1,9}")


def _strip_terminator(frame: bytes) -> bytes | None:
    if frame.endswith(b"\r\n"):
        return frame[:-2]
    if frame.endswith((b"\n", b"\r")):
        return frame[:-1]
    return None


def decode_command(frame: bytes) -> Command:
    """Parse one command frame (terminator included), as the controller does.

    Raises
    ------
    BadCommand
        With the error code and message the controller answers.
    """
    body = _strip_terminator(frame)
    head = _MID_RE.match(frame)
    mid = int(head[1], 16) if head else None
    if body is None:
        raise BadCommand(
            mid,
            ErrorCode.MALFORMED,
            f"no line terminator (LF, CR or CRLF) within {MAX_LINE} bytes",
        )
    if any(b < 0x20 or b > 0x7E for b in body):
        raise BadCommand(
            mid,
            ErrorCode.MALFORMED,
            f"non-printable byte in {printable(body)}; commands are ASCII",
        )
    if mid is None or body[3:4] != b" ":
        raise BadCommand(
            mid,
            ErrorCode.MALFORMED,
            f"expected '>' MID(2 hex digits) SP VERB, got {printable(body)}",
        )
    words = body[4:].decode("ascii").split(" ")
    if "" in words:
        raise BadCommand(
            mid,
            ErrorCode.MALFORMED,
            f"empty field in {printable(body)}; separate words by one space",
        )
    try:
        verb = Verb(words[0])
    except ValueError:
        known = " ".join(v.value for v in Verb)
        raise BadCommand(
            mid,
            ErrorCode.UNKNOWN_COMMAND,
            f"unknown command {words[0][:20]}; expected one of {known}",
        ) from None
    return _command(mid, verb, words[1:])


def _bad_args(mid: int, args: list[str], usage: str) -> BadCommand:
    shown = " ".join(args)[:40]
    return BadCommand(
        mid, ErrorCode.BAD_ARGUMENT, f"bad arguments '{shown}'; usage: {usage}"
    )


def _command(mid: int, verb: Verb, args: list[str]) -> Command:
    if verb in _NO_ARGS:
        if args:
            raise _bad_args(mid, args, verb.value)
        return _NO_ARGS[verb](mid)
    if verb is Verb.EXPOSE:
        usage = "EXPOSE <seconds> DARK|LIGHT"
        if len(args) != 2 or not _SECONDS_RE.fullmatch(args[0]):
            raise _bad_args(mid, args, usage)
        try:
            return Expose(mid, float(args[0]), ExposureKind(args[1]))
        except ValueError:
            raise _bad_args(mid, args, usage) from None
    if verb is Verb.SHUTTER:
        if not args:
            return GetShutter(mid)
        try:
            if len(args) == 1:
                return MoveShutter(mid, ShutterTarget(args[0]))
        except ValueError:
            pass
        raise _bad_args(mid, args, "SHUTTER [OPEN|CLOSE]")
    # READ
    usage = "READ [FIRST [COUNT]], COUNT >= 1"
    if len(args) > 2 or not all(_COUNT_RE.fullmatch(a) for a in args):
        raise _bad_args(mid, args, usage)
    numbers = [int(a) for a in args]
    try:
        return Read(mid, *numbers)
    except ValueError:
        raise _bad_args(mid, args, usage) from None


# -- replies (controller -> host) --------------------------------------------------


@dataclass(frozen=True)
class Ack:
    """Bare ``OK``: EXPOSE, ABORT, SHUTTER OPEN|CLOSE and CLEAR were accepted."""

    mid: int


@dataclass(frozen=True)
class Identity:
    """``OK MEGARA-CCD <firmware>[ SIMULATOR]``, the answer to PING.

    ``simulated`` is True when the controller added the word ``SIMULATOR``
    (:data:`SIMULATOR_MARK`) after its firmware: our simulator always does, a
    real controller never does. Exactly these bytes, for message id 01::

        b'<01 OK MEGARA-CCD 1.0.0\\n'            simulated=False (hardware)
        b'<01 OK MEGARA-CCD 1.0.0 SIMULATOR\\n'  simulated=True
    """

    mid: int
    firmware: str
    product: str = PRODUCT
    simulated: bool = False


@dataclass(frozen=True)
class Status:
    """``OK STATE=... EXPREQ=... ELAPSED=... SHUTTER=... TEMP=... FRAME=... DARK=...``.

    Parameters
    ----------
    mid
        Message id.
    state
        What the controller is doing.
    exptime_s
        Requested exposure time of the exposure in progress or in memory,
        seconds (0 when IDLE).
    elapsed_s
        Seconds of that exposure elapsed (its full length once it has ended).
    shutter
        Shutter position now.
    temperature_k
        CCD temperature now, kelvin.
    frame
        Number of the frame last completed or in progress (0 before the first).
    dark
        Whether the exposure in progress or in memory is a dark.
    extra
        Further ``KEY=VALUE`` fields a newer controller may append.
    """

    mid: int
    state: ControllerState
    exptime_s: float
    elapsed_s: float
    shutter: ShutterState
    temperature_k: float
    frame: int
    dark: bool
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ShutterPosition:
    """``OK SHUTTER=<state>``, the answer to ``SHUTTER``."""

    mid: int
    shutter: ShutterState


@dataclass(frozen=True)
class Temperature:
    """``OK TEMP=<kelvin>``, the answer to ``TEMP``."""

    mid: int
    temperature_k: float


@dataclass(frozen=True)
class FrameInfo:
    """``OK FRAME=...``: the frame in the controller's memory.

    Parameters
    ----------
    mid
        Message id.
    frame
        Frame number.
    rows, cols, bitpix
        Geometry: 4212 x 4196 pixels of 16 bits.
    nbytes
        Bytes of pixel data, ``rows * cols * 2``.
    block_size
        Bytes per DATA block (the last block may be shorter).
    blocks
        Number of DATA blocks.
    exptime_s
        Exposure time, seconds.
    dark
        Whether the shutter was commanded shut (a dark).
    temp_start_k, temp_end_k
        CCD temperature at the start and end of the exposure, kelvin.
    shutter_max
        The most open shutter state seen during the exposure: ``CLOSED`` only
        if the shutter stayed shut throughout.
    crc
        CRC-32 of all ``nbytes`` pixel bytes, to check the assembled frame.
    extra
        Further ``KEY=VALUE`` fields a newer controller may append.
    """

    mid: int
    frame: int
    rows: int
    cols: int
    bitpix: int
    nbytes: int
    block_size: int
    blocks: int
    exptime_s: float
    dark: bool
    temp_start_k: float
    temp_end_k: float
    shutter_max: ShutterState
    crc: int
    extra: tuple[tuple[str, str], ...] = ()

    def block_span(self, index: int) -> tuple[int, int]:
        """Byte offsets ``(start, stop)`` of block ``index`` within the frame."""
        start = index * self.block_size
        return start, min(start + self.block_size, self.nbytes)


@dataclass(frozen=True)
class ReadDone:
    """``OK READ <n>``: the end of a READ stream of ``blocks`` DATA blocks."""

    mid: int
    blocks: int


@dataclass(frozen=True)
class ErrorReply:
    """``?MID ERR CODE message``; ``mid`` is None for ``--`` (unreadable MID).

    ``code`` is an :class:`ErrorCode` when the code is in our table, else the
    plain number (a newer controller's code).
    """

    mid: int | None
    code: int
    message: str

    @property
    def category(self) -> str:
        """``syntax``, ``state``, ``hardware`` or ``internal``, from the code."""
        return {1: "syntax", 2: "state", 3: "hardware"}.get(
            self.code // 100, "internal"
        )


@dataclass(frozen=True)
class DataBlock:
    """One block of pixel bytes, as the header announced it.

    ``crc`` is the CRC the controller sent; :attr:`crc_ok` checks it.
    """

    mid: int
    index: int
    payload: bytes
    crc: int

    @property
    def crc_ok(self) -> bool:
        """Whether the payload's CRC-32 matches the one sent (computed each call)."""
        return crc32(self.payload) == self.crc

    @classmethod
    def build(cls, mid: int, index: int, payload: bytes) -> DataBlock:
        """A block with the correct CRC of ``payload``."""
        return cls(mid, index, payload, crc32(payload))


DeviceReply = (
    Ack
    | Identity
    | Status
    | ShutterPosition
    | Temperature
    | FrameInfo
    | ReadDone
    | ErrorReply
    | DataBlock
)


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _kv(pairs: Sequence[tuple[str, str]]) -> str:
    return " ".join(f"{k}={v}" for k, v in pairs)


def _status_fields(s: Status) -> list[tuple[str, str]]:
    for name, value in (("exptime_s", s.exptime_s), ("elapsed_s", s.elapsed_s)):
        _check_seconds(name, value)
    return [
        ("STATE", s.state.value),
        ("EXPREQ", f"{s.exptime_s:.3f}"),
        ("ELAPSED", f"{s.elapsed_s:.3f}"),
        ("SHUTTER", s.shutter.value),
        ("TEMP", f"{s.temperature_k:.2f}"),
        ("FRAME", str(s.frame)),
        ("DARK", _flag(s.dark)),
        *s.extra,
    ]


def _frame_fields(f: FrameInfo) -> list[tuple[str, str]]:
    _check_seconds("exptime_s", f.exptime_s)
    return [
        ("FRAME", str(f.frame)),
        ("ROWS", str(f.rows)),
        ("COLS", str(f.cols)),
        ("BITPIX", str(f.bitpix)),
        ("BYTES", str(f.nbytes)),
        ("BLOCKSIZE", str(f.block_size)),
        ("BLOCKS", str(f.blocks)),
        ("EXPTIME", f"{f.exptime_s:.3f}"),
        ("DARK", _flag(f.dark)),
        ("TEMPSTART", f"{f.temp_start_k:.2f}"),
        ("TEMPEND", f"{f.temp_end_k:.2f}"),
        ("SHUTMAX", f.shutter_max.value),
        ("CRC", f"{f.crc:08X}"),
        *f.extra,
    ]


def encode_data_header(mid: int, index: int, length: int, crc: int) -> bytes:
    """The header line of a DATA block (the controller's streaming fast path)."""
    return b"<%02X DATA %d %d %08X\n" % (mid, index, length, crc)


def encode_reply(reply: DeviceReply) -> bytes:
    """The bytes the controller sends for ``reply`` (a DATA block: header + payload)."""
    if reply.mid is not None:
        _check_mid(reply.mid)
    match reply:
        case DataBlock(mid=mid, index=index, payload=payload, crc=crc):
            return encode_data_header(mid, index, len(payload), crc) + payload
        case ErrorReply(mid=mid, code=code, message=message):
            if not 100 <= code <= 999:
                raise ValueError(f"ccd: error code must have 3 digits, got {code}")
            if not message or not message.isascii() or not message.isprintable():
                raise ValueError(
                    f"ccd: error message must be printable ASCII, got {message!r}"
                )
            return f"?{_fmt_mid(mid)} ERR {int(code)} {message}\n".encode("ascii")
        case Ack():
            payload_text = ""
        case Identity(product=product, firmware=firmware, simulated=simulated):
            payload_text = f"{product} {firmware}"
            if simulated:
                payload_text += f" {SIMULATOR_MARK}"
        case Status():
            payload_text = _kv(_status_fields(reply))
        case ShutterPosition(shutter=shutter):
            payload_text = f"SHUTTER={shutter.value}"
        case Temperature(temperature_k=kelvin):
            payload_text = f"TEMP={kelvin:.2f}"
        case FrameInfo():
            payload_text = _kv(_frame_fields(reply))
        case ReadDone(blocks=blocks):
            payload_text = f"READ {blocks}"
    text = f"<{reply.mid:02X} OK" + (f" {payload_text}" if payload_text else "")
    return text.encode("ascii") + TERMINATOR


# -- decoding replies ------------------------------------------------------------

_ERROR_RE = re.compile(rb"\?([0-9A-F]{2}|--) ERR ([0-9]{3}) ([\x20-\x7e]+)\n")
_OK_RE = re.compile(rb"<([0-9A-F]{2}) OK(?: ([\x21-\x7e][\x20-\x7e]*))?\n")
_DATA_RE = re.compile(rb"<([0-9A-F]{2}) DATA ([0-9]{1,9}) ([0-9]{1,9}) ([0-9A-F]{8})\n")
_NUMBER = r"[0-9]{1,12}(?:\.[0-9]{1,9})?"
_INT_RE = re.compile(r"[0-9]{1,12}")
_NUM_RE = re.compile(_NUMBER)
_TOKEN_RE = re.compile(r"[A-Za-z0-9._+-]+")
_READ_RE = re.compile(r"READ ([0-9]{1,9})")
_SINGLE_RE = re.compile(r"(SHUTTER|TEMP)=(\S+)")


def decode_reply(frame: bytes) -> DeviceReply:
    """Parse one frame from the controller into the matching reply dataclass.

    Raises
    ------
    ProtocolError
        The frame breaks the grammar; the message quotes it.
    """
    if frame[:1] == b"?":
        return _decode_error(frame)
    if frame[3:9] == b" DATA ":
        return _decode_data(frame)
    match = _OK_RE.fullmatch(frame)
    if match is None:
        _fail(
            "unparseable reply",
            frame,
            "b'<MID OK[ payload]\\n', b'<MID DATA ...' or b'?MID ERR CODE message\\n'",
        )
    mid = int(match[1], 16)
    text = (match[2] or b"").decode("ascii")
    if not text:
        return Ack(mid)
    try:
        return _decode_payload(mid, text)
    except (KeyError, ValueError) as err:
        _fail(f"bad OK payload ({err})", frame, "the fields of docs/protocols.md")


def _decode_error(frame: bytes) -> ErrorReply:
    match = _ERROR_RE.fullmatch(frame)
    if match is None:
        _fail("unparseable error reply", frame, "b'?MID ERR CODE message\\n'")
    mid = None if match[1] == b"--" else int(match[1], 16)
    number = int(match[2])
    code: int = ErrorCode(number) if number in ErrorCode._value2member_map_ else number
    return ErrorReply(mid, code, match[3].decode("ascii"))


def _decode_data(frame: bytes) -> DataBlock:
    end = frame.find(b"\n", 0, 64) + 1
    match = _DATA_RE.fullmatch(frame[:end]) if end else None
    if match is None:
        _fail("unparseable DATA header", frame, "b'<MID DATA INDEX LENGTH CRC\\n'")
    length = int(match[3])
    if length != len(frame) - end:
        _fail(
            f"DATA block of {len(frame) - end} payload bytes, header says {length}",
            frame,
            "exactly LENGTH bytes after the header",
        )
    return DataBlock(int(match[1], 16), int(match[2]), frame[end:], int(match[4], 16))


def _decode_payload(mid: int, text: str) -> DeviceReply:
    if text.startswith("STATE="):
        return _decode_status(mid, text)
    if text.startswith("FRAME="):
        return _decode_frame_info(mid, text)
    if single := _SINGLE_RE.fullmatch(text):
        if single[1] == "SHUTTER":
            return ShutterPosition(mid, ShutterState(single[2]))
        return Temperature(mid, _number(single[2]))
    if read := _READ_RE.fullmatch(text):
        return ReadDone(mid, int(read[1]))
    words = text.split(" ")
    simulated = len(words) == 3 and words[2] == SIMULATOR_MARK
    if simulated:
        words = words[:2]
    if (
        len(words) == 2
        and words[0] != "READ"
        and all(_TOKEN_RE.fullmatch(w) for w in words)
    ):
        return Identity(mid, firmware=words[1], product=words[0], simulated=simulated)
    raise ValueError(f"unknown payload {text[:40]!r}")


def _fields(text: str, keys: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Values of ``keys`` (in this order), and any extra trailing fields."""
    pairs: list[tuple[str, str]] = []
    for word in text.split(" "):
        key, sep, value = word.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"field {word[:20]!r} is not KEY=VALUE")
        pairs.append((key, value))
    got = [k for k, _ in pairs[: len(keys)]]
    if got != list(keys):
        raise ValueError(f"fields {' '.join(got)}, expected {' '.join(keys)}")
    return [v for _, v in pairs[: len(keys)]], pairs[len(keys) :]


def _number(text: str) -> float:
    if not _NUM_RE.fullmatch(text):
        raise ValueError(f"{text[:20]!r} is not a decimal number")
    return float(text)


def _integer(text: str) -> int:
    if not _INT_RE.fullmatch(text):
        raise ValueError(f"{text[:20]!r} is not an integer")
    return int(text)


def _boolean(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(f"{text[:20]!r} is not 0 or 1")
    return text == "1"


_STATUS_KEYS = ("STATE", "EXPREQ", "ELAPSED", "SHUTTER", "TEMP", "FRAME", "DARK")
_FRAME_KEYS = (
    "FRAME",
    "ROWS",
    "COLS",
    "BITPIX",
    "BYTES",
    "BLOCKSIZE",
    "BLOCKS",
    "EXPTIME",
    "DARK",
    "TEMPSTART",
    "TEMPEND",
    "SHUTMAX",
    "CRC",
)


#: The status line as every controller of this protocol sends it, in one
#: match: the common case of the most frequent reply. Anything else (extra
#: fields, a malformed value) takes the field-by-field path, which says what
#: is wrong.
_STATUS_RE = re.compile(
    "STATE=(" + "|".join(s.value for s in ControllerState) + ")"
    f" EXPREQ=({_NUMBER}) ELAPSED=({_NUMBER})"
    " SHUTTER=(" + "|".join(s.value for s in ShutterState) + ")"
    f" TEMP=({_NUMBER}) FRAME=({_INT_RE.pattern}) DARK=([01])"
)
_STATES = {s.value: s for s in ControllerState}
_SHUTTERS = {s.value: s for s in ShutterState}


def _decode_status(mid: int, text: str) -> Status:
    m = _STATUS_RE.fullmatch(text)
    if m is not None:
        state, exp, elapsed, shutter, temp, frame, dark = m.groups()
        return Status(
            mid,
            state=_STATES[state],
            exptime_s=float(exp),
            elapsed_s=float(elapsed),
            shutter=_SHUTTERS[shutter],
            temperature_k=float(temp),
            frame=int(frame),
            dark=dark == "1",
            extra=(),
        )
    v, extra = _fields(text, _STATUS_KEYS)
    return Status(
        mid,
        state=ControllerState(v[0]),
        exptime_s=_number(v[1]),
        elapsed_s=_number(v[2]),
        shutter=ShutterState(v[3]),
        temperature_k=_number(v[4]),
        frame=_integer(v[5]),
        dark=_boolean(v[6]),
        extra=tuple(extra),
    )


def _decode_frame_info(mid: int, text: str) -> FrameInfo:
    v, extra = _fields(text, _FRAME_KEYS)
    if not re.fullmatch(r"[0-9A-F]{8}", v[12]):
        raise ValueError(f"CRC {v[12][:20]!r} is not 8 uppercase hex digits")
    return FrameInfo(
        mid,
        frame=_integer(v[0]),
        rows=_integer(v[1]),
        cols=_integer(v[2]),
        bitpix=_integer(v[3]),
        nbytes=_integer(v[4]),
        block_size=_integer(v[5]),
        blocks=_integer(v[6]),
        exptime_s=_number(v[7]),
        dark=_boolean(v[8]),
        temp_start_k=_number(v[9]),
        temp_end_k=_number(v[10]),
        shutter_max=ShutterState(v[11]),
        crc=int(v[12], 16),
        extra=tuple(extra),
    )


# -- framing -----------------------------------------------------------------------


@dataclass
class _PendingData:
    """A DATA block whose payload is held as views of the received chunks."""

    header: bytes
    mid: int
    index: int
    crc: int
    parts: list[memoryview]


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    # Views into the caller's buffer are kept until a block completes, so a
    # mutable buffer must be copied; an immutable ``bytes`` is used as it is.
    return data if isinstance(data, bytes) else bytes(data)


class CommandFramer:
    """Splits the host's byte stream into command lines (the controller's side).

    A line ends in LF, CR or CRLF (the terminator is kept in the frame; a CRLF
    split across two reads is one terminator). Empty lines are dropped. A line
    longer than ``max_line`` bytes (terminator included, a CRLF counted as one
    byte) is delivered cut to ``max_line`` bytes, without terminator
    (:func:`decode_command` refuses it with code 100), and the rest of it is
    dropped.
    """

    _EOL = re.compile(rb"[\r\n]")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._max_line = max_line
        self._buf = bytearray()
        self._after_cr = False
        self._discarding = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Take received bytes; return the complete command frames among them."""
        data = _as_bytes(data)
        frames: list[bytes] = []
        pos = 0
        if self._after_cr and data[:1] == b"\n":
            pos = 1
        self._after_cr = False
        while pos < len(data):
            eol = self._EOL.search(data, pos)
            if eol is None:
                self._take(data[pos:], frames)
                break
            end = eol.end()
            if eol[0] == b"\r":
                if data[end : end + 1] == b"\n":
                    end += 1
                elif end == len(data):
                    self._after_cr = True
            self._take(data[pos:end], frames, complete=True)
            pos = end
        return frames

    def _take(self, piece: bytes, frames: list[bytes], complete: bool = False) -> None:
        if self._discarding:
            self._discarding = not complete
            return
        self._buf += piece
        # A CRLF is one terminator: its LF must not make the line too long,
        # or the same line would pass or fail depending on where a read ended.
        crlf = complete and self._buf.endswith(b"\r\n")
        if len(self._buf) > self._max_line + crlf:
            frames.append(bytes(self._buf[: self._max_line]))
            self._buf.clear()
            self._discarding = not complete
        elif complete:
            line = bytes(self._buf)
            self._buf.clear()
            if line.strip(b"\r\n"):
                frames.append(line)


class Framer:
    """Splits the controller's byte stream into reply frames (the host's side).

    Lines end in LF. After a ``DATA`` header the next LENGTH bytes are taken
    as the block's payload whatever they contain; the frame is the header
    line followed by the payload. A line longer than ``max_line`` bytes is
    delivered cut short without terminator (:func:`decode_reply` refuses it)
    and the rest of it is dropped; a DATA header announcing more than
    ``max_block`` bytes is delivered as a plain line, which
    :func:`decode_reply` refuses.

    Payloads are kept as views of the received ``bytes`` until complete, then
    joined once: :meth:`feed` and :meth:`feed_decoded` copy every payload byte
    exactly once, and the cost is linear in the bytes received.
    """

    def __init__(
        self, max_line: int = MAX_LINE, max_block: int = MAX_BLOCK_SIZE
    ) -> None:
        self._max_line = max_line
        self._max_block = max_block
        self._buf = bytearray()
        self._discarding = False
        self._need = 0
        self._data: _PendingData | None = None
        self._ready: deque[bytes | _PendingData] = deque()

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Take received bytes; return the complete frames (DATA: header + payload)."""
        self._split(_as_bytes(data))
        frames: list[bytes] = []
        while self._ready:
            item = self._ready.popleft()
            if isinstance(item, bytes):
                frames.append(item)
            else:
                frames.append(b"".join([item.header, *item.parts]))
        return frames

    def feed_decoded(self, data: bytes | bytearray | memoryview) -> list[DeviceReply]:
        """Take received bytes; return the complete replies, decoded.

        The driver's fast path: a DATA block's header is parsed once and its
        payload joined straight into the :class:`DataBlock`.

        Raises
        ------
        ProtocolError
            A frame breaks the grammar. The replies before it in the same
            call are returned first and the error is raised by the next call;
            the frames after it stay queued and come out of the call after.
        """
        self._split(_as_bytes(data))
        replies: list[DeviceReply] = []
        while self._ready:
            item = self._ready[0]
            if isinstance(item, bytes):
                try:
                    reply = decode_reply(item)
                except ProtocolError:
                    if replies:  # hand over the good ones; raise on the next call
                        return replies
                    self._ready.popleft()
                    raise
                self._ready.popleft()
                replies.append(reply)
            else:
                self._ready.popleft()
                payload = b"".join(item.parts)
                replies.append(DataBlock(item.mid, item.index, payload, item.crc))
        return replies

    @property
    def pending(self) -> int:
        """Bytes held for a frame not yet complete."""
        if self._data is not None:
            return len(self._data.header) + sum(len(p) for p in self._data.parts)
        return len(self._buf)

    def _split(self, data: bytes) -> None:
        view = memoryview(data)
        size = len(data)
        pos = 0
        while pos < size:
            if self._data is not None:
                take = min(self._need, size - pos)
                self._data.parts.append(view[pos : pos + take])
                pos += take
                self._need -= take
                if not self._need:
                    self._ready.append(self._data)
                    self._data = None
                continue
            end = data.find(b"\n", pos)
            if self._discarding:
                self._discarding = end < 0
                pos = size if end < 0 else end + 1
                continue
            room = self._max_line - len(self._buf)
            stop = size if end < 0 else end + 1
            if stop - pos > room:
                self._buf += view[pos : pos + room]
                self._ready.append(bytes(self._buf))
                self._buf.clear()
                self._discarding = True
                pos += room
                continue
            if end < 0:
                self._buf += view[pos:]
                break
            if self._buf:
                self._buf += view[pos:stop]
                line = bytes(self._buf)
                self._buf.clear()
            else:
                line = data[pos:stop]
            pos = stop
            self._line(line)

    def _line(self, line: bytes) -> None:
        header = _DATA_RE.fullmatch(line) if line[3:9] == b" DATA " else None
        length = int(header[3]) if header else -1
        if header is None or length > self._max_block:
            self._ready.append(line)
            return
        pending = _PendingData(
            line, int(header[1], 16), int(header[2]), int(header[4], 16), []
        )
        if length:
            self._data, self._need = pending, length
        else:
            self._ready.append(pending)

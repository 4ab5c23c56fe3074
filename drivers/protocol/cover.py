"""The Alnitak Flip-Flat / dust-cover serial protocol, spoken by each cover half.

Each half of MEGARA's focal-plane cover has its own controller speaking the
public Alnitak "Generic Commands" protocol (9600 8N1), as a product-98
device: a remote dust cover without a light. A real exchange, as INDI's
``indi_flipflat`` driver performs it when it closes a cover::

    -> b'>C000\\n'      close
    <- b'*C98000\\n'    acknowledged; the motor starts
    -> b'>S000\\n'      status
    <- b'*S98100\\n'    motor running (1), light off (0), cover moving (0)
    -> b'>S000\\n'
    <- b'*S98001\\n'    motor stopped (0), light off (0), cover closed (1)

Commands are ``>`` + a command letter + three characters (``000``, or the
brightness ``000``..``255`` for ``B``) + a terminator: 6 bytes with LF. Replies
are ``*`` + the same letter + the two-digit product id + three characters +
LF: 8 bytes. The three reply characters are ``000`` for acknowledgements,
``MLC`` for the status (motor, light, cover), the brightness for ``B``/``J``
and the firmware version for ``V``. See ``docs/protocols.md`` for the table.

Facts from the public sources (the Generic Commands document as quoted by
third-party drivers: INDI ``flip_flat.cpp``, INDIGO ``indigo_aux_flipflat``,
N.I.N.A.'s Alnitak SDK):

* Revision 3 of the document writes the filler as digits (``>S000``);
  revision 4 writes it with the letter O (``>SOOO``, answered ``*S99OOO``).
  INDI sends digits and compares the acknowledgement with ``*C98000``;
  N.I.N.A. sends letters and insists on ``OOO`` in the answer. Both work with
  real units, so we accept both fillers and answer in the caller's dialect.
* Commands end in CR in the document, INDI sends LF, INDIGO sends CR: the
  :class:`Framer` accepts CR, LF and CRLF. Replies end in LF.
* There is no halt command: a move can only be reversed by the opposite one.
* The document defines no error reply, and third-party firmware stays silent
  on unknown input. Silence would turn every typo into a driver timeout, so
  **our extension** answers any unknown or malformed command with
  ``*?98ccc`` (``ccc`` an :class:`ErrorCode`). It keeps the 8-byte reply
  shape, so a driver reading 8 bytes up to LF (INDI) still reads one reply.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from typing import TypeVar

from drivers.errors import ProtocolError

log = logging.getLogger(__name__)

#: Alnitak product id of a remote dust cover without a light ("Flip-Mask").
PRODUCT_ID = 98
#: Terminator of the frames we send (commands and replies alike).
TERMINATOR = b"\n"
#: Longest frame body (terminator excluded) the :class:`Framer` keeps, bytes.
MAX_FRAME = 32

_DEVICE = "cover"


class Command(enum.Enum):
    """Command letters of the Generic Commands document."""

    PING = b"P"
    OPEN = b"O"
    CLOSE = b"C"
    LIGHT_ON = b"L"
    LIGHT_OFF = b"D"
    SET_BRIGHTNESS = b"B"
    GET_BRIGHTNESS = b"J"
    STATUS = b"S"
    FIRMWARE = b"V"


#: Commands acknowledged with ``*Xii000``.
ACK_COMMANDS = frozenset(
    {Command.PING, Command.OPEN, Command.CLOSE, Command.LIGHT_ON, Command.LIGHT_OFF}
)
#: Commands answered with a brightness, ``*Xiixxx``.
BRIGHTNESS_COMMANDS = frozenset({Command.SET_BRIGHTNESS, Command.GET_BRIGHTNESS})


class Filler(enum.Enum):
    """The three placeholder characters of argument-less commands."""

    #: Revision 3 of the document; what INDI and INDIGO send.
    DIGITS = b"000"
    #: Revision 4 of the document (the letter O); what N.I.N.A. sends.
    LETTERS = b"OOO"


class Motor(enum.Enum):
    """Status field M."""

    STOPPED = 0
    RUNNING = 1


class Light(enum.Enum):
    """Status field L (always OFF on a product-98 dust cover)."""

    OFF = 0
    ON = 1


class CoverState(enum.Enum):
    """Status field C."""

    #: Moving, or stopped neither open nor closed (e.g. jammed mid-travel).
    NEITHER = 0
    CLOSED = 1
    OPEN = 2
    #: The firmware gave up on the last move: position unknown, not closed.
    TIMED_OUT = 3


class ErrorCode(enum.Enum):
    """Codes of our error reply ``*?iiccc`` (an extension, see the module doc)."""

    #: ``>`` + a letter + 3 characters, but the letter is no command.
    UNKNOWN_COMMAND = 1
    #: Not ``>`` + letter + 3 characters + terminator, or a bad filler.
    MALFORMED = 2
    #: ``>Bxxx`` with ``xxx`` above 255.
    OUT_OF_RANGE = 3


class BadCommand(ProtocolError):
    """A command frame that breaks the grammar; ``code`` is the error reply."""

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.code = code


def _check_product(product_id: int) -> None:
    if not 0 <= product_id <= 99:
        raise ProtocolError(
            f"{_DEVICE}: product id {product_id!r} does not fit two digits (0..99)"
        )


@dataclass(frozen=True)
class Request:
    """One command as the host sends it.

    Parameters
    ----------
    command
        The command letter.
    brightness
        For ``SET_BRIGHTNESS`` only: 0..255 (no unit, the panel's scale).
    filler
        Placeholder style of argument-less commands (echoed in the reply).
    """

    command: Command
    brightness: int | None = None
    filler: Filler = Filler.DIGITS

    def __post_init__(self) -> None:
        if self.command is Command.SET_BRIGHTNESS:
            if self.brightness is None or not 0 <= self.brightness <= 255:
                raise ProtocolError(
                    f"{_DEVICE}: set-brightness needs a brightness 0..255, "
                    f"got {self.brightness!r}"
                )
            if self.filler is not Filler.DIGITS:
                raise ProtocolError(f"{_DEVICE}: set-brightness takes no filler")
        elif self.brightness is not None:
            raise ProtocolError(
                f"{_DEVICE}: only set-brightness takes a brightness, "
                f"not {self.command.name}"
            )


@dataclass(frozen=True)
class Ack:
    """Acknowledgement ``*Xii000`` of ping, open, close, light on, light off."""

    command: Command
    product_id: int = PRODUCT_ID
    filler: Filler = Filler.DIGITS

    def __post_init__(self) -> None:
        if self.command not in ACK_COMMANDS:
            raise ProtocolError(
                f"{_DEVICE}: {self.command.name} is not answered by an acknowledgement"
            )
        _check_product(self.product_id)


@dataclass(frozen=True)
class Brightness:
    """Reply ``*Biixxx`` / ``*Jiixxx``: the brightness set or in force (0..255)."""

    command: Command
    value: int
    product_id: int = PRODUCT_ID

    def __post_init__(self) -> None:
        if self.command not in BRIGHTNESS_COMMANDS:
            raise ProtocolError(
                f"{_DEVICE}: {self.command.name} is not answered by a brightness"
            )
        if not 0 <= self.value <= 255:
            raise ProtocolError(f"{_DEVICE}: brightness {self.value!r} outside 0..255")
        _check_product(self.product_id)


@dataclass(frozen=True)
class Status:
    """Reply ``*SiiMLC`` to the status command."""

    motor: Motor
    light: Light
    cover: CoverState
    product_id: int = PRODUCT_ID

    def __post_init__(self) -> None:
        _check_product(self.product_id)

    @property
    def is_closed(self) -> bool:
        """Closed and at rest: the only state a dark exposure accepts."""
        return self.cover is CoverState.CLOSED and self.motor is Motor.STOPPED


@dataclass(frozen=True)
class Firmware:
    """Reply ``*Viivvv``: the firmware version, three digits."""

    version: int
    product_id: int = PRODUCT_ID

    def __post_init__(self) -> None:
        if not 0 <= self.version <= 999:
            raise ProtocolError(
                f"{_DEVICE}: firmware version {self.version!r} outside 0..999"
            )
        _check_product(self.product_id)


@dataclass(frozen=True)
class ErrorReply:
    """Our extension: ``*?iiccc`` answers a command the device cannot execute."""

    code: ErrorCode
    product_id: int = PRODUCT_ID

    def __post_init__(self) -> None:
        _check_product(self.product_id)


CoverReply = Ack | Brightness | Status | Firmware | ErrorReply
_R = TypeVar("_R", Ack, Brightness, Status, Firmware)

_COMMAND_SHAPE = "b'>' + command letter + 3 characters + LF, e.g. b'>S000\\n'"
_REPLY_RE = re.compile(rb"\*(?P<letter>[A-Z?])(?P<product>\d\d)(?P<data>[0-9O]{3})")
_STATUS_RE = re.compile(rb"(?P<motor>[01])(?P<light>[01])(?P<cover>[0-3])")
_LETTERS = {c.value: c for c in Command}


def _strip_terminator(frame: bytes, what: str, expected: str) -> bytes:
    for end in (b"\r\n", b"\n", b"\r"):
        if frame.endswith(end):
            return frame[: -len(end)]
    raise ProtocolError(
        f"{_DEVICE}: {what} {frame!r} has no terminator (CR, LF or CRLF); "
        f"expected {expected}"
    )


# -- commands: the host encodes, the simulator decodes ---------------------------


def encode_command(request: Request | Command) -> bytes:
    """Bytes of one command, LF-terminated (the driver's side).

    A bare :class:`Command` stands for ``Request(command)``.
    """
    if isinstance(request, Command):
        request = Request(request)
    if request.brightness is not None:  # only SET_BRIGHTNESS carries one
        arg = b"%03d" % request.brightness
    else:
        arg = request.filler.value
    return b">" + request.command.value + arg + TERMINATOR


def decode_command(frame: bytes) -> Request:
    """Parse one command frame (the simulator's side).

    Raises
    ------
    BadCommand
        A :class:`~drivers.errors.ProtocolError` whose ``code`` says which
        error reply the device owes.
    """
    try:
        body = _strip_terminator(frame, "command", _COMMAND_SHAPE)
    except ProtocolError as err:
        raise BadCommand(str(err), ErrorCode.MALFORMED) from None
    if len(body) != 5 or body[:1] != b">":
        raise BadCommand(
            f"{_DEVICE}: malformed command {frame!r}; expected {_COMMAND_SHAPE}",
            ErrorCode.MALFORMED,
        )
    letter, arg = body[1:2], body[2:]
    command = _LETTERS.get(letter)
    if command is None:
        known = "".join(c.value.decode() for c in Command)
        raise BadCommand(
            f"{_DEVICE}: unknown command letter {letter!r} in {frame!r}; "
            f"expected one of {known}",
            ErrorCode.UNKNOWN_COMMAND,
        )
    if command is Command.SET_BRIGHTNESS:
        return _decode_brightness_arg(frame, arg)
    try:
        filler = Filler(arg)
    except ValueError:
        raise BadCommand(
            f"{_DEVICE}: command {frame!r} has filler {arg!r}; "
            f"expected b'000' (or b'OOO')",
            ErrorCode.MALFORMED,
        ) from None
    return Request(command, filler=filler)


def _decode_brightness_arg(frame: bytes, arg: bytes) -> Request:
    if not (arg.isascii() and arg.isdigit()):
        raise BadCommand(
            f"{_DEVICE}: set-brightness {frame!r} has argument {arg!r}; "
            f"expected three digits 000..255",
            ErrorCode.MALFORMED,
        )
    value = int(arg)
    if value > 255:
        raise BadCommand(
            f"{_DEVICE}: set-brightness {frame!r} asks for {value}; expected 000..255",
            ErrorCode.OUT_OF_RANGE,
        )
    return Request(Command.SET_BRIGHTNESS, brightness=value)


# -- replies: the simulator encodes, the driver decodes --------------------------


def encode_reply(reply: CoverReply) -> bytes:
    """Bytes of one reply, LF-terminated (the simulator's side)."""
    match reply:
        case Ack():
            letter, data = reply.command.value, reply.filler.value
        case Brightness():
            letter, data = reply.command.value, b"%03d" % reply.value
        case Status():
            letter = Command.STATUS.value
            data = b"%d%d%d" % (reply.motor.value, reply.light.value, reply.cover.value)
        case Firmware():
            letter, data = Command.FIRMWARE.value, b"%03d" % reply.version
        case ErrorReply():
            letter, data = b"?", b"%03d" % reply.code.value
    return b"*" + letter + b"%02d" % reply.product_id + data + TERMINATOR


def encode_status(status: Status) -> bytes:
    """Bytes of a status reply ``*SiiMLC\\n``."""
    return encode_reply(status)


def decode_reply(frame: bytes) -> CoverReply:
    """Parse any reply frame (the driver's side).

    Raises
    ------
    ProtocolError
        The frame is no reply of this protocol.
    """
    expected = "b'*' + letter + 2-digit product id + 3 characters + LF"
    body = _strip_terminator(frame, "reply", expected)
    match = _REPLY_RE.fullmatch(body)
    if match is None:
        raise ProtocolError(
            f"{_DEVICE}: unparseable reply {frame!r}; expected {expected}, "
            f"e.g. b'*S98001\\n'"
        )
    product, data = int(match["product"]), match["data"]
    if match["letter"] == b"?":
        return _decode_error(frame, data, product)
    command = _LETTERS.get(match["letter"])
    if command is None:
        raise ProtocolError(
            f"{_DEVICE}: reply {frame!r} has unknown letter {match['letter']!r}"
        )
    if command in ACK_COMMANDS:
        return _decode_ack(frame, command, data, product)
    if command is Command.STATUS:
        return _decode_status_data(frame, data, product)
    if not data.isdigit():
        raise ProtocolError(
            f"{_DEVICE}: reply {frame!r} carries {data!r}; expected three digits"
        )
    if command is Command.FIRMWARE:
        return Firmware(int(data), product)
    if int(data) > 255:
        raise ProtocolError(
            f"{_DEVICE}: brightness reply {frame!r} carries {data!r}; expected 000..255"
        )
    return Brightness(command, int(data), product)


def _decode_ack(frame: bytes, command: Command, data: bytes, product: int) -> Ack:
    try:
        return Ack(command, product, Filler(data))
    except ValueError:
        raise ProtocolError(
            f"{_DEVICE}: acknowledgement {frame!r} ends in {data!r}; "
            f"expected b'000' (or b'OOO')"
        ) from None


def _decode_status_data(frame: bytes, data: bytes, product: int) -> Status:
    match = _STATUS_RE.fullmatch(data)
    if match is None:
        raise ProtocolError(
            f"{_DEVICE}: status {frame!r} has fields {data!r}; expected "
            f"motor 0|1, light 0|1, cover 0..3, e.g. b'*S98001\\n'"
        )
    return Status(
        motor=Motor(int(match["motor"])),
        light=Light(int(match["light"])),
        cover=CoverState(int(match["cover"])),
        product_id=product,
    )


def _decode_error(frame: bytes, data: bytes, product: int) -> ErrorReply:
    try:
        return ErrorReply(ErrorCode(int(data)), product)
    except ValueError:
        codes = ", ".join(f"{c.value:03d}" for c in ErrorCode)
        raise ProtocolError(
            f"{_DEVICE}: error reply {frame!r} has unknown code {data!r}; "
            f"expected one of {codes}"
        ) from None


def _expect(frame: bytes, kind: type[_R], what: str) -> _R:
    reply = decode_reply(frame)
    if isinstance(reply, ErrorReply):
        raise ProtocolError(
            f"{_DEVICE}: device refused the command with {frame!r} "
            f"({reply.code.name.lower().replace('_', ' ')}); expected {what}; "
            f"check that the driver and the controller speak the same protocol"
        )
    if not isinstance(reply, kind):
        raise ProtocolError(f"{_DEVICE}: got {frame!r}; expected {what}")
    return reply


def decode_status(frame: bytes) -> Status:
    """Parse a status reply, or raise ProtocolError naming what came instead."""
    reply = _expect(frame, Status, "a status reply like b'*S98001\\n'")
    return reply


def decode_firmware(frame: bytes) -> Firmware:
    """Parse a firmware-version reply ``*Viivvv``."""
    reply = _expect(frame, Firmware, "a firmware reply like b'*V98213\\n'")
    return reply


def decode_brightness(frame: bytes, command: Command) -> Brightness:
    """Parse the brightness reply to ``command`` (set- or get-brightness)."""
    what = f"a brightness reply b'*{command.value.decode()}98xxx\\n'"
    reply = _expect(frame, Brightness, what)
    if reply.command is not command:
        raise ProtocolError(f"{_DEVICE}: got {frame!r}; expected {what}")
    return reply


def decode_ack(frame: bytes, command: Command) -> Ack:
    """Parse the acknowledgement of ``command`` (ping, open, close, light)."""
    what = f"the acknowledgement b'*{command.value.decode()}98000\\n'"
    reply = _expect(frame, Ack, what)
    if reply.command is not command:
        raise ProtocolError(f"{_DEVICE}: got {frame!r}; expected {what}")
    return reply


# -- framing ---------------------------------------------------------------------


class Framer:
    """Splits a byte stream into frames ending in CR or LF (terminator included).

    Empty lines are dropped, so CRLF input gives one frame (ending in CR)
    rather than a frame and an empty line. The buffer is bounded: bytes
    beyond ``max_frame`` without a terminator are discarded (and counted in
    :attr:`discarded`) until the next terminator, which then ends a frame
    holding the first ``max_frame`` bytes. That frame cannot decode (too
    long), so the device still answers it with an error reply: garbage is
    never silently absorbed once a terminator arrives, and memory stays
    bounded while none does.

    Parameters
    ----------
    max_frame
        Longest frame body kept, in bytes (terminator excluded).
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        if max_frame < 1:
            raise ValueError(f"max_frame must be >= 1, got {max_frame}")
        self.max_frame = max_frame
        #: Bytes thrown away from overlong frames since this framer was made.
        self.discarded = 0
        self._buf = bytearray()
        self._dropping = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the frames they complete, in order."""
        frames: list[bytes] = []
        for byte in data:
            if byte in (0x0A, 0x0D):
                self._dropping = False
                if not self._buf:
                    continue  # an empty line, or the LF of a CRLF: no frame
                frames.append(bytes(self._buf) + bytes([byte]))
                self._buf.clear()
            elif len(self._buf) < self.max_frame:
                self._buf.append(byte)
            else:
                if not self._dropping:
                    self._dropping = True
                    log.warning(
                        "%s: frame longer than %d bytes, discarding up to the "
                        "next terminator: %r...",
                        _DEVICE,
                        self.max_frame,
                        bytes(self._buf),
                    )
                self.discarded += 1
        return frames

    @property
    def pending(self) -> bytes:
        """Bytes received after the last complete frame."""
        return bytes(self._buf)

"""``KEY=VALUE`` lists of the Archon's ``STATUS``, ``SYSTEM`` and ``FRAME`` replies.

The grammar (space-separated tokens, a trailing space normal on the real
controller) and the frame-buffer fields of ``FRAME`` (:class:`FrameStatus`);
see :mod:`drivers.protocol.archon` for the protocol and its sources.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from drivers.errors import ProtocolError, shown
from drivers.protocol.archon import (
    _DEVICE,
    FRAME_BUFFERS,
    SampleMode,
    blocks_for,
    fetch_command,
)

_TOKEN_RE = re.compile(r"([^\s=]+)=([^\s=]*)")


def parse_key_values(text: str) -> dict[str, str]:
    """The ``KEY=VALUE`` list of a ``STATUS``, ``SYSTEM`` or ``FRAME`` reply.

    Tokens are separated by spaces (a trailing space is normal); a token
    without ``=``, with an empty key or a second ``=``, or a repeated key is a
    :class:`ProtocolError`.
    """
    values: dict[str, str] = {}
    for token in text.split(" "):
        if not token:
            continue
        key, equals, value = token.partition("=")
        if not (key and equals) or "=" in value or not token.isprintable():
            # (polled every second: partition, not a regex per token)
            raise ProtocolError(
                f"{_DEVICE}: malformed token {shown(token)} in {shown(text)};"
                " expected KEY=VALUE with no space or '=' in either"
            )
        if key in values:
            raise ProtocolError(f"{_DEVICE}: key {key} twice in {shown(text)}")
        values[key] = value
    return values


def encode_key_values(values: Mapping[str, str]) -> str:
    """``values`` as a ``KEY=VALUE`` list, in the mapping's order."""
    tokens = [f"{key}={value}" for key, value in values.items()]
    for token in tokens:
        if _TOKEN_RE.fullmatch(token) is None or not token.isascii():
            raise ProtocolError(f"{_DEVICE}: {token!r} is no valid KEY=VALUE token")
    return " ".join(tokens)


#: FRAME fields of each buffer ``BUFn<SUFFIX>``, in the order the controller
#: sends them: (suffix, attribute, hexadecimal, required).
_BUFFER_FIELDS = (
    ("SAMPLE", "sample", False, True),
    ("COMPLETE", "complete", False, True),
    ("MODE", "mode", False, False),
    ("BASE", "base", False, True),
    ("FRAME", "frame", False, True),
    ("WIDTH", "width", False, True),
    ("HEIGHT", "height", False, True),
    ("PIXELS", "pixels", False, False),
    ("LINES", "lines", False, False),
    ("RAWBLOCKS", "raw_blocks", False, False),
    ("RAWLINES", "raw_lines", False, False),
    ("RAWOFFSET", "raw_offset", False, False),
    ("TIMESTAMP", "timestamp", True, True),
    ("RETIMESTAMP", "re_timestamp", True, False),
    ("FETIMESTAMP", "fe_timestamp", True, False),
)


_DECIMAL = frozenset("0123456789")
_HEXADECIMAL = frozenset("0123456789ABCDEFabcdef")


def _field(values: Mapping[str, str], key: str, hexadecimal: bool) -> int:
    value = values[key]
    digits = _HEXADECIMAL if hexadecimal else _DECIMAL
    if not value or not digits.issuperset(value):  # polled often: no regex
        kind = "hexadecimal" if hexadecimal else "decimal"
        raise ProtocolError(
            f"{_DEVICE}: FRAME field {key}={value!r} is not a {kind} integer"
        )
    return int(value, 16 if hexadecimal else 10)


@dataclass(frozen=True, kw_only=True)
class BufferStatus:
    """One frame buffer as ``FRAME`` describes it (``BUFn*`` fields).

    Times (``timestamp``, ``re_timestamp``/``fe_timestamp``: rising and falling
    edge of integration) count ticks of 10 ns. ``pixels`` and ``lines`` count
    what has been written so far; ``mode`` and the ``raw_*`` fields are passed
    on as read.
    """

    number: int
    complete: bool
    sample: SampleMode
    base: int
    frame: int
    width: int
    height: int
    timestamp: int
    mode: int = 0
    pixels: int = 0
    lines: int = 0
    raw_blocks: int = 0
    raw_lines: int = 0
    raw_offset: int = 0
    re_timestamp: int = 0
    fe_timestamp: int = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the frame: width x height x 2 (or 4 for 32-bit samples)."""
        size = 2 if self.sample is SampleMode.BITS16 else 4
        return self.width * self.height * size

    def fetch_command(self) -> str:
        """The ``FETCH`` command that reads this buffer's frame."""
        return fetch_command(self.base, blocks_for(self.nbytes))


@dataclass(frozen=True, kw_only=True)
class FrameStatus:
    """The ``FRAME`` reply: ``RBUF``, ``WBUF`` (buffer being written) and buffers.

    ``timer`` is the controller clock (``TIMER``, ticks of 10 ns), if sent.
    """

    rbuf: int
    wbuf: int
    buffers: tuple[BufferStatus, ...]
    timer: int | None = None

    def __post_init__(self) -> None:
        numbers = [buffer.number for buffer in self.buffers]
        if not 1 <= len(numbers) <= FRAME_BUFFERS or numbers != list(
            range(1, len(numbers) + 1)
        ):
            raise ProtocolError(f"{_DEVICE}: FRAME buffers {numbers}; expected 1..n")
        for name, value in (("RBUF", self.rbuf), ("WBUF", self.wbuf)):
            if not 0 <= value <= len(numbers):
                raise ProtocolError(
                    f"{_DEVICE}: FRAME {name}={value}; expected 0..{len(numbers)}"
                )

    def buffer(self, number: int) -> BufferStatus:
        """Buffer ``number`` (1..)."""
        if not 1 <= number <= len(self.buffers):
            raise ProtocolError(f"{_DEVICE}: no frame buffer {number!r}")
        return self.buffers[number - 1]

    def latest_complete(self) -> BufferStatus | None:
        """The complete buffer with the highest frame number, if any."""
        done = [buffer for buffer in self.buffers if buffer.complete]
        return max(done, key=lambda buffer: buffer.frame) if done else None

    @classmethod
    def from_key_values(cls, values: Mapping[str, str]) -> FrameStatus:
        """Read a parsed ``FRAME`` reply; unknown keys are ignored."""
        count = 0
        while count < FRAME_BUFFERS and f"BUF{count + 1}COMPLETE" in values:
            count += 1
        required = ["RBUF", "WBUF"] + [
            f"BUF{n}{suffix}"
            for n in range(1, count + 1)
            for suffix, _, _, needed in _BUFFER_FIELDS
            if needed
        ]
        missing = [key for key in required if key not in values]
        if count == 0 or missing:
            raise ProtocolError(
                f"{_DEVICE}: FRAME reply lacks {missing or ['BUF1COMPLETE']};"
                " expected RBUF, WBUF and for each buffer n BUFnSAMPLE, BUFnCOMPLETE,"
                " BUFnBASE, BUFnFRAME, BUFnWIDTH, BUFnHEIGHT, BUFnTIMESTAMP"
            )
        buffers = []
        for n in range(1, count + 1):
            fields: dict[str, int] = {}
            for suffix, attribute, hexadecimal, _ in _BUFFER_FIELDS:
                key = f"BUF{n}{suffix}"
                if key in values:
                    fields[attribute] = _field(values, key, hexadecimal)
            if fields["complete"] > 1 or fields["sample"] > 1:
                raise ProtocolError(
                    f"{_DEVICE}: FRAME BUF{n}COMPLETE={fields['complete']},"
                    f" BUF{n}SAMPLE={fields['sample']}; expected 0 or 1 for each"
                )
            complete = fields.pop("complete") == 1
            sample = SampleMode(fields.pop("sample"))
            buffers.append(
                BufferStatus(number=n, complete=complete, sample=sample, **fields)
            )
        timer = _field(values, "TIMER", True) if "TIMER" in values else None
        return cls(
            rbuf=_field(values, "RBUF", False),
            wbuf=_field(values, "WBUF", False),
            buffers=tuple(buffers),
            timer=timer,
        )

    def to_key_values(self) -> dict[str, str]:
        """The ``FRAME`` fields, in the controller's order (the simulator's side)."""
        values = {} if self.timer is None else {"TIMER": f"{self.timer:016X}"}
        values |= {"RBUF": str(self.rbuf), "WBUF": str(self.wbuf)}
        for buffer in self.buffers:
            for suffix, attribute, hexadecimal, _ in _BUFFER_FIELDS:
                raw = getattr(buffer, attribute)
                number = raw.value if isinstance(raw, SampleMode) else int(raw)
                text = f"{number:016X}" if hexadecimal else str(number)
                values[f"BUF{buffer.number}{suffix}"] = text
        return values

"""A scripted byte port: answers each write with whatever the test says."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import serial

Responder = Callable[[bytes], bytes | Exception | None]


class FakePort:
    """Stands in for a pyserial port in unit tests of one driver.

    ``respond(written) -> bytes`` decides what the device sends back (``b''``
    or ``None`` for silence, an exception to fail the next read).
    """

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.written: list[bytes] = []
        self._inbox: deque[bytes] = deque()
        self._fail: Exception | None = None
        self.closed = False
        self.flushes = 0

    def write(self, data: bytes, /) -> int:
        if self.closed:
            raise serial.SerialException("port closed")
        self.written.append(bytes(data))
        answer = self.respond(bytes(data))
        if isinstance(answer, Exception):
            self._fail = answer
        elif answer:
            self._inbox.append(answer)
        return len(data)

    @property
    def in_waiting(self) -> int:
        return sum(len(c) for c in self._inbox)

    def read(self, size: int = 1) -> bytes:
        if self._fail is not None:
            fail, self._fail = self._fail, None
            raise fail
        out = bytearray()
        while self._inbox and len(out) < size:
            chunk = self._inbox.popleft()
            take = size - len(out)
            out += chunk[:take]
            if len(chunk) > take:
                self._inbox.appendleft(chunk[take:])
        return bytes(out)

    def reset_input_buffer(self) -> None:
        self.flushes += 1
        self._inbox.clear()

    def close(self) -> None:
        self.closed = True

    def push(self, data: bytes) -> None:
        """Unsolicited bytes from the device."""
        self._inbox.append(data)

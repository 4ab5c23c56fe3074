"""What a simulated device looks like to the server that puts it on a line.

A model owns its state and its command framer; the server feeds it bytes,
calls :meth:`DeviceModel.handle` for each complete frame and writes the
reply's chunks back. Generic link faults (no reply, garbled reply, late
reply, a link dropped mid-readout) are applied by the server, so each model
only implements the faults of its own device.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol


class Framer(Protocol):
    """Splits a byte stream into complete frames (terminator included)."""

    def feed(self, data: bytes) -> list[bytes]: ...


@dataclass
class Reply:
    """The bytes a device sends back for one command.

    ``chunks`` may be a lazy iterable (a streamed pixel readout). ``readout``
    is the 1-based readout number when the reply carries pixel data, so the
    server can drop the link mid-readout when a scenario asks for it.
    """

    chunks: Iterable[bytes] = field(default_factory=list)
    readout: int | None = None


class DeviceModel(Protocol):
    """A simulated device: state, timing and faults behind a shared codec."""

    #: ``ccd``, ``cover_left`` or ``cover_right``: the name faults address.
    name: str
    #: Commands received so far (the server reads it for ``after_commands``).
    commands: int

    def new_framer(self) -> Framer:
        """A framer for the commands this device receives."""
        ...

    def handle(self, frame: bytes) -> Reply:
        """Execute one complete command frame and return the reply.

        Must never raise for bad input: malformed or unknown commands get the
        protocol's own error reply.
        """
        ...

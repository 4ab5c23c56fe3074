"""Serial lines opened by URL, for every driver.

pyserial's ``serial_for_url`` gives one code path for every kind of line:
``/dev/ttyUSB0``, ``/dev/pts/N`` (the simulators), ``socket://127.0.0.1:PORT``,
``rfc2217://host:port`` (a terminal server) and ``spy://PORT?file=dump.txt``
(a hex dump of all traffic, for engineering).

Hardware notes: the CCD controller and the Alnitak cover controllers use no
hardware flow control, so RTS/DTR/CTS are left alone; pseudo-terminals reject
those ioctls and pyserial already tolerates that. Local ports are locked with
``flock`` (pyserial's ``exclusive``) so that two programs never command the
same device.
"""

from __future__ import annotations

import array
import fcntl
import logging
import os
import select
import socket
import termios
import time
from collections.abc import Callable
from typing import Any, Protocol

import serial
from serial.urlhandler import protocol_socket

from drivers.errors import ConfigError, DeviceError

log = logging.getLogger(__name__)

#: How long one low-level read waits for the first byte (seconds). Drivers loop
#: on it against their own deadline, so it only bounds reaction time.
READ_SLICE_S = 0.05
#: How long a write may wait for the line to take its bytes.
WRITE_TIMEOUT_S = 5.0
#: A read at least this large may have more behind it (a readout, not a reply).
_GATHER_BYTES = 1024


class BytePort(Protocol):
    """The part of a pyserial port the drivers use (a fake can stand in)."""

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes, /) -> int | None: ...

    def reset_input_buffer(self) -> None: ...

    def close(self) -> None: ...

    @property
    def in_waiting(self) -> int: ...


class LinkError(DeviceError):
    """The serial line itself failed (port vanished, connection dropped)."""


Opener = Callable[[str], BytePort]


def open_port(url: str, *, baudrate: int = 9600, exclusive: bool = True) -> BytePort:
    """Open ``url`` with pyserial, exclusively where the platform allows.

    Raises
    ------
    ConfigError
        The URL is not one pyserial understands.
    LinkError
        The port does not exist, is taken by another program, or refused.
    """
    kwargs: dict[str, Any] = {"baudrate": baudrate, "timeout": READ_SLICE_S}
    if exclusive and not url.startswith(("socket://", "rfc2217://", "loop://")):
        kwargs["exclusive"] = True
    try:
        port: BytePort = serial.serial_for_url(url, **kwargs)
    except ValueError as err:
        raise ConfigError(
            f"{url!r} is not a serial URL pyserial understands ({err}); expected "
            "a device path, socket://HOST:PORT, rfc2217://HOST:PORT or spy://..."
        ) from err
    except serial.SerialException as err:
        text = str(err)
        if "exclusively lock" in text or "Resource temporarily unavailable" in text:
            raise LinkError(
                f"{url} is already in use by another program; two programs must "
                "never command the same device: stop the other one first"
            ) from err
        raise LinkError(f"cannot open {url}: {text}") from err
    return port


class SerialLink:
    """A serial line opened by URL that can be reopened after a dropped link.

    Parameters
    ----------
    url
        pyserial URL of the device.
    device
        Device name for messages (``"ccd"``, ``"cover left"``).
    baudrate
        Line speed (ignored by sockets and pseudo-terminals).
    opener
        Opens the URL; tests pass a fake.
    """

    def __init__(
        self,
        url: str,
        *,
        device: str,
        baudrate: int = 9600,
        opener: Opener | None = None,
    ) -> None:
        self.url = url
        self.device = device
        self.baudrate = baudrate
        self._opener: Opener = opener or (
            lambda u: open_port(u, baudrate=self.baudrate)
        )
        self._port: BytePort | None = None
        self._fd: int | None = None
        self._direct = False
        self._eof_means_gone = False
        self._pending = array.array("i", [0])
        self.reconnects = 0

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        """Open the port if it is not open (idempotent)."""
        if self._port is None:
            self._port = self._opener(self.url)
            self._fd = _pollable_fd(self._port)
            self._direct = self._fd is not None and _plain_read(self._port)
            self._eof_means_gone = self.url.startswith("socket://")
            if self._fd is not None:
                self._port.timeout = 0  # type: ignore[attr-defined]
            log.info("%s: opened %s", self.device, self.url)

    def close(self) -> None:
        """Close the port (idempotent)."""
        port, self._port = self._port, None
        if port is not None:
            # pyserial's socket backend skips closing its socket when the peer
            # has already gone (shutdown() raises first): close it ourselves.
            sock = getattr(port, "_socket", None)
            try:
                port.close()
            except (OSError, serial.SerialException):
                log.debug("%s: error while closing %s", self.device, self.url)
            if isinstance(sock, socket.socket):
                sock.close()

    def reconnect(self) -> None:
        """Close and reopen the line, after a dropped link."""
        self.close()
        self.reconnects += 1
        log.warning("%s: reopening %s after a link failure", self.device, self.url)
        self.open()

    def _require(self) -> BytePort:
        if self._port is None:
            self.open()
        if self._port is None:
            raise LinkError(f"{self.url}: the line did not open")
        return self._port

    def write(self, data: bytes) -> None:
        """Send ``data`` completely or raise LinkError."""
        port = self._require()
        log.debug("%s -> %r", self.device, data)
        try:
            if self._direct and self._fd is not None:
                self._write_fd(self._fd, data)
            else:
                port.write(data)
        except (OSError, serial.SerialException) as err:
            self.close()
            raise LinkError(
                f"{self.device}: write to {self.url} failed: {err}"
            ) from err

    def read_some(
        self, max_bytes: int = 1 << 20, wait_s: float = READ_SLICE_S
    ) -> bytes:
        """Bytes available now, waiting at most ``wait_s`` for the first one.

        Ports with a file descriptor (device paths, pseudo-terminals, sockets)
        are read non-blocking after a ``select``, so a reply is returned the
        moment it arrives and a readout in chunks as large as the kernel
        holds; other ports (rfc2217) fall back to pyserial's own timeout.
        Plain serial and socket ports are read straight from the descriptor,
        asking the kernel how much is waiting (``FIONREAD``): pyserial's
        ``read(n)`` would ``select`` a second time and allocate ``n`` bytes
        for a 10-byte reply. Wrapped ports (``spy://``) keep pyserial's read,
        so that their traffic dump sees every byte.
        """
        port = self._require()
        try:
            if self._fd is not None:
                ready, _, _ = select.select([self._fd], [], [], wait_s)
                if not ready:
                    return b""
                if self._direct:
                    data = self._read_fd(self._fd, max_bytes)
                else:
                    data = port.read(max_bytes)
                if not data and self._eof_means_gone:
                    self.close()
                    raise LinkError(f"{self.device}: {self.url} closed the connection")
                return data
            waiting = port.in_waiting
            return port.read(min(max(waiting, 1), max_bytes))
        except (OSError, serial.SerialException, TypeError, ValueError) as err:
            # pyserial's socket backend raises SerialException on a closed
            # peer; its posix backend TypeError or ValueError when the fd
            # vanished under it.
            self.close()
            if isinstance(err, LinkError):
                raise
            raise LinkError(
                f"{self.device}: read from {self.url} failed: {err}"
            ) from err

    def read_into(self, view: memoryview, wait_s: float = READ_SLICE_S) -> int:
        """Bytes read straight into ``view`` (0 if none came within ``wait_s``).

        For bulk data (a frame): on a plain socket or serial port the kernel
        copies into ``view`` itself, with no bytes object in between; other
        ports go through :meth:`read_some`.
        """
        self._require()
        if self._fd is None or not self._direct:
            data = self.read_some(len(view), wait_s)
            view[: len(data)] = data
            return len(data)
        try:
            if not select.select([self._fd], [], [], wait_s)[0]:
                return 0
            count = os.readv(self._fd, [view])
        except BlockingIOError:
            return 0
        except OSError as err:
            self.close()
            raise LinkError(
                f"{self.device}: read from {self.url} failed: {err}"
            ) from err
        if count == 0:
            self.close()
            raise LinkError(f"{self.device}: {self.url} closed the connection")
        return count

    def _write_fd(self, fd: int, data: bytes) -> None:
        """Write all of ``data`` to the non-blocking ``fd``.

        pyserial's ``write`` waits in ``select`` after every write even when
        all was taken; a command line fits in the kernel's buffer at once, so
        this waits only when the line is really full.
        """
        view = memoryview(data)
        deadline = time.monotonic() + WRITE_TIMEOUT_S
        while view:
            try:
                view = view[os.write(fd, view) :]
                continue
            except BlockingIOError:
                pass
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise LinkError(
                    f"{self.device}: {self.url} took no data for "
                    f"{WRITE_TIMEOUT_S:g} s (flow control stuck, or the device is "
                    "not reading)"
                )

    def _read_fd(self, fd: int, max_bytes: int) -> bytes:
        """Read what the kernel holds for ``fd`` (after select said ready)."""
        pending = self._pending
        fcntl.ioctl(fd, termios.FIONREAD, pending)
        try:
            data = os.read(fd, min(max(pending[0], 1), max_bytes))
        except BlockingIOError:
            return b""
        if not data and not self._eof_means_gone:
            # A tty that selects readable and reads nothing has hung up.
            raise LinkError(
                f"{self.device}: {self.url} reports data but returned none "
                "(device disconnected, or another program reads the port?)"
            )
        # A readout arrives faster than one read takes it: gather what came
        # in meanwhile, so that the framer sees large chunks.
        chunks = [data]
        size = len(data)
        while len(data) >= _GATHER_BYTES and size < max_bytes:
            fcntl.ioctl(fd, termios.FIONREAD, pending)
            if not pending[0]:
                break
            try:
                data = os.read(fd, min(pending[0], max_bytes - size))
            except BlockingIOError:
                break
            chunks.append(data)
            size += len(data)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def discard_input(self) -> None:
        """Drop whatever the device sent that nobody asked for."""
        port = self._require()
        if self._direct and self._fd is not None:
            # Nothing waiting (the usual case): skip the tcflush system call.
            try:
                fcntl.ioctl(self._fd, termios.FIONREAD, self._pending)
            except OSError:
                pass
            else:
                if self._pending[0] == 0:
                    return
        try:
            port.reset_input_buffer()
        except (OSError, serial.SerialException, termios.error) as err:
            # termios.error: tcflush on a pseudo-terminal (or USB adapter)
            # whose other end has gone.
            self.close()
            raise LinkError(
                f"{self.device}: flush on {self.url} failed: {err}"
            ) from err


def _plain_read(port: BytePort) -> bool:
    """Whether ``port.read`` is pyserial's own POSIX or socket read."""
    read = getattr(type(port), "read", None)
    plain = {getattr(serial, "Serial", None), protocol_socket.Serial}
    return any(cls is not None and read is cls.read for cls in plain)


def _pollable_fd(port: BytePort) -> int | None:
    """The port's file descriptor if ``select`` can watch it, else None."""
    fileno = getattr(port, "fileno", None)
    if fileno is None or not isinstance(port, serial.SerialBase):
        return None
    try:
        fd = fileno()
    except (OSError, AttributeError, NotImplementedError, serial.SerialException):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def wait_until(deadline: float) -> float:
    """Seconds left until the monotonic ``deadline`` (never negative)."""
    return max(0.0, deadline - time.monotonic())

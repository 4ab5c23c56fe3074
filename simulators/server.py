"""Put a device model on a line: a pseudo-terminal or a loopback TCP port.

One thread per device reads bytes, feeds the model's framer, calls
``handle()`` for each complete frame and writes the reply back, applying the
link faults of the scenario on the way (no reply, garbled reply, late reply,
link dropped mid-readout).

Known limitations: on a pseudo-terminal a "dropped link" cannot be a real
hang-up (the client would have to reopen a new ``/dev/pts/N``), so the rest
of the readout is simply never sent; over TCP the connection is closed and a
new one is accepted. Over TCP one client is served at a time: a second
connection is refused (accepted and closed at once, without a byte) while the
first is open, as a serial device would be, even while the first one's READ
is streaming or its reply is held back by a fault. A doorman thread does the
refusing, so that it never waits for the device. A connection that arrives
just after the client in service hung up is kept and served next, so that a
client that closes and reconnects at once finds the device free.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import select
import socket
import termios
import threading
import time
import tty
from collections.abc import Iterable, Iterator
from typing import Literal

from simulators.clock import SimClock
from simulators.device import DeviceModel, Reply
from simulators.faults import FaultBook, FaultKind

log = logging.getLogger(__name__)

Transport = Literal["pty", "tcp"]

_POLL_S = 0.1
#: A client that reads nothing for this long (wall seconds) loses the rest of a reply.
STALLED_CLIENT_S = 30.0


class LinkDropped(Exception):
    """The rest of a reply must not be sent (client gone or link fault)."""


class _Link:
    """A byte pipe to one client, with cooperative shutdown."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def fileno(self) -> int:
        raise NotImplementedError

    def recv(self) -> bytes | None:
        """Bytes received, b'' if none yet, None if the client is gone."""
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        last_progress = time.monotonic()
        while view:
            if self.stop.is_set():
                raise LinkDropped("simulator stopping")
            # Write first: the line usually has room, and a select before
            # every write would cost a system call per chunk of a readout.
            try:
                n = self._write(view)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as err:
                raise LinkDropped(str(err)) from err
            if n:
                view = view[n:]
                last_progress = time.monotonic()
                continue
            _, writable, _ = select.select([], [self.fileno()], [], _POLL_S)
            if not writable and time.monotonic() - last_progress > STALLED_CLIENT_S:
                raise LinkDropped("client stopped reading")

    def _write(self, view: memoryview) -> int:
        raise NotImplementedError

    def drop(self) -> None:
        """Simulate a dropped link (fault injection)."""


class _PtyLink(_Link):
    def __init__(self, stop: threading.Event) -> None:
        super().__init__(stop)
        self.master, self._slave = os.openpty()
        # Raw mode: no echo, no CR/LF translation, bytes pass unchanged.
        tty.setraw(self._slave, termios.TCSANOW)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        # We keep our own slave descriptor open so that the master never sees
        # EIO when a client closes the port and opens it again.

    def fileno(self) -> int:
        return self.master

    def recv(self) -> bytes | None:
        try:
            return os.read(self.master, 65536)
        except (BlockingIOError, InterruptedError):
            return b""

    def _write(self, view: memoryview) -> int:
        return os.write(self.master, view)

    def close(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class _TcpLink(_Link):
    def __init__(self, stop: threading.Event, conn: socket.socket) -> None:
        super().__init__(stop)
        self.conn = conn
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def fileno(self) -> int:
        return self.conn.fileno()

    def recv(self) -> bytes | None:
        try:
            data = self.conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:
            return None
        return data if data else None

    def _write(self, view: memoryview) -> int:
        return self.conn.send(view)

    def drop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.shutdown(socket.SHUT_RDWR)
        self.conn.close()


class DeviceServer:
    """Serves one device model on a pseudo-terminal or a loopback TCP port.

    Parameters
    ----------
    model
        The device model.
    clock
        The simulators' clock (for time-triggered faults).
    faults
        The fault book (link faults are applied here).
    transport
        ``"pty"`` (default) or ``"tcp"`` (127.0.0.1 only).
    port
        TCP port; 0 picks a free one.
    """

    def __init__(
        self,
        model: DeviceModel,
        clock: SimClock,
        faults: FaultBook,
        *,
        transport: Transport = "pty",
        port: int = 0,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.clock = clock
        self.faults = faults
        self.transport = transport
        self.stop_event = threading.Event()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()  # one command at a time per device
        self._pty: _PtyLink | None = None
        self._listener: socket.socket | None = None
        # The TCP client in service and the one that may follow it (doorman).
        self._door_lock = threading.Lock()
        self._active: socket.socket | None = None
        self._next: socket.socket | None = None
        self._handoff: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
        if transport == "pty":
            self._pty = _PtyLink(self.stop_event)
            self.url = self._pty.path
        else:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(4)
            listener.setblocking(False)
            self._listener = listener
            self.url = f"socket://127.0.0.1:{listener.getsockname()[1]}"
        self._thread = threading.Thread(
            target=self._serve, name=f"sim-{model.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.stop_event.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        if self._pty is not None:
            self._pty.close()
        if self._listener is not None:
            self._listener.close()

    # -- serving -----------------------------------------------------------

    def _serve(self) -> None:
        try:
            if self._pty is not None:
                self._serve_link(self._pty)
            else:
                self._serve_tcp()
        except Exception:  # a simulator bug must be loud, not a silent dead device
            log.exception("%s: simulator thread crashed", self.model.name)
            raise

    def _serve_tcp(self) -> None:
        door = threading.Thread(
            target=self._doorman, name=f"sim-{self.model.name}-door", daemon=True
        )
        door.start()
        try:
            while not self.stop_event.is_set():
                try:
                    conn = self._handoff.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                self._serve_client(conn)
        finally:
            door.join(timeout=5.0)
            with self._door_lock:
                for left in (self._active, self._next):
                    if left is not None:
                        left.close()
                self._active = self._next = None

    def _serve_client(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            log.info(
                "%s: client connected from %s:%s", self.model.name, *conn.getpeername()
            )
        link = _TcpLink(self.stop_event, conn)
        try:
            self._serve_link(link)
        finally:
            with self._door_lock:  # the doorman never sees a half-closed state
                link.drop()
                self._active, self._next = self._next, None
                if self._active is not None:
                    self._handoff.put(self._active)
            log.info("%s: client disconnected", self.model.name)

    def _doorman(self) -> None:
        """Admit a client when the device is free; refuse one while it is not."""
        listener = self._listener
        if listener is None:
            raise RuntimeError(f"{self.model.name}: the doorman runs before listen()")
        while not self.stop_event.is_set():
            ready, _, _ = select.select([listener], [], [], _POLL_S)
            if not ready:
                continue
            try:
                conn, peer = listener.accept()
            except OSError:  # BlockingIOError, or gone before we took it
                continue
            with self._door_lock:
                if self._active is None:
                    self._active = conn
                    self._handoff.put(conn)
                    continue
                if self._next is None and _hung_up(self._active):
                    self._next = conn  # served as soon as the last one is let go
                    continue
            log.warning(
                "%s: refused a second connection from %s:%s (device busy)",
                self.model.name,
                *peer,
            )
            conn.close()

    def _serve_link(self, link: _Link) -> None:
        framer = self.model.new_framer()
        while not self.stop_event.is_set():
            ready, _, _ = select.select([link.fileno()], [], [], _POLL_S)
            if not ready:
                continue
            data = link.recv()
            if data is None:
                return  # the client left: let the next one in
            for frame in framer.feed(data):
                try:
                    self._answer(link, frame)
                except LinkDropped as why:
                    log.warning("%s: reply cut short: %s", self.model.name, why)
                    if isinstance(link, _TcpLink):
                        return
                    framer = self.model.new_framer()
                    break

    def _answer(self, link: _Link, frame: bytes) -> None:
        log.debug("%s <- %r", self.model.name, frame)
        with self._lock:
            reply = self.model.handle(frame)
        commands = self.model.commands
        now = self.clock.now()
        name = self.model.name

        def fire(kind: FaultKind, readout: int | None = None) -> float | None:
            fault = self.faults.fire(
                name, kind, commands=commands, sim_time=now, readout=readout
            )
            if fault is None:
                return None
            log.warning("%s: injecting %s", name, kind.value)
            return fault.param(
                {
                    FaultKind.LATE_REPLY: "delay_s",
                    FaultKind.DISCONNECT_READOUT: "fraction",
                    FaultKind.SHORT_FETCH: "fraction",
                }.get(kind, "_"),
                {
                    FaultKind.LATE_REPLY: 3.0,
                    FaultKind.DISCONNECT_READOUT: 0.5,
                    FaultKind.SHORT_FETCH: 0.5,
                }.get(kind, 0.0),
            )

        if fire(FaultKind.NO_REPLY) is not None:
            for _ in reply.chunks:  # the device did the work; the reply is lost
                pass
            return
        delay = fire(FaultKind.LATE_REPLY)
        if delay:
            self._sleep(delay)
        chunks: Iterable[bytes] = reply.chunks
        if fire(FaultKind.GARBLED_REPLY) is not None:
            chunks = self._garble(chunks, head=reply.readout is not None)
        if reply.readout is not None:
            fraction = fire(FaultKind.DISCONNECT_READOUT, reply.readout)
            if fraction is not None:
                chunks = self._cut(reply, chunks, fraction, link)
            short = fire(FaultKind.SHORT_FETCH, reply.readout)
            if short is not None:
                chunks = self._cut(reply, chunks, short, None)
        for chunk in chunks:
            if chunk:
                log.debug("%s -> %r", name, chunk[:80])
                link.send(chunk)

    def _sleep(self, seconds: float) -> None:
        self.stop_event.wait(seconds)

    def _garble(
        self, chunks: Iterable[bytes], *, head: bool = False
    ) -> Iterator[bytes]:
        """Scramble the first bytes of a reply (of a readout: its first header).

        Noise inside a binary block's payload would pass unseen (the Archon
        sends no checksum, see drivers.archon_link): the fault garbles what a
        client can detect, as line noise on a header does.
        """
        first = True
        for chunk in chunks:
            if first and chunk:
                first = False
                body = bytearray(chunk)
                end = len(body) - 1 if body.endswith(b"\n") else len(body)
                end = min(end, 4) if head else end
                noise = b"#%&~^\x00\x7f\xff0123456789"
                for i in range(min(end, 64)):
                    if self._rng.random() < 0.5:
                        body[i] = self._rng.choice(noise)
                if end > 0 and bytes(body) == chunk:  # never let a garble be a no-op
                    body[0] = ord("#") if body[0] != ord("#") else ord("%")
                yield bytes(body)
            else:
                yield chunk

    def _cut(
        self,
        reply: Reply,
        chunks: Iterable[bytes],
        fraction: float,
        link: _Link | None,
    ) -> Iterator[bytes]:
        """The readout's bytes up to ``fraction`` of a frame; then the link is
        dropped, or (``link`` None) the rest is silently never sent."""
        # Without knowing the total in advance, cut after `fraction` of a
        # full MEGARA frame's bytes (or at the end of the stream if shorter).
        budget = int(max(0.0, min(1.0, fraction)) * 4212 * 4196 * 2)
        sent = 0
        for chunk in chunks:
            if sent + len(chunk) >= budget:
                yield chunk[: max(0, budget - sent)]
                if link is None:
                    log.warning(
                        "%s: readout %s cut short", self.model.name, reply.readout
                    )
                    for _ in chunks:  # the rest is lost on the way
                        pass
                    return
                link.drop()
                raise LinkDropped(
                    f"link dropped by fault after {budget} bytes of readout "
                    f"{reply.readout}"
                )
            sent += len(chunk)
            yield chunk


_POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)  # Linux: the peer shut down


def _hung_up(conn: socket.socket) -> bool:
    """Whether the peer of ``conn`` has closed (or we already dropped it)."""
    if conn.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(conn, select.POLLIN | _POLLRDHUP)
    events = poller.poll(0)
    return any(
        mask & (_POLLRDHUP | select.POLLHUP | select.POLLERR) for _, mask in events
    )

"""The simulators' control channel: inject faults into a running simulator.

A loopback TCP port speaking JSON lines, one request and one reply per line.
Every request carries the token that the launcher wrote to its token file
(see :mod:`simulators.control_token`)::

    -> {"op": "inject", "fault": {"device": "ccd", "kind": "no_reply"}, "token": "9f1c"}
    <- {"ok": true}
    -> {"op": "faults", "token": "9f1c"}
    <- {"ok": true, "pending": [...], "fired": [{"sim_time": 12.5, "fault": {...}}]}
    -> {"op": "status", "token": "9f1c"}
    <- {"ok": true, "sim_time": 42.0, "time_scale": 1000.0, "devices": {...}}

A request without the right token (anything that is not a JSON object with
it, a line over 64 KiB included) gets ``{"ok": false, "error": "..."}`` and the
connection is closed. An authenticated but bad request gets ``{"ok": false,
"error": "..."}`` and the connection stays open. Replies are sent without
blocking: a client that sends requests and never reads its replies is
dropped once :data:`MAX_PENDING_OUTPUT` bytes of them wait for it, and never
holds up the other clients.

From a shell: ``python -m simulators.control --token-file PATH
socket://127.0.0.1:PORT inject '{"device": "cover_left", "kind": "cover_jam"}'``
(or ``faults``, ``status``), with the ``token_file`` and ``control`` URL of the
simulators' control line.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.errors import ConfigError
from simulators.clock import SimClock
from simulators.control_token import read_token
from simulators.faults import FaultBook, fault_from_dict

log = logging.getLogger(__name__)

_MAX_LINE = 65536
#: How long a refused client may keep sending after our end is shut, seconds.
_LINGER_S = 2.0
#: Bytes of replies a client may leave unread before it is dropped.
MAX_PENDING_OUTPUT = 1 << 20

_REFUSED = (
    "control: request refused: {why}; send a JSON object with the 'token' read "
    "from the token_file named in the simulators' control line (python -m "
    "simulators.control --token-file PATH ...); closing the connection"
)


@dataclass(eq=False)
class _Client:
    """One connection: unparsed input, unsent replies."""

    conn: socket.socket
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    closing: bool = False  # refused: no more requests read, only discarded
    shut_at: float | None = None  # when our side was shut, the refusal sent
    discarded: int = 0  # bytes read and ignored since the refusal


class ControlServer:
    """JSON-lines control port for a running simulator process.

    Parameters
    ----------
    clock, faults
        The simulators' clock and fault book.
    describe
        Each device's URL and command count, for ``status``.
    token
        The secret every request must carry (``"token"``).
    port
        TCP port on 127.0.0.1; 0 picks a free one.
    """

    def __init__(
        self,
        clock: SimClock,
        faults: FaultBook,
        describe: Callable[[], dict[str, Any]],
        *,
        token: str,
        port: int = 0,
    ) -> None:
        if not token or not token.isascii():
            raise ConfigError("control: the token must be a non-empty ASCII string")
        self.clock = clock
        self.faults = faults
        self.describe = describe
        self._token = token
        self.stop_event = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(8)
        self._listener.setblocking(False)
        self.url = f"socket://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(
            target=self._serve, name="sim-control", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.stop_event.set()
        if self._thread.is_alive():  # close() before start() must work too
            self._thread.join(timeout=5.0)
        self._listener.close()

    # -- serving -------------------------------------------------------------

    def _serve(self) -> None:
        clients: dict[socket.socket, _Client] = {}
        while not self.stop_event.is_set():
            reading = list(clients)
            writing = [c.conn for c in clients.values() if c.outbuf]
            readable, writable, _ = select.select(
                [self._listener, *reading], writing, [], 0.1
            )
            if self._listener in readable:
                self._accept(clients)
            for sock in readable:
                if sock in clients and not self._serve_client(clients[sock]):
                    self._drop(clients, sock)
            for sock in writable:
                if sock in clients and not self._flush(clients[sock]):
                    self._drop(clients, sock)
            for sock in [s for s, c in clients.items() if not self._linger(c)]:
                self._drop(clients, sock)
        for sock in list(clients):
            self._drop(clients, sock)

    def _accept(self, clients: dict[socket.socket, _Client]) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:  # gone before we took it
            return
        conn.setblocking(False)
        clients[conn] = _Client(conn)

    @staticmethod
    def _drop(clients: dict[socket.socket, _Client], sock: socket.socket) -> None:
        del clients[sock]
        with contextlib.suppress(OSError):
            sock.close()

    @staticmethod
    def _linger(client: _Client) -> bool:
        """False once a refused client is done with: refusal sent, time up.

        Its end is shut (the refusal, then end of file) and what it still
        sends is read and ignored for a moment before the socket is closed,
        so that closing on unread input (a reset) cannot destroy the refusal
        before the client reads it.
        """
        if not client.closing or client.outbuf:
            return True
        if client.shut_at is None:
            client.shut_at = time.monotonic()
            with contextlib.suppress(OSError):
                client.conn.shutdown(socket.SHUT_WR)
            return True
        return time.monotonic() - client.shut_at < _LINGER_S

    def _serve_client(self, client: _Client) -> bool:
        """Answer the complete lines a client sent; False to drop it."""
        try:
            data = client.conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as err:  # reset, or gone before its reply
            log.info("control: client dropped: %s", err)
            return False
        if not data:
            return False
        if client.closing:
            client.discarded += len(data)
            return client.discarded <= MAX_PENDING_OUTPUT
        client.inbuf += data
        while b"\n" in client.inbuf and not client.closing:
            line, _, rest = bytes(client.inbuf).partition(b"\n")
            client.inbuf[:] = rest
            reply, authorised = self.answer(line)
            self._queue(client, reply)
            client.closing = not authorised
        if len(client.inbuf) > _MAX_LINE and not client.closing:
            why = f"request line over {_MAX_LINE} bytes"
            self._queue(client, {"ok": False, "error": _REFUSED.format(why=why)})
            client.closing = True
        if client.closing:
            client.inbuf.clear()
        if len(client.outbuf) > MAX_PENDING_OUTPUT:
            log.warning(
                "control: dropping a client that left %d bytes of replies unread",
                len(client.outbuf),
            )
            return False
        return self._flush(client)

    @staticmethod
    def _queue(client: _Client, reply: dict[str, Any]) -> None:
        client.outbuf += json.dumps(reply).encode() + b"\n"

    @staticmethod
    def _flush(client: _Client) -> bool:
        """Send what the socket takes now, never waiting; False if it failed."""
        if not client.outbuf:
            return True
        try:
            sent = client.conn.send(client.outbuf)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as err:
            log.info("control: client dropped: %s", err)
            return False
        del client.outbuf[:sent]
        return True

    # -- requests --------------------------------------------------------------

    def authorised(self, request: object) -> bool:
        """Whether ``request`` is a JSON object carrying the right token."""
        if not isinstance(request, dict):
            return False
        token = request.get("token")
        return (
            isinstance(token, str)
            and token.isascii()
            and hmac.compare_digest(token, self._token)
        )

    def answer(self, line: bytes) -> tuple[dict[str, Any], bool]:
        """The reply to one request line, and whether it carried the token."""
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            request, why = None, "not JSON this server reads"
        else:
            why = "no valid 'token'"
        if not self.authorised(request) or not isinstance(request, dict):
            log.warning("control: refused a request: %s", why)
            return {"ok": False, "error": _REFUSED.format(why=why)}, False
        return self.handle(request), True

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one authenticated request."""
        op = request.get("op")
        if op == "inject":
            try:
                fault = fault_from_dict(request.get("fault"), where="injected fault")
            except ConfigError as err:
                return {"ok": False, "error": str(err)}
            except (ValueError, TypeError, OverflowError) as err:
                # e.g. at_time 1e400 written as an integer: no float holds it
                return {"ok": False, "error": f"injected fault: invalid value ({err})"}
            self.faults.add(fault)
            log.warning("control: fault armed: %s", fault.to_dict())
            return {"ok": True}
        if op == "faults":
            return {
                "ok": True,
                "pending": [f.to_dict() for f in self.faults.pending()],
                "fired": [
                    {"sim_time": t, "fault": f.to_dict()} for t, f in self.faults.fired
                ],
            }
        if op == "status":
            return {
                "ok": True,
                "sim_time": self.clock.now(),
                "time_scale": self.clock.scale,
                "devices": self.describe(),
            }
        return {
            "ok": False,
            "error": f"unknown op {op!r}; expected inject, faults or status",
        }


# -- the client ----------------------------------------------------------------


def send_request(
    url: str, request: dict[str, Any], *, token: str, timeout_s: float = 5.0
) -> Any:
    """Send one request, with ``token``, to a control port ``socket://host:port``.

    ``token`` is the content of the simulators' token file
    (:func:`simulators.control_token.read_token`). Returns the decoded reply.
    """
    if not url.startswith("socket://"):
        raise ConfigError(
            f"control URL must look like socket://127.0.0.1:PORT, got {url!r}"
        )
    host, _, port = url.removeprefix("socket://").rpartition(":")
    line = json.dumps({**request, "token": token}).encode() + b"\n"
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(line)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


USAGE = (
    "usage: python -m simulators.control --token-file PATH URL "
    "(inject FAULT_JSON | faults | status)"
)


def _parse(args: list[str]) -> tuple[str | None, list[str]]:
    """Split ``--token-file PATH`` (anywhere) from the positional arguments."""
    token_file: str | None = None
    rest: list[str] = []
    words = iter(args)
    for word in words:
        if word == "--token-file":
            token_file = next(words, "")
        elif word.startswith("--token-file="):
            token_file = word.partition("=")[2]
        else:
            rest.append(word)
    return token_file, rest


def main(argv: list[str] | None = None) -> int:
    """``python -m simulators.control --token-file PATH URL OP [FAULT_JSON]``."""
    token_file, args = _parse(sys.argv[1:] if argv is None else argv)
    wanted = {"inject": 3, "faults": 2, "status": 2}
    if len(args) < 2 or wanted.get(args[1]) != len(args):
        print(USAGE, file=sys.stderr)
        return 2
    if not token_file:
        print(
            "simulators.control: error: --token-file PATH is required: the "
            "token_file of the simulators' control line",
            file=sys.stderr,
        )
        return 2
    request: dict[str, Any] = {"op": args[1]}
    try:
        if args[1] == "inject":
            request["fault"] = json.loads(args[2])
        token = read_token(token_file)
    except ValueError as err:
        print(f"simulators.control: error: not JSON: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        print(f"simulators.control: error: {err}", file=sys.stderr)
        return 2
    try:
        reply = send_request(args[0], request, token=token)
    except (ConfigError, OSError, ValueError) as err:
        print(f"simulators.control: error: {args[0]}: {err}", file=sys.stderr)
        return 1
    print(json.dumps(reply, indent=2))
    return 0 if reply.get("ok") else 1


if __name__ == "__main__":
    raise SystemExit(main())

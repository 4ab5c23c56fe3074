"""The simulators' control channel: inject faults into a running simulator.

A loopback TCP port speaking JSON lines, one request and one reply per line::

    -> {"op": "inject", "fault": {"device": "ccd", "kind": "bad_crc"}}
    <- {"ok": true}
    -> {"op": "faults"}
    <- {"ok": true, "pending": [...], "fired": [{"sim_time": 12.5, "fault": {...}}]}
    -> {"op": "status"}
    <- {"ok": true, "sim_time": 42.0, "time_scale": 1000.0, "devices": {...}}

A bad request gets ``{"ok": false, "error": "..."}``; the connection stays open.
From a shell: ``python -m simulators.control socket://127.0.0.1:PORT inject
'{"device": "cover_left", "kind": "cover_jam"}'`` (or ``faults``, ``status``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from drivers.errors import ConfigError
from simulators.clock import SimClock
from simulators.faults import FaultBook, fault_from_dict

log = logging.getLogger(__name__)

_MAX_LINE = 65536


class ControlServer:
    """JSON-lines control port for a running simulator process."""

    def __init__(
        self,
        clock: SimClock,
        faults: FaultBook,
        describe: Callable[[], dict[str, Any]],
        *,
        port: int = 0,
    ) -> None:
        self.clock = clock
        self.faults = faults
        self.describe = describe
        self.stop_event = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(4)
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

    def _serve(self) -> None:
        clients: dict[socket.socket, bytearray] = {}
        while not self.stop_event.is_set():
            ready, _, _ = select.select([self._listener, *clients], [], [], 0.1)
            for sock in ready:
                if sock is self._listener:
                    with contextlib.suppress(OSError):
                        conn, _ = self._listener.accept()
                        clients[conn] = bytearray()
                    continue
                try:
                    alive = self._serve_client(sock, clients[sock])
                except OSError as err:  # reset, or gone before its reply
                    log.info("control: client dropped: %s", err)
                    alive = False
                if not alive:
                    del clients[sock]
                    sock.close()
        for conn in clients:
            conn.close()

    def _serve_client(self, conn: socket.socket, buf: bytearray) -> bool:
        """Answer the complete lines a client sent; False once it has left."""
        data = conn.recv(65536)
        if not data:
            return False
        buf += data
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            conn.sendall(json.dumps(self.handle(line)).encode() + b"\n")
        if len(buf) > _MAX_LINE:
            buf.clear()
            conn.sendall(b'{"ok": false, "error": "request line too long"}\n')
        return True

    def handle(self, line: bytes) -> dict[str, Any]:
        """Answer one JSON request line."""
        try:
            request = json.loads(line)
        except ValueError as err:
            return {"ok": False, "error": f"not JSON: {err}"}
        except RecursionError:
            return {"ok": False, "error": "not JSON this server reads: nested too deep"}
        if not isinstance(request, dict) or "op" not in request:
            return {"ok": False, "error": "expected an object with key 'op'"}
        op = request["op"]
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


def send_request(url: str, request: dict[str, Any], timeout_s: float = 5.0) -> Any:
    """Send one request to a control port ``socket://host:port``; return the reply."""
    if not url.startswith("socket://"):
        raise ConfigError(
            f"control URL must look like socket://127.0.0.1:PORT, got {url!r}"
        )
    host, _, port = url.removeprefix("socket://").rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


def main(argv: list[str] | None = None) -> int:
    """``python -m simulators.control URL inject FAULT_JSON | faults | status``."""
    args = sys.argv[1:] if argv is None else argv
    usage = (
        "usage: python -m simulators.control URL (inject FAULT_JSON | faults | status)"
    )
    if len(args) < 2 or args[1] not in ("inject", "faults", "status"):
        print(usage, file=sys.stderr)
        return 2
    request: dict[str, Any] = {"op": args[1]}
    if args[1] == "inject":
        if len(args) != 3:
            print(usage, file=sys.stderr)
            return 2
        try:
            request["fault"] = json.loads(args[2])
        except ValueError as err:
            print(f"simulators.control: error: not JSON: {err}", file=sys.stderr)
            return 2
    try:
        reply = send_request(args[0], request)
    except (ConfigError, OSError, ValueError) as err:
        print(f"simulators.control: error: {args[0]}: {err}", file=sys.stderr)
        return 1
    print(json.dumps(reply, indent=2))
    return 0 if reply.get("ok") else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The simulators' control port obeys only its owner, and no client can stall it.

* At start the simulators write a random token to a file of mode 0600 in a
  directory of mode 0700 (under ``$XDG_RUNTIME_DIR``), name it in their
  control line and remove it when they exit.
* Every request must carry that token; one without it (or with a wrong one)
  is refused with one JSON error line and the connection is closed, and
  arms nothing.
* ``python -m simulators.control`` needs ``--token-file``.
* A client that sends requests and never reads the replies is dropped once
  1 MiB of them waits for it, and the others are answered meanwhile.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.errors import ConfigError
from simulators.clock import SimClock
from simulators.control import MAX_PENDING_OUTPUT, ControlServer, send_request
from simulators.control_token import TokenFile, read_token
from simulators.faults import FaultBook
from tests.simproc import SimProcess, control, control_token, start_simulators

pytestmark = pytest.mark.sim

FAULT = {"device": "ccd", "kind": "no_reply", "after_commands": 5}


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimProcess]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    process = start_simulators("--time-scale", "1000")
    try:
        yield process
    finally:
        process.close()


def connect(url: str) -> socket.socket:
    host, _, port = url.removeprefix("socket://").rpartition(":")
    return socket.create_connection((host, int(port)), timeout=10.0)


def exchange(conn: socket.socket, line: bytes) -> tuple[dict[str, Any], bytes]:
    """Send one line; return the reply and whatever followed it until EOF."""
    conn.sendall(line)
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, "hung up without a reply"
        data += chunk
    reply, _, rest = data.partition(b"\n")
    decoded = json.loads(reply)
    assert isinstance(decoded, dict)
    return decoded, rest


def closed_after(conn: socket.socket) -> bool:
    try:
        return conn.recv(1) == b""
    except ConnectionResetError:
        return True


# -- the token file ----------------------------------------------------------------


def test_the_token_file_is_private_and_removed_at_exit(
    sim: SimProcess, tmp_path: Path
) -> None:
    path = Path(sim.info["token_file"])
    assert path.parent.parent == tmp_path / "runtime"
    info, folder = path.stat(), path.parent.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE(folder.st_mode) == 0o700
    assert info.st_uid == os.getuid()
    assert len(read_token(path)) == 32
    assert sim.stop() == 0
    assert not path.exists()
    assert not path.parent.exists()


def test_two_token_files_never_share_a_token(tmp_path: Path) -> None:
    with TokenFile(tmp_path) as one, TokenFile(tmp_path) as two:
        assert one.token != two.token
        assert one.path != two.path
        assert read_token(one.path) == one.token
    assert list(tmp_path.iterdir()) == []


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("0" * 32)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="mode 0644 lets other users read it"):
        read_token(path)
    path.chmod(0o600)
    assert read_token(path) == "0" * 32
    path.write_text("not a token")
    with pytest.raises(ConfigError, match="does not hold a token"):
        read_token(path)


# -- requests without the token ------------------------------------------------------


@pytest.mark.parametrize(
    "request_line",
    [
        json.dumps({"op": "inject", "fault": FAULT}).encode() + b"\n",
        json.dumps({"op": "inject", "fault": FAULT, "token": "0" * 32}).encode()
        + b"\n",
        json.dumps({"op": "inject", "fault": FAULT, "token": 12345}).encode() + b"\n",
        json.dumps({"op": "inject", "fault": FAULT, "token": "\u00e9"}).encode()
        + b"\n",
        b"[1, 2, 3]\n",
        b"not json\n",
    ],
    ids=["none", "wrong", "number", "non-ascii", "not-an-object", "not-json"],
)
def test_a_request_without_the_token_is_refused_and_the_line_closed(
    sim: SimProcess, request_line: bytes
) -> None:
    with connect(sim.control) as conn:
        reply, rest = exchange(conn, request_line)
        assert reply["ok"] is False
        assert "token" in reply["error"]
        assert "token_file" in reply["error"]
        assert rest == b""
        assert closed_after(conn)
    assert control(sim, {"op": "faults"})["pending"] == []  # nothing armed


def test_the_owner_is_served_on_an_open_line(sim: SimProcess) -> None:
    token = control_token(sim)
    with connect(sim.control) as conn:
        inject = {"op": "inject", "fault": FAULT, "token": token}
        assert exchange(conn, json.dumps(inject).encode() + b"\n")[0] == {"ok": True}
        bad = {"op": "warp", "token": token}
        reply, _ = exchange(conn, json.dumps(bad).encode() + b"\n")
        assert reply["ok"] is False
        assert "unknown op" in reply["error"]
        faults = {"op": "faults", "token": token}
        reply, _ = exchange(conn, json.dumps(faults).encode() + b"\n")
        assert reply["pending"] == [FAULT]


# -- the command-line client -----------------------------------------------------------


def client(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulators.control", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_line_client_sends_the_token_from_its_file(
    sim: SimProcess, tmp_path: Path
) -> None:
    done = client("--token-file", sim.info["token_file"], sim.control, "status")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    missing = client(sim.control, "status")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "simulators.control: error: --token-file PATH is required: the "
        "token_file of the simulators' control line"
    ]
    wrong = tmp_path / "wrong.token"
    wrong.write_text("f" * 32)
    wrong.chmod(0o600)
    refused = client(f"--token-file={wrong}", sim.control, "inject", json.dumps(FAULT))
    assert refused.returncode == 1
    assert "token" in json.loads(refused.stdout)["error"]
    assert control(sim, {"op": "faults"})["pending"] == []


# -- a client that never reads ---------------------------------------------------------


@pytest.fixture
def server() -> Iterator[ControlServer]:
    big = {"padding": "x" * 60_000}  # every status reply is about 60 kB

    def describe() -> dict[str, Any]:
        return big

    control_server = ControlServer(
        SimClock(1.0), FaultBook(()), describe, token="a" * 32
    )
    control_server.start()
    try:
        yield control_server
    finally:
        control_server.close()


def test_a_client_that_never_reads_is_dropped_and_others_are_served(
    server: ControlServer,
) -> None:
    status = json.dumps({"op": "status", "token": "a" * 32}).encode() + b"\n"
    rude = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    rude.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, _, port = server.url.removeprefix("socket://").rpartition(":")
    rude.connect((host, int(port)))
    with rude:
        # 400 replies of 60 kB: 24 MB, far more than any socket buffers hold,
        # so a server that waited for this client would wait for ever.
        rude.sendall(status * 400)
        assert 8 * MAX_PENDING_OUTPUT < 400 * 60_000
        with connect(server.url) as polite:
            reply, _ = exchange(polite, status)
            assert reply["ok"] is True
            assert len(reply["devices"]["padding"]) == 60_000


def test_send_request_adds_the_token(server: ControlServer) -> None:
    reply = send_request(server.url, {"op": "status"}, token="a" * 32)
    assert reply["ok"] is True
    refused = send_request(server.url, {"op": "status"}, token="b" * 32)
    assert refused["ok"] is False


def test_the_server_needs_a_token() -> None:
    make: Callable[..., ControlServer] = ControlServer
    with pytest.raises(ConfigError, match="token"):
        make(SimClock(1.0), FaultBook(()), dict, token="")

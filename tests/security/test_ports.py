"""Who can reach the simulators, and who can command a device.

* The simulators listen on the loopback interface only: every listening
  socket of a real ``megara-dark simulate`` process (device ports over TCP
  and the control port) is bound to 127.0.0.1, read from the kernel's own
  table (``/proc/net/tcp``), not from what the process prints. There is no
  option to bind elsewhere (``--port`` picks the port, never the address).
* A device port already opened by another program is refused, with a message
  that says so: a bare pseudo-terminal, a simulator's pseudo-terminal, and a
  whole ``megara-dark run`` started while another program holds the CCD.
  Over TCP the simulator serves one client at a time and drops a second one
  without a byte of reply, while the first keeps working.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.transport import LinkError, open_port
from sequencer.simlaunch import megara_dark
from simulators.clock import SimClock
from simulators.control import ControlServer
from simulators.cover import CoverModel
from simulators.faults import FaultBook
from simulators.server import DeviceServer
from tests.simproc import SimProcess, start_simulators

pytestmark = pytest.mark.sim

LOOPBACK = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it (little-endian hex)
LISTEN = "0A"


@pytest.fixture
def simulators() -> Iterator[Callable[..., SimProcess]]:
    started: list[SimProcess] = []

    def start(*args: str) -> SimProcess:
        sim = start_simulators("--time-scale", "1000", *args)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.close()


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def listening(pid: int) -> list[tuple[str, int]]:
    """(address as hex, port) of every TCP socket the process listens on."""
    mine = socket_inodes(pid)
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            next(handle)
            for row in handle:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == LISTEN and inode in mine:
                    address, port = local.rsplit(":", 1)
                    found.append((address, int(port, 16)))
    return found


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.mark.parametrize("transport", ["tcp", "pty"])
def test_simulators_listen_on_loopback_only(
    simulators: Callable[..., SimProcess], transport: str
) -> None:
    sim = simulators("--transport", transport)
    sockets = listening(sim.pid)
    expected = {port_of(sim.control), port_of(sim.urls["ccd"])}  # Archon: TCP
    if transport == "tcp":
        expected |= {port_of(url) for url in sim.urls.values()}
        assert all(url.startswith("socket://127.0.0.1:") for url in sim.urls.values())
    assert sim.control.startswith("socket://127.0.0.1:")
    assert {port for _, port in sockets} == expected
    assert {address for address, _ in sockets} == {LOOPBACK}


def test_servers_bind_the_loopback_address() -> None:
    """The same, in process: the bound address of each listener."""
    clock, faults = SimClock(1000.0), FaultBook([])
    model = CoverModel("cover_left", clock, faults)
    device = DeviceServer(model, clock, faults, transport="tcp")
    control = ControlServer(clock, faults, dict, token="0" * 32)
    try:
        assert device._listener is not None
        assert device._listener.getsockname()[0] == "127.0.0.1"
        assert control._listener.getsockname()[0] == "127.0.0.1"
    finally:
        device.close()
        control.close()


def test_the_launcher_offers_no_bind_address() -> None:
    help_text = subprocess.run(
        [*megara_dark(), "simulate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--port" in help_text
    for option in ("--host", "--bind", "--address", "--listen"):
        assert option not in help_text


# -- exclusive ports ------------------------------------------------------------------


def test_a_pseudo_terminal_opens_once() -> None:
    master, slave = os.openpty()
    try:
        name = os.ttyname(slave)
        first = open_port(name)
        with pytest.raises(LinkError, match="already in use by another program"):
            open_port(name)
        first.close()
        open_port(name).close()  # free again once the first program let go
    finally:
        os.close(master)
        os.close(slave)


def test_a_simulator_pseudo_terminal_opens_once(
    simulators: Callable[..., SimProcess],
) -> None:
    sim = simulators("--transport", "pty")
    for name in ("cover_left", "cover_right"):  # the CCD (an Archon) is on TCP
        url = sim.urls[name]
        with contextlib.closing(open_port(url)) as first:
            with pytest.raises(LinkError) as refused:
                open_port(url)
            assert str(refused.value).startswith(f"{url} is already in use")
            assert "stop the other one first" in str(refused.value)
            first.write(b">P000\n")
            assert first.read(8) == b"*P98000\n"  # the first program still talks


def test_a_simulator_tcp_port_serves_one_client(
    simulators: Callable[..., SimProcess],
) -> None:
    sim = simulators("--transport", "tcp")
    url = sim.urls["cover_left"]
    with contextlib.closing(open_port(url)) as first:
        first.write(b">P000\n")
        assert first.read(8) == b"*P98000\n"
        host, port = url.removeprefix("socket://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5.0) as second:
            with contextlib.suppress(ConnectionResetError):
                second.sendall(b">O000\n")
            try:
                answer = second.recv(100)
            except ConnectionResetError:
                answer = b""
            assert answer == b""  # dropped, not served
        first.write(b">S000\n")
        assert first.read(8) == b"*S98002\n"  # still open: the >O000 never ran


def test_a_run_whose_ccd_is_taken_stops_with_one_clear_line(
    simulators: Callable[..., SimProcess], tmp_path: Path
) -> None:
    sim = simulators("--transport", "pty")
    config = tmp_path / "instrument.toml"
    config.write_text(
        "[devices]\n" + "".join(f'{k} = "{v}"\n' for k, v in sim.urls.items())
    )
    blocks = tmp_path / "bias.yaml"
    blocks.write_text(
        "id: bias1\ninstrument: MEGARA\nmode: MegaraBiasImage\nexptime: 0.0\n"
        "nframes: 3\n"
    )
    work = tmp_path / "work"
    with contextlib.closing(open_port(sim.urls["ccd"])):  # "another run"
        done = subprocess.run(
            [
                *megara_dark(),
                "run",
                str(blocks),
                "--config",
                str(config),
                "--json",
                "--workdir",
                str(work),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "already in use" in line]
    assert errors, done.stderr
    assert sim.urls["ccd"] in errors[0]
    assert not list(work.glob("data/*.fits"))  # nothing was taken


@pytest.mark.timeout(120)
def test_a_second_ccd_connection_during_a_readout_is_refused_at_once(
    simulators: Callable[..., SimProcess],
) -> None:
    """The documented refusal holds while the device is busy streaming pixels."""
    sim = simulators("--transport", "tcp", "--readout-s", "0.5")
    host, port = sim.urls["ccd"].removeprefix("socket://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10.0) as first:
        # A bias read out at once, as sdss-archon's expose() asks for one.
        for n, text in enumerate(
            [b"HOLDTIMING", b"FASTLOADPARAM ReadOut 1", b"FASTLOADPARAM Exposures 1",
             b"RELEASETIMING"], 1
        ):  # fmt: skip
            first.sendall(b">%02X%s\n" % (n, text))
            assert first.recv(100) == b"<%02X\n" % n
        for n in range(0x10, 0xFF):  # until the frame is complete in buffer 1
            first.sendall(b">%02XFRAME\n" % n)
            if b" BUF1COMPLETE=1 " in first.recv(4096):
                break
            time.sleep(0.05)
        first.sendall(b">05FETCHA0000000000086D7\n")  # the whole frame
        assert first.recv(100).startswith(b"<05:")  # the readout flows
        # A hang would end in the socket's timeout (an error), not in b"".
        with socket.create_connection((host, int(port)), timeout=10.0) as second:
            try:
                second.sendall(b">06SYSTEM\n")
                answer = second.recv(100)
            except ConnectionResetError:
                answer = b""
        assert answer == b""  # closed without a byte, not served

"""``megara-dark simulate`` as a user runs it: start, announce, stop, refuse input."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import serial

from sequencer.simlaunch import megara_dark
from simulators.faults import load_scenario
from tests.simproc import SimProcess, control

pytestmark = pytest.mark.sim

DEVICES = {"ccd", "cover_left", "cover_right"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_pty_announce_and_clean_exit(
    simulators: Callable[..., SimProcess], sig: signal.Signals
) -> None:
    sim = simulators()
    assert set(sim.urls) == DEVICES
    assert sim.urls["ccd"].startswith("socket://127.0.0.1:")  # the Archon: TCP
    for name in ("cover_left", "cover_right"):
        assert sim.urls[name].startswith("/dev/pts/")
        assert os.path.exists(sim.urls[name])
    assert len(set(sim.urls.values())) == 3
    assert sim.control.startswith("socket://127.0.0.1:")
    assert sim.stop(sig) == 0


def test_tcp_listens_on_loopback_only(simulators: Callable[..., SimProcess]) -> None:
    sim = simulators("--transport", "tcp")
    assert set(sim.urls) == DEVICES
    for url in sim.urls.values():
        assert url.startswith("socket://127.0.0.1:")
    assert len(set(sim.urls.values())) == 3
    assert sim.stop() == 0


def announcement(*args: str) -> list[dict[str, Any]]:
    """The JSON lines ``megara-dark simulate ARGS`` prints once ready (then
    stopped with SIGTERM, which it must obey with status 0)."""
    proc = subprocess.Popen(
        [*megara_dark(), "simulate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    out = b""
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while out.count(b"\n") < 4:
                assert selector.select(timeout=60), f"announced only {out!r}"
                chunk = os.read(proc.stdout.fileno(), 4096)
                assert chunk, f"exited after {out!r}"
                out += chunk
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("transport", ["pty", "tcp"])
def test_announcement_names_each_transport_and_the_archon_protocol(
    transport: str,
) -> None:
    """The CCD is the Archon, always on TCP; --transport moves the covers only."""
    ccd, left, right, control_line = announcement("--transport", transport)
    assert ccd == {
        "device": "ccd",
        "url": ccd["url"],
        "transport": "tcp",
        "protocol": "archon",
    }
    assert ccd["url"].startswith("socket://127.0.0.1:")
    for line, name in ((left, "cover_left"), (right, "cover_right")):
        assert line == {"device": name, "url": line["url"], "transport": transport}
    assert control_line["control"].startswith("socket://127.0.0.1:")


def run_simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*megara_dark(), "simulate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--transport", "serial"], "--transport"),
        (["--time-scale", "-3"], "time scale"),
        (["--time-scale", "nan"], "time scale"),
        (["--seed", "many"], "--seed"),
        (["--block-size", "1024"], "--block-size"),  # gone: Archon blocks are 1 KiB
        (["--scenario", "does/not/exist.yaml"], "exist.yaml"),
        (["--bogus"], "--bogus"),
        (["--run-key", "-1"], "--run-key"),
        (["--run-key", str(2**63)], "--run-key"),
        (["--run-key", "many"], "--run-key"),
    ],
)
def test_bad_options_give_one_line_and_exit_2(args: list[str], expected: str) -> None:
    done = run_simulate(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("megara-dark simulate: error:")
    assert expected in lines[0]
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("faults: [", "not valid YAML"),
        ("faults: {device: ccd}", "'faults' must be a list"),
        ("faults:\n  - {device: ccd, kind: meltdown}", "unknown fault kind 'meltdown'"),
        ("faults:\n  - {device: dome, kind: no_reply}", "device 'dome' is unknown"),
        ("faults:\n  - {device: ccd, kind: no_reply, after: 3}", "key(s) after"),
        ("faults:\n  - {device: ccd, kind: short_fetch, on_readout: 0}", "on_readout"),
        (
            "faults:\n  - {device: ccd, kind: late_reply, params: {delay_s: x}}",
            "'delay_s' must be a number in [0, 120]",
        ),
        (
            "faults:\n  - {device: ccd, kind: late_reply, params: {delay_s: 1000000.0}}",
            "parameter 'delay_s' must be a number in [0, 120], got 1000000.0",
        ),
        (
            "faults:\n  - {device: ccd, kind: late_reply, params: {delay_s: -1}}",
            "parameter 'delay_s' must be a number in [0, 120], got -1",
        ),
        ("other: 1", "expected a mapping with one key 'faults'"),
    ],
)
def test_bad_scenario_names_the_problem(
    tmp_path: Path, text: str, expected: str
) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(text)
    done = run_simulate("--scenario", str(scenario))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert expected in lines[0]
    assert str(scenario) in lines[0]


def test_help_names_the_program() -> None:
    done = run_simulate("--help")
    assert done.returncode == 0
    assert "megara-dark simulate" in done.stdout
    assert "--scenario" in done.stdout


def test_control_channel_injects_and_reports(
    simulators: Callable[..., SimProcess],
) -> None:
    sim = simulators()
    fault = {"device": "cover_left", "kind": "cover_jam", "after_commands": 2}
    assert control(sim, {"op": "inject", "fault": fault}) == {"ok": True}
    reply = control(sim, {"op": "faults"})
    assert reply["pending"] == [fault]
    bad = control(sim, {"op": "inject", "fault": {"device": "ccd"}})
    assert bad["ok"] is False
    assert "kind" in bad["error"]
    status = control(sim, {"op": "status"})
    assert set(status["devices"]) == DEVICES
    assert json.dumps(status)  # serialisable all the way down
    assert sim.stop() == 0


def test_scenario_file_faults_fire_when_scheduled(
    simulators: Callable[..., SimProcess], tmp_path: Path
) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "faults:\n"
        "  - {device: cover_left, kind: no_reply, after_commands: 1}\n"
        "  - {device: cover_left, kind: garbled_reply, after_commands: 2}\n"
    )
    sim = simulators("--scenario", str(scenario))
    with serial.serial_for_url(sim.urls["cover_left"], timeout=1.0) as port:
        port.write(b">P000\n")
        assert port.read_until(b"\n") == b"*P98000\n"  # command 1: clean
        port.write(b">P000\n")
        assert port.read_until(b"\n") == b""  # command 2: reply swallowed
        port.write(b">P000\n")
        garbled = port.read_until(b"\n")
        assert garbled.endswith(b"\n")
        assert garbled != b"*P98000\n"  # command 3: scrambled
        port.write(b">P000\n")
        assert port.read_until(b"\n") == b"*P98000\n"  # spent: clean again
    report = control(sim, {"op": "faults"})
    assert report["pending"] == []
    assert [f["fault"]["kind"] for f in report["fired"]] == [
        "no_reply",
        "garbled_reply",
    ]
    assert sim.stop() == 0


def test_scenario_faults_cut_and_garble_an_archon_fetch(
    simulators: Callable[..., SimProcess], tmp_path: Path
) -> None:
    """short_fetch stops a FETCH reply short on an open line; garbled_reply
    scrambles a FETCH's first block header, and nothing after it."""
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "faults:\n"
        "  - {device: ccd, kind: short_fetch, on_readout: 1,"
        " params: {fraction: 0.0001}}\n"
        "  - {device: ccd, kind: garbled_reply, after_commands: 7}\n"
    )
    sim = simulators("--scenario", str(scenario), "--time-scale", "1000")
    setup = [b"HOLDTIMING", b"FASTLOADPARAM READOUT 1", b"FASTLOADPARAM EXPOSURES 1"]
    with serial.serial_for_url(sim.urls["ccd"], timeout=2.0) as port:
        for n, text in enumerate([*setup, b"RELEASETIMING"], 1):
            port.write(b">%02X%s\n" % (n, text))
            assert port.read_until(b"\n") == b"<%02X\n" % n
        time.sleep(1.0)  # a bias read out in 40 simulated seconds
        port.write(b">05FRAME\n")
        assert b" BUF1COMPLETE=1 " in port.read_until(b"\n")
        fetch = b"FETCHA000000000000010\n"  # 16 blocks
        port.write(b">06" + fetch)
        port.timeout = 10.0
        short = port.read(cut := int(0.0001 * 4212 * 4196 * 2))  # of a frame
        assert len(short) == cut
        port.timeout = 0.5
        assert port.read(1) == b""  # and no more of the 16 * 1028
        port.write(b">07STATUS\n")  # the line is still up
        assert port.read_until(b"\n").startswith(b"<07VALID=1 ")
        port.write(b">08" + fetch + b">09" + fetch)
        port.timeout = 10.0
        garbled, clean = port.read(16 * 1028), port.read(16 * 1028)
    payloads = [clean[at + 4 : at + 1028] for at in range(0, len(clean), 1028)]
    assert garbled[:4] != b"<08:"
    assert garbled[4:] == b"".join(b"<08:" + p for p in payloads)[4:]
    assert short == b"".join(b"<06:" + p for p in payloads)[:cut]
    fired = control(sim, {"op": "faults"})["fired"]
    assert [f["fault"]["kind"] for f in fired] == ["short_fetch", "garbled_reply"]
    assert sim.stop() == 0


def test_example_scenarios_are_valid() -> None:
    examples = sorted(
        Path(__file__).parents[2].joinpath("examples/scenarios").glob("*.yaml")
    )
    assert len(examples) >= 4
    for path in examples:
        assert load_scenario(path), path

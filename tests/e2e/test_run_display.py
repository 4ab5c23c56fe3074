"""What the operator sees of a real ``megara-dark run`` on the simulators.

On a pseudo-terminal the live display is drawn; with ``--json`` the same
figures (state, read-backs, time left and the expected end in UTC) come as
events.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from sequencer.simlaunch import megara_dark
from tests.simproc import BIAS3_DARK60

pytestmark = pytest.mark.e2e

BLOCKS = BIAS3_DARK60

CONFIG = """\
[simulator]
time_scale = 1000.0
seed = 3
readout_s = 10.0
[run]
readout_s = 10.0
"""

#: Cursor movement, colour and erase sequences rich writes to a terminal.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def setup(tmp_path: Path) -> list[str]:
    (tmp_path / "ob.yaml").write_text(BLOCKS)
    (tmp_path / "instrument.toml").write_text(CONFIG)
    return [
        *megara_dark(), "run", "ob.yaml", "--config", "instrument.toml",
        "--workdir", "work",
    ]  # fmt: skip


def on_a_terminal(
    argv: list[str], cwd: Path, *, interrupt_after: str | None = None
) -> tuple[int, str]:
    """Run ``argv`` with stdout and stderr on a pseudo-terminal; all it drew.

    With ``interrupt_after``, send SIGINT once that text has been drawn.
    """
    main, other = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm"}
    proc = subprocess.Popen(argv, stdout=other, stderr=other, cwd=cwd, env=env)
    os.close(other)
    drawn = ""
    try:
        while True:
            ready, _, _ = select.select([main], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not data:
                break
            drawn += ANSI.sub("", data.decode("utf-8", "replace"))
            if interrupt_after is not None and interrupt_after in drawn:
                proc.send_signal(signal.SIGINT)
                interrupt_after = None
    finally:
        os.close(main)
        if proc.poll() is None and interrupt_after is not None:
            proc.kill()
    return proc.wait(), drawn


def test_the_live_display_shows_blocks_frames_state_and_the_end(
    tmp_path: Path,
) -> None:
    status, drawn = on_a_terminal(setup(tmp_path), tmp_path)
    assert status == 0, drawn[-3000:]
    for seen in (
        "block 1 of 2  bias3  MegaraBiasImage  frame 1/3",
        "block 2 of 2  dark60  MegaraDarkImage  frame 3/3",
        "EXPOSING",
        "READING",
        "s left of 60 s",
        "cover left=CLOSED right=CLOSED  shutter CLOSED  CCD 163.",
        "time left  block ",
    ):
        assert seen in drawn, seen
    assert re.search(r"ends \d\d:\d\d:\d\d UTC", drawn)
    assert "0/0" not in drawn
    assert "left of 0 s" not in drawn  # no countdown for a bias
    # no retake: no attempt on the display (the log's "(attempt 1): " is not it)
    assert not re.search(r"\(attempt \d+\)  ", drawn)
    assert "dark60: 3/3 valid frames, 0 retaken; QA" in drawn  # the summary


def test_json_events_carry_the_state_read_backs_and_time_left(tmp_path: Path) -> None:
    done = subprocess.run(
        [*setup(tmp_path), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]
    started = events[0]
    assert started["event"] == "run_started"
    assert started["plan"] == [
        {"block": "bias3", "nframes": 3, "exptime_s": 0.0},
        {"block": "dark60", "nframes": 3, "exptime_s": 60.0},
    ]
    assert (started["time_scale"], started["readout_s"]) == (1000.0, 10.0)
    states = [e["state"] for e in events if e["event"] == "state"]
    frame = ["EXPOSING", "READING", "WRITING"]
    block = ["PREPARING", *frame * 3, "REDUCING", "DONE"]
    assert states == block * 2
    frames = [e for e in events if e["event"] == "frame_started"]
    for e in frames:
        assert e["block_remaining_s"] >= 0.0
        assert e["run_remaining_s"] >= e["block_remaining_s"]
        assert datetime.fromisoformat(e["eta_utc"]).utcoffset().total_seconds() == 0
    # In wall seconds: in device seconds the last dark frame alone is 70 s
    # (60 s exposure, 10 s readout); at x1000 it is what the frames took.
    assert frames[-1]["block_remaining_s"] < 70.0
    done_events = [e for e in events if e["event"] == "block_done"]
    assert [e["block_remaining_s"] for e in done_events] == [0.0, 0.0]
    assert done_events[-1]["run_remaining_s"] == 0.0
    readbacks = [e for e in events if e["event"] == "readback"]
    assert any(e.get("temperature_k") for e in readbacks)
    assert any(e.get("cover") == "left=CLOSED right=CLOSED" for e in readbacks)


def test_ctrl_c_shows_aborted_with_the_reason(tmp_path: Path) -> None:
    argv = setup(tmp_path)
    (tmp_path / "ob.yaml").write_text(BLOCKS.replace("60.0", "3600.0"))
    status, drawn = on_a_terminal(
        argv, tmp_path, interrupt_after="dark60  MegaraDarkImage  frame 2/3"
    )
    assert status == 130, drawn[-3000:]
    assert "aborted (SIGINT); read back left=CLOSED right=CLOSED, shutter CLOSED" in (
        drawn
    )
    assert "stopped by SIGINT in block dark60" in drawn  # the summary line

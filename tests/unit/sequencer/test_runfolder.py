"""The run folder's record, its comparisons and its lock (sequencer.runfolder)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from drivers.errors import ConfigError
from sequencer.runfolder import (
    InputFile,
    RunInputs,
    RunLock,
    check_same_devices,
    check_same_files,
    check_same_inputs,
    quoted,
    recorded_record,
    reset_command,
    resume_command,
    sha256,
)

CCD = {
    "device": "ccd",
    "url": "socket://127.0.0.1:4242",
    "product": "MEGARA-CCD",
    "firmware": "1.0.0",
    "simulated": False,
    "builtin": False,
}


def ident(**changes: Any) -> dict[str, dict[str, Any]]:
    return {"ccd": {**CCD, **changes}}


def test_the_same_devices_pass() -> None:
    check_same_devices(ident(), ident(), Path("w"))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"simulated": True}, "simulated is True"),
        ({"firmware": "2.0.0"}, "firmware is '2.0.0'"),
        ({"product": "OTHER"}, "product is 'OTHER'"),
        ({"url": "socket://127.0.0.1:9999"}, "now at socket://127.0.0.1:9999"),
    ],
)
def test_a_device_that_identifies_otherwise_is_refused(
    change: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        check_same_devices(ident(), ident(**change), Path("w"))


def test_the_built_in_simulators_url_may_change() -> None:
    """They are started anew on each resume, on new pseudo-terminals."""
    was = ident(builtin=True, simulated=True, url="/dev/pts/5")
    now = ident(builtin=True, simulated=True, url="/dev/pts/9")
    check_same_devices(was, now, Path("w"))


def test_a_missing_device_is_refused() -> None:
    with pytest.raises(ConfigError, match="ccd is not connected"):
        check_same_devices(ident(), {}, Path("w"))


def inputs(blocks: bytes, config: bytes | None) -> RunInputs:
    here = Path("/nowhere")
    return RunInputs(
        InputFile(blocks, "ob.yaml", here),
        InputFile(config, "eng.toml", here) if config is not None else None,
    )


def test_inputs_are_compared_by_content_not_path() -> None:
    recorded = inputs(b"id: a\n", b"[run]\n")
    same = InputFile(b"id: a\n", "elsewhere/copy.yaml", Path("/other"))
    check_same_inputs(recorded, same, None, Path("w"))
    with pytest.raises(ConfigError, match="not the observing blocks"):
        check_same_inputs(
            recorded, InputFile(b"id: b\n", "ob.yaml", Path()), None, Path("w")
        )
    other = InputFile(b"[ccd]\n", "eng.toml", Path())
    with pytest.raises(ConfigError, match="not the instrument configuration"):
        check_same_inputs(recorded, None, other, Path("w"))


def test_a_config_given_to_a_run_on_the_built_in_simulators_is_refused() -> None:
    recorded = inputs(b"id: a\n", None)
    given = InputFile(b"[devices]\n", "eng.toml", Path())
    with pytest.raises(ConfigError, match="started on the built-in simulators"):
        check_same_inputs(recorded, None, given, Path("w"))


def test_printed_commands_are_quoted_for_a_shell() -> None:
    odd = Path("runs/night one")
    assert resume_command(odd) == "megara-dark run --resume 'runs/night one'"
    assert reset_command(odd) == "megara-dark reset --workdir 'runs/night one'"
    assert quoted(Path("w")) == "w"


def test_a_second_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with RunLock(tmp_path, "run"):
        with pytest.raises(ConfigError) as caught:
            RunLock(tmp_path, "resume")
        assert f"PID {os.getpid()}" in str(caught.value)
        assert "in use by another megara-dark" in str(caught.value)
    with RunLock(tmp_path, "resume"):  # released: free again
        pass


def test_the_lock_of_a_killed_holder_is_taken_over(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from sequencer.runfolder import RunLock
                lock = RunLock(Path({str(tmp_path)!r}), "run")
                print("held", flush=True)
                time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=f"PID {holder.pid}"):
            RunLock(tmp_path, "resume")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    with RunLock(tmp_path, "resume"):  # the kernel released it with its holder
        pass


def test_a_lock_file_that_is_a_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="cannot create the run folder's lock"):
        RunLock(tmp_path, "run")


@pytest.mark.parametrize(
    ("first", "named"),
    [
        ({"run_id": "not-a-uuid"}, "run_id 'not-a-uuid' is not a UUID"),
        ({"blocks_file": "blocks.yaml"}, "observing blocks entry"),
        (
            {"blocks_file": {"name": "../../elsewhere.yaml", "sha256": "0"}},
            "observing blocks entry",
        ),
    ],
)
def test_a_damaged_first_record_is_one_clear_refusal(
    tmp_path: Path, first: dict[str, Any], named: str
) -> None:
    """A journal edited by hand is refused in one line, never a traceback."""
    (tmp_path / "blocks.yaml").write_bytes(b"id: a\n")
    record: dict[str, Any] = {
        "run_id": str(uuid.uuid4()),
        "blocks_file": {"name": "blocks.yaml", "sha256": sha256(b"id: a\n")},
        **first,
    }
    with pytest.raises(ConfigError, match=re.escape(named)):
        recorded_record(tmp_path, record)
    with pytest.raises(ConfigError, match="referenced is"):
        check_same_files(["not", "a", "table"], tmp_path)

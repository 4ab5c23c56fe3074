"""The trial's parts without simulators: inputs, the process, what is read back.

The trial runs for real in the campaign tests (``test_campaign_e2e``), the
fault matrix (``tests/faults``), the soak and the crash tests.
"""

from __future__ import annotations

import sys
import time
import tomllib
from pathlib import Path

import pytest

from drivers.errors import ConfigError
from sequencer.engineering.trial import (
    Finished,
    check_raw_files,
    execute,
    observe,
    toml_text,
    write_inputs,
)
from sequencer.journal import Journal

BIAS = {
    "id": "b", "instrument": "MEGARA", "mode": "MegaraBiasImage",
    "exptime": 0.0, "nframes": 3,
}  # fmt: skip


def test_toml_text_round_trips_awkward_strings() -> None:
    tables = {
        "simulator": {"seed": 3, "time_scale": 4000.0, "cover_initial": "open"},
        "odd": {"quote": 'a "b" \\c', "line": "x\ny", "flag": False, "on": True},
    }
    assert tomllib.loads(toml_text(tables)) == tables


def test_write_inputs_names_the_scenario_beside_the_configuration(
    tmp_path: Path,
) -> None:
    faults = [{"device": "ccd", "kind": "no_reply", "after_commands": 3}]
    inputs = write_inputs(
        tmp_path, blocks=[BIAS], tables={"simulator": {"seed": 2}}, faults=faults
    )
    assert inputs.blocks == tmp_path / "blocks.yaml"
    assert inputs.scenario == tmp_path / "scenario.yaml"
    doc = tomllib.loads(inputs.config.read_text())
    assert doc == {"simulator": {"seed": 2, "scenario": "scenario.yaml"}}
    assert "after_commands: 3" in inputs.scenario.read_text()


def test_write_inputs_without_faults_writes_no_scenario(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path, blocks=[BIAS], tables={"run": {"poll_s": 1.0}})
    assert inputs.scenario is None
    assert not (tmp_path / "scenario.yaml").exists()


@pytest.mark.parametrize(
    ("blocks", "tables", "message"),
    [
        ([{**BIAS, "nframes": 0}], {}, "run 'x': "),
        ([BIAS], {"simulatr": {}}, "run 'x': unknown table(s) simulatr"),
    ],
)
def test_write_inputs_refuses_what_the_run_would(
    tmp_path: Path, blocks: list[dict[str, object]], tables: dict[str, dict[str, object]],
    message: str,
) -> None:  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        write_inputs(tmp_path, blocks=blocks, tables=tables, source="run 'x'")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def script(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "child.py"
    path.write_text(text)
    return [sys.executable, str(path)]


def test_execute_appends_output_and_calls_watch(tmp_path: Path) -> None:
    argv = script(
        tmp_path,
        "import sys, time\nprint('out')\nprint('err', file=sys.stderr)\n"
        "time.sleep(0.3)\nsys.exit(1)\n",
    )
    (tmp_path / "stdout.txt").write_text("earlier run\n")
    calls: list[float] = []
    done = execute(argv, tmp_path, timeout_s=30.0, watch=lambda: calls.append(1.0))
    assert (done.exit_status, done.stdout, done.stderr) == (1, "out\n", "err\n")
    assert not done.timed_out
    assert (tmp_path / "stdout.txt").read_text() == "earlier run\nout\n"
    assert len(calls) >= 3  # every 0.02 s for 0.3 s, on a busy machine


def test_execute_kills_a_run_past_its_limit(tmp_path: Path) -> None:
    argv = script(tmp_path, "import time\ntime.sleep(60)\n")
    start = time.monotonic()
    done = execute(argv, tmp_path, timeout_s=0.5)
    assert time.monotonic() - start < 30
    assert done.timed_out
    assert done.exit_status < 0  # killed
    seen = observe(tmp_path / "work", done)
    assert seen.outcome == "timeout"
    assert seen.error == "no end within 0.5 s; killed"


def test_execute_kills_the_run_when_watch_fails(tmp_path: Path) -> None:
    argv = script(tmp_path, "import time\ntime.sleep(60)\n")

    def broken() -> None:
        raise RuntimeError("watch failed")

    with pytest.raises(RuntimeError, match="watch failed"):
        execute(argv, tmp_path, timeout_s=30.0, watch=broken)


def finished(status: int, stderr: str = "") -> Finished:
    return Finished(["megara-dark", "run"], status, "", stderr, 1.0)


def test_observe_reads_the_journal_fault_first(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    journal = Journal(work / "run.journal")
    journal.append("run_started", blocks=["b"])
    journal.append("fault", block="b", error="cover left: stopped part-way")
    said = "megara-dark: something else\nTraceback (most recent call last):\n"
    seen = observe(work, finished(1, said))
    assert seen.outcome == "fault"
    assert seen.error == "cover left: stopped part-way"
    assert seen.journal_last == "fault"
    assert seen.last_block == "b"
    assert seen.traceback


def test_observe_without_a_journal_takes_the_last_error_line(tmp_path: Path) -> None:
    said = "megara-dark: error: first\nnoise\nmegara-dark: error: second\nmore\n"
    seen = observe(tmp_path / "work", finished(2, said))
    assert (seen.outcome, seen.error) == ("error", "megara-dark: error: second")
    assert seen.journal is None
    assert seen.journal_last is None
    assert seen.files.valid == seen.files.invalid == []
    assert seen.qa == {}
    assert seen.products == {}
    assert observe(tmp_path / "work", finished(143)).outcome == "aborted"
    assert observe(tmp_path / "work", finished(7)).outcome == "exit 7"


def test_raw_files_damaged_and_leftovers_are_told_apart(tmp_path: Path) -> None:
    data = tmp_path / "work" / "data"
    data.mkdir(parents=True)
    (data / "dark_0001.fits").write_bytes(b"SIMPLE  =" + b" " * 100)
    (data / ".dark_0002.fits.partial").write_bytes(b"")
    files = check_raw_files(tmp_path / "work")
    assert list(files.damaged) == ["dark_0001.fits"]
    assert "dark_0001.fits" in files.damaged["dark_0001.fits"]
    assert files.leftovers == [".dark_0002.fits.partial"]
    assert files.valid == files.invalid == []

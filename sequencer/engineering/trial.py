"""One trial: ``megara-dark run`` in a process of its own, and what it left behind.

Everything that runs the command against simulators and judges the outcome
does it through this module: the engineering campaign
(:mod:`sequencer.engineering.campaign`), the fault matrix (``tests/faults``),
the soak (``benchmarks/soak.py``) and the crash tests (``tests/reliability``).

1. :func:`write_inputs` writes a run's observing blocks, its instrument
   configuration and its scenario (the simulators' faults) into a folder,
   and checks them as the run will;
2. :func:`run_argv` is the command line and :func:`execute` runs it, its
   output going to files, killed after a wall-clock limit; a callback can
   act on the simulators while it runs (the soak injects faults);
3. :func:`observe` reads back what the run left: exit status, the one-line
   error, the journal (its last event, frames, retakes, QA and faults per
   block), every raw file checked by the project's verifier, and each
   block's products with the QA of its ``result.json``.

Layout of a trial folder::

    FOLDER/blocks.yaml, instrument.toml, scenario.yaml   (write_inputs)
    FOLDER/work                                          the run folder
    FOLDER/stdout.txt, stderr.txt                        what the run printed
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drivers.errors import ConfigError
from sequencer.journal import RunState, read_records, replay
from sequencer.rawfits import verify_raw_frame
from sequencer.simlaunch import megara_dark

log = logging.getLogger(__name__)

#: Exit statuses of ``megara-dark run`` and what they mean.
EXIT_OUTCOMES = {0: "done", 1: "fault", 2: "error", 130: "aborted", 143: "aborted"}
#: What a reduced block leaves in ``obsid<ID>_results/``.
PRODUCTS = ("master_dark.fits", "processing.log", "result.json", "task.json")


@dataclass(frozen=True)
class Inputs:
    """The files a run is started with."""

    blocks: Path
    config: Path
    scenario: Path | None


def toml_text(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """A TOML document of flat tables (strings, numbers, booleans)."""
    lines = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        for key, value in values.items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, (int, float)):
                text = repr(value)
            else:  # a JSON string is a TOML basic string
                text = json.dumps(str(value))
            lines.append(f"{key} = {text}")
        lines.append("")
    return "\n".join(lines)


def write_inputs(
    folder: Path,
    *,
    blocks: Path | Sequence[Mapping[str, Any]],
    tables: Mapping[str, Mapping[str, Any]],
    faults: Sequence[Mapping[str, Any]] = (),
    source: str = "trial",
) -> Inputs:
    """Write blocks, configuration and scenario into ``folder``; check them.

    Parameters
    ----------
    blocks
        A blocks file (used where it is), or observing-block mappings
        (written to ``blocks.yaml``).
    tables
        The configuration's tables (``simulator``, ``run``, ``ccd`` ...).
    faults
        The simulators' faults; written to ``scenario.yaml`` and named by
        ``[simulator] scenario`` when there are any.
    source
        Starts every error message (``run 'cold'``).

    Raises
    ------
    ConfigError
        The blocks or the configuration are not what ``megara-dark run``
        accepts (one line, naming ``source``).
    """
    from sequencer.blocks import load_blocks  # noqa: PLC0415
    from sequencer.config import parse_config  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(blocks, Path):
        blocks_file = blocks
    else:
        blocks_file = folder / "blocks.yaml"
        docs = [dict(b) for b in blocks]
        blocks_file.write_text(yaml.safe_dump_all(docs, sort_keys=False), "utf-8")
    try:
        load_blocks(blocks_file)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    doc = {name: dict(values) for name, values in tables.items()}
    scenario = None
    if faults:
        scenario = folder / "scenario.yaml"
        scenario.write_text(
            yaml.safe_dump({"faults": [dict(f) for f in faults]}, sort_keys=False),
            "utf-8",
        )
        doc.setdefault("simulator", {})["scenario"] = scenario.name
    try:
        parse_config(doc, source=source, base=folder)
    except ConfigError as err:
        raise ConfigError(str(err)) from None
    config = folder / "instrument.toml"
    config.write_text(toml_text(doc), "utf-8")
    return Inputs(blocks_file, config, scenario)


def run_argv(inputs: Inputs, work: Path, *options: str) -> list[str]:
    """``megara-dark run BLOCKS --config CONFIG --workdir WORK OPTIONS``."""
    return [
        *megara_dark(), "run", str(inputs.blocks), "--config", str(inputs.config),
        "--workdir", str(work), *options,
    ]  # fmt: skip


@dataclass(frozen=True)
class Finished:
    """How a run's process ended, and what it printed."""

    argv: list[str]
    exit_status: int
    stdout: str
    stderr: str
    wall_s: float
    timeout_s: float | None = None  # the wall-clock limit it ran under
    timed_out: bool = False  # killed after that limit
    interrupted: bool = False  # Ctrl-C reached us (and the run) meanwhile


def execute(
    argv: Sequence[str],
    folder: Path,
    *,
    timeout_s: float | None,
    watch: Callable[[], None] | None = None,
    watch_s: float = 0.02,
) -> Finished:
    """Run ``argv``; its stdout and stderr are appended to ``folder``'s files.

    ``watch`` is called every ``watch_s`` wall seconds while it runs. A run
    still going after ``timeout_s`` is killed (``timed_out``). On Ctrl-C the
    run, in the same process group, got the same SIGINT: it is left to stop
    safely and ``interrupted`` is set (the caller re-raises). Any other
    exception kills the run and propagates.
    """
    folder.mkdir(parents=True, exist_ok=True)
    out_path, err_path = folder / "stdout.txt", folder / "stderr.txt"
    offsets = [p.stat().st_size if p.exists() else 0 for p in (out_path, err_path)]
    start = time.monotonic()
    timed_out = interrupted = False
    with out_path.open("ab") as out, err_path.open("ab") as err:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err)
        try:
            _wait(proc, start, timeout_s, watch, watch_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            timed_out = True
        except KeyboardInterrupt:
            proc.wait()
            interrupted = True
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    texts = [
        p.read_bytes()[offset:].decode(errors="replace")
        for p, offset in zip((out_path, err_path), offsets, strict=True)
    ]
    return Finished(
        list(argv), proc.returncode, texts[0], texts[1], time.monotonic() - start,
        timeout_s, timed_out, interrupted,
    )  # fmt: skip


def _wait(
    proc: subprocess.Popen[bytes],
    start: float,
    timeout_s: float | None,
    watch: Callable[[], None] | None,
    watch_s: float,
) -> None:
    """Wait for ``proc``, calling ``watch``; TimeoutExpired after ``timeout_s``."""
    deadline = None if timeout_s is None else start + timeout_s
    while True:
        step = None if watch is None else watch_s
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(proc.args, timeout_s or 0.0)
            step = left if step is None else min(step, left)
        try:
            proc.wait(timeout=step)
            return
        except subprocess.TimeoutExpired:
            if watch is not None and proc.poll() is None:
                watch()


@dataclass
class RawFiles:
    """The files of a run's ``data/`` folder, each checked by the verifier."""

    valid: list[str] = field(default_factory=list)  # INTLKOK = T
    invalid: list[str] = field(default_factory=list)  # INTLKOK = F (kept, marked)
    damaged: dict[str, str] = field(default_factory=dict)  # name: what is wrong
    leftovers: list[str] = field(default_factory=list)  # not a .fits file


def check_raw_files(work: Path) -> RawFiles:
    """Verify every raw file of the run folder ``work`` (CHECKSUM, layout)."""
    files = RawFiles()
    data = work / "data"
    for path in sorted(data.iterdir()) if data.is_dir() else []:
        if not path.name.endswith(".fits"):
            files.leftovers.append(path.name)
            continue
        try:
            header = verify_raw_frame(path)
        except ConfigError as err:
            files.damaged[path.name] = str(err)
            continue
        (files.valid if header.get("INTLKOK") is True else files.invalid).append(
            path.name
        )
    return files


@dataclass
class Observation:
    """What a run did, read from its exit status, output and folder."""

    finished: Finished
    outcome: str  # done | fault | error | aborted | timeout | exit N
    error: str  # the one-line error ("" when there is none)
    journal: RunState | None  # None: the run wrote no journal
    journal_last: str | None  # the last event recorded
    files: RawFiles
    qa: dict[str, str]  # block: QC flag of its result.json
    products: dict[str, list[str]]  # block: the PRODUCTS in its results folder
    traceback: bool  # a Python traceback was printed

    @property
    def last_block(self) -> str | None:
        """The run's last planned block (None: no journal)."""
        planned = self.journal.planned if self.journal is not None else []
        return planned[-1] if planned else None


def observe(work: Path, finished: Finished) -> Observation:
    """Read back what the run in ``work`` left behind (see the module notes).

    The one-line error is the journal's last fault, else the run's last line
    on stderr that starts with ``megara-dark``.
    """
    outcome = EXIT_OUTCOMES.get(finished.exit_status, f"exit {finished.exit_status}")
    if finished.timed_out:
        outcome = "timeout"
    state, last = None, None
    journal = work / "run.journal"
    if journal.is_file():
        records, _torn = read_records(journal)
        state = replay(records)
        last = records[-1]["event"] if records else None
    error = state.faults[-1] if state is not None and state.faults else ""
    if not error:
        said = [
            ln for ln in finished.stderr.splitlines() if ln.startswith("megara-dark")
        ]
        error = said[-1] if said else ""
    if finished.timed_out:
        error = f"no end within {finished.timeout_s:g} s; killed"
    qa: dict[str, str] = {}
    products: dict[str, list[str]] = {}
    for results in sorted(work.glob("obsid*_results")):
        block = results.name.removeprefix("obsid").removesuffix("_results")
        products[block] = sorted(n for n in PRODUCTS if (results / n).is_file())
        result_json = results / "result.json"
        if result_json.is_file():
            qa[block] = json.loads(result_json.read_text("utf-8"))["qc"]
    return Observation(
        finished=finished,
        outcome=outcome,
        error=error,
        journal=state,
        journal_last=last,
        files=check_raw_files(work),
        qa=qa,
        products=products,
        traceback="Traceback" in finished.stderr or "Traceback" in finished.stdout,
    )

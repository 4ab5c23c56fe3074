"""Opening a run folder: a new run, or the resume of a recorded one.

:func:`open_session` decides what a ``megara-dark run`` may do with its
``--workdir`` before any hardware is touched: it takes the folder's lock,
reads what the folder records (:mod:`sequencer.runfolder`), compares it with
what was given on the command line, runs the checks of
:mod:`sequencer.preflight`, and, for a new run, records the inputs. A refusal
is a :class:`~drivers.errors.ConfigError` (exit status 2) that says what to
type instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.errors import ConfigError, shown_path
from sequencer import __version__
from sequencer.blocks import ObservingBlock
from sequencer.config import InstrumentConfig
from sequencer.journal import Journal, Record, RunState, read_records, replay
from sequencer.preflight import check_run
from sequencer.runfolder import (
    JOURNAL_FILE,
    InputFile,
    RunInputs,
    RunLock,
    RunRecord,
    check_same_files,
    check_same_inputs,
    command_line,
    record_inputs,
    recorded_record,
    referenced_files,
    resume_command,
)

log = logging.getLogger(__name__)

#: Journal events that mean an exposure was begun or a frame exists.
FRAME_EVENTS = frozenset(
    {"frame_started", "frame_written", "frame_adopted", "frame_invalid"}
)


@dataclass
class Session:
    """A run folder opened for a run (new or resumed), locked and checked."""

    workdir: Path
    plan: list[ObservingBlock]
    config: InstrumentConfig
    record: RunRecord
    journal: Journal
    lock: RunLock
    state: RunState | None = None  # None: a new run
    devices: dict[str, Any] | None = None  # as recorded by an earlier start
    finished: str | None = None  # a finished run: what to say
    notes: list[str] = field(default_factory=list)

    @property
    def resumed(self) -> bool:
        return self.state is not None

    def close(self) -> None:
        self.lock.release()


def open_session(
    workdir: Path,
    *,
    resume: bool,
    blocks: InputFile | None,
    config: InputFile | None,
) -> Session:
    """Open ``workdir`` for a new run or to resume its run.

    ``blocks`` and ``config`` are the files given on the command line (None:
    not given). A resume compares those given with the recorded ones.

    Raises
    ------
    ConfigError
        The folder cannot take this run, or the run cannot be resumed as
        asked; the message says why and what to type.
    """
    _check_folder_name(workdir)
    if resume:
        return _resume(workdir, blocks, config)
    if blocks is None:
        raise ConfigError(
            "give the observing BLOCKS file of the run (megara-dark run BLOCKS)"
        )
    return _start(workdir, RunInputs(blocks, config))


def _check_folder_name(workdir: Path) -> None:
    """Refuse a --workdir the file system cannot name (too long, a file...)."""
    try:
        info = os.stat(workdir)
    except FileNotFoundError:
        return
    except OSError as err:
        raise ConfigError(
            f"--workdir {shown_path(workdir)}: {err.strerror or err}; choose "
            "another --workdir"
        ) from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(
            f"--workdir {shown_path(workdir)}: not a folder; choose another --workdir"
        )


def _start(workdir: Path, given: RunInputs) -> Session:
    plan, config = given.plan(), given.instrument()  # bad input: nothing created
    created = not workdir.exists()
    try:
        (workdir / "data").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"--workdir {workdir}: cannot create the run folder "
            f"({err.strerror or err}); choose another --workdir"
        ) from err
    lock = RunLock(workdir, "run")
    try:
        notes = _reuse_unused(workdir)
        check_run(workdir, plan, config, remaining={})
        record = RunRecord(
            run_id=uuid.uuid4(),
            inputs=given,
            version=__version__,
            command=command_line(),
            started=datetime.now(UTC).isoformat(),
        )
        record_inputs(workdir, given)
        journal = Journal(workdir / JOURNAL_FILE)
        journal.append(
            "run_started",
            **record.journal_fields(plan),
            simulator=_simulator_fields(config, record),
            referenced=referenced_files(plan, config),
        )
    except BaseException:
        lock.release()
        if created:
            _remove_new_folder(workdir)
        raise
    return Session(workdir, plan, config, record, journal, lock, notes=notes)


def _simulator_fields(config: InstrumentConfig, record: RunRecord) -> Any:
    """What the built-in simulators are started with (None: configured ports)."""
    if config.devices is not None:
        return None
    options = config.simulator
    return {
        "seed": options.seed,
        "time_scale": options.time_scale,
        "run_key": run_key(config, record),
        "first_frame": 0,
        "scenario": str(options.scenario) if options.scenario else None,
    }


def run_key(config: InstrumentConfig, record: RunRecord) -> int:
    """The simulators' noise key: pinned by ``[simulator] run_key``, else the
    run's own (so that no two runs repeat each other's noise)."""
    pinned = config.simulator.run_key
    return pinned if pinned is not None else record.run_key


def _reuse_unused(workdir: Path) -> list[str]:
    """Set aside the journal of a run that never took a frame; refuse others."""
    path = workdir / JOURNAL_FILE
    if not path.exists():
        return []
    records, _ = read_records(path)
    state = replay(records)
    if state.done:
        raise ConfigError(f"{workdir} holds a finished run; choose another --workdir")
    if any(r["event"] in FRAME_EVENTS for r in records):
        raise ConfigError(
            f"{workdir} holds an unfinished run; finish it with: "
            f"{resume_command(workdir)} (or choose another --workdir)"
        )
    stamp = (
        str(records[0].get("time", "unknown"))[:19].replace(":", "")
        if records
        else "empty"
    )
    aside = path.with_name(f"run.journal.unused-{stamp}")
    os.replace(path, aside)
    note = (
        f"{workdir}: the earlier run there never took a frame; its journal is "
        f"kept as {aside.name} and the folder reused"
    )
    log.warning("%s", note)
    return [note]


def _remove_new_folder(workdir: Path) -> None:
    """Remove a run folder this process created and left empty (but the lock)."""
    for name in (".lock", "data"):
        with contextlib.suppress(OSError):
            target = workdir / name
            target.rmdir() if target.is_dir() else target.unlink()
    with contextlib.suppress(OSError):
        workdir.rmdir()


def _resume(
    workdir: Path, blocks: InputFile | None, config: InputFile | None
) -> Session:
    journal_path = workdir / JOURNAL_FILE
    if not journal_path.is_file():
        raise ConfigError(
            f"{workdir}: nothing to resume (no {JOURNAL_FILE}); give the run "
            "folder a run wrote"
        )
    lock = RunLock(workdir, "resume")
    try:
        return _resume_locked(workdir, blocks, config, lock)
    except BaseException:
        lock.release()
        raise


def _resume_locked(
    workdir: Path, blocks: InputFile | None, config: InputFile | None, lock: RunLock
) -> Session:
    journal = Journal(workdir / JOURNAL_FILE)  # cuts a torn final record
    records = journal.records()
    if not records or records[0]["event"] != "run_started":
        raise ConfigError(
            f"{workdir / JOURNAL_FILE}: does not begin with a run_started record; "
            "not a run journal this software wrote"
        )
    record = recorded_record(workdir, records[0])
    if record is None:
        given = RunInputs(blocks, config) if blocks is not None else None
        record = _legacy_record(workdir, records[0], given)
    else:
        check_same_inputs(record.inputs, blocks, config, workdir)
    plan, instrument = record.inputs.plan(), record.inputs.instrument()
    check_same_files(records[0].get("referenced", {}), workdir)
    state = replay(records)
    session = Session(
        workdir,
        plan,
        instrument,
        record,
        journal,
        lock,
        state=state,
        devices=_recorded_devices(records),
    )
    if state.done:
        session.finished = _finished_line(workdir, records, state)
        return session
    remaining = {
        b.id: b.nframes - len(state.block(b.id).valid_files)
        if not state.block(b.id).reduced
        else 0
        for b in plan
    }
    check_run(workdir, plan, instrument, remaining)
    return session


def _legacy_record(workdir: Path, first: Record, given: RunInputs | None) -> RunRecord:
    """A journal written before runs recorded their inputs: BLOCKS needed."""
    if given is None:
        raise ConfigError(
            f"{workdir}: this run was started by an older megara-dark that did not "
            "record its observing blocks; resume with: megara-dark run BLOCKS "
            f"--config CONFIG --workdir {workdir} --resume"
        )
    return RunRecord(
        run_id=uuid.uuid5(uuid.NAMESPACE_URL, str(first.get("time"))),
        inputs=given,
        version=str(first.get("version", "")),
        command="",
        started=str(first.get("time", "")),
    )


def _recorded_devices(records: list[Record]) -> dict[str, Any] | None:
    for record in records:
        if record["event"] == "devices" and isinstance(record.get("devices"), dict):
            devices: dict[str, Any] = record["devices"]
            return devices
    return None


def _finished_line(workdir: Path, records: list[Record], state: RunState) -> str:
    done = next((r for r in reversed(records) if r["event"] == "run_done"), {})
    flags = ", ".join(
        f"{b.block} QA {b.qa}" for b in state.blocks.values() if b.reduced
    )
    return (
        f"{workdir}: the run finished at {done.get('time', '?')} ({flags}); "
        "nothing to resume"
    )

"""The run folder is the run: what was asked, on which instrument, by whom.

A run writes, before any hardware moves::

    WORK/.lock             held (flock) for the life of the run or of its resume
    WORK/blocks.yaml       the observing blocks, byte for byte as given
    WORK/instrument.toml   the instrument configuration as given (absent: the
                           built-in simulators with their default options)
    WORK/run.journal       its ``run_started`` record names both files with
                           their SHA-256, the folders their relative paths are
                           relative to, the run's id, the software version, the
                           command line, and (built-in simulators) the options
                           they are started with; a ``devices`` record follows
                           with each device as identified when connected

so that ``megara-dark run --resume WORK`` needs nothing else, and refuses
observing blocks, a configuration or devices other than the recorded ones
(content is compared, not paths). :class:`RunLock` gives the folder one owner
at a time; a lock left by a dead process is released by the kernel and taken
over safely.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import socket
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.errors import ConfigError, shown, shown_path
from drivers.files import read_user_file
from reduce.io import write_atomic
from sequencer.blocks import ObservingBlock, parse_blocks
from sequencer.config import InstrumentConfig, load_config, parse_config_text

BLOCKS_FILE = "blocks.yaml"
CONFIG_FILE = "instrument.toml"
LOCK_FILE = ".lock"
JOURNAL_FILE = "run.journal"
#: Largest observing-block or configuration file accepted (bytes).
MAX_INPUT_BYTES = 1 << 20


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def command_line() -> str:
    """How this process was started, as a shell would take it."""
    return shlex.join(["megara-dark", *sys.argv[1:]])


def quoted(path: Path | str) -> str:
    """``path`` as the operator types it into a shell."""
    return shlex.quote(str(path))


def resume_command(workdir: Path) -> str:
    """The command that finishes the run in ``workdir``."""
    return f"megara-dark run --resume {quoted(workdir)}"


def reset_command(workdir: Path) -> str:
    """The command that makes the run's own instrument safe."""
    return f"megara-dark reset --workdir {quoted(workdir)}"


# -- what was asked -------------------------------------------------------------


@dataclass(frozen=True)
class InputFile:
    """One input file of a run: its bytes, where it came from, its folder."""

    data: bytes
    source: str  # the path given, for messages
    base: Path  # the folder its relative paths are relative to

    @classmethod
    def read(cls, path: Path, what: str) -> InputFile:
        """Read a file named on the command line (a regular file, bounded)."""
        data = read_user_file(path, what, max_bytes=MAX_INPUT_BYTES)
        return cls(data, str(path), path.absolute().parent)

    @property
    def sha256(self) -> str:
        return sha256(self.data)


@dataclass(frozen=True)
class RunInputs:
    """The observing blocks and instrument configuration of a run.

    ``config`` is None for the built-in simulators with their default options.
    """

    blocks: InputFile
    config: InputFile | None

    def plan(self) -> list[ObservingBlock]:
        """The validated observing blocks."""
        try:
            text = self.blocks.data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"{self.blocks.source}: not a UTF-8 text file ({err.reason})"
            ) from err
        return parse_blocks(text, source=self.blocks.source, base=self.blocks.base)

    def instrument(self) -> InstrumentConfig:
        """The validated instrument configuration."""
        if self.config is None:
            return load_config(None)
        source = self.config.source
        try:
            text = self.config.data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"{shown_path(source)}: not a UTF-8 text file ({err.reason})"
            ) from err
        return parse_config_text(text, source=source, base=self.config.base)


@dataclass(frozen=True)
class RunRecord:
    """What a run folder records of its start (the ``run_started`` record)."""

    run_id: uuid.UUID
    inputs: RunInputs
    version: str
    command: str
    started: str

    @property
    def run_key(self) -> int:
        """The simulators' noise key for this run (63 bits of its id)."""
        return self.run_id.int & ((1 << 63) - 1)

    def journal_fields(self, plan: list[ObservingBlock]) -> dict[str, Any]:
        inputs = self.inputs
        fields: dict[str, Any] = {
            "run_id": str(self.run_id),
            "version": self.version,
            "command": self.command,
            "host": socket.gethostname(),
            "blocks": [b.id for b in plan],
            "blocks_file": _file_fields(BLOCKS_FILE, inputs.blocks),
            "config_file": (
                _file_fields(CONFIG_FILE, inputs.config)
                if inputs.config is not None
                else None
            ),
        }
        return fields


def _file_fields(name: str, given: InputFile) -> dict[str, str]:
    return {
        "name": name,
        "sha256": given.sha256,
        "source": given.source,
        "base": str(given.base),
    }


def record_inputs(workdir: Path, inputs: RunInputs) -> None:
    """Copy the run's input files into ``workdir`` (atomically, fsync'd)."""
    pairs = [(BLOCKS_FILE, inputs.blocks), (CONFIG_FILE, inputs.config)]
    for name, given in pairs:
        if given is not None:
            data = given.data
            write_atomic(workdir / name, lambda handle, data=data: handle.write(data))


def recorded_record(workdir: Path, first: dict[str, Any]) -> RunRecord | None:
    """The run's record from its journal's first record (None: an old journal)."""
    if "blocks_file" not in first or "run_id" not in first:
        return None
    blocks = _recorded_file(
        workdir, first["blocks_file"], BLOCKS_FILE, "observing blocks"
    )
    config = (
        _recorded_file(
            workdir, first["config_file"], CONFIG_FILE, "instrument configuration"
        )
        if first.get("config_file")
        else None
    )
    try:
        run_id = uuid.UUID(str(first["run_id"]))
    except ValueError:
        raise _damaged(
            workdir, f"run_id {shown(first['run_id'])} is not a UUID"
        ) from None
    return RunRecord(
        run_id=run_id,
        inputs=RunInputs(blocks, config),
        version=str(first.get("version", "")),
        command=str(first.get("command", "")),
        started=str(first.get("time", "")),
    )


def _damaged(workdir: Path, what: str) -> ConfigError:
    return ConfigError(
        f"{workdir / JOURNAL_FILE}: its run_started record is damaged ({what}); "
        "not a run folder this software wrote as it is"
    )


def _recorded_file(workdir: Path, fields: Any, name: str, what: str) -> InputFile:
    """One recorded input file, its name and SHA-256 checked against the record.

    The record may only name the file the run wrote (``name``): a journal
    edited to point elsewhere, or a FIFO in its place, is refused.
    """
    if not isinstance(fields, dict) or fields.get("name") != name:
        raise _damaged(workdir, f"the {what} entry is {shown(fields)}")
    path = workdir / name
    try:
        data = read_user_file(path, f"run's recorded {what}", max_bytes=MAX_INPUT_BYTES)
    except ConfigError as err:
        raise ConfigError(f"{err}; the run folder is incomplete") from None
    if sha256(data) != fields.get("sha256"):
        raise ConfigError(
            f"{path}: the run's recorded {what} was changed after the run started "
            f"(SHA-256 {sha256(data)[:12]}..., recorded "
            f"{str(fields.get('sha256'))[:12]}...); put the original back"
        )
    return InputFile(data, str(path), Path(str(fields.get("base", workdir))))


def check_same_inputs(
    recorded: RunInputs,
    blocks: InputFile | None,
    config: InputFile | None,
    workdir: Path,
) -> None:
    """Refuse a resume with other observing blocks or another configuration.

    ``blocks`` and ``config`` are what the command line gave (None: not
    given, accepted); their content is compared, not their paths.
    """
    if blocks is not None and blocks.sha256 != recorded.blocks.sha256:
        raise ConfigError(
            f"{blocks.source}: not the observing blocks this run was started "
            f"with ({workdir / BLOCKS_FILE}, SHA-256 "
            f"{recorded.blocks.sha256[:12]}..., given {blocks.sha256[:12]}"
            f"...); finish the run with: {resume_command(workdir)}, or start a "
            "new run in another --workdir"
        )
    if config is None:
        return
    if recorded.config is None:
        raise ConfigError(
            f"--config {config.source}: this run was started on the built-in "
            f"simulators (no --config); finish it with: {resume_command(workdir)}"
        )
    if config.sha256 != recorded.config.sha256:
        raise ConfigError(
            f"--config {config.source}: not the instrument configuration "
            f"this run was started with ({workdir / CONFIG_FILE}, SHA-256 "
            f"{recorded.config.sha256[:12]}..., given {config.sha256[:12]}...); a "
            f"resumed run continues on the same devices: {resume_command(workdir)}"
        )


# -- files the inputs name ---------------------------------------------------------


def referenced_files(
    plan: list[ObservingBlock], config: InstrumentConfig
) -> dict[str, str]:
    """SHA-256 of every file the blocks and the configuration name by path.

    A block's ``master_bias``, ``[reduce] qc_config`` and ``[simulator]
    scenario`` are read where they are, not copied into the run folder: the
    run records what they held, and a resume refuses them changed.
    """
    paths = [b.master_bias for b in plan if b.master_bias is not None]
    paths += [p for p in (config.reduce.qc_config, config.simulator.scenario) if p]
    return {str(path): _file_sha256(Path(path)) for path in paths}


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    return digest.hexdigest()


def check_same_files(recorded: Any, workdir: Path) -> None:
    """Refuse a resume when a file the run named has changed since its start."""
    if not isinstance(recorded, dict):
        raise _damaged(workdir, f"referenced is {shown(recorded)}")
    for path, was in recorded.items():
        now = _file_sha256(Path(path))
        if now != was:
            raise ConfigError(
                f"{path}: changed since this run started (SHA-256 {now[:12]}..., "
                f"recorded {was[:12]}...); the run in {workdir} must finish with "
                "the files it started with: put the original back"
            )


# -- on which devices -----------------------------------------------------------


def check_same_devices(
    recorded: dict[str, Any], found: dict[str, Any], workdir: Path
) -> None:
    """Refuse to continue on devices that identify otherwise than recorded.

    ``recorded`` and ``found`` map device names to identities (``url``,
    ``product``, ``firmware``, ``simulated``). The URL of the built-in
    simulators changes with each start and is not compared.
    """
    for name, was in recorded.items():
        now = found.get(name)
        if now is None:
            raise ConfigError(f"{workdir}: the run's {name} is not connected now")
        for key in ("simulated", "product", "firmware", "serial"):
            if was.get(key) != now.get(key):
                raise ConfigError(
                    f"{name} at {now.get('url')}: {key} is {now.get(key)!r}, but this "
                    f"run's frames were taken with {key} {was.get(key)!r} (at "
                    f"{was.get('url')}); a run continues on the devices it started "
                    "on: reconnect those, or start a new run in another --workdir"
                )
        if not was.get("builtin") and was.get("url") != now.get("url"):
            raise ConfigError(
                f"{name}: now at {now.get('url')}, recorded at {was.get('url')}; a "
                "run continues on the devices it started on"
            )


# -- one owner ------------------------------------------------------------------


class RunLock:
    """An exclusive lock on a run folder, held until :meth:`release`.

    The lock is ``flock`` on ``WORK/.lock``, which the kernel releases when
    its holder dies however it dies: a lock left by a killed run is free, and
    taken over. The file says who holds it (PID, start time, command).
    """

    def __init__(self, workdir: Path, purpose: str) -> None:
        self.path = workdir / LOCK_FILE
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            raise ConfigError(
                f"{self.path}: cannot create the run folder's lock "
                f"({err.strerror or err}); is {workdir} a writable folder?"
            ) from err
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(self._fd)
            os.close(self._fd)
            raise ConfigError(
                f"{workdir} is in use by another megara-dark ({holder}); wait for "
                "it to finish or stop it, or choose another --workdir"
            ) from None
        note = {
            "pid": os.getpid(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "purpose": purpose,
            "command": command_line(),
        }
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (json.dumps(note) + "\n").encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    """Who holds the lock on ``fd``, as its file says."""
    try:
        note = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        note = {}
    if not isinstance(note, dict) or "pid" not in note:
        return "holder unknown"
    return (
        f"PID {note.get('pid')}, {note.get('purpose', 'run')} started "
        f"{note.get('started', '?')}: {note.get('command', '?')}"
    )

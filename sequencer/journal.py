"""The run journal: an append-only, fsync'd record of a run's progress.

One JSON object per line, each written with a single ``os.write`` on a file
opened with ``O_APPEND`` and then ``os.fsync``'d, so that a record is either
on disk whole or (after a crash in the middle of the write) a final line with
no newline, which is ignored with a warning and cut off before the next
append. Every record carries ``seq`` (1, 2, 3 ...), ``time`` (UTC, ISO 8601)
and ``event``::

    {"seq": 7, "time": "2026-11-28T13:40:02.123456+00:00",
     "event": "frame_written", "block": "dark1", "attempt": 3,
     "file": "dark1_0003.fits", "valid": true, "reason": ""}

Events and their fields (extra fields are kept and ignored by ``replay``):

=================  ===========================================================
``run_started``    ``blocks`` (ids, in order), ``version``, ``run_id``,
                   ``command``, ``host``, ``blocks_file`` and ``config_file``
                   (``name`` in the folder, ``sha256``, ``source``, ``base``;
                   no config file: the built-in simulators), ``simulator``
                   (their options; None on configured ports),
                   ``referenced`` (SHA-256 of each file the inputs name by
                   path: master biases, QC settings, a scenario); see
                   :mod:`sequencer.runfolder`
``block_started``  ``block``
``frame_started``  ``block``, ``attempt`` (an exposure began)
``frame_written``  ``block``, ``attempt``, ``file``, ``valid``, ``reason``,
                   optional ``sha256``; the interlock readings ``cover_before``,
                   ``cover_after``, ``cover_worst``, ``shutter_before``,
                   ``shutter_after``, ``shutter_max`` (the strings of the raw
                   header, see :mod:`sequencer.interlock`), ``shutter_readings``,
                   ``cover_close_min_s``
                   and ``cover_close_s`` (device seconds the block's cover
                   close took, at least and at most),
                   ``ccd_temp_start_k``, ``ccd_temp_end_k``
``frame_adopted``  as ``frame_written``: a complete file found on resume
                   whose ``frame_written`` record was lost
``frame_invalid``  ``block``, ``attempt``, ``reason``: an attempt that left
                   no file (e.g. the readout was lost)
``frame_discarded`` ``block``, ``attempt``, ``file``, ``moved_to``: a damaged
                   file found on resume, moved aside
``block_done``     ``block``
``reduction_done`` ``block``, ``qa``, ``reasons`` (why not GOOD), ``used``,
                   ``excluded`` (``file`` and ``reason`` of each frame left out)
``fault``          ``block`` (optional), ``error``
``devices``        ``devices``: each device as identified at the first start
                   (``url``, ``product``, ``firmware``, ``simulated``)
``devices_checked`` the same, at a resume, after the comparison with ``devices``
``run_resumed``    ``version``, ``command``
``stopped``        ``signal``: the run was stopped by SIGINT, SIGTERM or SIGHUP
``run_done``
=================  ===========================================================

Resuming (:mod:`sequencer.recovery`): the next attempt of a block is one
more than the highest attempt the journal mentions. Every frame file of the
block is verified first, journaled or not: a good one is kept (or adopted, a
``frame_adopted`` record, when a crash came between its rename and its
``frame_written`` record); a damaged, missing or foreign one is moved aside
and recorded as ``frame_discarded``, and taken again. Attempt numbers are
never reused, so no frame is overwritten or duplicated.

A resumed run restarts the simulators with their CCD frame counter at
:func:`sequencer.recovery.exposures_done` (the attempts that finished, in
every block), so that each frame gets the pixels it would have had in a run
that was never interrupted.

Failures. An append that cannot be written whole (no space, a file-size limit,
a read-only folder) cuts the file back to its last complete record and raises
:class:`JournalError`: the journal on disk stays consistent, and the run can
be resumed once the cause is fixed.

Fault injection (tests only). With the environment variable
``MEGARA_DARK_FAULT_KILL_JOURNAL=EVENT:N:BYTES`` set, the process writes only
the first BYTES bytes of its N-th ``EVENT`` record, fsyncs them and kills
itself with SIGKILL: a crash in the middle of a journal append, on demand.
Unset (the default), nothing changes. See ``tests/reliability``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.errors import ConfigError, SequenceError
from reduce.io import fsync_dir
from sequencer.rawfits import file_name
from sequencer.runfolder import resume_command

log = logging.getLogger(__name__)

Record = dict[str, Any]

_WRITTEN = frozenset({"frame_written", "frame_adopted"})


class JournalError(SequenceError):
    """The journal cannot be written (no space, read-only, size limit)."""


def _resume_hint(path: Path) -> str:
    return (
        f"fix that (free space, make {path.parent} writable), then finish the "
        f"run with: {resume_command(path.parent)}"
    )


def _os_reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


class Journal:
    """An append-only journal file (see the module docstring).

    Parameters
    ----------
    path
        The journal file; created (and its folder fsync'd) if missing. A torn
        final line left by a crash is cut off here, with a warning.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            if not self.path.exists():
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.fsync(fd)
                os.close(fd)
                fsync_dir(self.path.parent)
            self._cut_torn_tail()
        except OSError as err:
            raise JournalError(
                f"{self.path}: cannot create or repair the run journal "
                f"({_os_reason(err)}); {_resume_hint(self.path)}"
            ) from err
        records = self.records()
        self._next_seq = records[-1]["seq"] + 1 if records else 1
        # The run's writer thread and its main thread both append: one at a
        # time, or two records could share a sequence number.
        self._lock = threading.Lock()

    def _cut_torn_tail(self) -> None:
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        log.warning(
            "%s: cutting off a torn final record left by a crash: %r",
            self.path,
            data[keep:],
        )
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.ftruncate(fd, keep)
            os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, event: str, **fields: Any) -> Record:
        """Append one record and fsync it; return it.

        Raises
        ------
        ConfigError
            ``fields`` cannot be written as JSON, or use a reserved name.
        JournalError
            The record could not be written whole; the file is cut back to its
            last complete record (nothing half-written is left).
        """
        reserved = {"seq", "time", "event"} & fields.keys()
        if reserved:
            raise ConfigError(f"{self.path}: journal fields {reserved} are reserved")
        with self._lock:
            return self._append(event, fields)

    def _append(self, event: str, fields: dict[str, Any]) -> Record:
        record: Record = {
            "seq": self._next_seq,
            "time": datetime.now(UTC).isoformat(),
            "event": event,
            **fields,
        }
        try:
            line = json.dumps(record, ensure_ascii=True, allow_nan=False) + "\n"
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"{self.path}: journal record {event!r} is not JSON: {err}"
            ) from err
        self._write(event, line.encode("ascii"))
        self._next_seq += 1
        log.debug("journal %s", line.rstrip())
        return record

    def _write(self, event: str, data: bytes) -> None:
        """Append ``data`` whole and fsync it, or leave the file as it was."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as err:
            raise JournalError(
                f"{self.path}: cannot open the run journal to append a {event!r} "
                f"record ({_os_reason(err)}); {_resume_hint(self.path)}"
            ) from err
        try:
            size = os.fstat(fd).st_size
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(
                        0, f"wrote {written} of {len(data)} bytes (disk full?)"
                    )
                os.fsync(fd)
            except OSError as err:
                self._cut_back(fd, size)
                raise JournalError(
                    f"{self.path}: cannot append a {event!r} record "
                    f"({_os_reason(err)}); the journal keeps its last complete "
                    f"record; {_resume_hint(self.path)}"
                ) from err
        finally:
            os.close(fd)

    def _cut_back(self, fd: int, size: int) -> None:
        """Remove the bytes of a failed append (best effort: a cut that fails
        leaves a torn final line, which the next open cuts off anyway)."""
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError as err:
            log.error("%s: could not cut back a failed append: %s", self.path, err)

    def records(self) -> list[Record]:
        """Every record, in order (see :func:`read_records`)."""
        return read_records(self.path)[0]


def read_records(path: Path) -> tuple[list[Record], bytes]:
    """Every record of the journal at ``path``, and its torn final line if any.

    Reads only (a :class:`Journal` opened for appending cuts the torn line
    off). A final line without its newline, a write cut short by a crash, is
    not a record: it is returned as the second item (empty when there is
    none) and logged as a warning.

    Raises
    ------
    ConfigError
        A complete line is not a JSON record, or the sequence numbers do not
        run 1, 2, 3 ...; the message names the line.
    """
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    if lines[-1]:
        log.warning(
            "%s: ignoring a torn final line left by a crash: %r", path, lines[-1]
        )
    out: list[Record] = []
    for number, raw in enumerate(lines[:-1], start=1):
        out.append(_parse(path, number, raw, len(out) + 1))
    return out, lines[-1]


def _parse(path: Path, number: int, raw: bytes, seq: int) -> Record:
    try:
        record = json.loads(raw)
    except ValueError as err:
        raise ConfigError(
            f"{path} line {number}: not a journal record ({err}): "
            f"{raw[:80]!r}; the journal is damaged: repair it by hand"
        ) from err
    if not isinstance(record, dict) or not isinstance(record.get("event"), str):
        raise ConfigError(
            f"{path} line {number}: {raw[:80]!r} has no event; expected "
            "a JSON object with seq, time and event"
        )
    if record.get("seq") != seq:
        raise ConfigError(
            f"{path} line {number}: seq {record.get('seq')!r}, expected "
            f"{seq}; records are missing or were reordered"
        )
    return record


@dataclass
class BlockState:
    """What the journal says about one observing block.

    Attributes
    ----------
    block
        Block id.
    started
        A ``block_started`` record exists.
    attempts
        Highest attempt number mentioned (started, written or failed).
    valid_files, invalid_files
        Frame files written (or adopted), in order, by validity.
    failed_attempts
        Attempts that left no file (``frame_invalid``).
    discarded_files, discarded_attempts
        Damaged frames found on resume and moved aside (``frame_discarded``).
    written_attempts
        Attempts whose frame was written or adopted.
    done, reduced
        ``block_done`` / ``reduction_done`` seen.
    qa
        QA flag of the reduction.
    """

    block: str
    started: bool = False
    attempts: int = 0
    valid_files: list[str] = field(default_factory=list)
    invalid_files: list[str] = field(default_factory=list)
    failed_attempts: list[int] = field(default_factory=list)
    discarded_files: list[str] = field(default_factory=list)
    written_attempts: set[int] = field(default_factory=set)
    discarded_attempts: set[int] = field(default_factory=set)
    done: bool = False
    reduced: bool = False
    qa: str | None = None
    reasons: list[str] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)

    @property
    def retakes(self) -> int:
        """Attempts that did not give a valid frame (what ``retake_limit`` caps).

        A frame set aside on resume (damaged, missing or planted after it was
        taken) is taken again but is no sign that the instrument was not
        dark: it is not counted here (``discarded_files`` lists it).
        """
        return len(self.invalid_files) + len(self.failed_attempts)

    @property
    def expected_next_attempt(self) -> int:
        """Attempt number of the next exposure (never reuses one)."""
        return self.attempts + 1

    @property
    def next_frame_index(self) -> int:
        """Index (among valid frames) of the next frame."""
        return len(self.valid_files) + 1


@dataclass
class RunState:
    """A replayed journal: per-block progress and the run's status."""

    blocks: dict[str, BlockState] = field(default_factory=dict)
    planned: list[str] = field(default_factory=list)
    started: bool = False
    done: bool = False
    faults: list[str] = field(default_factory=list)
    last_seq: int = 0

    def block(self, block_id: str) -> BlockState:
        """The state of ``block_id`` (empty if the journal never mentions it)."""
        return self.blocks.setdefault(block_id, BlockState(block_id))


def replay(records: Iterable[Record]) -> RunState:
    """Summarise a journal's records (see the module docstring for events)."""
    state = RunState()
    for record in records:
        apply_record(state, record)
    return state


def apply_record(state: RunState, record: Record) -> None:
    """Update ``state`` with one journal record (see the module docstring)."""
    event = record["event"]
    state.last_seq = record.get("seq", state.last_seq)
    if event == "run_started":
        state.started = True
        state.planned = list(record.get("blocks", state.planned))
        return
    if event == "run_done":
        state.done = True
        return
    if event == "fault":
        state.faults.append(str(record.get("error", "")))
        return
    block_id = record.get("block")
    if not isinstance(block_id, str):
        return
    block = state.block(block_id)
    attempt = record.get("attempt")
    if isinstance(attempt, int):
        block.attempts = max(block.attempts, attempt)
    if event == "block_started":
        block.started = True
    elif event in _WRITTEN and isinstance(attempt, int):
        if attempt in block.written_attempts:
            return  # a record written twice counts once
        block.written_attempts.add(attempt)
        name = str(record.get("file") or file_name(block_id, attempt))
        (block.valid_files if record.get("valid") else block.invalid_files).append(name)
    elif event == "frame_invalid" and isinstance(attempt, int):
        block.failed_attempts.append(attempt)
    elif event == "frame_discarded" and isinstance(attempt, int):
        name = str(record.get("file", ""))
        block.discarded_files.append(name)
        block.discarded_attempts.add(attempt)
        # A journaled frame found damaged, missing or foreign on resume is
        # no longer one of the block's frames: it is taken again.
        for files in (block.valid_files, block.invalid_files):
            if name in files:
                files.remove(name)
    elif event == "block_done":
        block.done = True
    elif event == "reduction_done":
        block.reduced = True
        block.qa = record.get("qa")
        block.reasons = [str(r) for r in record.get("reasons", [])]
        block.excluded = [e for e in record.get("excluded", []) if isinstance(e, dict)]

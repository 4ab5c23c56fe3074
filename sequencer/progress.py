"""What a run is doing, as events: a live terminal display or JSON lines.

The state machine and the run report what happens through one
:class:`Reporter` (the callbacks of the states, and the driver's readout
progress callback); nothing polls the file system. The reporter hands each
event, a flat ``dict`` with an ``event`` name and ``t`` (wall seconds since the
run started), to one sink:

* :class:`JsonLines` (``megara-dark run --json``): one JSON object per line;
* :class:`sequencer.display.LiveDisplay`: block k of M, frame k/N, the state,
  exposure countdown, readout percentage, interlock read-backs and the time
  left, drawn with rich, for a terminal;
* :class:`Silent`: nothing (stdout is not a terminal and ``--json`` not given).

Events, in the order a clean block sends them::

    run_started      workdir, blocks, resume, plan, time_scale, readout_s
    devices          ccd, cover (URLs), simulator_pid (None on real hardware)
    block_started    block, mode, nframes, exptime_s, valid
    state            block, state (the machine's Step), reason (ABORTING only)
    readback         block, and what was read: cover, cover_closed, shutter,
                     temperature_k (repeated)
    frame_started    block, frame, nframes, attempt, exptime_s
    exposure         block, frame, elapsed_s, exptime_s, remaining_s (repeated)
    readout          block, frame, phase ("ccd" | "transfer"), percent (repeated)
    frame_written    block, frame, attempt, file
    frame_invalid    block, frame, attempt, file, reason   (instead of written)
    frame_retaken    block, frame, attempt (the next attempt), retaken
    reduction_done   block, qa, folder, reasons, used
    block_done       block, valid, retaken
    fault            block, state, message
    aborted          block, signal, read_back
    run_done         status, exit, workdir, blocks (one summary per block)

``exposure``, ``readout`` and ``readback`` are progress events: the first and
the last of each phase (and a read-back that changed) are always sent, those in
between at most every :attr:`Reporter.interval_s` wall seconds.

The events in :data:`TIMED_EVENTS` also carry the time left, worked out by a
:class:`sequencer.eta.RunClock` from the events themselves:
``block_remaining_s`` and ``run_remaining_s`` (wall seconds) and ``eta_utc``
(the expected end of the run, ISO 8601 UTC), each once it can be known. Note
that ``exposure``'s own ``remaining_s`` is the exposure's, in device seconds.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Protocol

from sequencer.display import LiveDisplay
from sequencer.eta import RunClock

__all__ = ["EventSink", "JsonLines", "LiveDisplay", "Reporter", "Silent"]

log = logging.getLogger(__name__)

PROGRESS_EVENTS = frozenset({"exposure", "readout", "readback"})

#: Events that carry the time left (``block_remaining_s``, ``run_remaining_s``,
#: ``eta_utc``).
TIMED_EVENTS = frozenset(
    {
        "run_started",
        "devices",
        "block_started",
        "state",
        "frame_started",
        "exposure",
        "readout",
        "block_done",
    }
)


class EventSink(Protocol):
    """Receives every event the reporter lets through."""

    def handle(self, event: dict[str, Any]) -> None: ...


class Silent:
    """Drops every event (no terminal, no ``--json``)."""

    def handle(self, event: dict[str, Any]) -> None:
        pass


def stdout_closed() -> None:
    """The reader of stdout went away (``megara-dark run --json | head``).

    The run goes on (its hardware and frames matter more than its news):
    stdout is pointed at /dev/null, so that later writes, and the
    interpreter's final flush, neither fail nor raise.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


class JsonLines:
    """One JSON object per line on ``stream``, flushed at once.

    A closed reader (a broken pipe) ends the events quietly, not the run.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.closed = False

    def handle(self, event: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            self.stream.write(json.dumps(event, default=str) + "\n")
            self.stream.flush()
        except BrokenPipeError:
            self.closed = True
            log.warning("stdout was closed: no more JSON events; the run goes on")
            stdout_closed()


def utc_now() -> datetime:
    """The time now, UTC."""
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """``2025-06-01T21:43:10Z``: a UTC time to the second, as in ``eta_utc``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reporter:
    """The one place the run and the state machine send their events to.

    Parameters
    ----------
    sink
        Where the events go.
    interval_s
        Least wall time between two progress events of the same kind (the
        first and last of each phase always pass).
    clock
        Monotonic clock, seconds.
    utc
        The time now, UTC (read once, when the reporter is made: ``t = 0``).
    """

    def __init__(
        self,
        sink: EventSink | None = None,
        *,
        interval_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        utc: Callable[[], datetime] = utc_now,
    ) -> None:
        self.sink: EventSink = sink if sink is not None else Silent()
        self.interval_s = interval_s
        self.clock = clock
        self.t0 = clock()
        self.epoch = utc()
        self.eta = RunClock()
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()  # the run's frame writer reports too

    @property
    def active(self) -> bool:
        """Whether anyone listens (callers may skip building costly events)."""
        return not isinstance(self.sink, Silent)

    def emit(self, event: str, **fields: Any) -> None:
        """Send one event now."""
        with self._lock:
            now = self.clock()
            record = {"event": event, "t": round(now - self.t0, 4), **fields}
            self.eta.feed(record)
            if event in TIMED_EVENTS:
                self._add_time_left(record)
            try:
                self.sink.handle(record)
            except (OSError, ValueError) as err:  # a closed pipe must not stop a run
                log.warning("progress output failed (%s); continuing without it", err)
                self.sink = Silent()

    def _add_time_left(self, record: dict[str, Any]) -> None:
        estimate = self.eta.estimate(record["t"])
        if estimate.block_s is not None:
            record["block_remaining_s"] = round(estimate.block_s, 3)
        if estimate.run_s is not None:
            record["run_remaining_s"] = round(estimate.run_s, 3)
            end = self.epoch + timedelta(seconds=record["t"] + estimate.run_s)
            record["eta_utc"] = iso_utc(end)

    def progress(self, event: str, *, edge: bool = False, **fields: Any) -> None:
        """Send a progress event, unless one of its kind went out just now.

        ``edge`` marks the first or the last of a phase: always sent.
        """
        now = self.clock()
        last = self._last.get(event)
        if not edge and last is not None and now - last < self.interval_s:
            return
        self._last[event] = now
        self.emit(event, **fields)

    def readout_callback(self, block: str, frame: int) -> Callable[[int, int], None]:
        """A :data:`drivers.interfaces.Progress` callback for one transfer."""

        def on_progress(done: int, total: int) -> None:
            self.progress(
                "readout",
                edge=done in (0, total),
                block=block,
                frame=frame,
                phase="transfer",
                percent=round(100.0 * done / total, 1) if total else 100.0,
            )

        return on_progress

"""What a run is doing, as events: a live terminal display or JSON lines.

The state machine and the run report what happens through one
:class:`Reporter` (the callbacks of the states, and the driver's readout
progress callback); nothing polls the file system. The reporter hands each
event, a flat ``dict`` with an ``event`` name and ``t`` (wall seconds since the
run started), to one sink:

* :class:`JsonLines` (``megara-dark run --json``): one JSON object per line;
* :class:`LiveDisplay`: block, frame k/N, exposure countdown and readout
  percentage, drawn with rich, for a terminal;
* :class:`Silent`: nothing (stdout is not a terminal and ``--json`` not given).

Events, in the order a clean block sends them::

    run_started      workdir, blocks, resume
    devices          ccd, cover (URLs), simulator_pid (None on real hardware)
    block_started    block, mode, nframes, exptime_s
    frame_started    block, frame, nframes, attempt, exptime_s
    exposure         block, frame, elapsed_s, exptime_s, remaining_s (repeated)
    readout          block, frame, phase ("ccd" | "transfer"), percent (repeated)
    frame_written    block, frame, attempt, file
    frame_invalid    block, frame, attempt, file, reason   (instead of written)
    frame_retaken    block, frame, attempt (the next attempt), retaken
    reduction_done   block, qa, folder, reasons, used
    block_done       block, valid, retaken
    fault            block, state, message
    aborted          block, signal
    run_done         status, exit, workdir, blocks (one summary per block)

``exposure`` and ``readout`` are progress events: the first and the last of
each phase are always sent, those in between at most every
:attr:`Reporter.interval_s` wall seconds.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

log = logging.getLogger(__name__)

PROGRESS_EVENTS = frozenset({"exposure", "readout"})


class EventSink(Protocol):
    """Receives every event the reporter lets through."""

    def handle(self, event: dict[str, Any]) -> None: ...


class Silent:
    """Drops every event (no terminal, no ``--json``)."""

    def handle(self, event: dict[str, Any]) -> None:
        pass


class JsonLines:
    """One JSON object per line on ``stream``, flushed at once."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def handle(self, event: dict[str, Any]) -> None:
        self.stream.write(json.dumps(event, default=str) + "\n")
        self.stream.flush()


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
    """

    def __init__(
        self,
        sink: EventSink | None = None,
        *,
        interval_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink: EventSink = sink if sink is not None else Silent()
        self.interval_s = interval_s
        self.clock = clock
        self.t0 = clock()
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
            try:
                self.sink.handle(record)
            except (OSError, ValueError) as err:  # a closed pipe must not stop a run
                log.warning("progress output failed (%s); continuing without it", err)
                self.sink = Silent()

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


@dataclass
class _Now:
    """What the live display shows."""

    block: str = ""
    mode: str = ""
    frame: int = 0
    nframes: int = 0
    attempt: int = 0
    exptime_s: float = 0.0
    elapsed_s: float = 0.0
    phase: str = ""
    percent: float = 0.0
    doing: str = "starting"


class LiveDisplay:
    """Block, frame k/N, exposure countdown and readout percentage, with rich.

    Lasting news (a frame written or invalid, a reduction's QA, a fault) is
    printed above the live lines, so it stays in the terminal's scrollback.
    Use as a context manager around the run.
    """

    def __init__(self, console: Console, *, refresh_per_second: float = 8.0) -> None:
        self.console = console
        self.now = _Now()
        self.live = Live(
            get_renderable=self.render,
            console=console,
            refresh_per_second=refresh_per_second,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def __enter__(self) -> LiveDisplay:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def handle(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        now = self.now
        if kind == "block_started":
            now.block, now.mode = event["block"], event["mode"]
            now.nframes, now.exptime_s = event["nframes"], event["exptime_s"]
            now.frame, now.doing = 0, "closing cover and shutter"
        elif kind == "frame_started":
            now.frame, now.attempt = event["frame"], event["attempt"]
            now.elapsed_s, now.phase, now.percent = 0.0, "", 0.0
            now.doing = "exposing"
        elif kind == "exposure":
            now.elapsed_s = event["elapsed_s"]
        elif kind == "readout":
            now.phase, now.percent = event["phase"], event["percent"]
            now.doing = "reading out"
        elif kind == "block_done":
            now.doing = "done"
        elif kind in _NEWS:
            self.console.print(_NEWS[kind](event))
            if kind == "reduction_done":
                now.doing = "reduced"
        self.live.refresh()

    def render(self) -> RenderableType:
        """The live lines for the present moment."""
        now = self.now
        head = Text.assemble(
            (f"{now.block or '-'}", "bold"),
            f"  {now.mode}  frame {now.frame}/{now.nframes}",
            f" (attempt {now.attempt})" if now.attempt else "",
            f"  {now.doing}",
        )
        table = Table.grid(padding=(0, 2))
        table.add_column(width=9)
        table.add_column(width=32)
        table.add_column()
        remaining = max(now.exptime_s - now.elapsed_s, 0.0)
        exposed = now.elapsed_s / now.exptime_s if now.exptime_s > 0 else 1.0
        table.add_row(
            "exposure",
            ProgressBar(total=1.0, completed=min(exposed, 1.0) if now.frame else 0.0),
            f"{remaining:,.0f} s left of {now.exptime_s:g} s"
            if now.frame
            else f"{now.exptime_s:g} s per frame",
        )
        label = {"ccd": "CCD readout", "transfer": "transfer"}.get(now.phase, "")
        table.add_row(
            "readout",
            ProgressBar(total=100.0, completed=now.percent),
            f"{now.percent:.0f}% {label}".rstrip(),
        )
        return Group(head, table)


def _written(event: dict[str, Any]) -> Text:
    return Text(
        f"{event['block']}: frame {event['frame']} written ({event['file']})",
        style="green",
    )


def _invalid(event: dict[str, Any]) -> Text:
    return Text(
        f"{event['block']}: frame {event['frame']} INVALID ({event['file']}): "
        f"{event['reason']}",
        style="yellow",
    )


def _retaken(event: dict[str, Any]) -> Text:
    return Text(
        f"{event['block']}: retaking frame {event['frame']} "
        f"(attempt {event['attempt']})",
        style="yellow",
    )


def _reduced(event: dict[str, Any]) -> Text:
    return Text(
        f"{event['block']}: reduced, QA {event['qa']} ({event['folder']})",
        style="bold",
    )


def _fault(event: dict[str, Any]) -> Text:
    return Text(f"{event['block']}: FAULT: {event['message']}", style="bold red")


def _aborted(event: dict[str, Any]) -> Text:
    return Text(f"{event['block']}: aborted ({event['signal']})", style="bold red")


_NEWS: dict[str, Callable[[dict[str, Any]], Text]] = {
    "frame_written": _written,
    "frame_invalid": _invalid,
    "frame_retaken": _retaken,
    "reduction_done": _reduced,
    "fault": _fault,
    "aborted": _aborted,
}

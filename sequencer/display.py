"""The live terminal display of a run, drawn with rich from its progress events.

What the operator sees (one line each, redrawn as the events come)::

    block 2 of 2  dark60  MegaraDarkImage  frame 3/5 (attempt 4)  EXPOSING
    exposure   ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━  12 s left of 60 s
    readout    ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━  0%
    cover left=CLOSED right=CLOSED  shutter CLOSED  CCD 163.2 K
    time left  block 1 min 20 s  run 3 min 05 s  ends 21:43:10 UTC

The attempt is shown only for a retake (attempt number above the frame's); a
bias (no exposure time) has no exposure line; after Ctrl-C or SIGTERM the
bars give way to "aborted (SIGINT)" and what was read back, after a fault to
the fault. The time left comes with the events (``block_remaining_s``,
``run_remaining_s``, ``eta_utc``, see :mod:`sequencer.eta`) and counts down
between them. Lasting news (a frame written or invalid, a retake, a
reduction's QA, a fault, an abort) is printed above the live lines, so it
stays in the terminal's scrollback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

log = logging.getLogger(__name__)


@dataclass
class _Now:
    """What the live display shows."""

    blocks: list[str] = field(default_factory=list)
    block: str = ""
    mode: str = ""
    nframes: int = 0
    exptime_s: float = 0.0
    frame: int = 0  # 0: no frame of this block started yet
    attempt: int = 0
    state: str = ""
    doing: str = "starting"
    elapsed_s: float = 0.0
    phase: str = ""
    percent: float = 0.0
    cover: str = ""
    shutter: str = ""
    temperature_k: float | None = None
    block_left_s: float | None = None
    run_left_s: float | None = None
    eta: datetime | None = None
    left_since: float = 0.0  # display clock when the time left was given
    stopped: Text | None = None  # aborted or faulted: shown instead of the bars


class LiveDisplay:
    """The run's live lines on a terminal (see the module notes).

    Parameters
    ----------
    console
        The rich console to draw on.
    refresh_per_second
        Redraws per second (the time left counts down between events).
    clock
        Monotonic clock, seconds (for the countdown between events).
    utc
        The time now, UTC (the end time's date is shown when not today's).

    Use as a context manager around the run.
    """

    def __init__(
        self,
        console: Console,
        *,
        refresh_per_second: float = 8.0,
        clock: Callable[[], float] = time.monotonic,
        utc: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.console = console
        self.clock = clock
        self.utc = utc
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
        """Take one event in; print it above the live lines if it is news."""
        kind = event["event"]
        update = _UPDATES.get(kind)
        if update is not None:
            update(self.now, event)
        if "block_remaining_s" in event or "run_remaining_s" in event:
            self._time_left(event)
        news = _NEWS.get(kind)
        if news is not None:
            self.console.print(news(event))
        self.live.refresh()

    def _time_left(self, event: dict[str, Any]) -> None:
        now = self.now
        now.block_left_s = event.get("block_remaining_s")
        now.run_left_s = event.get("run_remaining_s")
        eta = event.get("eta_utc")
        now.eta = datetime.fromisoformat(eta) if isinstance(eta, str) else None
        now.left_since = self.clock()

    # -- drawing ---------------------------------------------------------------

    def render(self) -> RenderableType:
        """The live lines for the present moment."""
        now = self.now
        lines: list[RenderableType] = [self._head()]
        if now.stopped is not None:
            lines.append(now.stopped)
        elif now.frame:
            lines.append(self._bars())
        hardware = self._hardware()
        if hardware is not None:
            lines.append(hardware)
        if now.stopped is None:
            left = self._left()
            if left is not None:
                lines.append(left)
        return Group(*lines)

    def _head(self) -> Text:
        now = self.now
        if not now.block:
            return Text(f"megara-dark: {now.doing}", style="bold")
        where = (
            f"block {now.blocks.index(now.block) + 1} of {len(now.blocks)}  "
            if now.block in now.blocks
            else ""
        )
        if now.frame:
            frames = f"frame {now.frame}/{now.nframes}"
            if now.attempt > now.frame:
                frames += f" (attempt {now.attempt})"
        else:
            each = f" of {now.exptime_s:g} s" if now.exptime_s > 0 else ""
            frames = f"{now.nframes} frame{'s' if now.nframes != 1 else ''}{each}"
        return Text.assemble(
            where,
            (now.block, "bold"),
            f"  {now.mode}  {frames}  ",
            (now.state or now.doing, "bold cyan"),
        )

    def _bars(self) -> Table:
        now = self.now
        table = Table.grid(padding=(0, 2))
        table.add_column(width=9)
        table.add_column(width=32)
        table.add_column()
        if now.exptime_s > 0:  # a bias has nothing to count down
            remaining = max(now.exptime_s - now.elapsed_s, 0.0)
            table.add_row(
                "exposure",
                ProgressBar(total=now.exptime_s, completed=now.exptime_s - remaining),
                f"{remaining:,.0f} s left of {now.exptime_s:g} s",
            )
        label = {"ccd": "CCD readout", "transfer": "transfer"}.get(now.phase, "")
        table.add_row(
            "readout",
            ProgressBar(total=100.0, completed=now.percent),
            f"{now.percent:.0f}% {label}".rstrip(),
        )
        return table

    def _hardware(self) -> Text | None:
        now = self.now
        parts = []
        if now.cover:
            parts.append(f"cover {now.cover}")
        if now.shutter:
            parts.append(f"shutter {now.shutter}")
        if now.temperature_k is not None:
            parts.append(f"CCD {now.temperature_k:.1f} K")
        return Text("  ".join(parts)) if parts else None

    def _left(self) -> Text | None:
        now = self.now
        if now.block_left_s is None and now.run_left_s is None:
            return None
        gone = max(self.clock() - now.left_since, 0.0)
        parts = ["time left"]
        if now.block_left_s is not None:
            parts.append(f"block {duration(max(now.block_left_s - gone, 0.0))}")
        if now.run_left_s is not None:
            parts.append(f"run {duration(max(now.run_left_s - gone, 0.0))}")
        if now.eta is not None:
            today = self.utc().astimezone(UTC).date()
            shown = "%H:%M:%S" if now.eta.date() == today else "%Y-%m-%d %H:%M:%S"
            parts.append(f"ends {now.eta.astimezone(UTC).strftime(shown)} UTC")
        return Text("  ".join(parts))


def duration(seconds: float) -> str:
    """``12 s``, ``3 min 05 s``, ``1 h 02 min``: a time left, for a person."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


# -- what each event changes -----------------------------------------------------


def _run_started(now: _Now, event: dict[str, Any]) -> None:
    now.blocks = [str(b) for b in event.get("blocks", [])]
    now.doing = "connecting to the devices"


def _devices(now: _Now, event: dict[str, Any]) -> None:
    now.doing = "devices connected"


def _block_started(now: _Now, event: dict[str, Any]) -> None:
    now.block, now.mode = event["block"], event["mode"]
    now.nframes, now.exptime_s = event["nframes"], event["exptime_s"]
    now.frame, now.attempt, now.state = 0, 0, ""
    now.doing = "starting the block"


def _state(now: _Now, event: dict[str, Any]) -> None:
    now.state = event["state"]
    if now.state == "ABORTING":
        now.stopped = Text(
            f"aborting ({event.get('reason', 'stop requested')}): stopping the "
            "exposure, closing the shutter",
            style="bold red",
        )


def _frame_started(now: _Now, event: dict[str, Any]) -> None:
    now.frame, now.attempt = event["frame"], event["attempt"]
    now.nframes = event.get("nframes", now.nframes)
    now.exptime_s = event.get("exptime_s", now.exptime_s)
    now.elapsed_s, now.phase, now.percent = 0.0, "", 0.0
    now.doing = "exposing"


def _exposure(now: _Now, event: dict[str, Any]) -> None:
    now.elapsed_s = event["elapsed_s"]


def _readout(now: _Now, event: dict[str, Any]) -> None:
    now.phase, now.percent = event["phase"], event["percent"]
    now.elapsed_s, now.doing = now.exptime_s, "reading out"


def _readback(now: _Now, event: dict[str, Any]) -> None:
    now.cover = event.get("cover", now.cover)
    now.shutter = event.get("shutter", now.shutter)
    now.temperature_k = event.get("temperature_k", now.temperature_k)


def _block_done(now: _Now, event: dict[str, Any]) -> None:
    now.state, now.frame = "DONE", 0


def _aborted(now: _Now, event: dict[str, Any]) -> None:
    read_back = event.get("read_back") or "cover and shutter not read back"
    now.stopped = Text(
        f"aborted ({event.get('signal', 'stop requested')}); read back {read_back}",
        style="bold red",
    )


def _fault(now: _Now, event: dict[str, Any]) -> None:
    now.stopped = Text(
        f"FAULT in {event.get('state', '?')}: {event['message']}", style="bold red"
    )


_UPDATES: dict[str, Callable[[_Now, dict[str, Any]], None]] = {
    "run_started": _run_started,
    "devices": _devices,
    "block_started": _block_started,
    "state": _state,
    "frame_started": _frame_started,
    "exposure": _exposure,
    "readout": _readout,
    "readback": _readback,
    "block_done": _block_done,
    "aborted": _aborted,
    "fault": _fault,
}


# -- lasting news, printed above the live lines ------------------------------------


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


def _fault_news(event: dict[str, Any]) -> Text:
    return Text(f"{event['block']}: FAULT: {event['message']}", style="bold red")


def _aborted_news(event: dict[str, Any]) -> Text:
    return Text(f"{event['block']}: aborted ({event['signal']})", style="bold red")


_NEWS: dict[str, Callable[[dict[str, Any]], Text]] = {
    "frame_written": _written,
    "frame_invalid": _invalid,
    "frame_retaken": _retaken,
    "reduction_done": _reduced,
    "fault": _fault_news,
    "aborted": _aborted_news,
}

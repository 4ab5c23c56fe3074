"""Watching a cover move until it ends: called by the sequencer, not by drivers.

The drivers only command and read back; this module polls a
:class:`~drivers.interfaces.FocalPlaneCover` until both halves reach the
target or the motion timeout passes, and turns every way a move can fail
into a typed error an engineer can act on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from drivers.cover import CoverStatus
from drivers.errors import DeviceError, DeviceTimeout
from drivers.protocol import cover as proto

if TYPE_CHECKING:
    from drivers.interfaces import FocalPlaneCover

log = logging.getLogger(__name__)

Target = Literal["closed", "open"]


def wait_for_cover(
    cover: FocalPlaneCover,
    target: Target,
    *,
    timeout_s: float,
    poll_s: float = 0.2,
    stalled_s: float = 2.0,
    urls: tuple[str, str] = ("left", "right"),
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> CoverStatus:
    """Poll both halves until they are ``target`` and at rest.

    Parameters
    ----------
    cover
        The cover, already commanded to move.
    target
        ``"closed"`` or ``"open"``.
    timeout_s
        Seconds the move may take.
    poll_s
        Seconds between status reads.
    stalled_s
        Seconds a half may sit with its motor stopped part-way before it is
        declared jammed (sooner than ``timeout_s``).
    urls
        Where each half lives, for messages.

    Raises
    ------
    DeviceError
        A half reported Alnitak status 3 (timed out), or jammed part-way.
    DeviceTimeout
        A half was still not there ``timeout_s`` after the command.
    """
    want = proto.CoverState.CLOSED if target == "closed" else proto.CoverState.OPEN
    verb = "close" if target == "closed" else "open"
    start = clock()
    stopped_since: dict[str, float] = {}
    while True:
        status = cover.status()
        now = clock()
        elapsed = now - start
        halves = {"left": status.left, "right": status.right}
        pending = False
        for (side, half), url in zip(halves.items(), urls, strict=True):
            where = f"cover {side}: {{}} {elapsed:.1f} s after {verb} on {url}"
            if half.cover is proto.CoverState.TIMED_OUT:
                raise DeviceError(
                    where.format("controller reports its move timed out (status 3)")
                    + f"; expected {target}; check the mechanism for an obstruction,"
                    " then reset the instrument"
                )
            if half.cover is want and half.motor is proto.Motor.STOPPED:
                continue
            pending = True
            if half.motor is proto.Motor.STOPPED:
                since = stopped_since.setdefault(side, now)
                if now - since >= stalled_s:
                    raise DeviceError(
                        where.format(f"stopped {_position(half)}")
                        + f"; expected {target}; the half is jammed: check the "
                        "mechanism, then reset the instrument"
                    )
            else:
                stopped_since.pop(side, None)
            if elapsed >= timeout_s:
                seen = (
                    "still moving"
                    if half.motor is proto.Motor.RUNNING
                    else f"stopped {_position(half)}"
                )
                raise DeviceTimeout(
                    where.format(seen) + f"; expected {target}; check the mechanism "
                    "and reset the instrument"
                )
        if not pending:
            log.info("cover: both halves %s after %.1f s", target, elapsed)
            return status
        sleep(min(poll_s, max(0.0, timeout_s - elapsed)))


def _position(half: proto.Status) -> str:
    if half.cover is proto.CoverState.NEITHER:
        return "part-way"
    return half.cover.name.lower()

"""The one safety predicate (sequencer.hardware.SafetyReading.safe)."""

from __future__ import annotations

import itertools

import pytest

from drivers import interfaces as pc
from drivers.cover import CoverStatus
from drivers.protocol import cover as pv
from sequencer.hardware import SafetyReading

CLOSED = pv.Status(pv.Motor.STOPPED, pv.Light.OFF, pv.CoverState.CLOSED)
OPEN = pv.Status(pv.Motor.STOPPED, pv.Light.OFF, pv.CoverState.OPEN)
MOVING = pv.Status(pv.Motor.RUNNING, pv.Light.OFF, pv.CoverState.CLOSED)


def ccd(state: pc.ControllerState, shutter: pc.ShutterState) -> pc.CcdStatus:
    return pc.CcdStatus(
        state=state,
        exptime_s=0.0,
        elapsed_s=0.0,
        shutter=shutter,
        temperature_k=163.15,
        frame=0,
        dark=True,
    )


@pytest.mark.parametrize(
    ("left", "right", "state", "shutter"),
    list(
        itertools.product(
            [CLOSED, OPEN, MOVING],
            [CLOSED, OPEN],
            list(pc.ControllerState),
            list(pc.ShutterState),
        )
    ),
)
def test_safe_is_closed_at_rest_shut_and_idle(
    left: pv.Status,
    right: pv.Status,
    state: pc.ControllerState,
    shutter: pc.ShutterState,
) -> None:
    reading = SafetyReading(CoverStatus(left, right), ccd(state, shutter))
    expected = (
        left is CLOSED
        and right is CLOSED
        and shutter is pc.ShutterState.CLOSED
        and state not in (pc.ControllerState.EXPOSING, pc.ControllerState.READING)
    )
    assert reading.safe is expected
    assert reading.describe().startswith("cover left=")

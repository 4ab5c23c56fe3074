"""The cover driver against a simulator subprocess (or real controllers).

Every cover fault of the simulators' catalogue ends here either recovered
(with the number of retries it took) or in a named, typed error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from drivers.config import CoverConfig
from drivers.cover import SerialCoverHalf, SerialFocalPlaneCover
from drivers.errors import DeviceError, DeviceTimeout
from drivers.transport import LinkError
from sequencer.motion import wait_for_cover
from tests.hil.conftest import Urls
from tests.simproc import control

pytestmark = pytest.mark.hil

#: Real seconds the simulated motion takes: 4 s at time scale 200.
MOTION_WALL_S = 4.0 / 200


def config(url: str, name: str, **kw: Any) -> CoverConfig:
    settings: dict[str, Any] = {"reply_timeout_s": 0.5, "retries": 2, **kw}
    return CoverConfig(url=url, name=name, **settings)


@pytest.fixture
def cover(urls: Urls) -> Iterator[SerialFocalPlaneCover]:
    left = SerialCoverHalf.from_config(config(urls.cover_left, "left"))
    right = SerialCoverHalf.from_config(config(urls.cover_right, "right"))
    cover = SerialFocalPlaneCover(left, right)
    cover.connect()
    yield cover
    cover.close_link()


def inject(urls: Urls, **fault: Any) -> None:
    if urls.sim is None:
        pytest.skip("fault injection needs the simulators")
    assert control(urls.sim, {"op": "inject", "fault": fault})["ok"]


def wait(cover: SerialFocalPlaneCover, target: str, **kw: float) -> Any:
    return wait_for_cover(
        cover,
        target,  # type: ignore[arg-type]
        timeout_s=kw.get("timeout_s", 5.0),
        poll_s=0.005,
        stalled_s=kw.get("stalled_s", 0.3),
        urls=(cover.left.url, cover.right.url),
    )


def test_close_then_open(cover: SerialFocalPlaneCover) -> None:
    cover.close()
    assert wait(cover, "closed").fully_closed
    assert cover.status().describe() == "left=CLOSED right=CLOSED"
    cover.open()
    status = wait(cover, "open")
    assert not status.fully_closed
    assert status.describe() == "left=OPEN right=OPEN"


def test_firmware_is_three_digits(cover: SerialFocalPlaneCover) -> None:
    assert 0 <= cover.left.firmware() <= 999


def test_second_program_cannot_command_the_same_half(
    urls: Urls, cover: SerialFocalPlaneCover
) -> None:
    intruder = SerialCoverHalf.from_config(config(urls.cover_left, "left", retries=0))
    with pytest.raises((LinkError, DeviceTimeout)):
        intruder.connect()
    intruder.close_link()
    assert cover.left.status() is not None  # the first program is unharmed


@pytest.mark.parametrize(
    ("kind", "params"),
    [("no_reply", {}), ("garbled_reply", {}), ("late_reply", {"delay_s": 0.8})],
)
def test_link_faults_are_recovered_with_one_retry(
    urls: Urls, cover: SerialFocalPlaneCover, kind: str, params: dict[str, float]
) -> None:
    inject(urls, device="cover_right", kind=kind, params=params)
    before = cover.right.retries_used
    cover.right.status()
    assert cover.right.retries_used == before + 1


def test_late_reply_within_the_timeout_needs_no_retry(
    urls: Urls, cover: SerialFocalPlaneCover
) -> None:
    inject(urls, device="cover_left", kind="late_reply", params={"delay_s": 0.1})
    before = cover.left.retries_used
    cover.left.status()
    assert cover.left.retries_used == before


def test_jam_is_reported_as_jammed(urls: Urls, cover: SerialFocalPlaneCover) -> None:
    cover.open()
    wait(cover, "open")
    inject(urls, device="cover_left", kind="cover_jam")
    cover.close()
    with pytest.raises(DeviceError, match=r"cover left: stopped part-way") as info:
        wait(cover, "closed")
    assert "reset the instrument" in str(info.value)
    assert cover.left.url in str(info.value)


def test_alnitak_timeout_status(urls: Urls, cover: SerialFocalPlaneCover) -> None:
    cover.open()
    wait(cover, "open")
    inject(urls, device="cover_right", kind="cover_timeout")
    cover.close()
    with pytest.raises(DeviceError, match=r"cover right: .*timed out \(status 3\)"):
        wait(cover, "closed")


def test_slow_cover_exceeds_the_motion_timeout(
    urls: Urls, cover: SerialFocalPlaneCover
) -> None:
    cover.open()
    wait(cover, "open")
    inject(urls, device="cover_left", kind="cover_slow", params={"factor": 50})
    cover.close()
    with pytest.raises(DeviceTimeout, match=r"cover left: still moving"):
        wait(cover, "closed", timeout_s=0.2)


def test_slow_cover_within_the_timeout_closes(
    urls: Urls, cover: SerialFocalPlaneCover
) -> None:
    cover.open()
    wait(cover, "open")
    inject(urls, device="cover_right", kind="cover_slow", params={"factor": 3})
    cover.close()
    assert wait(cover, "closed", timeout_s=20 * MOTION_WALL_S + 2).fully_closed

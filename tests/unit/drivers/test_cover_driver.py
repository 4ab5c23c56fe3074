"""The cover driver's failure paths, on a scripted byte port."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import serial

from drivers.config import CoverConfig
from drivers.cover import CoverStatus, SerialCoverHalf, SerialFocalPlaneCover
from drivers.errors import DeviceError, DeviceTimeout, ProtocolError
from drivers.identity import DeviceIdentity
from drivers.protocol import cover as proto
from drivers.transport import LinkError, SerialLink
from sequencer.motion import wait_for_cover
from tests.unit.drivers.fakes import FakePort, Responder

ACK = {b">P000\n": b"*P98000\n", b">C000\n": b"*C98000\n", b">O000\n": b"*O98000\n"}


def healthy(status: bytes = b"*S98001\n") -> Responder:
    def respond(written: bytes) -> bytes:
        return status if written == b">S000\n" else ACK.get(written, b"*V98213\n")

    return respond


def make_half(
    respond: Responder, *, retries: int = 2, name: str = "left"
) -> tuple[SerialCoverHalf, list[FakePort]]:
    ports: list[FakePort] = []

    def opener(url: str) -> FakePort:
        ports.append(FakePort(respond))
        return ports[-1]

    config = CoverConfig(
        url="fake://x", name=name, reply_timeout_s=0.05, retries=retries
    )
    link = SerialLink(config.url, device=f"cover {name}", opener=opener)
    return SerialCoverHalf(link, config), ports


def test_status_and_literal_bytes() -> None:
    half, ports = make_half(healthy())
    status = half.status()
    assert status.is_closed
    assert ports[0].written == [b">S000\n"]


def test_wrong_product_is_refused() -> None:
    half, _ = make_half(lambda w: b"*P99000\n")
    with pytest.raises(DeviceError, match="product 99; expected 98"):
        half.ping()


def test_identity_is_product_98_and_the_firmware_and_never_simulated() -> None:
    half, ports = make_half(healthy(), name="right")
    with pytest.raises(DeviceError, match="call connect\\(\\) first"):
        half.identity()
    half.connect()
    first = half.identity()
    assert first == DeviceIdentity(
        device="cover_right",
        url="fake://x",
        product="ALNITAK-98",
        firmware="213",
        simulated=False,
    )
    assert half.identity() is first  # asked once
    assert ports[0].written == [b">P000\n", b">V000\n"]


def test_both_halves_identities_left_then_right() -> None:
    left, _ = make_half(healthy(), name="left")
    right, _ = make_half(
        lambda w: b"*V98007\n" if w == b">V000\n" else healthy()(w), name="right"
    )
    cover = SerialFocalPlaneCover(left, right)
    cover.connect()
    ids = cover.identities()
    assert [(i.device, i.firmware) for i in ids] == [
        ("cover_left", "213"),
        ("cover_right", "007"),
    ]


def test_garbled_then_good_recovers_with_one_retry() -> None:
    replies = iter([b"*S9#0\x00\n", b"*S98001\n"])
    half, ports = make_half(lambda w: next(replies))
    assert half.status().is_closed
    assert half.retries_used == 1
    assert ports[0].written == [b">S000\n", b">S000\n"]


def test_silence_raises_timeout_after_all_attempts() -> None:
    half, ports = make_half(lambda w: None, retries=2)
    with pytest.raises(DeviceTimeout) as info:
        half.status()
    message = str(info.value)
    assert "cover left" in message
    assert "after 3 attempts" in message
    assert "powered" in message
    assert len(ports[0].written) == 3


def test_garbage_every_time_raises_protocol_error() -> None:
    half, _ = make_half(lambda w: b"hello\n", retries=1)
    with pytest.raises(ProtocolError, match="2 unusable replies"):
        half.status()


def test_error_reply_is_a_device_error_not_retried() -> None:
    half, ports = make_half(lambda w: b"*?98001\n")
    with pytest.raises(DeviceError, match="refused") as info:
        half.close()
    assert not isinstance(info.value, DeviceTimeout)
    assert len(ports[0].written) == 1


def test_stale_reply_of_another_kind_is_skipped() -> None:
    half, _ = make_half(lambda w: b"*C98000\n*S98002\n")
    assert half.status().cover is proto.CoverState.OPEN


def test_dropped_link_reconnects() -> None:
    calls = itertools.count()

    def respond(written: bytes) -> bytes | Exception:
        if next(calls) == 0:
            return serial.SerialException("device reports readiness but no data")
        return b"*S98001\n"

    half, ports = make_half(respond)
    assert half.status().is_closed
    assert len(ports) == 2  # the line was reopened
    assert ports[0].closed


def test_link_failing_every_time_is_a_link_error() -> None:
    half, _ = make_half(lambda w: OSError(5, "Input/output error"), retries=1)
    with pytest.raises(LinkError, match="failed 2 times"):
        half.status()


class ScriptedCover:
    """A cover whose successive status reads follow a script."""

    def __init__(self, script: list[tuple[bytes, bytes]]) -> None:
        self.script = script
        self.reads = 0

    def status(self) -> CoverStatus:
        left, right = self.script[min(self.reads, len(self.script) - 1)]
        self.reads += 1
        return CoverStatus(proto.decode_status(left), proto.decode_status(right))

    def close(self) -> None: ...


def run_wait(script: list[tuple[bytes, bytes]], **kw: float) -> Callable[[], object]:
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += max(s, 0.01)

    def call() -> object:
        return wait_for_cover(
            ScriptedCover(script),  # type: ignore[arg-type]
            "closed",
            timeout_s=kw.get("timeout_s", 10.0),
            poll_s=1.0,
            stalled_s=kw.get("stalled_s", 2.0),
            urls=("/dev/pts/5", "/dev/pts/6"),
            sleep=sleep,
            clock=lambda: now[0],
        )

    return call


MOVING, CLOSED, OPEN = b"*S98100\n", b"*S98001\n", b"*S98002\n"


def test_wait_returns_when_both_closed() -> None:
    status = run_wait([(MOVING, MOVING), (CLOSED, MOVING), (CLOSED, CLOSED)])()
    assert status.fully_closed  # type: ignore[attr-defined]


def test_wait_still_moving_times_out_with_actionable_message() -> None:
    with pytest.raises(DeviceTimeout) as info:
        run_wait([(CLOSED, MOVING)], timeout_s=30.0)()
    message = str(info.value)
    assert message.startswith("cover right: still moving 30.0 s after close on")
    assert "/dev/pts/6" in message
    assert "reset the instrument" in message


def test_wait_alnitak_timed_out_status() -> None:
    with pytest.raises(DeviceError, match=r"cover left: .*timed out \(status 3\)"):
        run_wait([(MOVING, MOVING), (b"*S98003\n", CLOSED)])()


def test_wait_jam_detected_before_the_timeout() -> None:
    with pytest.raises(DeviceError, match=r"stopped part-way.*jammed") as info:
        run_wait([(b"*S98000\n", CLOSED)], timeout_s=60.0, stalled_s=2.0)()
    assert not isinstance(info.value, DeviceTimeout)


def test_wait_stopped_open_is_reported_as_such() -> None:
    with pytest.raises(DeviceError, match="stopped open"):
        run_wait([(OPEN, CLOSED)])()

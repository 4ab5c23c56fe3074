"""The simulated CCD controller: states, readout, errors and its four faults."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest

from drivers.errors import ConfigError
from drivers.protocol.ccd import (
    COLS,
    ROWS,
    Ack,
    CommandFramer,
    ControllerState,
    DataBlock,
    DeviceReply,
    ErrorCode,
    ErrorReply,
    FrameInfo,
    Framer,
    Identity,
    ReadDone,
    ShutterPosition,
    ShutterState,
    Status,
    Temperature,
    crc32,
    decode_reply,
)
from simulators.ccd import TRANSMISSION, CcdModel
from simulators.clock import SimClock
from simulators.device import DeviceModel
from simulators.faults import Fault, FaultBook, FaultKind
from tests.docs_exchanges import exchanges

BLOCK = 1 << 20  # 1 MiB blocks: 34 blocks per frame keeps the tests quick
BLOCKS = -(-ROWS * COLS * 2 // BLOCK)


@dataclass
class FakeDetector:
    """Seeded frames, and a record of what each was asked for."""

    calls: list[dict[str, float]] = field(default_factory=list)
    fail: bool = False
    _base: npt.NDArray[np.uint16] | None = None

    def frame(
        self,
        *,
        exptime_s: float,
        temperature_k: float,
        light_e_per_s: float,
        frame_seed: int,
        run_key: int,
    ) -> npt.NDArray[np.uint16]:
        if self.fail:
            raise RuntimeError("detector broke")
        self.calls.append(
            {
                "exptime_s": exptime_s,
                "temperature_k": temperature_k,
                "light_e_per_s": light_e_per_s,
                "frame_seed": frame_seed,
                "run_key": run_key,
            }
        )
        if self._base is None:
            rng = np.random.default_rng(20240611)
            self._base = rng.integers(0, 65536, size=(ROWS, COLS), dtype=np.uint16)
        return self._base + np.uint16(frame_seed)


class Light:
    """Light at the shutter, settable by the test (e-/s/pixel)."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = value

    def __call__(self) -> float:
        return self.value


class Rig:
    """A CCD model on a frozen clock, spoken to in bytes."""

    def __init__(
        self, *faults: Fault, light: float = 0.0, readout_s: float = 40.0
    ) -> None:
        self.clock = SimClock(1e-9)  # wall time is negligible; tests advance it
        self.faults = FaultBook(faults)
        self.detector = FakeDetector()
        self.light = Light(light)
        self.model = CcdModel(
            self.clock,
            self.faults,
            self.detector,
            readout_s=readout_s,
            block_size=BLOCK,
            light_at_shutter=self.light,
        )
        self.mid = 0

    def raw(self, line: bytes) -> list[bytes]:
        return list(self.model.handle(line).chunks)

    def send(self, words: str) -> DeviceReply:
        self.mid = (self.mid + 1) & 0xFF
        chunks = self.raw(f">{self.mid:02X} {words}\n".encode())
        assert len(chunks) == 1
        reply = decode_reply(chunks[0])
        assert reply.mid == self.mid
        return reply

    def ok(self, words: str) -> DeviceReply:
        reply = self.send(words)
        assert not isinstance(reply, ErrorReply), reply
        return reply

    def error(self, words: str) -> int:
        reply = self.send(words)
        assert isinstance(reply, ErrorReply), reply
        assert reply.message
        return reply.code

    def status(self) -> Status:
        reply = self.ok("STATUS")
        assert isinstance(reply, Status)
        return reply

    def frame_info(self) -> FrameInfo:
        reply = self.ok("FRAME")
        assert isinstance(reply, FrameInfo)
        return reply

    def read(self, args: str = "") -> tuple[list[DataBlock], ReadDone, int | None]:
        self.mid = (self.mid + 1) & 0xFF
        line = f">{self.mid:02X} READ{' ' + args if args else ''}\n".encode()
        reply = self.model.handle(line)
        framer = Framer()
        got: list[DeviceReply] = []
        for chunk in reply.chunks:
            got += framer.feed_decoded(chunk)
        blocks = [b for b in got[:-1] if isinstance(b, DataBlock)]
        assert len(blocks) == len(got) - 1
        assert all(b.mid == self.mid for b in blocks)
        done = got[-1]
        assert isinstance(done, ReadDone)
        return blocks, done, reply.readout

    def expose(self, seconds: float, kind: str = "DARK") -> None:
        assert isinstance(self.ok(f"EXPOSE {seconds:.3f} {kind}"), Ack)

    def wait_ready(self, seconds: float) -> None:
        self.clock.advance(seconds + self.model.readout_s)
        assert self.status().state is ControllerState.READY


def test_model_fits_the_device_protocol() -> None:
    rig = Rig()
    model: DeviceModel = rig.model
    assert model.name == "ccd"
    assert isinstance(model.new_framer(), CommandFramer)
    assert rig.ok("PING") == Identity(1, "1.0.0", simulated=True)
    rig.raw(b"garbage\n")
    assert model.commands == 2


def test_ping_says_it_is_a_simulator_in_the_documented_bytes() -> None:
    """docs/protocols.md: the simulator adds the word SIMULATOR after its firmware."""
    (identity,) = [
        ex
        for ex in exchanges("ccd")
        if [d for _, d in ex.steps][:1] == [b">01 PING\n"] and len(ex.steps) == 2
    ]
    (ask, answer) = identity.steps
    assert Rig().raw(ask[1]) == [answer[1]] == [b"<01 OK MEGARA-CCD 1.0.0 SIMULATOR\n"]


def test_the_run_key_reaches_the_detector() -> None:
    rig = Rig()
    rig.model = CcdModel(
        rig.clock, rig.faults, rig.detector, readout_s=0.0, run_key=2**63 - 1
    )
    rig.expose(0.0)
    rig.frame_info()
    (call,) = rig.detector.calls
    assert (call["frame_seed"], call["run_key"]) == (1, 2**63 - 1)


@pytest.mark.parametrize("key", [-1, 2**64])
def test_a_run_key_out_of_range_is_refused(key: int) -> None:
    rig = Rig()
    with pytest.raises(ConfigError, match="run key"):
        CcdModel(rig.clock, rig.faults, rig.detector, run_key=key)


def test_idle_status() -> None:
    status = Rig().status()
    assert status.state is ControllerState.IDLE
    assert (status.exptime_s, status.elapsed_s, status.frame) == (0.0, 0.0, 0)
    assert status.shutter is ShutterState.CLOSED
    assert status.temperature_k == pytest.approx(163.15)


def test_dark_exposure_walks_through_the_states() -> None:
    rig = Rig(light=20.0)
    rig.expose(100.0)
    seen = rig.status()
    assert (seen.state, seen.frame, seen.dark) == (ControllerState.EXPOSING, 1, True)
    assert seen.shutter is ShutterState.CLOSED
    rig.clock.advance(60.0)
    seen = rig.status()
    assert seen.elapsed_s == pytest.approx(60.0, abs=1e-3)
    assert seen.exptime_s == 100.0
    rig.clock.advance(41.0)
    seen = rig.status()
    assert seen.state is ControllerState.READING
    assert seen.elapsed_s == 100.0
    assert seen.shutter is ShutterState.CLOSED
    rig.clock.advance(40.0)
    assert rig.status().state is ControllerState.READY
    info = rig.frame_info()
    assert (info.frame, info.rows, info.cols, info.bitpix) == (1, ROWS, COLS, 16)
    assert (info.nbytes, info.block_size, info.blocks) == (ROWS * COLS * 2, BLOCK, 34)
    assert info.dark
    assert info.exptime_s == 100.0
    assert info.shutter_max is ShutterState.CLOSED
    assert info.temp_start_k == info.temp_end_k == pytest.approx(163.15)
    (call,) = rig.detector.calls
    assert call["exptime_s"] == 100.0
    assert call["frame_seed"] == 1
    assert call["light_e_per_s"] == pytest.approx(
        20.0 * TRANSMISSION[ShutterState.CLOSED]
    )
    assert call["temperature_k"] == pytest.approx(163.15)


def test_light_exposure_opens_then_closes_the_shutter() -> None:
    rig = Rig(light=20.0)
    rig.expose(10.0, "LIGHT")
    status = rig.status()
    assert status.shutter is ShutterState.OPEN
    assert not status.dark
    rig.wait_ready(10.0)
    assert rig.status().shutter is ShutterState.CLOSED
    info = rig.frame_info()
    assert info.shutter_max is ShutterState.OPEN
    assert not info.dark
    assert rig.detector.calls[0]["light_e_per_s"] == pytest.approx(20.0)


def test_light_is_averaged_over_the_exposure_from_samples() -> None:
    rig = Rig(light=0.0)
    rig.expose(100.0, "LIGHT")  # sample 0 e-/s at t=0
    rig.light.value = 10.0
    rig.clock.advance(50.0)
    rig.status()  # sample 10 e-/s at t=50
    rig.clock.advance(60.0)
    rig.status()  # end: sample 10 e-/s, taken as t=100
    assert rig.model.last_exposure is not None
    # trapezoid: (50 * 5 + 50 * 10) / 100
    assert rig.model.last_exposure.light_e_per_s == pytest.approx(7.5)


def test_readout_reassembles_the_exact_frame_with_good_crcs() -> None:
    rig = Rig()
    rig.expose(5.0)
    rig.wait_ready(5.0)
    info = rig.frame_info()
    blocks, done, readout = rig.read()
    assert readout == 1
    assert done.blocks == len(blocks) == info.blocks
    assert [b.index for b in blocks] == list(range(info.blocks))
    assert all(b.crc_ok for b in blocks)
    assert all(len(b.payload) == BLOCK for b in blocks[:-1])
    data = b"".join(b.payload for b in blocks)
    assert len(data) == info.nbytes
    assert crc32(data) == info.crc
    pixels = np.frombuffer(data, dtype=">u2").reshape(ROWS, COLS)
    assert rig.model.last_frame is not None
    np.testing.assert_array_equal(pixels, rig.model.last_frame)


def test_read_one_block_again_and_the_rest_from_a_block() -> None:
    rig = Rig()
    rig.expose(1.0)
    rig.wait_ready(1.0)
    everything, _, _ = rig.read()
    (again,), done, _ = rig.read("7 1")
    assert done.blocks == 1
    assert (again.index, again.payload, again.crc) == (
        7,
        everything[7].payload,
        everything[7].crc,
    )
    tail, done, _ = rig.read("30")
    assert [b.index for b in tail] == [30, 31, 32, 33]
    assert [b.payload for b in tail] == [b.payload for b in everything[30:]]
    assert len(rig.detector.calls) == 1  # synthesised once, read many times


def test_expose_while_ready_discards_the_frame_and_starts_the_next() -> None:
    rig = Rig()
    rig.expose(1.0)
    rig.wait_ready(1.0)
    rig.expose(2.0)
    status = rig.status()
    assert (status.state, status.frame) == (ControllerState.EXPOSING, 2)
    assert rig.error("FRAME") == ErrorCode.NO_FRAME
    rig.wait_ready(2.0)
    assert rig.frame_info().frame == 2


def test_zero_second_exposure_is_a_bias() -> None:
    rig = Rig()
    rig.expose(0.0)
    assert rig.status().state is ControllerState.READING
    rig.wait_ready(0.0)
    assert rig.frame_info().exptime_s == 0.0


def test_clear_returns_to_idle() -> None:
    rig = Rig()
    rig.expose(1.0)
    rig.wait_ready(1.0)
    assert isinstance(rig.ok("CLEAR"), Ack)
    assert rig.status().state is ControllerState.IDLE
    assert rig.error("READ") == ErrorCode.NO_FRAME
    assert isinstance(rig.ok("CLEAR"), Ack)  # harmless when idle


@pytest.mark.parametrize("when", [10.0, 130.0])  # exposing, reading
def test_abort_stops_and_discards(when: float) -> None:
    rig = Rig()
    rig.expose(100.0, "LIGHT")
    rig.clock.advance(when)
    assert isinstance(rig.ok("ABORT"), Ack)
    status = rig.status()
    assert status.state is ControllerState.IDLE
    assert status.shutter is ShutterState.CLOSED
    rig.clock.advance(500.0)
    assert rig.status().state is ControllerState.IDLE
    assert rig.error("FRAME") == ErrorCode.NO_FRAME
    # The pixels are made while the CCD is read out: aborted while exposing,
    # none were; while reading, they were (and are dropped with the frame).
    rig.model.wait_synthesis()
    assert len(rig.detector.calls) == (0 if when < 100.0 else 1)


def test_abort_with_nothing_to_abort() -> None:
    rig = Rig()
    assert rig.error("ABORT") == ErrorCode.NOTHING_TO_ABORT
    rig.expose(1.0)
    rig.wait_ready(1.0)
    assert rig.error("ABORT") == ErrorCode.NOTHING_TO_ABORT
    assert rig.status().state is ControllerState.READY


def test_busy_refusals() -> None:
    rig = Rig()
    rig.expose(100.0)
    assert rig.error("EXPOSE 1.000 DARK") == ErrorCode.BUSY
    assert rig.error("SHUTTER OPEN") == ErrorCode.BUSY
    assert rig.error("CLEAR") == ErrorCode.BUSY
    assert rig.error("FRAME") == ErrorCode.NO_FRAME
    rig.clock.advance(101.0)
    assert rig.status().state is ControllerState.READING
    assert rig.error("EXPOSE 1.000 DARK") == ErrorCode.BUSY
    assert rig.error("SHUTTER CLOSE") == ErrorCode.BUSY
    assert rig.error("READ") == ErrorCode.NO_FRAME
    assert rig.status().frame == 1


def test_syntax_errors() -> None:
    rig = Rig()
    assert rig.error("FOO") == ErrorCode.UNKNOWN_COMMAND
    assert rig.error("EXPOSE 36000.001 DARK") == ErrorCode.BAD_ARGUMENT
    assert rig.error("EXPOSE -1 DARK") == ErrorCode.BAD_ARGUMENT
    assert rig.error("EXPOSE 1 BIAS") == ErrorCode.BAD_ARGUMENT
    assert rig.error("READ 0 0") == ErrorCode.BAD_ARGUMENT
    (chunk,) = rig.raw(b">zz STATUS\n")
    assert chunk.startswith(b"?-- ERR 100 ")
    assert rig.status().state is ControllerState.IDLE


def test_block_out_of_range() -> None:
    rig = Rig()
    rig.expose(1.0)
    rig.wait_ready(1.0)
    assert rig.error(f"READ {BLOCKS}") == ErrorCode.BLOCK_OUT_OF_RANGE
    assert rig.error(f"READ {BLOCKS - 2} 3") == ErrorCode.BLOCK_OUT_OF_RANGE


def test_internal_error_puts_the_controller_in_error_until_clear() -> None:
    rig = Rig()
    rig.detector.fail = True
    rig.expose(1.0)
    rig.wait_ready(1.0)
    assert rig.error("FRAME") == ErrorCode.INTERNAL
    assert rig.status().state is ControllerState.ERROR
    assert rig.error("EXPOSE 1.000 DARK") == ErrorCode.IN_ERROR_STATE
    rig.ok("CLEAR")
    rig.detector.fail = False
    rig.expose(1.0)
    rig.wait_ready(1.0)
    assert rig.frame_info().frame == 2


def test_handle_never_raises_on_garbage() -> None:
    rig = Rig()
    rng = np.random.default_rng(7)
    for _ in range(300):
        line = rng.integers(0, 256, size=int(rng.integers(0, 40)), dtype=np.uint8)
        chunks = rig.raw(b">" + line.tobytes() + b"\n")
        assert len(chunks) == 1
        assert isinstance(decode_reply(chunks[0]), ErrorReply | Ack | Status)


# -- faults -----------------------------------------------------------------------


def test_shutter_stuck_open_on_a_dark_lets_light_in() -> None:
    rig = Rig(Fault(device="ccd", kind=FaultKind.SHUTTER_STUCK_OPEN), light=20.0)
    rig.expose(10.0, "DARK")  # acknowledged, but the shutter sticks open
    status = rig.status()
    assert status.shutter is ShutterState.OPEN
    assert status.dark
    rig.wait_ready(10.0)
    assert rig.status().shutter is ShutterState.OPEN
    info = rig.frame_info()
    assert info.dark
    assert info.shutter_max is ShutterState.OPEN
    assert rig.detector.calls[0]["light_e_per_s"] == pytest.approx(20.0)
    assert isinstance(rig.ok("SHUTTER CLOSE"), Ack)
    assert rig.ok("SHUTTER") == ShutterPosition(rig.mid, ShutterState.OPEN)


def test_shutter_stuck_open_fires_on_shutter_close() -> None:
    stuck = Fault(device="ccd", kind=FaultKind.SHUTTER_STUCK_OPEN, after_commands=2)
    rig = Rig(stuck)
    rig.ok("SHUTTER OPEN")  # command 1: not armed yet, and OPEN does not fire it
    rig.ok("SHUTTER CLOSE")  # command 2: closes
    assert rig.ok("SHUTTER") == ShutterPosition(rig.mid, ShutterState.CLOSED)
    rig.ok("SHUTTER OPEN")
    rig.ok("SHUTTER CLOSE")  # command 5: fires
    assert rig.ok("SHUTTER") == ShutterPosition(rig.mid, ShutterState.OPEN)
    rig.expose(1.0)
    assert rig.status().shutter is ShutterState.OPEN


def test_bad_crc_on_one_readout_then_correct_on_refetch() -> None:
    bad = Fault(device="ccd", kind=FaultKind.BAD_CRC, on_readout=2, params={"block": 5})
    rig = Rig(bad)
    rig.expose(1.0)
    rig.wait_ready(1.0)
    first, _, readout = rig.read()
    assert readout == 1
    assert all(b.crc_ok for b in first)
    rig.expose(1.0)
    rig.wait_ready(1.0)
    (elsewhere,), _, _ = rig.read("4 1")  # the fault waits for its block
    assert elsewhere.crc_ok
    second, _, readout = rig.read()
    assert readout == 2
    assert [b.index for b in second if not b.crc_ok] == [5]
    (again,), _, _ = rig.read("5 1")
    assert again.crc_ok
    assert again.payload == second[5].payload
    assert rig.faults.pending() == []


def test_temperature_excursion_raises_reports_and_frame() -> None:
    hot = Fault(
        device="ccd",
        kind=FaultKind.TEMPERATURE_EXCURSION,
        at_time=100.0,
        params={"delta_k": 12.0, "duration_s": 300.0},
    )
    rig = Rig(hot)
    assert rig.ok("TEMP") == Temperature(rig.mid, pytest.approx(163.15))  # type: ignore[arg-type]
    rig.clock.advance(100.0)
    temp = rig.ok("TEMP")
    assert isinstance(temp, Temperature)
    assert temp.temperature_k == pytest.approx(175.15)
    assert rig.status().temperature_k == pytest.approx(175.15)
    rig.expose(10.0)
    rig.wait_ready(10.0)
    info = rig.frame_info()
    assert info.temp_start_k == info.temp_end_k == pytest.approx(175.15)
    assert rig.detector.calls[0]["temperature_k"] == pytest.approx(175.15)
    rig.clock.advance(400.0)
    assert rig.status().temperature_k == pytest.approx(163.15)


def test_temperature_too_high_refuses_expose() -> None:
    hot = Fault(
        device="ccd", kind=FaultKind.TEMPERATURE_EXCURSION, params={"delta_k": 30.0}
    )
    rig = Rig(hot)
    assert rig.error("EXPOSE 1.000 DARK") == ErrorCode.TEMPERATURE_OUT_OF_RANGE
    assert rig.status().state is ControllerState.IDLE


def test_light_leak_adds_flux_to_a_dark() -> None:
    leak = Fault(
        device="ccd", kind=FaultKind.LIGHT_LEAK, on_readout=2, params={"flux": 7.0}
    )
    rig = Rig(leak, light=0.0)
    rig.expose(10.0)
    rig.wait_ready(10.0)
    rig.frame_info()
    rig.expose(10.0)
    rig.wait_ready(10.0)
    rig.frame_info()
    lights = [c["light_e_per_s"] for c in rig.detector.calls]
    assert lights == [pytest.approx(0.0), pytest.approx(7.0)]
    assert rig.frame_info().shutter_max is ShutterState.CLOSED  # the shutter was shut


def test_windowed_fault_opens_on_time_even_between_exposures() -> None:
    leak = Fault(
        device="ccd",
        kind=FaultKind.LIGHT_LEAK,
        at_time=100.0,
        params={"flux": 7.0, "duration_s": 50.0},
    )
    rig = Rig(leak)
    rig.clock.advance(100.0)
    rig.status()  # the window opens now: in force from t=100 to t=150
    rig.clock.advance(20.0)
    rig.expose(100.0)  # t=120: 7 e-/s
    rig.clock.advance(40.0)
    rig.status()  # t=160: window closed, 0 e-/s
    rig.wait_ready(60.0)  # end at t=220: 0 e-/s
    assert rig.model.last_exposure is not None
    # trapezoid: 40 s averaging 3.5 e-/s, then 60 s of nothing
    assert rig.model.last_exposure.light_e_per_s == pytest.approx(1.4)

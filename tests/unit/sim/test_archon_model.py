"""The simulated Archon controller, command by command, on a clock the test moves."""

from __future__ import annotations

import configparser
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest

from drivers.protocol import archon as protocol
from drivers.protocol.archon_acf import parse_acf
from drivers.protocol.archon_framer import Framer
from drivers.protocol.archon_status import FrameStatus, parse_key_values
from simulators.archon import MEGARA_ACF, ArchonModel
from simulators.archon_frames import FrameRecord
from simulators.clock import SimClock
from simulators.device import DeviceModel
from simulators.faults import Fault, FaultBook, FaultKind
from simulators.synthesis import (
    DATA_SECTIONS,
    OVERSCAN_SECTIONS,
    SHAPE,
    Detector,
    DetectorConfig,
)

ROWS, COLS = SHAPE
FRAME_BYTES = ROWS * COLS * 2
FRAME_BLOCKS = -(-FRAME_BYTES // 1024)


@dataclass
class FakeDetector:
    """A cheap, recognisable raw frame; records what each frame was made with."""

    calls: list[dict[str, float]] = field(default_factory=list)

    def frame(
        self,
        *,
        exptime_s: float,
        temperature_k: float,
        light_e_per_s: float,
        frame_seed: int,
        run_key: int,
    ) -> npt.NDArray[np.uint16]:
        self.calls.append(
            {
                "exptime_s": exptime_s,
                "temperature_k": temperature_k,
                "light_e_per_s": light_e_per_s,
                "frame_seed": frame_seed,
                "run_key": run_key,
            }
        )
        return pattern(frame_seed)


def pattern(seed: int) -> npt.NDArray[np.uint16]:
    """Every pixel different from its neighbours: 3 x row + column + seed (mod 2**16)."""
    rows = np.arange(ROWS, dtype=np.uint16) * np.uint16(3) + np.uint16(seed)
    frame: npt.NDArray[np.uint16] = np.add.outer(rows, np.arange(COLS, dtype=np.uint16))
    return frame


class Host:
    """Sends command lines to a model and decodes its replies with the codec."""

    def __init__(self, model: ArchonModel) -> None:
        self.model = model
        self.id = 0

    def raw(self, text: str) -> bytes:
        self.id = protocol.next_id(self.id)
        command = protocol.encode_command(protocol.Command(self.id, text))
        return b"".join(self.model.handle(command).chunks)

    def reply(self, text: str, *, blocks: int = 0) -> protocol.Reply:
        data = self.raw(text)
        framer = Framer()
        if blocks:
            framer.expect_binary(self.id, blocks)
        replies = framer.feed(data)
        assert len(replies) == 1, (text, data[:80])
        assert replies[0].id == self.id
        return replies[0]

    def ok(self, *texts: str) -> str:
        answers = [self.reply(text) for text in texts]
        assert all(answer.ok for answer in answers), texts
        return answers[-1].text

    def refused(self, text: str) -> bool:
        return self.raw(text) == f"?{self.id:02X}\n".encode()

    def frame(self) -> FrameStatus:
        return FrameStatus.from_key_values(parse_key_values(self.ok("FRAME")))

    def status(self) -> dict[str, str]:
        return parse_key_values(self.ok("STATUS"))

    def expose(
        self, centiseconds: int, *, readout: bool = True, light: bool = False
    ) -> None:
        """What sdss-archon's ``expose()`` sends (with OpenShutter for light)."""
        self.ok(
            "HOLDTIMING",
            "FASTLOADPARAM AUTOFLUSH 0",
            "FASTLOADPARAM EXPOSURES 0",
            "FASTLOADPARAM READOUT 0",
            "FASTLOADPARAM ABORTEXPOSURE 0",
            f"FASTLOADPARAM OPENSHUTTER {int(light)}",
            f"FASTLOADPARAM READOUT {int(readout)}",
            f"FASTLOADPARAM INTCS {centiseconds}",
            "FASTLOADPARAM EXPOSURES 1",
            "RELEASETIMING",
        )

    def fetch(self, number: int) -> bytes:
        buffer = self.frame().buffer(number)
        blocks = protocol.blocks_for(buffer.nbytes)
        self.ok(f"LOCK{number}")
        data = self.reply(buffer.fetch_command(), blocks=blocks).binary
        self.ok("LOCK0")
        assert data is not None
        return data[: buffer.nbytes]


@pytest.fixture
def clock() -> SimClock:
    return SimClock(scale=1e-9)  # stands still unless the test advances it


def make(clock: SimClock, **kwargs: object) -> tuple[ArchonModel, Host]:
    kwargs.setdefault("detector", FakeDetector())
    model = ArchonModel(clock, readout_s=40.0, **kwargs)  # type: ignore[arg-type]
    return model, Host(model)


@pytest.fixture
def host(clock: SimClock) -> Iterator[Host]:
    model, host = make(clock)
    yield host
    model.wait_synthesis(10.0)


def test_is_a_device_model(host: Host) -> None:
    model: DeviceModel = host.model
    assert model.name == "ccd"
    assert model.new_framer().feed(b">01STATUS\n>02FR") == [b">01STATUS\n"]


# -- configuration memory ------------------------------------------------------


def test_rconfig_answers_every_line_as_loaded_and_empty_ones_bare(host: Host) -> None:
    lines = parse_acf(MEGARA_ACF.read_text())
    assert host.raw("RCONFIG0000") == f"<{host.id:02X}BIGBUF=0\n".encode()
    for index, (key, value) in enumerate(lines):
        assert host.ok(f"RCONFIG{index:04X}") == f"{key}={value}"
    assert host.raw(f"RCONFIG{len(lines):04X}") == f"<{host.id:02X}\n".encode()
    assert host.raw("RCONFIG3FFF") == f"<{host.id:02X}\n".encode()
    assert host.refused("RCONFIG4000")  # there are 16384 lines, 0000..3FFF


def test_sdss_archon_reads_the_acf_into_the_same_lines() -> None:
    """sdss-archon's write_config numbers the lines as configparser reads them."""
    parser = configparser.ConfigParser()
    parser.read_string(MEGARA_ACF.read_text())
    theirs = [
        (key.upper().replace("\\", "/"), value.strip('"'))
        for key, value in parser["CONFIG"].items()
    ]
    assert theirs == parse_acf(MEGARA_ACF.read_text())


def test_apply_and_boot_commands(host: Host, clock: SimClock) -> None:
    host.ok("APPLYMOD2", "APPLYMOD11", "APPLYMOD0A", "APPLYSYSTEM", "POLLOFF")
    assert host.refused("APPLYMOD13")
    host.expose(0)
    clock.advance(41)
    assert host.frame().wbuf == 1
    assert host.raw("WARMBOOT") == b""  # restarts without a word
    assert host.frame().wbuf == 0
    assert host.ok("RCONFIG0000") == "BIGBUF=0"
    assert host.status()["POWER"] == "2"  # configured, CCD off
    host.ok("POWERON")


def test_wconfig_and_clearconfig(host: Host) -> None:
    host.ok("WCONFIG3FFFPARAMETER0=EXPOSURES=0", "WCONFIG0001CONFIG/2=2,2")
    assert host.ok("RCONFIG3FFF") == "PARAMETER0=EXPOSURES=0"
    assert host.ok("RCONFIG0001") == "CONFIG/2=2,2"
    host.ok("CLEARCONFIG")
    assert all(host.ok(f"RCONFIG{n:04X}") == "" for n in (0, 1, 0x3FFF))
    assert host.refused("WCONFIG0001NOEQUALS")


def test_a_blank_controller_is_not_configured(clock: SimClock) -> None:
    _, host = make(clock, blank=True)
    assert host.ok("RCONFIG0000") == ""
    assert host.status()["POWER"] == "1"
    assert host.refused("FASTLOADPARAM EXPOSURES 1")
    assert host.refused("POWERON")
    assert host.refused("APPLYALL")  # nothing to apply: no LINECOUNT


def test_unknown_and_unreadable_lines_get_no_reply(host: Host) -> None:
    assert host.raw("NOSUCHVERB") == b""
    assert host.model.handle(b">zzSTATUS\n").chunks == []
    assert host.model.handle(b"STATUS\n").chunks == []
    assert host.refused("LOCK7")  # a known verb with a bad argument
    assert host.refused("FETCH123")


# -- parameters and timing -------------------------------------------------------


def test_parameters_are_the_declared_ones_in_any_case(host: Host) -> None:
    core = host.model.core
    assert host.refused("FASTLOADPARAM NOSUCHPARAMETER 1")
    host.ok("FASTLOADPARAM intcs 250", "FASTLOADPARAM OpenShutter 1")
    assert core.param("IntCS") == 250
    assert core.param("OPENSHUTTER") == 1
    host.ok("FASTPREPPARAM INTCS 7")  # prepared only
    assert core.param("IntCS") == 250
    host.ok("LOADPARAM INTCS")  # back to the configuration's value
    assert core.param("IntCS") == 0
    host.ok("LOADPARAM INTCS 9")
    assert core.param("IntCS") == 9
    host.ok("WCONFIG0038PARAMETER8=FlushCount=5", "LOADPARAMS")
    assert core.param("FlushCount") == 5
    assert core.param("OpenShutter") == 0
    assert host.refused("FASTLOADPARAM INTCS 1048576")  # 20 bits


def test_frame_fields_follow_integration_and_readout(
    host: Host, clock: SimClock
) -> None:
    first = host.frame()
    assert (first.wbuf, first.latest_complete()) == (0, None)
    host.expose(1000)  # 10 s
    clock.advance(5)
    during = host.frame()
    assert during.wbuf == 0
    assert during.timer == pytest.approx(5e8, abs=10)
    clock.advance(25)  # integration ended at 10 s: readout half done at 30 s
    reading = host.frame()
    buffer = reading.buffer(1)
    assert reading.wbuf == 1
    assert not buffer.complete
    assert (buffer.frame, buffer.width, buffer.height) == (1, 4196, 4212)
    assert buffer.lines == pytest.approx(4212 / 2, abs=2)
    assert buffer.fe_timestamp - buffer.re_timestamp == pytest.approx(10e8, abs=10)
    assert buffer.timestamp == buffer.fe_timestamp
    clock.advance(20)
    done = host.frame().buffer(1)
    assert done.complete
    assert (done.pixels, done.lines) == (4196, 4212)
    assert done.fetch_command() == "FETCHA0000000000086D7"


def test_readout_of_held_charge_counts_the_wait_as_dark(
    host: Host, clock: SimClock
) -> None:
    host.expose(1000, readout=False)
    clock.advance(60)
    assert host.frame().wbuf == 0  # integrated, not read
    host.ok("HOLDTIMING", "FASTLOADPARAM READOUT 1", "RELEASETIMING")
    clock.advance(41)
    record = host.model.record(1)
    assert record is not None
    assert record.exposure.dark_s == pytest.approx(60.0, abs=1e-6)
    assert record.exposure.integration == pytest.approx((0.0, 10.0), abs=1e-6)
    assert host.frame().buffer(1).complete


def test_abort_ends_the_integration(host: Host, clock: SimClock) -> None:
    host.expose(1000)
    clock.advance(3)
    host.ok("FASTLOADPARAM READOUT 1", "FASTLOADPARAM ABORTEXPOSURE 1")
    assert host.model.core.param("AbortExposure") == 0
    record = host.model.record(1)
    assert record is not None
    assert record.exposure.integration == pytest.approx((0.0, 3.0), abs=1e-6)


def test_abort_without_readout_leaves_the_buffers_alone(
    host: Host, clock: SimClock
) -> None:
    host.expose(1000)
    clock.advance(3)
    host.ok("FASTLOADPARAM READOUT 0", "FASTLOADPARAM ABORTEXPOSURE 1")
    clock.advance(100)
    assert host.frame().wbuf == 0
    assert host.model.core.param("Exposures") == 0


def test_hold_pauses_the_integration(host: Host, clock: SimClock) -> None:
    host.expose(1000)
    clock.advance(2)
    host.ok("HOLDTIMING")
    clock.advance(100)
    assert host.frame().wbuf == 0
    host.ok("RELEASETIMING")
    clock.advance(7.9)
    assert host.frame().wbuf == 0
    clock.advance(0.2)
    assert host.frame().wbuf == 1
    record = host.model.record(1)
    assert record is not None
    assert record.exposure.dark_s == pytest.approx(110.0, abs=1e-6)


def test_resettiming_drops_a_readout(host: Host, clock: SimClock) -> None:
    host.expose(100)
    clock.advance(10)
    host.ok("RESETTIMING")
    clock.advance(100)
    buffer = host.frame().buffer(1)
    assert (buffer.frame, buffer.complete) == (1, False)
    assert host.refused(buffer.fetch_command())


def test_buffers_rotate_and_skip_the_locked_one(host: Host, clock: SimClock) -> None:
    def one_frame() -> int:
        host.expose(0)
        clock.advance(41)
        return host.frame().wbuf

    assert one_frame() == 1
    host.ok("LOCK2")
    assert host.frame().rbuf == 2
    assert [one_frame(), one_frame()] == [3, 1]
    host.ok("LOCK0")
    assert host.frame().rbuf == 0
    assert one_frame() == 2
    assert [host.frame().buffer(n).frame for n in (1, 2, 3)] == [3, 4, 2]


# -- geometry and pixels ---------------------------------------------------------


def window(host: Host, clock: SimClock, *lines: str) -> FrameStatus:
    host.ok(*(f"WCONFIG{n:04X}{text}" for n, text in enumerate(lines, start=2)))
    host.ok("APPLYCDS")
    host.expose(0)
    clock.advance(41)
    return host.frame()


def test_linecount_and_pixelcount_decide_the_frame(host: Host, clock: SimClock) -> None:
    frame = window(host, clock, "LINECOUNT=3", "PIXELCOUNT=5").buffer(1)
    assert (frame.width, frame.height, frame.nbytes) == (5, 6, 60)
    data = host.fetch(1)
    pixels = np.frombuffer(data, dtype="<u2").reshape(6, 5)
    raw = pattern(1)
    # Each amplifier's first lines and pixels: the frame's two far corners.
    expected = np.vstack([raw[0:3, 0:5], raw[4209:4212, 4191:4196]])
    np.testing.assert_array_equal(pixels, expected)


def test_fetch_pads_the_last_block_with_ff(host: Host, clock: SimClock) -> None:
    window(host, clock, "LINECOUNT=3", "PIXELCOUNT=5")
    block = host.reply("FETCHA000000000000001", blocks=1).binary
    assert block is not None
    assert len(block) == 1024
    assert block[60:] == b"\xff" * 964
    assert host.refused("FETCHA000000000000000")


def test_top_first_frame_mode_puts_taps_side_by_side(
    host: Host, clock: SimClock
) -> None:
    frame = window(host, clock, "LINECOUNT=2", "PIXELCOUNT=4", "FRAMEMODE=0")
    assert (frame.buffer(1).width, frame.buffer(1).height) == (8, 2)
    pixels = np.frombuffer(host.fetch(1), dtype="<u2").reshape(2, 8)
    raw = pattern(1)
    right = raw[4211:4209:-1, 4192:4196]  # amplifier 2, its pixels right to left
    np.testing.assert_array_equal(pixels, np.hstack([raw[0:2, 0:4], right]))


def test_32_bit_samples(host: Host, clock: SimClock) -> None:
    frame = window(host, clock, "LINECOUNT=2", "PIXELCOUNT=3", "SAMPLEMODE=1")
    assert frame.buffer(1).sample is protocol.SampleMode.BITS32
    pixels = np.frombuffer(host.fetch(1), dtype="<u4")
    assert pixels.size == 12
    assert pixels[:3].tolist() == [1, 2, 3]


def test_unsupported_taps_are_refused_and_change_nothing(host: Host) -> None:
    host.ok('WCONFIG0002TAPLINE2="AD3L, 1, 0"', "WCONFIG0003TAPLINES=3")
    assert host.refused("APPLYCDS")
    assert host.refused("APPLYALL")
    assert host.model.geometry.height == 4212


def test_full_frame_fetch_blocks_and_padding(host: Host, clock: SimClock) -> None:
    host.expose(100)
    clock.advance(42)
    buffer = host.frame().buffer(1)
    assert protocol.blocks_for(buffer.nbytes) == FRAME_BLOCKS == 34519
    data = host.reply(buffer.fetch_command(), blocks=FRAME_BLOCKS).binary
    assert data is not None
    assert len(data) == FRAME_BLOCKS * 1024
    assert data[FRAME_BYTES:] == b"\xff" * (FRAME_BLOCKS * 1024 - FRAME_BYTES)
    pixels = np.frombuffer(data[:FRAME_BYTES], dtype="<u2").reshape(ROWS, COLS)
    np.testing.assert_array_equal(pixels, pattern(1))
    # From an address inside the frame: the bytes from there on.
    second = host.reply("FETCHA000040000000001", blocks=1).binary
    assert second == data[1024:2048]


def test_fetch_refusals(host: Host, clock: SimClock) -> None:
    assert host.refused("FETCHA000000000000001")  # never written
    assert host.refused("FETCH1000000000000001")  # in no buffer
    host.expose(0)
    clock.advance(1)
    assert host.refused("FETCHA000000000000001")  # being written
    clock.advance(40)
    assert host.refused("FETCHA000000000080001")  # runs past the buffer


# -- sensors and the shutter ---------------------------------------------------


def test_status_power_and_ccd_temperature(host: Host) -> None:
    status = host.status()
    assert (status["POWER"], status["POWERGOOD"]) == ("4", "1")
    assert float(status["MOD2/TEMPA"]) == pytest.approx(163.15 - 273.15)
    assert float(status["BACKPLANE_TEMP"]) > 0
    host.ok("POWEROFF")
    assert host.status()["POWER"] == "2"
    host.ok("POWERON")
    host.model.power_good = False
    assert host.status()["POWERGOOD"] == "0"


def test_system_lists_modules(host: Host) -> None:
    system = parse_key_values(host.ok("SYSTEM"))
    assert system["MOD2_TYPE"] == "11"  # HeaterX: temperatures and shutter lines
    assert system["MOD_PRESENT"] == "01F"
    assert [system[f"MOD{n}_TYPE"] for n in range(6, 13)] == ["0"] * 7


def test_temperature_excursion_shows_in_status(clock: SimClock) -> None:
    faults = FaultBook([Fault(device="ccd", kind=FaultKind.TEMPERATURE_EXCURSION)])
    _, host = make(clock, faults=faults)
    assert float(host.status()["MOD2/TEMPA"]) == pytest.approx(-100.0)


def dinputs(host: Host) -> int:
    return int(host.status()["MOD2/DINPUTS"])


def test_shutter_stays_shut_for_a_dark(clock: SimClock) -> None:
    model, host = make(clock, light_at_shutter=lambda: 100.0)
    assert dinputs(host) == 4
    host.expose(1000)
    clock.advance(5)
    assert dinputs(host) == 4
    clock.advance(10)
    model.advance()
    record = model.record(1)
    assert record is not None
    assert not record.exposure.shutter_opened
    assert record.exposure.light_e_per_s == pytest.approx(100 * 1e-4)


def test_shutter_opens_for_a_light_frame(clock: SimClock) -> None:
    model, host = make(clock, light_at_shutter=lambda: 100.0)
    host.expose(1000, light=True)
    clock.advance(5)
    assert dinputs(host) == 8
    clock.advance(10)
    assert dinputs(host) == 4
    record = model.record(1)
    assert record is not None
    assert record.exposure.shutter_opened
    assert record.exposure.light_e_per_s == pytest.approx(100.0, rel=1e-3)


def test_stuck_shutter_shows_open_in_a_dark(clock: SimClock) -> None:
    faults = FaultBook([Fault(device="ccd", kind=FaultKind.SHUTTER_STUCK_OPEN)])
    model, host = make(clock, faults=faults, light_at_shutter=lambda: 100.0)
    host.expose(1000)
    clock.advance(15)
    assert dinputs(host) == 8
    record = model.record(1)
    assert record is not None
    assert record.exposure.shutter_opened


# -- the pixels: synthesis truth -----------------------------------------------


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(DetectorConfig(seed=3))


def clipped_mean(values: npt.NDArray[np.uint16]) -> float:
    data = values.astype(np.float64).ravel()
    centre = float(np.median(data))
    spread = 1.4826 * float(np.median(np.abs(data - centre)))
    return float(data[np.abs(data - centre) < 5 * spread].mean())


def take(host: Host, clock: SimClock, centiseconds: int) -> tuple[FrameRecord, bytes]:
    host.expose(centiseconds)
    clock.advance(centiseconds / 100 + 40)  # the next charge collects from here
    number = host.frame().wbuf
    record = host.model.record(number)
    assert record is not None
    return record, host.fetch(number)


def test_bias_and_900_s_dark_levels_match_the_synthesis(
    clock: SimClock, detector: Detector
) -> None:
    model, host = make(clock, detector=detector, run_key=5)
    truth = detector.truth()
    for centiseconds in (0, 90000):
        record, data = take(host, clock, centiseconds)
        exposure = record.exposure
        assert exposure.dark_s == pytest.approx(centiseconds / 100, abs=1e-6)
        pixels = np.frombuffer(data, dtype="<u2").reshape(ROWS, COLS)
        again = detector.frame(
            exptime_s=exposure.dark_s,
            temperature_k=exposure.temperature_k,
            light_e_per_s=exposure.light_e_per_s,
            frame_seed=record.number,
            run_key=5,
        )
        np.testing.assert_array_equal(pixels, again)
        for amp in (0, 1):
            overscan = clipped_mean(pixels[OVERSCAN_SECTIONS[amp]])
            assert overscan == pytest.approx(truth.bias_adu[amp], abs=0.5)
            dark = clipped_mean(pixels[DATA_SECTIONS[amp]]) - overscan
            expected = truth.dark_rate(163.15) * exposure.dark_s / truth.gains[amp]
            assert dark == pytest.approx(expected, abs=0.05)
    assert expected > 0.25  # the 900 s dark is measurably above the bias
    model.wait_synthesis(10.0)

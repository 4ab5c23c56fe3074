"""The CCD-controller driver's failure paths, on a scripted byte port.

The fake controller below decodes every command with the codec and answers
with the codec's encoders, so the driver reads the same bytes a real
controller sends. Each test then tampers with one exchange (a reply lost,
garbled, stale, a link that drops, a readout that stalls or corrupts a block)
and checks what the driver does about it, down to the bytes it sends.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import serial

from drivers.ccd import ControllerError, SerialCcdController
from drivers.config import CcdConfig
from drivers.errors import ConfigError, DeviceError, DeviceTimeout, ProtocolError
from drivers.interfaces import DeviceIdentity
from drivers.protocol import ccd as proto
from drivers.readout import Readout
from drivers.transport import LinkError, SerialLink
from tests.unit.drivers.fakes import FakePort

#: The largest block the codec allows: a full frame is 9 blocks.
BLOCK = proto.MAX_BLOCK_SIZE
BLOCKS = proto.block_count(proto.FRAME_BYTES, BLOCK)

Answer = bytes | Exception | None
#: Replaces the controller's handling of one command (see FakeController.tamper).
Tamper = Callable[["FakeController", proto.Command], Answer]


@functools.cache
def frame_bytes() -> bytes:
    """One synthetic raw frame, big-endian uint16, seeded."""
    rng = np.random.default_rng(20261128)
    pixels = rng.integers(1000, 3000, size=(proto.ROWS, proto.COLS), dtype=np.uint16)
    return pixels.astype(">u2").tobytes()


class FakeController:
    """A CCD controller reduced to a few fields, speaking the real codec.

    ``tamper[verb]`` holds one-shot replacements for the handling of the next
    commands with that verb. ``corrupt`` holds blocks to send once with a
    wrong CRC; ``stall_after`` makes every READ stop after that many blocks
    (no closing line), as a dropped link does; ``info`` overrides FRAME fields.
    """

    def __init__(self) -> None:
        self.state = proto.ControllerState.IDLE
        self.frame = 0
        self.exptime_s = 0.0
        self.dark = False
        self.shutter = proto.ShutterState.CLOSED
        self.temperature_k = 163.15
        self.product = proto.PRODUCT
        self.simulated = False
        self.data = b""
        self.corrupt: set[int] = set()
        self.stall_after: int | None = None
        self.info: dict[str, Any] = {}
        self.received: list[proto.Command] = []
        self.tamper: dict[proto.Verb, list[Tamper]] = {}

    def __call__(self, written: bytes) -> Answer:
        command = proto.decode_command(written)
        self.received.append(command)
        hooks = self.tamper.get(command.verb, [])
        if hooks:
            return hooks.pop(0)(self, command)
        return self.execute(command)

    def verbs(self) -> list[proto.Verb]:
        return [c.verb for c in self.received]

    def with_frame(self) -> FakeController:
        """A frame READY in memory."""
        self.data = frame_bytes()
        self.frame, self.exptime_s, self.dark = 1, 1.0, True
        self.state = proto.ControllerState.READY
        return self

    def frame_info(self, mid: int) -> proto.FrameInfo:
        info = proto.FrameInfo(
            mid,
            frame=self.frame,
            rows=proto.ROWS,
            cols=proto.COLS,
            bitpix=proto.BITPIX,
            nbytes=len(self.data),
            block_size=BLOCK,
            blocks=proto.block_count(len(self.data), BLOCK),
            exptime_s=self.exptime_s,
            dark=self.dark,
            temp_start_k=self.temperature_k,
            temp_end_k=self.temperature_k,
            shutter_max=proto.ShutterState.CLOSED,
            crc=proto.crc32(self.data),
        )
        return replace(info, **self.info)

    def execute(self, command: proto.Command) -> bytes:
        mid = command.mid
        reply: proto.DeviceReply = proto.Ack(mid)
        match command:
            case proto.Ping():
                reply = proto.Identity(
                    mid, "1.0.0", self.product, simulated=self.simulated
                )
            case proto.GetStatus():
                reply = proto.Status(
                    mid,
                    state=self.state,
                    exptime_s=self.exptime_s,
                    elapsed_s=0.0,
                    shutter=self.shutter,
                    temperature_k=self.temperature_k,
                    frame=self.frame,
                    dark=self.dark,
                )
            case proto.Expose(exptime_s=seconds, kind=kind):
                self.frame += 1
                self.exptime_s, self.dark = seconds, kind is proto.ExposureKind.DARK
                self.state = proto.ControllerState.EXPOSING
            case proto.Abort():
                busy = (proto.ControllerState.EXPOSING, proto.ControllerState.READING)
                if self.state not in busy:
                    reply = proto.ErrorReply(
                        mid,
                        proto.ErrorCode.NOTHING_TO_ABORT,
                        f"nothing to abort in state {self.state.value}",
                    )
                self.state = proto.ControllerState.IDLE
            case proto.GetShutter():
                reply = proto.ShutterPosition(mid, self.shutter)
            case proto.GetTemperature():
                reply = proto.Temperature(mid, self.temperature_k)
            case proto.GetFrame():
                reply = self.frame_info(mid)
            case proto.Read(first=first, count=count):
                return self.stream(mid, first or 0, count)
        return proto.encode_reply(reply)

    def stream(self, mid: int, first: int, count: int | None) -> bytes:
        info = self.frame_info(mid)
        wanted = range(first, first + (info.blocks - first if count is None else count))
        sent = wanted[: self.stall_after] if self.stall_after is not None else wanted
        parts = []
        for index in sent:
            start, stop = info.block_span(index)
            payload = self.data[start:stop]
            crc = proto.crc32(payload)
            if index in self.corrupt:
                self.corrupt.discard(index)
                crc ^= 0xFFFFFFFF
            parts.append(proto.encode_data_header(mid, index, len(payload), crc))
            parts.append(payload)
        if len(sent) == len(wanted):
            parts.append(proto.encode_reply(proto.ReadDone(mid, len(wanted))))
        return b"".join(parts)


# -- tampering ---------------------------------------------------------------


def lost(ctl: FakeController, command: proto.Command) -> Answer:
    """Executed, but the reply never arrives."""
    ctl.execute(command)
    return None


def never_arrived(ctl: FakeController, command: proto.Command) -> Answer:
    """The command was lost on the way: not executed, no reply."""
    return None


def garbled(ctl: FakeController, command: proto.Command) -> Answer:
    """Executed; the reply scrambled on the line (terminator kept)."""
    ctl.execute(command)
    return b"<\x00# O~\xff%&^ 0123\n"


def link_down(ctl: FakeController, command: proto.Command) -> Answer:
    """The line fails (as pyserial reports a vanished device); not executed."""
    failure: Exception = serial.SerialException(
        "device reports readiness to read but returned no data"
    )
    return failure


def stale_first(ctl: FakeController, command: proto.Command) -> Answer:
    """A late reply to an earlier command arrives before the right one."""
    stale = proto.encode_reply(proto.Ack(proto.next_mid(command.mid + 0x7F)))
    return stale + ctl.execute(command)


# -- fixtures ----------------------------------------------------------------


def make_ccd(
    ctl: FakeController, *, retries: int = 2, **kw: Any
) -> tuple[SerialCcdController, list[FakePort]]:
    ports: list[FakePort] = []

    def opener(url: str) -> FakePort:
        ports.append(FakePort(ctl))
        return ports[-1]

    settings: dict[str, Any] = {
        "reply_timeout_s": 0.05,
        "block_timeout_s": 0.05,
        "retries": retries,
        **kw,
    }
    config = CcdConfig(url="fake://ccd", **settings)
    return SerialCcdController(
        SerialLink(config.url, device="ccd", opener=opener), config
    ), ports


def sent(ports: list[FakePort]) -> list[bytes]:
    return [w for port in ports for w in port.written]


# -- exchanges ---------------------------------------------------------------


def test_connect_checks_identity_with_literal_bytes() -> None:
    ccd, ports = make_ccd(FakeController())
    assert ccd.connect() == "1.0.0"
    assert sent(ports) == [b">01 PING\n"]


@pytest.mark.parametrize("simulated", [False, True])
def test_identity_after_connect_says_whether_it_is_a_simulator(
    simulated: bool,
) -> None:
    ctl = FakeController()
    ctl.simulated = simulated
    ccd, ports = make_ccd(ctl)
    assert ccd.connect() == "1.0.0"  # backward compatible: the firmware
    assert ccd.identity() == DeviceIdentity(
        device="ccd",
        url="fake://ccd",
        product="MEGARA-CCD",
        firmware="1.0.0",
        simulated=simulated,
    )
    assert ccd.identity().to_dict()["simulated"] is simulated
    assert sent(ports) == [b">01 PING\n"]  # the identity costs no command


def test_identity_before_connect_is_refused() -> None:
    ccd, ports = make_ccd(FakeController())
    with pytest.raises(DeviceError, match="call connect\\(\\) first"):
        ccd.identity()
    assert sent(ports) == []


def test_wrong_product_is_refused() -> None:
    ctl = FakeController()
    ctl.product = "ARCHON"
    ccd, _ = make_ccd(ctl)
    with pytest.raises(DeviceError, match="says it is 'ARCHON'; expected 'MEGARA-CCD'"):
        ccd.connect()


def test_every_command_gets_the_next_mid_and_its_reply_echoes_it() -> None:
    ctl = FakeController()
    ccd, ports = make_ccd(ctl)
    status = ccd.status()
    assert ccd.temperature() == pytest.approx(163.15)
    assert ccd.shutter() is proto.ShutterState.CLOSED
    assert status.mid == 1
    assert sent(ports) == [b">01 STATUS\n", b">02 TEMP\n", b">03 SHUTTER\n"]


def test_a_stale_reply_is_dropped_and_the_right_one_taken() -> None:
    ctl = FakeController()
    ctl.tamper[proto.Verb.STATUS] = [stale_first]
    ccd, ports = make_ccd(ctl)
    assert ccd.status().mid == 1
    assert ccd.retries_used == 0
    assert len(sent(ports)) == 1


def test_only_stale_replies_is_a_timeout_not_a_wrong_answer() -> None:
    ctl = FakeController()

    def only_stale(ctl: FakeController, command: proto.Command) -> Answer:
        return proto.encode_reply(proto.Temperature(proto.next_mid(command.mid), 1.0))

    ctl.tamper[proto.Verb.TEMP] = [only_stale] * 3
    ccd, _ = make_ccd(ctl)
    with pytest.raises(DeviceTimeout, match="no valid reply to TEMP"):
        ccd.temperature()


def test_error_reply_is_a_controller_error_with_code_and_message() -> None:
    ctl = FakeController()

    def refuse(ctl: FakeController, command: proto.Command) -> Answer:
        return proto.encode_reply(
            proto.ErrorReply(command.mid, proto.ErrorCode.BUSY, "EXPOSE refused")
        )

    ctl.tamper[proto.Verb.EXPOSE] = [refuse]
    ccd, _ = make_ccd(ctl)
    with pytest.raises(ControllerError) as info:
        ccd.expose(1.0)
    assert isinstance(info.value, DeviceError)
    assert info.value.reply.code is proto.ErrorCode.BUSY
    assert info.value.reply.message == "EXPOSE refused"
    assert "error 200 (state): EXPOSE refused" in str(info.value)
    assert "fake://ccd" in str(info.value)
    assert ctl.verbs() == [proto.Verb.STATUS, proto.Verb.EXPOSE]  # not retried


def test_silence_is_a_timeout_after_all_attempts() -> None:
    ctl = FakeController()
    ctl.tamper[proto.Verb.STATUS] = [never_arrived] * 3
    ccd, ports = make_ccd(ctl, retries=2)
    with pytest.raises(DeviceTimeout) as info:
        ccd.status()
    message = str(info.value)
    assert message.startswith("ccd: no valid reply to STATUS on fake://ccd")
    assert "after 3 attempts of 0.05 s" in message
    assert "powered" in message
    assert sent(ports) == [b">01 STATUS\n", b">02 STATUS\n", b">03 STATUS\n"]
    assert isinstance(info.value.__cause__, DeviceTimeout)


def test_garbled_reply_is_recovered_and_counted() -> None:
    ctl = FakeController()
    ctl.tamper[proto.Verb.STATUS] = [garbled]
    ccd, ports = make_ccd(ctl)
    assert ccd.status().mid == 2
    assert ccd.retries_used == 1
    assert sent(ports) == [b">01 STATUS\n", b">02 STATUS\n"]


def test_garbage_every_time_is_a_protocol_error() -> None:
    ctl = FakeController()
    ctl.tamper[proto.Verb.STATUS] = [garbled] * 2
    ccd, _ = make_ccd(ctl, retries=1)
    with pytest.raises(ProtocolError, match="2 unusable replies to STATUS"):
        ccd.status()


def test_error_without_mid_means_our_command_was_garbled_and_is_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctl = FakeController()

    def unreadable(ctl: FakeController, command: proto.Command) -> Answer:
        return proto.encode_reply(
            proto.ErrorReply(None, proto.ErrorCode.MALFORMED, "expected '>' MID")
        )

    ctl.tamper[proto.Verb.TEMP] = [unreadable]
    ccd, _ = make_ccd(ctl)
    assert ccd.temperature() == pytest.approx(163.15)
    assert ccd.retries_used == 1
    # retried at once, not after waiting out the reply timeout
    assert "could not read the message id" in caplog.text
    assert "no reply to" not in caplog.text


def test_dropped_link_is_reopened() -> None:
    ctl = FakeController()
    ctl.tamper[proto.Verb.STATUS] = [link_down]
    ccd, ports = make_ccd(ctl)
    assert ccd.status().state is proto.ControllerState.IDLE
    assert len(ports) == 2
    assert ports[0].closed
    assert ccd.link.reconnects == 1
    assert ccd.retries_used == 1


def test_link_failing_every_time_is_a_link_error() -> None:
    ctl = FakeController()
    ctl.tamper[proto.Verb.STATUS] = [link_down] * 2
    ccd, _ = make_ccd(ctl, retries=1)
    with pytest.raises(LinkError, match="fake://ccd failed 2 times during STATUS"):
        ccd.status()


# -- EXPOSE is never sent twice ---------------------------------------------


@pytest.mark.parametrize("fault", [lost, garbled])
def test_expose_that_started_is_not_sent_again(fault: Tamper) -> None:
    ctl = FakeController()
    ctl.tamper[proto.Verb.EXPOSE] = [fault]
    ccd, ports = make_ccd(ctl)
    ccd.expose(2.5, dark=True)
    assert ctl.verbs() == [proto.Verb.STATUS, proto.Verb.EXPOSE, proto.Verb.STATUS]
    assert ctl.frame == 1
    assert ccd.retries_used == 1
    assert sent(ports)[1] == b">02 EXPOSE 2.500 DARK\n"


def test_expose_that_started_on_the_last_attempt_is_recognised() -> None:
    ctl = FakeController()
    ctl.tamper[proto.Verb.EXPOSE] = [lost]
    ccd, _ = make_ccd(ctl, retries=0)
    ccd.expose(1.0)
    assert ctl.verbs().count(proto.Verb.EXPOSE) == 1
    assert ctl.frame == 1


def test_expose_that_did_not_start_is_sent_again() -> None:
    ctl = FakeController()
    ctl.tamper[proto.Verb.EXPOSE] = [never_arrived]
    ccd, ports = make_ccd(ctl)
    ccd.expose(1.0, dark=False)
    assert ctl.verbs() == [
        proto.Verb.STATUS,
        proto.Verb.EXPOSE,
        proto.Verb.STATUS,
        proto.Verb.EXPOSE,
    ]
    assert sent(ports)[3] == b">04 EXPOSE 1.000 LIGHT\n"
    assert ctl.frame == 1
    assert ccd.retries_used == 1


def test_expose_after_a_dropped_link_checks_before_resending() -> None:
    ctl = FakeController()
    ctl.tamper[proto.Verb.EXPOSE] = [link_down]
    ccd, ports = make_ccd(ctl)
    ccd.expose(1.0)
    assert ctl.verbs().count(proto.Verb.EXPOSE) == 2
    assert ctl.frame == 1
    assert len(ports) == 2


def test_expose_that_never_arrives_gives_up_after_checking_each_time() -> None:
    ctl = FakeController()
    ctl.tamper[proto.Verb.EXPOSE] = [never_arrived] * 3
    ccd, _ = make_ccd(ctl, retries=2)
    with pytest.raises(DeviceTimeout, match="no valid reply to EXPOSE"):
        ccd.expose(1.0)
    status, expose = proto.Verb.STATUS, proto.Verb.EXPOSE
    assert ctl.verbs() == [status] + [expose, status] * 3
    assert ctl.frame == 0


def test_an_earlier_frame_in_memory_is_not_taken_for_this_exposure() -> None:
    ctl = FakeController().with_frame()  # frame 1, 1.000 s dark, READY
    ctl.tamper[proto.Verb.EXPOSE] = [never_arrived]
    ccd, _ = make_ccd(ctl)
    ccd.expose(1.0)
    assert ctl.verbs().count(proto.Verb.EXPOSE) == 2
    assert ctl.frame == 2


def test_negative_exposure_time_sends_nothing() -> None:
    ctl = FakeController()
    ccd, _ = make_ccd(ctl)
    with pytest.raises(ConfigError, match="exposure time"):
        ccd.expose(-1.0)
    assert ctl.received == []


# -- ABORT, shutter, temperature ---------------------------------------------


def test_abort_with_nothing_to_abort_is_fine() -> None:
    ctl = FakeController()
    ccd, _ = make_ccd(ctl)
    ccd.abort()
    assert ctl.verbs() == [proto.Verb.ABORT]


def test_abort_whose_reply_was_lost_is_fine_and_counted() -> None:
    ctl = FakeController()
    ctl.state = proto.ControllerState.EXPOSING
    ctl.tamper[proto.Verb.ABORT] = [lost]
    ccd, _ = make_ccd(ctl)
    ccd.abort()  # the retry finds nothing to abort: the first one worked
    assert ctl.state is proto.ControllerState.IDLE
    assert ccd.retries_used == 1


def test_abort_refused_for_another_reason_raises() -> None:
    ctl = FakeController()

    def internal(ctl: FakeController, command: proto.Command) -> Answer:
        return proto.encode_reply(
            proto.ErrorReply(command.mid, proto.ErrorCode.INTERNAL, "send CLEAR")
        )

    ctl.tamper[proto.Verb.ABORT] = [internal]
    ccd, _ = make_ccd(ctl)
    with pytest.raises(ControllerError, match="error 500"):
        ccd.abort()


def test_close_shutter_reads_back_closed() -> None:
    ctl = FakeController()
    ccd, ports = make_ccd(ctl)
    ccd.close_shutter()
    assert sent(ports) == [b">01 SHUTTER CLOSE\n", b">02 SHUTTER\n"]


def test_close_shutter_that_stays_open_is_a_device_error() -> None:
    ctl = FakeController()
    ctl.shutter = proto.ShutterState.OPEN
    ccd, _ = make_ccd(ctl)
    with pytest.raises(DeviceError) as info:
        ccd.close_shutter()
    message = str(info.value)
    assert "shutter reads OPEN on fake://ccd" in message
    assert "expected CLOSED" in message
    assert "do not take darks" in message


@pytest.mark.parametrize("kelvin", [149.0, 195.5])
def test_temperature_out_of_range_names_the_temperatures(kelvin: float) -> None:
    ctl = FakeController()
    ctl.temperature_k = kelvin
    ccd, _ = make_ccd(ctl, temperature_range_k=(150.0, 180.0))
    with pytest.raises(DeviceError) as info:
        ccd.check_temperature()
    assert f"{kelvin:.2f} K" in str(info.value)
    assert "expected 150.00 to 180.00 K" in str(info.value)


def test_temperature_in_range_is_returned() -> None:
    ccd, _ = make_ccd(FakeController())
    assert ccd.check_temperature() == pytest.approx(163.15)


# -- readout -----------------------------------------------------------------


def reads(ctl: FakeController) -> list[tuple[int | None, int | None]]:
    return [(c.first, c.count) for c in ctl.received if isinstance(c, proto.Read)]


def expected_pixels() -> npt.NDArray[Any]:
    return np.frombuffer(frame_bytes(), dtype=">u2").reshape(proto.ROWS, proto.COLS)


def test_clean_readout_is_one_read_with_monotonic_progress() -> None:
    ctl = FakeController().with_frame()
    ccd, ports = make_ccd(ctl)
    seen: list[tuple[int, int]] = []
    readout = ccd.read_frame(lambda done, total: seen.append((done, total)))
    assert isinstance(readout, Readout)
    assert sent(ports) == [b">01 FRAME\n", b">02 READ\n"]
    assert (readout.rounds, readout.refetched, readout.bad_blocks) == (1, 0, ())
    assert readout.pixels.shape == (proto.ROWS, proto.COLS)
    assert np.array_equal(readout.pixels, expected_pixels())
    assert len(seen) == BLOCKS
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (proto.FRAME_BYTES, proto.FRAME_BYTES)
    assert ccd.retries_used == 0


def test_bad_crc_block_is_fetched_again_alone() -> None:
    ctl = FakeController().with_frame()
    ctl.corrupt = {4}
    ccd, ports = make_ccd(ctl)
    readout = ccd.read_frame()
    assert sent(ports) == [b">01 FRAME\n", b">02 READ\n", b">03 READ 4 1\n"]
    assert readout.bad_blocks == (4,)
    assert (readout.refetched, readout.rounds) == (1, 2)
    assert np.array_equal(readout.pixels, expected_pixels())
    assert ccd.retries_used == 1


def test_stalled_readout_refetches_missing_blocks_in_runs() -> None:
    ctl = FakeController().with_frame()
    ctl.corrupt = {1}
    ctl.stall_after = 4  # blocks 0-3 arrive (1 corrupt), then nothing
    ccd, _ = make_ccd(ctl)
    readout = ccd.read_frame()
    # Round 2 asks for the two runs; the 5-block run stalls after 4 blocks
    # too, so round 3 asks for the last block alone.
    assert reads(ctl) == [(None, None), (1, 1), (4, BLOCKS - 4), (8, 1)]
    assert readout.rounds == 3
    assert readout.bad_blocks == (1,)
    assert readout.refetched == BLOCKS - 3
    assert np.array_equal(readout.pixels, expected_pixels())


def test_readout_gives_up_after_retries_rounds_naming_the_blocks() -> None:
    ctl = FakeController().with_frame()
    ctl.stall_after = 2
    ccd, _ = make_ccd(ctl, retries=2)
    with pytest.raises(DeviceError) as info:
        ccd.read_frame()
    message = str(info.value)
    assert f"3 of {BLOCKS} readout blocks of frame 1" in message
    assert "after 3 rounds" in message
    assert "(blocks 6-8)" in message
    assert "take the exposure again" in message
    assert reads(ctl) == [(None, None), (2, BLOCKS - 2), (4, BLOCKS - 4)]


def test_readout_over_a_dropped_link_reconnects() -> None:
    ctl = FakeController().with_frame()
    reads_seen = 0

    def drop_first_read(ctl: FakeController, command: proto.Command) -> Answer:
        nonlocal reads_seen
        reads_seen += 1
        return link_down(ctl, command)

    ctl.tamper[proto.Verb.READ] = [drop_first_read]
    ccd, ports = make_ccd(ctl)
    readout = ccd.read_frame()
    assert reads_seen == 1
    assert len(ports) == 2
    assert readout.refetched == BLOCKS
    assert reads(ctl) == [(None, None), (0, BLOCKS)]
    assert np.array_equal(readout.pixels, expected_pixels())


@pytest.mark.parametrize(
    ("field", "value"), [("rows", proto.ROWS // 2), ("cols", 2048), ("bitpix", 32)]
)
def test_wrong_geometry_is_refused_before_any_read(field: str, value: int) -> None:
    ctl = FakeController().with_frame()
    ctl.info = {field: value}
    ccd, _ = make_ccd(ctl)
    with pytest.raises(DeviceError, match="expected 4212x4196 of 16 bits"):
        ccd.read_frame()
    assert reads(ctl) == []


@pytest.mark.parametrize(
    "info", [{"nbytes": 1000}, {"blocks": BLOCKS + 1}, {"block_size": 0}]
)
def test_inconsistent_frame_description_is_refused(info: dict[str, int]) -> None:
    ctl = FakeController().with_frame()
    ctl.info = info
    ccd, _ = make_ccd(ctl)
    with pytest.raises(ProtocolError, match="announces"):
        ccd.read_frame()
    assert reads(ctl) == []


def test_whole_frame_crc_mismatch_is_detected() -> None:
    ctl = FakeController().with_frame()
    ctl.info = {"crc": proto.crc32(frame_bytes()) ^ 1}
    ccd, _ = make_ccd(ctl)
    with pytest.raises(DeviceError, match="fails its whole-frame CRC") as info:
        ccd.read_frame()
    assert "although every block passed" in str(info.value)


def test_controller_refusing_the_read_is_a_device_error() -> None:
    ctl = FakeController().with_frame()

    def no_frame(ctl: FakeController, command: proto.Command) -> Answer:
        return proto.encode_reply(
            proto.ErrorReply(command.mid, proto.ErrorCode.NO_FRAME, "no frame ready")
        )

    ctl.tamper[proto.Verb.READ] = [no_frame]
    ccd, _ = make_ccd(ctl)
    with pytest.raises(
        DeviceError, match="refused the readout of frame 1 with error 201"
    ):
        ccd.read_frame()


def test_garbled_read_command_is_sent_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctl = FakeController().with_frame()

    def unreadable(ctl: FakeController, command: proto.Command) -> Answer:
        return proto.encode_reply(
            proto.ErrorReply(None, proto.ErrorCode.MALFORMED, "expected '>' MID")
        )

    ctl.tamper[proto.Verb.READ] = [unreadable]
    ccd, _ = make_ccd(ctl)
    readout = ccd.read_frame()
    assert "could not read the message id" in caplog.text
    assert "stalled" not in caplog.text  # sent again at once
    assert reads(ctl) == [(None, None), (0, BLOCKS)]
    assert readout.rounds == 2
    assert np.array_equal(readout.pixels, expected_pixels())

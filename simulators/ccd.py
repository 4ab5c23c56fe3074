"""The simulated CCD controller (and the shutter it drives).

Speaks :mod:`drivers.protocol.ccd`. State is derived from time stamps of the
simulated clock at each command, never by sleeping: an exposure started at
``t0`` ends at ``t0 + exptime``, the readout into the controller's memory takes
``readout_s`` more, and the first command after each instant sees the new
state. A READ reply is a lazy generator, so a 35 MB frame streams block by
block without being built twice in memory.

Known limitations:

* The shutter moves instantly (never MOVING) and never reports FAULT, so the
  codes 300 (shutter fault) are never sent; a shutter stuck open is what the
  fault scenario ``shutter_stuck_open`` simulates, and the controller does not
  notice it (commands are acknowledged, status reports OPEN).
* Light and temperature are sampled at the start of an exposure, at every
  command during it and at the first command after its end (taken as the
  end); the frame is made with their trapezoidal averages over the exposure.
* The frame is synthesised at the first FRAME or READ after the readout, which
  takes a moment (about 0.5 s for the real detector model).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from drivers.errors import ConfigError
from drivers.protocol.ccd import (
    BITPIX,
    COLS,
    PRODUCT,
    ROWS,
    Abort,
    Ack,
    BadCommand,
    Clear,
    Command,
    CommandFramer,
    ControllerState,
    DeviceReply,
    ErrorCode,
    ErrorReply,
    Expose,
    ExposureKind,
    FrameInfo,
    GetFrame,
    GetShutter,
    GetStatus,
    GetTemperature,
    Identity,
    MoveShutter,
    Ping,
    Read,
    ReadDone,
    ShutterPosition,
    ShutterState,
    ShutterTarget,
    Status,
    Temperature,
    block_count,
    crc32,
    decode_command,
    encode_data_header,
    encode_reply,
)
from simulators.clock import SimClock
from simulators.device import Reply
from simulators.faults import FaultBook, FaultKind

log = logging.getLogger(__name__)

#: Fraction of the light at the shutter that passes it, by shutter state.
TRANSMISSION = {
    ShutterState.CLOSED: 1e-4,
    ShutterState.MOVING: 0.5,
    ShutterState.OPEN: 1.0,
    ShutterState.FAULT: 1.0,
}
# "Most open" order, for the SHUTMAX field of a frame.
_OPENNESS = (
    ShutterState.CLOSED,
    ShutterState.MOVING,
    ShutterState.FAULT,
    ShutterState.OPEN,
)


class FrameSource(Protocol):
    """Makes raw frames (``simulators.synthesis.Detector`` is the real one)."""

    def frame(
        self,
        *,
        exptime_s: float,
        temperature_k: float,
        light_e_per_s: float,
        frame_seed: int,
        run_key: int,
    ) -> npt.NDArray[np.uint16]:
        """A raw frame of shape (4212, 4196), uint16 ADU.

        The same ``(frame_seed, run_key)`` with the same exposure arguments
        must give the same frame; a different run key, different noise.
        """
        ...


@dataclass(frozen=True)
class ExposureRecord:
    """What went into a frame (for tests and engineering checks).

    Light in e-/s/pixel at the detector, temperatures in kelvin, times in
    seconds.
    """

    number: int
    kind: ExposureKind
    exptime_s: float
    light_e_per_s: float
    temperature_k: float
    temp_start_k: float
    temp_end_k: float
    shutter_max: ShutterState


@dataclass(frozen=True, eq=False)  # holds an array
class _Pixels:
    """A synthesised frame, ready to send."""

    pixels: npt.NDArray[np.uint16]
    data: bytes  # big-endian
    crc: int
    block_crcs: list[int]


@dataclass
class _Exposure:
    number: int
    kind: ExposureKind
    exptime_s: float
    start: float
    shutter_max: ShutterState = ShutterState.CLOSED
    # (simulated time, light at the detector e-/s/pix, temperature K)
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    record: ExposureRecord | None = None  # set when the exposure ends
    data: bytes | None = None  # big-endian pixels, once synthesised
    crc: int = 0
    # CRC-32 of each DATA block, computed once with the frame (a controller
    # checksums blocks as it digitises them): a READ, or a re-fetch of one
    # block, then only copies bytes.
    block_crcs: list[int] = field(default_factory=list)
    # The pixels being made while the controller reads the CCD out.
    pending: Future[_Pixels] | None = None

    @property
    def end(self) -> float:
        return self.start + self.exptime_s


def _mean(samples: list[tuple[float, float, float]], column: int) -> float:
    """Trapezoidal time average of one sampled column (plain mean if no span).

    A column that never changed averages to its value exactly: the sums below
    would round differently with every sampling pattern, and a frame must not
    depend on when the sequencer happened to poll (see ``first_frame``).
    """
    values = {s[column] for s in samples}
    if len(values) == 1:
        return values.pop()
    span = samples[-1][0] - samples[0][0]
    if span <= 0:
        return sum(s[column] for s in samples) / len(samples)
    area = sum(
        (b[0] - a[0]) * (a[column] + b[column]) / 2
        for a, b in itertools.pairwise(samples)
    )
    return area / span


class CcdModel:
    """Simulated CCD controller with its shutter.

    Parameters
    ----------
    clock
        Simulated clock (all times below are simulated seconds).
    faults
        Fault book; this model implements ``shutter_stuck_open``,
        ``bad_crc``, ``temperature_excursion`` and ``light_leak``.
    detector
        Makes the frames.
    readout_s
        Time to read the CCD into the controller's memory, seconds.
    block_size
        Bytes per DATA block.
    temperature_k
        CCD temperature without faults, kelvin.
    light_at_shutter
        Light reaching the shutter now, e-/s/pixel.
    firmware
        Version answered to PING (always as a simulator: ``OK MEGARA-CCD
        <firmware> SIMULATOR``).
    max_exptime_s
        Longest exposure accepted, seconds.
    max_temperature_k
        EXPOSE is refused (code 301) while the CCD is warmer than this, kelvin.
    first_frame
        Frame counter at start: the first exposure is frame ``first_frame + 1``.
    run_key
        Non-negative integer below 2**64 that keys the frames' noise to this
        run (``--run-key``).

    Notes
    -----
    Frame ``n`` is synthesised from the detector seed, the run key and ``n``
    alone (its ``frame_seed``), with the exposure's time, temperature and
    light: a simulator restarted with the same run key and ``first_frame = n -
    1`` (``--run-key``, ``--first-frame``) makes the same pixels for its next
    exposure as the one it replaces would have. A run resumed after a crash
    uses this, so that its frames, and the master dark made from them, equal
    those of a run that was never interrupted; another run, with another key,
    never repeats them. Hot pixels and the bias structure come from the
    detector seed alone and are the same in every run.
    """

    name = "ccd"

    def __init__(
        self,
        clock: SimClock,
        faults: FaultBook,
        detector: FrameSource,
        *,
        readout_s: float = 40.0,
        block_size: int = 65536,
        temperature_k: float = 163.15,
        light_at_shutter: Callable[[], float] = lambda: 0.0,
        firmware: str = "1.0.0",
        max_exptime_s: float = 36000.0,
        max_temperature_k: float = 183.15,
        first_frame: int = 0,
        run_key: int = 0,
    ) -> None:
        if first_frame < 0:
            raise ConfigError(f"ccd: first frame {first_frame}; expected >= 0")
        if not 0 <= run_key < 2**64:
            raise ConfigError(f"ccd: run key {run_key}; expected 0 <= key < 2**64")
        self.run_key = run_key
        self.clock = clock
        self.faults = faults
        self.detector = detector
        self._synthesis_lock = threading.Lock()
        self._synthesis: threading.Thread | None = None
        self.readout_s = readout_s
        self.block_size = block_size
        self.base_temperature_k = temperature_k
        self.light_at_shutter = light_at_shutter
        self.firmware = firmware
        self.max_exptime_s = max_exptime_s
        self.max_temperature_k = max_temperature_k
        self.commands = 0
        self.last_frame: npt.NDArray[np.uint16] | None = None
        self.last_exposure: ExposureRecord | None = None
        self._lock = threading.Lock()
        self._state = ControllerState.IDLE
        self._shutter = ShutterState.CLOSED
        self._stuck_open = False
        self._frame_number = first_frame
        self._exposure: _Exposure | None = None

    # -- DeviceModel ---------------------------------------------------------

    def new_framer(self) -> CommandFramer:
        """A framer for the command lines this controller receives."""
        return CommandFramer()

    def handle(self, frame: bytes) -> Reply:
        """Execute one command frame; never raises (errors become ERR replies)."""
        with self._lock:
            self.commands += 1
            now = self.clock.now()
            mid: int | None = None
            try:
                self._advance(now)
                command = decode_command(frame)
                mid = command.mid
                return self._dispatch(command, now)
            except BadCommand as bad:
                log.debug("ccd: refused %r: %s", frame, bad.detail)
                return _reply(bad.reply())
            except Exception as err:  # a simulator bug must not kill the line
                log.exception("ccd: internal error on %r", frame)
                self._set_state(ControllerState.ERROR)
                self._exposure = None
                text = f"internal error {type(err).__name__}; send CLEAR"
                return _reply(ErrorReply(mid, ErrorCode.INTERNAL, text))

    # -- for tests ---------------------------------------------------------

    def status(self) -> Status:
        """The status a STATUS command would report now (message id 0)."""
        with self._lock:
            now = self.clock.now()
            self._advance(now)
            return self._status(0, now)

    @property
    def state(self) -> ControllerState:
        """Controller state as of the last command."""
        return self._state

    @property
    def shutter(self) -> ShutterState:
        """Shutter position as of the last command."""
        return self._shutter

    @property
    def frame_number(self) -> int:
        """Number of the frame last completed or in progress."""
        return self._frame_number

    # -- time ----------------------------------------------------------------

    def _advance(self, now: float) -> None:
        """Bring the state up to ``now``: sample light, end exposure, readout."""
        exp = self._exposure
        if exp is None or self._state is not ControllerState.EXPOSING:
            # Consult the windowed faults at every command, so that a window
            # opens when its trigger holds, not at the next exposure.
            self._temperature(now)
            self._leak_flux(now, None)
        if exp is None:
            return
        if self._state is ControllerState.EXPOSING:
            if now < exp.end:
                self._sample(exp, now)
                return
            self._end_exposure(exp)
        if self._state is ControllerState.READING and now >= exp.end + self.readout_s:
            self._set_state(ControllerState.READY)

    def _temperature(self, now: float, readout: int | None = None) -> float:
        fault = self.faults.active(
            self.name,
            FaultKind.TEMPERATURE_EXCURSION,
            commands=self.commands,
            sim_time=now,
            readout=readout,
        )
        delta = fault.param("delta_k", 10.0) if fault else 0.0
        return self.base_temperature_k + delta

    def _leak_flux(self, t: float, readout: int | None) -> float:
        leak = self.faults.active(
            self.name,
            FaultKind.LIGHT_LEAK,
            commands=self.commands,
            sim_time=t,
            readout=readout,
        )
        return leak.param("flux", 5.0) if leak else 0.0

    def _sample(self, exp: _Exposure, t: float) -> None:
        light = self.light_at_shutter() * TRANSMISSION[self._shutter]
        light += self._leak_flux(t, exp.number)
        exp.samples.append((t, light, self._temperature(t, exp.number)))
        if _OPENNESS.index(self._shutter) > _OPENNESS.index(exp.shutter_max):
            exp.shutter_max = self._shutter

    def _end_exposure(self, exp: _Exposure) -> None:
        self._sample(exp, exp.end)
        if not self._stuck_open:
            self._shutter = ShutterState.CLOSED
        exp.record = ExposureRecord(
            number=exp.number,
            kind=exp.kind,
            exptime_s=exp.exptime_s,
            light_e_per_s=_mean(exp.samples, 1),
            temperature_k=_mean(exp.samples, 2),
            temp_start_k=exp.samples[0][2],
            temp_end_k=exp.samples[-1][2],
            shutter_max=exp.shutter_max,
        )
        self.last_exposure = exp.record
        self._set_state(ControllerState.READING)
        self._start_synthesis(exp)

    def _start_synthesis(self, exp: _Exposure) -> None:
        """Make the frame's pixels on a thread while the CCD is read out.

        A controller digitises during READING; making the pixels then, rather
        than when the host first asks for the frame, keeps the ~0.15 s of
        synthesis out of the host's transfer. The pixels depend only on the
        exposure's record and number, so the result is the same either way.
        """
        future: Future[_Pixels] = Future()

        def work() -> None:
            try:
                future.set_result(self._synthesise(exp))
            except BaseException as err:  # handed to the READ/FRAME that waits
                future.set_exception(err)

        exp.pending = future
        self._synthesis = threading.Thread(
            target=work, name=f"ccd-frame-{exp.number}", daemon=True
        )
        self._synthesis.start()

    def wait_synthesis(self, timeout_s: float | None = None) -> None:
        """Wait until the frame being made (if any) is done, kept or not."""
        if self._synthesis is not None:
            self._synthesis.join(timeout_s)

    def _synthesise(self, exp: _Exposure) -> _Pixels:
        """The frame of ``exp``: pixels, big-endian bytes and their CRCs."""
        assert exp.record is not None
        with self._synthesis_lock:  # one frame at a time (an abort may overlap)
            pixels = self.detector.frame(
                exptime_s=exp.exptime_s,
                temperature_k=exp.record.temperature_k,
                light_e_per_s=exp.record.light_e_per_s,
                frame_seed=exp.number,
                run_key=self.run_key,
            )
        if pixels.shape != (ROWS, COLS) or pixels.dtype != np.uint16:
            raise RuntimeError(
                f"detector made a {pixels.dtype} frame of shape {pixels.shape}"
            )
        data = pixels.astype(">u2").tobytes()
        view = memoryview(data)
        size = self.block_size
        crcs = [
            crc32(view[i * size : (i + 1) * size])
            for i in range(block_count(len(data), size))
        ]
        return _Pixels(pixels, data, crc32(data), crcs)

    def _set_state(self, state: ControllerState) -> None:
        if state is not self._state:
            log.info("ccd: %s -> %s", self._state.value, state.value)
            self._state = state

    # -- commands --------------------------------------------------------------

    def _dispatch(self, command: Command, now: float) -> Reply:
        mid = command.mid
        match command:
            case Ping():
                return _reply(Identity(mid, self.firmware, PRODUCT, simulated=True))
            case GetStatus():
                return _reply(self._status(mid, now))
            case GetTemperature():
                return _reply(Temperature(mid, self._temperature(now, self._busy())))
            case GetShutter():
                return _reply(ShutterPosition(mid, self._shutter))
            case Expose():
                self._expose(command, now)
            case Abort():
                self._abort(mid)
            case MoveShutter(target=target):
                self._move_shutter(mid, target, now)
            case Clear():
                self._refuse_if_busy(mid, "CLEAR")
                self._exposure = None
                self._set_state(ControllerState.IDLE)
            case GetFrame():
                return _reply(self._frame_info(mid))
            case Read():
                return self._read(command, now)
        return _reply(Ack(mid))

    def _busy(self) -> int | None:
        """The number of the exposure in progress, if one is."""
        exposing = self._state is ControllerState.EXPOSING
        return self._frame_number if exposing else None

    def _status(self, mid: int, now: float) -> Status:
        exp = self._exposure
        exptime = exp.exptime_s if exp else 0.0
        elapsed = exptime
        if exp is not None and self._state is ControllerState.EXPOSING:
            elapsed = min(max(now - exp.start, 0.0), exptime)
        return Status(
            mid,
            state=self._state,
            exptime_s=exptime,
            elapsed_s=elapsed,
            shutter=self._shutter,
            temperature_k=self._temperature(now, self._busy()),
            frame=self._frame_number,
            dark=exp is not None and exp.kind is ExposureKind.DARK,
        )

    def _refuse_if_busy(self, mid: int, what: str) -> None:
        if self._state in (ControllerState.EXPOSING, ControllerState.READING):
            raise BadCommand(
                mid,
                ErrorCode.BUSY,
                f"{what} refused: state {self._state.value}; wait for READY or ABORT",
            )

    def _stuck(self, now: float) -> bool:
        """Whether the shutter is (or now gets) stuck open."""
        if not self._stuck_open and self.faults.fire(
            self.name,
            FaultKind.SHUTTER_STUCK_OPEN,
            commands=self.commands,
            sim_time=now,
        ):
            log.warning("ccd: injecting shutter_stuck_open")
            self._stuck_open = True
        if self._stuck_open:
            self._shutter = ShutterState.OPEN
        return self._stuck_open

    def _expose(self, command: Expose, now: float) -> None:
        mid = command.mid
        self._refuse_if_busy(mid, "EXPOSE")
        if self._state is ControllerState.ERROR:
            raise BadCommand(mid, ErrorCode.IN_ERROR_STATE, "state ERROR; send CLEAR")
        if command.exptime_s > self.max_exptime_s:
            raise BadCommand(
                mid,
                ErrorCode.BAD_ARGUMENT,
                f"exposure time {command.exptime_s:.3f} s above the maximum "
                f"{self.max_exptime_s:.3f} s",
            )
        temperature = self._temperature(now)
        if temperature > self.max_temperature_k:
            raise BadCommand(
                mid,
                ErrorCode.TEMPERATURE_OUT_OF_RANGE,
                f"CCD at {temperature:.2f} K, above {self.max_temperature_k:.2f} K; "
                "wait for the cryostat to recover",
            )
        if not self._stuck(now):
            light = command.kind is ExposureKind.LIGHT
            self._shutter = ShutterState.OPEN if light else ShutterState.CLOSED
        self._frame_number += 1
        exp = _Exposure(
            self._frame_number, command.kind, command.exptime_s, now, self._shutter
        )
        self._exposure = exp
        self._set_state(ControllerState.EXPOSING)
        self._sample(exp, now)
        log.info(
            "ccd: frame %d: %s exposure of %.3f s",
            exp.number,
            command.kind.value,
            command.exptime_s,
        )
        self._advance(now)  # a zero-second exposure has ended already

    def _abort(self, mid: int) -> None:
        if self._state not in (ControllerState.EXPOSING, ControllerState.READING):
            raise BadCommand(
                mid,
                ErrorCode.NOTHING_TO_ABORT,
                f"nothing to abort in state {self._state.value}",
            )
        if not self._stuck_open:
            self._shutter = ShutterState.CLOSED
        self._exposure = None
        self._set_state(ControllerState.IDLE)

    def _move_shutter(self, mid: int, target: ShutterTarget, now: float) -> None:
        self._refuse_if_busy(mid, f"SHUTTER {target.value}")
        if target is ShutterTarget.OPEN:
            self._shutter = ShutterState.OPEN
        elif not self._stuck(now):
            self._shutter = ShutterState.CLOSED

    # -- the frame in memory ---------------------------------------------------

    def _ready_frame(self, mid: int) -> _Exposure:
        exp = self._exposure
        if self._state is not ControllerState.READY or exp is None:
            raise BadCommand(
                mid,
                ErrorCode.NO_FRAME,
                f"no frame ready (state {self._state.value}); "
                "EXPOSE and wait for STATE=READY",
            )
        if exp.data is None:
            made = exp.pending.result() if exp.pending else self._synthesise(exp)
            exp.pending = None
            exp.data, exp.crc, exp.block_crcs = made.data, made.crc, made.block_crcs
            self.last_frame = made.pixels
        return exp

    def _frame_info(self, mid: int) -> FrameInfo:
        exp = self._ready_frame(mid)
        assert exp.record is not None
        assert exp.data is not None
        rec = exp.record
        return FrameInfo(
            mid,
            frame=exp.number,
            rows=ROWS,
            cols=COLS,
            bitpix=BITPIX,
            nbytes=len(exp.data),
            block_size=self.block_size,
            blocks=block_count(len(exp.data), self.block_size),
            exptime_s=exp.exptime_s,
            dark=exp.kind is ExposureKind.DARK,
            temp_start_k=rec.temp_start_k,
            temp_end_k=rec.temp_end_k,
            shutter_max=rec.shutter_max,
            crc=exp.crc,
        )

    def _read(self, command: Read, now: float) -> Reply:
        mid = command.mid
        exp = self._ready_frame(mid)
        assert exp.data is not None
        blocks = block_count(len(exp.data), self.block_size)
        first = command.first or 0
        count = blocks - first if command.count is None else command.count
        if first >= blocks or count < 1 or first + count > blocks:
            raise BadCommand(
                mid,
                ErrorCode.BLOCK_OUT_OF_RANGE,
                f"blocks {first}..{first + count - 1} asked, the frame has "
                f"0..{blocks - 1}",
            )
        wanted = range(first, first + count)
        bad = self._bad_crc_block(exp.number, wanted, now)
        chunks = _stream(mid, exp.data, self.block_size, wanted, bad, exp.block_crcs)
        return Reply(chunks=chunks, readout=exp.number)

    def _bad_crc_block(self, readout: int, wanted: range, now: float) -> int | None:
        """The block to send with a wrong CRC in this READ, if a fault says so."""

        def applies(block: float) -> bool:
            return int(block) in wanted

        kind = FaultKind.BAD_CRC
        candidates = [
            f
            for f in self.faults.pending()
            if f.device == self.name
            and f.kind is kind
            and applies(f.param("block", 0))
            and f.triggered(commands=self.commands, sim_time=now, readout=readout)
        ]
        if not candidates:
            return None
        fault = self.faults.fire(
            self.name, kind, commands=self.commands, sim_time=now, readout=readout
        )
        if fault is None:
            return None
        block = int(fault.param("block", 0))
        if not applies(block):
            log.warning("ccd: bad_crc fault for block %d spent outside the READ", block)
            return None
        log.warning("ccd: injecting bad_crc on readout %d block %d", readout, block)
        return block


def _reply(reply: DeviceReply) -> Reply:
    return Reply(chunks=[encode_reply(reply)])


def _stream(
    mid: int,
    data: bytes,
    block_size: int,
    wanted: range,
    bad: int | None,
    crcs: Sequence[int],
) -> Iterator[bytes]:
    """DATA blocks of ``wanted`` then the closing ``OK READ n`` line, lazily.

    ``crcs`` holds each block's CRC-32 (computed when the frame was made).
    """
    view = memoryview(data)
    for index in wanted:
        payload = view[index * block_size : (index + 1) * block_size]
        crc = crcs[index]
        if index == bad:
            crc ^= 0xFFFFFFFF
        yield encode_data_header(mid, index, len(payload), crc) + payload
    yield encode_reply(ReadDone(mid, len(wanted)))

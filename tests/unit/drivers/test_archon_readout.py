"""The Archon driver's readouts: each frame's evidence, and transfers cut short.

A ``FETCH`` cut short (the rest never sent, the connection dropped, its head
garbled) is resumed from the first block missing, and the pixels come out as
an unfaulted read of the same frame gives them. The controller is a real
:class:`~simulators.archon.ArchonModel` served over loopback TCP on a clock
the tests advance (``archon_rig.py``).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
from pytest_mock import MockerFixture

from drivers.archon import COLS, ROWS
from drivers.errors import DeviceError
from drivers.interfaces import Readout, ShutterState
from drivers.protocol import archon as protocol
from drivers.protocol.archon_status import FrameStatus
from simulators.faults import FaultKind
from simulators.synthesis import Detector
from tests.unit.drivers.archon_rig import (
    BASE,
    EXPOSING,
    NBLOCKS,
    NBYTES,
    NOMINAL_K,
    READING,
    READOUT_S,
    READY,
    SYNTHESIS_S,
    Rig,
    take,
)


def wire_blocks(fraction: float) -> int:
    """Whole blocks the server sends before it cuts ``fraction`` of a frame."""
    budget = int(fraction * NBYTES)
    return budget // (protocol.BINARY_HEADER_SIZE + protocol.BLOCK_SIZE)


# -- a clean read and its evidence -------------------------------------------------


def test_clean_read_locks_fetches_once_and_unlocks(
    rig: Rig, detector: Detector
) -> None:
    ccd = rig.connected()
    take(rig, ccd)
    mark = len(rig.sent)
    seen: list[tuple[int, int]] = []
    readout = ccd.read_frame(lambda done, total: seen.append((done, total)))
    assert isinstance(readout, Readout)
    assert rig.since(mark) == [
        "FRAME",
        "LOCK1",
        "FETCHA0000000000086D7",
        "FRAME",
        "LOCK0",
    ]
    assert (readout.rounds, readout.refetched, ccd.retries_used) == (1, 0, 0)
    assert readout.pixels.dtype == np.dtype(">u2")
    assert np.array_equal(readout.pixels, rig.expected_pixels(detector))
    done = [d for d, _ in seen]
    assert done == sorted(done)
    assert seen[-1] == (NBYTES, NBYTES)


def test_each_frame_carries_the_controllers_evidence(rig: Rig) -> None:
    # +10 K from 5 s on, during the readout: start and end readings differ.
    rig.arm(FaultKind.TEMPERATURE_EXCURSION, after_commands=None, at_time=5.0)
    ccd = rig.connected()
    ccd.expose(2.0004)  # 200 cs + 0 ms: the controller integrates 2.000 s
    polls = [ccd.status()]
    for step in (6.0, 20.0, 25.0):
        rig.clock.advance(step)
        polls.append(ccd.status())
    assert [p.state for p in polls] == [EXPOSING, READING, READING, READY]
    rig.model.wait_synthesis(SYNTHESIS_S)
    info = ccd.read_frame().info
    record = rig.model.record(1)
    assert record is not None
    assert record.exposure.integration is not None
    start, end = record.exposure.integration
    assert info.exptime_s == pytest.approx(end - start, abs=1e-8)
    assert info.exptime_s == pytest.approx(2.0, abs=1e-8)
    assert (info.frame, info.rows, info.cols, info.dark) == (1, ROWS, COLS, True)
    assert info.temp_start_k == pytest.approx(NOMINAL_K)
    assert info.temp_end_k == pytest.approx(NOMINAL_K + 10.0)
    assert info.shutter_max is ShutterState.CLOSED
    # The reading at expose(), and one per poll that saw it integrate or read.
    assert info.shutter_readings == 1 + 3


def test_a_shutter_stuck_open_mid_dark_marks_the_frame(rig: Rig) -> None:
    ccd = rig.connected()
    ccd.close_shutter()
    rig.arm(FaultKind.SHUTTER_STUCK_OPEN, after_commands=None, at_time=5.0)
    ccd.expose(10.0, dark=True)
    assert ccd.status().shutter is ShutterState.CLOSED
    rig.clock.advance(6.0)
    assert ccd.status().shutter is ShutterState.OPEN
    rig.clock.advance(5.0 + READOUT_S)
    assert ccd.status().state is READY
    with pytest.raises(DeviceError, match="shutter reads OPEN"):
        ccd.close_shutter()
    rig.model.wait_synthesis(SYNTHESIS_S)
    info = ccd.read_frame().info
    assert info.dark
    assert info.shutter_max is ShutterState.OPEN
    assert info.shutter_readings == 3  # expose(), then two polls while exposing


# -- transfers cut short ----------------------------------------------------------


@pytest.mark.parametrize("kind", [FaultKind.SHORT_FETCH, FaultKind.DISCONNECT_READOUT])
def test_a_cut_transfer_resumes_from_the_first_missing_block(
    rig: Rig, kind: FaultKind
) -> None:
    ccd = rig.connected()
    take(rig, ccd)
    mark = len(rig.sent)
    rig.arm(kind, after_commands=None, on_readout=1, params={"fraction": 0.3})
    seen: list[int] = []
    readout = ccd.read_frame(lambda done, total: seen.append(done))
    assert rig.fired(kind) == 1
    have = wire_blocks(0.3)  # every whole block that came is kept
    resume = (BASE + have * protocol.BLOCK_SIZE, NBLOCKS - have)
    assert rig.fetches(mark) == [(BASE, NBLOCKS), resume]
    assert (readout.rounds, readout.refetched) == (2, NBLOCKS - have)
    assert ccd.retries_used == 1
    assert ccd.archon.link.reconnects == (kind is FaultKind.DISCONNECT_READOUT)
    assert seen == sorted(seen)
    assert seen[-1] == NBYTES
    clean = ccd.read_frame()  # the same frame again, no fault left
    assert (clean.rounds, clean.refetched) == (1, 0)
    assert np.array_equal(readout.pixels, clean.pixels)


def test_a_garbled_transfer_is_drained_and_fetched_again(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    ccd = rig.connected()
    take(rig, ccd)
    mark = len(rig.sent)
    rig.arm(FaultKind.GARBLED_REPLY, skip=2)  # FRAME, LOCK1, then the FETCH
    with caplog.at_level(logging.WARNING, logger="drivers.archon_link"):
        readout = ccd.read_frame()
    assert rig.fired(FaultKind.GARBLED_REPLY) == 1
    assert "of an abandoned reply" in caplog.text  # the rest of it was drained
    assert rig.fetches(mark) == [(BASE, NBLOCKS)] * 2  # nothing of it kept
    assert (readout.rounds, readout.refetched) == (2, NBLOCKS)
    assert ccd.retries_used == 1
    assert np.array_equal(readout.pixels, ccd.read_frame().pixels)


def test_a_transfer_cut_every_time_loses_the_frame_by_name(rig: Rig) -> None:
    ccd = rig.connected(retries=1)
    take(rig, ccd)
    rig.arm(
        FaultKind.SHORT_FETCH, after_commands=None, times=2, params={"fraction": 0.5}
    )
    with pytest.raises(DeviceError) as info:
        ccd.read_frame()
    message = str(info.value)
    missing = NBLOCKS - 2 * wire_blocks(0.5)
    assert f"{missing} of {NBLOCKS} blocks of frame 1 still missing" in message
    assert "after 2 transfers" in message
    assert "take the exposure again" in message
    assert len(rig.fetches()) == 2


# -- frames the driver refuses to read ----------------------------------------------


def test_a_frame_of_another_geometry_is_refused_before_any_fetch(rig: Rig) -> None:
    ccd = rig.connected()
    ccd.archon.command("WCONFIG0002LINECOUNT=100")  # loaded behind our back
    ccd.archon.command("APPLYCDS")
    take(rig, ccd, 0.0)
    with pytest.raises(DeviceError, match="is 4196 x 200 pixels of BITS16; expected"):
        ccd.read_frame()
    assert rig.fetches() == []


def test_read_frame_needs_a_complete_frame_of_this_exposure(rig: Rig) -> None:
    ccd = rig.connected()
    with pytest.raises(DeviceError, match="no exposure started"):
        ccd.read_frame()
    ccd.expose(10.0)
    with pytest.raises(DeviceError, match="is not complete in any buffer"):
        ccd.read_frame()
    assert rig.fetches() == []
    assert "LOCK1" not in rig.sent


def test_a_buffer_overwritten_during_the_transfer_is_refused(
    rig: Rig, mocker: MockerFixture
) -> None:
    # The simulator honours LOCKn: only a FRAME that says otherwise gets here.
    ccd = rig.connected()
    take(rig, ccd)
    real = ccd._frame
    answers: list[FrameStatus] = []

    def frame() -> FrameStatus:
        status = real()
        answers.append(status)
        if len(answers) == 2:  # the FRAME after the transfer
            first = replace(status.buffers[0], frame=4, timestamp=1)
            status = replace(status, buffers=(first, *status.buffers[1:]))
        return status

    mocker.patch.object(ccd, "_frame", side_effect=frame)
    with pytest.raises(DeviceError, match="held frame 4 after the transfer of frame 1"):
        ccd.read_frame()
    assert len(rig.fetches()) == 1

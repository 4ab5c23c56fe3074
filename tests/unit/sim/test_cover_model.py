"""The simulated cover half: timing, reversal, faults, replies."""

from __future__ import annotations

import threading
from typing import Any, Literal

import pytest

from drivers.errors import ConfigError
from drivers.protocol.cover import CoverState, Motor, decode_status
from simulators.clock import SimClock
from simulators.cover import CoverModel
from simulators.faults import Fault, FaultBook, FaultKind
from tests.docs_exchanges import exchanges

MOTION_S = 6.0
EPS = 1e-3  # simulated seconds; the clock drifts 1e-9 s per wall second


@pytest.fixture
def clock() -> SimClock:
    # A near-frozen clock: tests move time with advance(), deterministically.
    return SimClock(scale=1e-9)


def make(
    clock: SimClock,
    *faults: Fault,
    initial: Literal["open", "closed"] = "open",
    **kwargs: Any,
) -> CoverModel:
    return CoverModel(
        "cover_left",
        clock,
        FaultBook(faults),
        motion_s=MOTION_S,
        initial=initial,
        **kwargs,
    )


def ask(model: CoverModel, frame: bytes) -> bytes:
    return b"".join(model.handle(frame).chunks)


def fault(kind: FaultKind, device: str = "cover_left", **kwargs: Any) -> Fault:
    return Fault(device=device, kind=kind, **kwargs)


# -- rest and motion ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("initial", "status", "fraction"),
    [("open", b"*S98002\n", 1.0), ("closed", b"*S98001\n", 0.0)],
)
def test_initial_state(
    clock: SimClock,
    initial: Literal["open", "closed"],
    status: bytes,
    fraction: float,
) -> None:
    model = make(clock, initial=initial)
    assert ask(model, b">S000\n") == status
    assert model.open_fraction() == fraction


def test_close_from_open_takes_motion_s(clock: SimClock) -> None:
    model = make(clock)
    assert ask(model, b">C000\n") == b"*C98000\n"
    assert ask(model, b">S000\n") == b"*S98100\n"
    clock.advance(MOTION_S / 2)
    assert model.open_fraction() == pytest.approx(0.5, abs=1e-6)
    clock.advance(MOTION_S / 2 - EPS)
    assert ask(model, b">S000\n") == b"*S98100\n"
    assert model.open_fraction() > 0.0
    clock.advance(2 * EPS)
    assert ask(model, b">S000\n") == b"*S98001\n"
    assert model.open_fraction() == 0.0
    assert model.status().is_closed


def test_open_from_closed_takes_motion_s(clock: SimClock) -> None:
    model = make(clock, initial="closed")
    assert ask(model, b">O000\n") == b"*O98000\n"
    clock.advance(MOTION_S - EPS)
    assert ask(model, b">S000\n") == b"*S98100\n"
    clock.advance(2 * EPS)
    assert ask(model, b">S000\n") == b"*S98002\n"
    assert model.open_fraction() == 1.0


def test_close_while_opening_reverses_from_current_position(clock: SimClock) -> None:
    """The reversal exchange of protocols.md, with its timing."""
    model = make(clock, initial="closed")
    assert ask(model, b">O000\n") == b"*O98000\n"
    clock.advance(MOTION_S / 2)
    assert ask(model, b">S000\n") == b"*S98100\n"
    assert ask(model, b">C000\n") == b"*C98000\n"
    clock.advance(MOTION_S / 4)
    assert ask(model, b">S000\n") == b"*S98100\n"
    assert model.open_fraction() == pytest.approx(0.25, abs=1e-6)
    assert model.state().heading is CoverState.CLOSED
    clock.advance(MOTION_S / 4 + EPS)  # half of motion_s in all
    assert ask(model, b">S000\n") == b"*S98001\n"


def test_repeated_command_does_not_restart_the_move(clock: SimClock) -> None:
    model = make(clock)
    ask(model, b">C000\n")
    clock.advance(MOTION_S / 2)
    assert ask(model, b">C000\n") == b"*C98000\n"
    clock.advance(MOTION_S / 2 + EPS)
    assert ask(model, b">S000\n") == b"*S98001\n"


def test_move_to_where_it_rests_is_a_no_op_and_keeps_faults(clock: SimClock) -> None:
    jam = fault(FaultKind.COVER_JAM)
    book = FaultBook([jam])
    model = CoverModel("cover_left", clock, book, motion_s=MOTION_S, initial="closed")
    assert ask(model, b">C000\n") == b"*C98000\n"
    assert ask(model, b">S000\n") == b"*S98001\n"
    assert book.pending() == [jam]  # waits for a real motion
    ask(model, b">O000\n")
    assert book.pending() == []


# -- faults ------------------------------------------------------------------------


def test_jam_stops_mid_travel_until_next_move(clock: SimClock) -> None:
    """The jam exchange of protocols.md."""
    model = make(clock, fault(FaultKind.COVER_JAM))
    assert ask(model, b">C000\n") == b"*C98000\n"
    clock.advance(MOTION_S / 2 - EPS)
    assert ask(model, b">S000\n") == b"*S98100\n"
    clock.advance(2 * EPS)
    assert ask(model, b">S000\n") == b"*S98000\n"
    clock.advance(10_000.0)
    assert ask(model, b">S000\n") == b"*S98000\n"  # for ever
    assert model.open_fraction() == pytest.approx(0.5)
    assert model.state().fault is FaultKind.COVER_JAM
    ask(model, b">C000\n")  # the next move works (the fault fired once)
    clock.advance(MOTION_S / 2 + EPS)
    assert ask(model, b">S000\n") == b"*S98001\n"


def test_jam_at_parameter(clock: SimClock) -> None:
    model = make(clock, fault(FaultKind.COVER_JAM, params={"at": 0.25}))
    ask(model, b">C000\n")
    clock.advance(MOTION_S)
    assert decode_status(ask(model, b">S000\n")).cover is CoverState.NEITHER
    assert model.open_fraction() == pytest.approx(0.75)


def test_slow_move_takes_factor_times_longer(clock: SimClock) -> None:
    model = make(clock, fault(FaultKind.COVER_SLOW))
    ask(model, b">C000\n")
    clock.advance(MOTION_S + EPS)
    assert ask(model, b">S000\n") == b"*S98100\n"
    assert model.open_fraction() == pytest.approx(0.8, abs=1e-4)
    clock.advance(4 * MOTION_S - 2 * EPS)
    assert ask(model, b">S000\n") == b"*S98100\n"
    clock.advance(2 * EPS)
    assert ask(model, b">S000\n") == b"*S98001\n"
    assert model.state().fault is FaultKind.COVER_SLOW


def test_slow_factor_parameter(clock: SimClock) -> None:
    model = make(clock, fault(FaultKind.COVER_SLOW, params={"factor": 2.0}))
    ask(model, b">C000\n")
    clock.advance(2 * MOTION_S + EPS)
    assert ask(model, b">S000\n") == b"*S98001\n"


def test_timeout_ends_with_c3_and_half_not_closed(clock: SimClock) -> None:
    """The timeout exchange of protocols.md."""
    model = make(clock, fault(FaultKind.COVER_TIMEOUT))
    assert ask(model, b">C000\n") == b"*C98000\n"
    clock.advance(MOTION_S - EPS)
    assert ask(model, b">S000\n") == b"*S98100\n"  # stalled, still driving
    clock.advance(2 * EPS)
    status = decode_status(ask(model, b">S000\n"))
    assert status.motor is Motor.STOPPED
    assert status.cover is CoverState.TIMED_OUT
    assert not status.is_closed
    assert model.open_fraction() == pytest.approx(0.1)  # light still gets in
    ask(model, b">C000\n")  # a retry closes it
    clock.advance(0.1 * MOTION_S + EPS)
    assert ask(model, b">S000\n") == b"*S98001\n"


def test_faults_respect_after_commands_and_device(clock: SimClock) -> None:
    model = make(
        clock,
        fault(FaultKind.COVER_JAM, device="cover_right"),
        fault(FaultKind.COVER_JAM, after_commands=3),
    )
    ask(model, b">P000\n")
    ask(model, b">C000\n")  # command 2: not yet
    clock.advance(MOTION_S + EPS)
    assert ask(model, b">S000\n") == b"*S98001\n"  # command 3
    ask(model, b">O000\n")  # command 4: jams
    clock.advance(MOTION_S + EPS)
    assert ask(model, b">S000\n") == b"*S98000\n"
    assert model.commands == 5


def test_on_command_places_a_fault_at_the_nth_command_of_its_name(
    clock: SimClock,
) -> None:
    model = make(clock, fault(FaultKind.COVER_JAM, on_command="OPEN", nth=1))
    ask(model, b">P000\n")
    ask(model, b">C000\n")  # a close: not an OPEN
    clock.advance(MOTION_S + EPS)
    assert ask(model, b">S000\n") == b"*S98001\n"
    ask(model, b">O000\n")  # the first OPEN: jams
    clock.advance(MOTION_S + EPS)
    assert ask(model, b">S000\n") == b"*S98000\n"


def test_jam_wins_over_timeout_and_slow_combines(clock: SimClock) -> None:
    model = make(
        clock,
        fault(FaultKind.COVER_TIMEOUT),
        fault(FaultKind.COVER_JAM),
        fault(FaultKind.COVER_SLOW, params={"factor": 2.0}),
    )
    ask(model, b">C000\n")
    clock.advance(MOTION_S - EPS)  # jam at half of a 12 s travel
    assert ask(model, b">S000\n") == b"*S98100\n"
    clock.advance(2 * EPS)
    assert ask(model, b">S000\n") == b"*S98000\n"
    ask(model, b">O000\n")  # the timeout is still armed: it fires now
    clock.advance(MOTION_S / 2 + EPS)
    assert ask(model, b">S000\n") == b"*S98003\n"


# -- replies -----------------------------------------------------------------------


def test_rest_exchanges_of_the_document_replay_against_the_model(
    clock: SimClock,
) -> None:
    """Every documented exchange that moves nothing, on a half resting open."""
    replayed = 0
    for exchange in exchanges("cover"):
        sent = [data for way, data in exchange.steps if way == "->"]
        if any(data[1:2] in (b"O", b"C") for data in sent):
            continue  # needs time and faults: scripted in the tests above
        model = make(clock)
        for (_, command), (_, answer) in zip(
            exchange.steps[::2], exchange.steps[1::2], strict=True
        ):
            assert ask(model, command) == answer, f"protocols.md:{exchange.line}"
        replayed += 1
    assert replayed >= 3


def test_light_commands_do_nothing_on_product_98(clock: SimClock) -> None:
    model = make(clock)
    assert ask(model, b">L000\n") == b"*L98000\n"
    assert ask(model, b">S000\n") == b"*S98002\n"  # light still 0
    assert ask(model, b">B200\n") == b"*B98000\n"
    assert ask(model, b">J000\n") == b"*J98000\n"
    assert ask(model, b">D000\n") == b"*D98000\n"


def test_letter_filler_is_echoed(clock: SimClock) -> None:
    model = make(clock)
    assert ask(model, b">POOO\r") == b"*P98OOO\n"
    assert ask(model, b">COOO\r") == b"*C98OOO\n"
    assert ask(model, b">SOOO\r") == b"*S98100\n"


def test_firmware_version(clock: SimClock) -> None:
    assert ask(make(clock, firmware=7), b">V000\n") == b"*V98007\n"


@pytest.mark.parametrize(
    ("frame", "reply"),
    [
        (b">X000\n", b"*?98001\n"),
        (b">H000\n", b"*?98001\n"),
        (b"\xff\xfe\xfd\n", b"*?98002\n"),
        (b">S000", b"*?98002\n"),
        (b">B256\n", b"*?98003\n"),
    ],
)
def test_bad_commands_get_error_reply_and_count(
    clock: SimClock, frame: bytes, reply: bytes
) -> None:
    model = make(clock)
    assert ask(model, frame) == reply
    assert model.commands == 1
    assert ask(model, b">S000\n") == b"*S98002\n"  # state untouched
    assert model.commands == 2


def test_framer_from_model_splits_a_crlf_stream(clock: SimClock) -> None:
    model = make(clock)
    framer = model.new_framer()
    frames = framer.feed(b">P000\r\n>S0") + framer.feed(b"00\r\n")
    assert [ask(model, f) for f in frames] == [b"*P98000\n", b"*S98002\n"]


def test_state_snapshot(clock: SimClock) -> None:
    model = make(clock)
    ask(model, b">C000\n")
    clock.advance(MOTION_S / 3)
    snap = model.state()
    assert snap.position == pytest.approx(2 / 3, abs=1e-6)
    assert snap.status.motor is Motor.RUNNING
    assert snap.heading is CoverState.CLOSED
    assert snap.fault is None
    assert snap.sim_time == pytest.approx(MOTION_S / 3, abs=1e-3)


def test_reads_from_another_thread_while_commands_run(clock: SimClock) -> None:
    model = make(clock)
    seen: list[float] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(model.open_fraction())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(500):
            ask(model, b">C000\n" if i % 2 else b">O000\n")
            clock.advance(0.01)
            ask(model, b">S000\n")
    finally:
        stop.set()
        thread.join()
    assert seen
    assert all(0.0 <= f <= 1.0 for f in seen)
    assert model.commands == 1000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "cover_middle"},
        {"motion_s": 0.0},
        {"motion_s": float("nan")},
        {"firmware": 1000},
        {"initial": "ajar"},
    ],
)
def test_constructor_rejects_bad_settings(clock: SimClock, kwargs: Any) -> None:
    args: dict[str, Any] = {"name": "cover_right", **kwargs}
    name = args.pop("name")
    with pytest.raises(ConfigError, match="cover"):
        CoverModel(name, clock, FaultBook(), **args)

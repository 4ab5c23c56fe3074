"""The simulators' stop on SIGINT/SIGTERM: no handler that can hang the process."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from simulators.stopping import StopSignals


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_the_handler_takes_no_lock_the_waiting_thread_may_hold() -> None:
    # A handler runs where the main thread happens to be: possibly inside
    # Event.wait() holding the event's own lock. Calling Event.set() there
    # never returns; the handler must return whatever that thread holds.
    stop = threading.Event()
    signals = StopSignals(stop)
    returned = threading.Event()

    def handler_inside_event_wait() -> None:
        with stop._cond:  # what Event.wait() holds when it wakes
            signals.note(signal.SIGTERM, None)
        returned.set()

    thread = threading.Thread(target=handler_inside_event_wait, daemon=True)
    thread.start()
    thread.join(5.0)
    assert returned.is_set(), "the signal handler blocked on the event's lock"
    assert signals.received == signal.SIGTERM


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_wait(handlers: None, sig: signal.Signals) -> None:
    signals = StopSignals(threading.Event())
    signals.install()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), sig))
    timer.start()
    signals.wait()
    timer.join()
    assert signals.received == sig
    assert not signals.stop.is_set()


def test_another_thread_ends_the_wait_by_the_event(handlers: None) -> None:
    stop = threading.Event()
    signals = StopSignals(stop)
    signals.install()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    signals.wait()
    timer.join()
    assert signals.received is None

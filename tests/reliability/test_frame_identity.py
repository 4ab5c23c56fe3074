"""The simulated CCD makes frame n the same way whenever and wherever it is made.

What a resumed run relies on to reproduce an uninterrupted run's frames: the
detector is asked for frame n with the same arguments whether the simulator
started at frame 0 or was restarted with ``first_frame = n - 1``, and however
often the sequencer polled during the exposure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest

from drivers.errors import ConfigError
from drivers.protocol.ccd import COLS, ROWS, FrameInfo, decode_reply
from simulators.ccd import CcdModel
from simulators.clock import SimClock
from simulators.faults import FaultBook

TEMPERATURE_K = 163.15
READOUT_S = 40.0


@dataclass
class Recorder:
    """A frame source that records what it is asked for (pixels: the seed)."""

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
        return np.full((ROWS, COLS), frame_seed, dtype=np.uint16)


class Controller:
    """A CCD model on a clock the test advances, spoken to in protocol lines."""

    def __init__(self, first_frame: int = 0) -> None:
        self.clock = SimClock(1e-9)
        self.detector = Recorder()
        self.model = CcdModel(
            self.clock,
            FaultBook(()),
            self.detector,
            readout_s=READOUT_S,
            block_size=1 << 20,
            temperature_k=TEMPERATURE_K,
            light_at_shutter=lambda: 7.5,  # the cover is open: the shutter is not
            first_frame=first_frame,
        )
        self.mid = 0

    def send(self, words: str) -> object:
        self.mid = (self.mid + 1) & 0xFF
        (chunk,) = self.model.handle(f">{self.mid:02X} {words}\n".encode()).chunks
        return decode_reply(chunk)

    def take(self, exptime_s: float, polls: list[float]) -> FrameInfo:
        """One dark exposure with STATUS polls after each step of ``polls``."""
        self.send(f"EXPOSE {exptime_s:.3f} DARK")
        for step in polls:
            self.clock.advance(step)
            self.send("STATUS")
        self.clock.advance(exptime_s + READOUT_S - sum(polls) + 1.0)
        info = self.send("FRAME")
        assert isinstance(info, FrameInfo)
        self.send("CLEAR")
        return info


def test_a_frame_does_not_depend_on_when_it_was_polled() -> None:
    rng = np.random.default_rng(7)
    patterns = [[], [49.0], list(rng.uniform(0.0, 3.0, 15)), [0.1] * 300]
    calls = []
    for polls in patterns:
        controller = Controller()
        controller.take(50.0, polls)
        calls.append(controller.detector.calls[-1])
    # Sums of time steps round differently with each pattern: the averages of
    # a constant must still come out exact.
    assert all(call == calls[0] for call in calls), calls
    assert calls[0]["temperature_k"] == TEMPERATURE_K
    assert calls[0]["light_e_per_s"] == 7.5 * 1e-4  # through the shut shutter


def test_a_restarted_controller_makes_the_frame_it_replaces() -> None:
    straight = Controller()
    infos = [straight.take(50.0, [10.0, 20.0]) for _ in range(5)]
    restarted = Controller(first_frame=3)
    again = [restarted.take(50.0, [5.0]) for _ in range(2)]
    assert [i.frame for i in infos] == [1, 2, 3, 4, 5]
    assert [i.frame for i in again] == [4, 5]
    assert restarted.detector.calls == straight.detector.calls[3:]
    assert [i.crc for i in again] == [i.crc for i in infos[3:]]


def test_first_frame_is_checked() -> None:
    with pytest.raises(ConfigError, match="first frame -1"):
        Controller(first_frame=-1)

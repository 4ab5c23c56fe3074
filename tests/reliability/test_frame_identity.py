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
from drivers.protocol import archon as protocol
from drivers.protocol.archon_status import FrameStatus, parse_key_values
from simulators.archon import ArchonModel
from simulators.clock import SimClock

ROWS, COLS = 4212, 4196
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
    """An Archon model on a clock the test advances, spoken to in command lines."""

    def __init__(self, first_frame: int = 0) -> None:
        self.clock = SimClock(1e-9)
        self.detector = Recorder()
        self.model = ArchonModel(
            self.clock,
            self.detector,
            readout_s=READOUT_S,
            temperature_k=TEMPERATURE_K,
            light_at_shutter=lambda: 7.5,  # the cover is open: the shutter is not
            first_frame=first_frame,
        )
        self.id = 0

    def send(self, text: str) -> str:
        self.id = (self.id + 1) & 0xFF
        line = protocol.encode_command(protocol.Command(self.id, text))
        (chunk,) = self.model.handle(line).chunks
        reply = protocol.decode_reply(chunk)
        assert reply.ok, f"?{reply.id:02X} to {text}"
        return reply.text

    def take(self, exptime_s: float, polls: list[float]) -> int:
        """One dark exposure as the driver runs it, with STATUS polls after each
        step of ``polls``; the number of the frame it made."""
        self.send("HOLDTIMING")
        centiseconds = round(exptime_s * 100)
        for name, value in (("OpenShutter", 0), ("IntCS", centiseconds),
                            ("ReadOut", 1), ("Exposures", 1)):  # fmt: skip
            self.send(f"FASTLOADPARAM {name} {value}")
        self.send("RELEASETIMING")
        for step in polls:
            self.clock.advance(step)
            self.send("STATUS")
        self.clock.advance(exptime_s + READOUT_S - sum(polls) + 1.0)
        frame = FrameStatus.from_key_values(parse_key_values(self.send("FRAME")))
        buffer = frame.buffer(frame.wbuf)
        assert buffer.complete
        self.model.wait_synthesis()
        return buffer.frame


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
    frames = [straight.take(50.0, [10.0, 20.0]) for _ in range(5)]
    restarted = Controller(first_frame=3)
    again = [restarted.take(50.0, [5.0]) for _ in range(2)]
    assert frames == [1, 2, 3, 4, 5]
    assert again == [4, 5]
    assert restarted.detector.calls == straight.detector.calls[3:]


def test_first_frame_is_checked() -> None:
    with pytest.raises(ConfigError, match="first frame -1"):
        Controller(first_frame=-1)

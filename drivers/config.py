"""Driver settings: where each device is and how patient to be with it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from drivers.errors import ConfigError


def _positive(where: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{where} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class CcdConfig:
    """Settings of the CCD-controller driver.

    Attributes
    ----------
    url
        pyserial URL of the controller.
    baudrate
        Line speed (ignored on sockets and pseudo-terminals).
    reply_timeout_s
        Seconds to wait for the reply to a command.
    retries
        Extra attempts after a transient fault (no reply, garbled reply,
        bad CRC, dropped link) before giving up.
    block_timeout_s
        Seconds to wait for the next readout block once a readout is flowing.
    temperature_range_k
        CCD temperatures (K) at which exposures are allowed.
    """

    url: str
    baudrate: int = 115200
    reply_timeout_s: float = 2.0
    retries: int = 3
    block_timeout_s: float = 5.0
    temperature_range_k: tuple[float, float] = (150.0, 180.0)

    def __post_init__(self) -> None:
        _positive("ccd.reply_timeout_s", self.reply_timeout_s)
        _positive("ccd.block_timeout_s", self.block_timeout_s)
        if not 0 <= self.retries <= 20:
            raise ConfigError(f"ccd.retries must be 0 to 20, got {self.retries!r}")
        low, high = self.temperature_range_k
        if not (0 < low < high):
            raise ConfigError(
                "ccd.temperature_range_k must be [low, high] kelvin with "
                f"0 < low < high, got {self.temperature_range_k!r}"
            )


@dataclass(frozen=True, kw_only=True)
class CoverConfig:
    """Settings of one cover-half driver (Alnitak protocol).

    Attributes
    ----------
    url
        pyserial URL of this half's controller.
    name
        ``"left"`` or ``"right"``, for messages.
    baudrate
        Line speed (the Alnitak controllers use 9600 baud).
    reply_timeout_s
        Seconds to wait for the reply to a command.
    retries
        Extra attempts after a transient fault.
    motion_timeout_s
        Seconds a move may take before the half is declared stuck.
    poll_s
        Seconds between status polls while waiting for a move.
    """

    url: str
    name: str
    baudrate: int = 9600
    reply_timeout_s: float = 2.0
    retries: int = 3
    motion_timeout_s: float = 30.0
    poll_s: float = 0.2

    def __post_init__(self) -> None:
        where = f"cover.{self.name}"
        _positive(f"{where}.reply_timeout_s", self.reply_timeout_s)
        _positive(f"{where}.motion_timeout_s", self.motion_timeout_s)
        _positive(f"{where}.poll_s", self.poll_s)
        if not 0 <= self.retries <= 20:
            raise ConfigError(f"{where}.retries must be 0 to 20, got {self.retries!r}")

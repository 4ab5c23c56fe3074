"""Driver settings: where each device is and how patient to be with it.

The range of every field is in :data:`CCD_SCHEMA` and :data:`COVER_SCHEMA`
(see :mod:`drivers.schema`); the instrument configuration's ``[ccd]`` and
``[cover]`` tables are checked against them when the file is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.schema import Number, Pair, Schema, seconds

#: Serial line speeds accepted (baud): what UARTs and USB adapters offer.
BAUDRATES = Number(50, 4_000_000, integer=True, what="a line speed in baud")
#: Extra attempts after a transient fault.
RETRIES = Number(0, 20, integer=True)


@dataclass(frozen=True, kw_only=True)
class CcdConfig:
    """Settings of the CCD-controller driver.

    Attributes
    ----------
    url
        pyserial URL of the controller.
    baudrate
        Line speed (ignored on sockets and pseudo-terminals), 50 to 4000000.
    reply_timeout_s
        Seconds to wait for the reply to a command (> 0, at most 1 day).
    retries
        Extra attempts after a transient fault (no reply, a late or garbled
        reply, a dropped connection) before giving up, and transfers resumed
        after one was cut short, 0 to 20.
    block_timeout_s
        Seconds to wait for more of a frame once a transfer is flowing (> 0,
        at most 1 day).
    temperature_range_k
        CCD temperatures (K) at which exposures are allowed, each in
        (0, 400] with low < high.
    """

    url: str
    baudrate: int = 115200
    reply_timeout_s: float = 2.0
    retries: int = 3
    block_timeout_s: float = 5.0
    temperature_range_k: tuple[float, float] = (150.0, 180.0)

    def __post_init__(self) -> None:
        CCD_SCHEMA.check("ccd", self)


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
        Line speed (the Alnitak controllers use 9600 baud), 50 to 4000000.
    reply_timeout_s
        Seconds to wait for the reply to a command (> 0, at most 1 day).
    retries
        Extra attempts after a transient fault, 0 to 20.
    motion_timeout_s
        Seconds a move may take before the half is declared stuck (> 0, at
        most 1 day).
    poll_s
        Seconds between status polls while waiting for a move (> 0, at most
        1 hour).
    """

    url: str
    name: str
    baudrate: int = 9600
    reply_timeout_s: float = 2.0
    retries: int = 3
    motion_timeout_s: float = 30.0
    poll_s: float = 0.2

    def __post_init__(self) -> None:
        COVER_SCHEMA.check("cover", self)


CCD_SCHEMA = Schema(
    CcdConfig,
    {
        "baudrate": BAUDRATES,
        "reply_timeout_s": seconds(),
        "retries": RETRIES,
        "block_timeout_s": seconds(),
        "temperature_range_k": Pair(
            Number(0.0, 400.0, above=True, what="a temperature in kelvin")
        ),
    },
    given=("url",),
)
COVER_SCHEMA = Schema(
    CoverConfig,
    {
        "baudrate": BAUDRATES,
        "reply_timeout_s": seconds(),
        "retries": RETRIES,
        "motion_timeout_s": seconds(),
        "poll_s": seconds(3600.0, "1 hour"),
    },
    given=("url", "name"),
)

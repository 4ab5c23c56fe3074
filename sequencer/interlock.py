"""The interlock evidence of one frame: was it taken dark?

Cover halves and shutter are read back before and after the integration, the
cover is polled during it (the worst reading is kept), and the CCD controller
reports the most open shutter state it saw (``shutter_max``) over a number of
readings. :class:`InterlockEvidence` carries all of it, typed, from the
read-back (:mod:`sequencer.machine`) to the raw header
(:mod:`sequencer.rawfits`), the run journal (:mod:`sequencer.run`) and the
engineering verification (:mod:`sequencer.engineering.figures`).

Its text form is part of the raw-frame contract, so it is written and read
here only (:meth:`InterlockEvidence.strings`, :meth:`InterlockEvidence.parse`)::

    COVBEF  = 'left=CLOSED right=CLOSED' / Cover before integration
    COVAFT  = 'left=CLOSED right=CLOSED' / Cover after integration
    COVWORST= 'CLOSED  '           / Worst cover reading during it
    SHUTBEF = 'CLOSED  '           / Shutter before integration
    SHUTAFT = 'CLOSED  '           / Shutter after integration
    SHUTMAX = 'CLOSED  '           / Most open shutter state seen

``COVWORST`` is ``CLOSED`` when every poll read both halves closed, otherwise
the last reading that was not (``left=OPEN right=CLOSED``). The journal holds
the same strings under the field names, plus ``shutter_readings``, which the
header does not carry.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from drivers.cover import CoverStatus
from drivers.interfaces import ShutterState

_CLOSED = "CLOSED"
_COVER_RE = re.compile(r"left=(?P<left>[A-Z_]+) right=(?P<right>[A-Z_]+)")

#: Each rendered field, its raw-header keyword and the card's comment.
HEADER_CARDS = (
    ("cover_before", "COVBEF", "Cover before integration"),
    ("cover_after", "COVAFT", "Cover after integration"),
    ("cover_worst", "COVWORST", "Worst cover reading during it"),
    ("shutter_before", "SHUTBEF", "Shutter before integration"),
    ("shutter_after", "SHUTAFT", "Shutter after integration"),
    ("shutter_max", "SHUTMAX", "Most open shutter state seen"),
)
FIELDS = tuple(name for name, _, _ in HEADER_CARDS)


class HalfState(enum.Enum):
    """One cover half in one word, as :meth:`CoverStatus.words` reads it."""

    CLOSED = "CLOSED"
    OPEN = "OPEN"
    NEITHER = "NEITHER"
    TIMED_OUT = "TIMED_OUT"
    MOVING = "MOVING"


@dataclass(frozen=True)
class CoverReading:
    """Both cover halves read back at one moment."""

    left: HalfState
    right: HalfState

    @classmethod
    def of(cls, status: CoverStatus) -> CoverReading:
        left, right = status.words()
        return cls(HalfState(left), HalfState(right))

    @property
    def closed(self) -> bool:
        return self.left is self.right is HalfState.CLOSED

    def render(self) -> str:
        """``left=CLOSED right=OPEN``."""
        return f"left={self.left.value} right={self.right.value}"

    @classmethod
    def parse(cls, text: str) -> CoverReading:
        match = _COVER_RE.fullmatch(text)
        known = {s.value for s in HalfState}
        if match is None or not {match["left"], match["right"]} <= known:
            raise ValueError(
                f"cover reading {text!r}; expected 'left=<state> right=<state>' "
                f"with states among {sorted(known)}"
            )
        return cls(HalfState(match["left"]), HalfState(match["right"]))


COVER_CLOSED = CoverReading(HalfState.CLOSED, HalfState.CLOSED)


@dataclass(frozen=True)
class Reading:
    """Cover halves and shutter as read back from the hardware at one moment."""

    cover: CoverReading
    shutter: ShutterState

    @property
    def closed(self) -> bool:
        return self.cover.closed and self.shutter is ShutterState.CLOSED

    def describe(self) -> str:
        """``left=CLOSED right=CLOSED, shutter CLOSED``."""
        return f"{self.cover.render()}, shutter {self.shutter.value}"


@dataclass(frozen=True)
class InterlockEvidence:
    """Everything that says whether one frame was taken dark."""

    before: Reading
    after: Reading
    cover_worst: CoverReading  # COVER_CLOSED when every poll read it closed
    shutter_max: ShutterState
    shutter_readings: int | None = None  # None: not recorded (raw header)

    def problems(self) -> list[str]:
        """Why this frame is not a valid dark (empty if it is)."""
        found = []
        if not self.before.closed:
            found.append(f"before integration: {self.before.describe()}")
        if not self.after.closed:
            found.append(f"after integration: {self.after.describe()}")
        if not self.cover_worst.closed:
            found.append(
                f"during integration a cover half read {self.cover_worst.render()}"
            )
        if self.shutter_max is not ShutterState.CLOSED:
            found.append(
                f"controller saw the shutter {self.shutter_max.value} "
                "during integration"
            )
        return found

    @property
    def cover_closed(self) -> bool:
        return (
            self.before.cover.closed
            and self.after.cover.closed
            and (self.cover_worst.closed)
        )

    @property
    def shutter_closed(self) -> bool:
        states = (self.before.shutter, self.after.shutter, self.shutter_max)
        return all(s is ShutterState.CLOSED for s in states)

    def strings(self) -> dict[str, str]:
        """The header values, keyed by field name (see :data:`HEADER_CARDS`)."""
        worst = self.cover_worst
        return {
            "cover_before": self.before.cover.render(),
            "cover_after": self.after.cover.render(),
            "cover_worst": _CLOSED if worst.closed else worst.render(),
            "shutter_before": self.before.shutter.value,
            "shutter_after": self.after.shutter.value,
            "shutter_max": self.shutter_max.value,
        }

    def header_cards(self) -> list[tuple[str, str, str]]:
        """``(keyword, value, comment)`` for the raw header, in order."""
        values = self.strings()
        return [(key, values[name], note) for name, key, note in HEADER_CARDS]

    def journal_fields(self) -> dict[str, object]:
        """The journal's fields: the header strings and ``shutter_readings``."""
        return {**self.strings(), "shutter_readings": self.shutter_readings}

    @classmethod
    def parse(cls, values: Mapping[str, object]) -> InterlockEvidence:
        """Read :meth:`strings` (or a journal record) back; ValueError if bad."""
        try:
            text = {name: str(values[name]) for name in FIELDS}
            shutter = {n: ShutterState(text[n]) for n in FIELDS if "shutter" in n}
        except KeyError as err:
            raise ValueError(f"no interlock field {err}") from None
        except ValueError as err:
            raise ValueError(
                f"shutter reading: {err}; expected one of "
                f"{[s.value for s in ShutterState]}"
            ) from None
        worst = text["cover_worst"]
        readings = values.get("shutter_readings")
        return cls(
            before=Reading(
                CoverReading.parse(text["cover_before"]), shutter["shutter_before"]
            ),
            after=Reading(
                CoverReading.parse(text["cover_after"]), shutter["shutter_after"]
            ),
            cover_worst=COVER_CLOSED if worst == _CLOSED else CoverReading.parse(worst),
            shutter_max=shutter["shutter_max"],
            shutter_readings=readings if isinstance(readings, int) else None,
        )

    @classmethod
    def from_header(cls, header: Mapping[str, object]) -> InterlockEvidence:
        """Read the raw header's cards back; ValueError if missing or bad."""
        try:
            values = {name: header[key] for name, key, _ in HEADER_CARDS}
        except KeyError as err:
            raise ValueError(f"no interlock keyword {err} in the header") from None
        return cls.parse(values)

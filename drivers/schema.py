"""What each configuration field may hold: a type and a range, checked in one place.

A :class:`Schema` lists every field of a settings dataclass with its
:class:`Rule` (a bounded number, a pair of them, a word from a list, text, a
file path). It is built next to its dataclass and refuses, when the module is
imported, a dataclass field it has no rule for: no field can go unchecked.
The same schema checks a table read from the instrument TOML (types included:
TOML's ``1`` is not ``true`` and ``"2"`` is not ``2``) and, from
``__post_init__``, a dataclass built in code.

Every bound is finite: an integer of 400 digits or ``1e400`` in a timeout
must fail when the file is loaded, not as an ``OverflowError`` once the cover
has moved. A refusal is one line naming the table, the key, the value and the
range: ``[ccd] reply_timeout_s: got 1e+300; expected seconds > 0 and <= 86400
(1 day)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from drivers.errors import ConfigError, shown

#: Longest timeout accepted anywhere (seconds): one day.
DAY_S = 86400.0
#: Largest seed: what a signed 64-bit integer holds.
MAX_SEED = 2**63 - 1


class _Refused(Exception):
    """A value outside its rule (the caller adds table and key)."""


@dataclass(frozen=True)
class Number:
    """A number within ``[low, high]`` (``low`` excluded if ``above``).

    ``integer`` numbers must be written as integers; the others may be
    integers or floats and are converted to float.
    """

    low: float
    high: float
    integer: bool = False
    above: bool = False
    what: str = ""
    note: str = ""

    def describe(self) -> str:
        what = self.what or ("an integer" if self.integer else "a number")
        low, high = (f"{int(v)}" if self.integer else f"{v:g}" for v in self.bounds)
        if self.above:
            text = f"{what} > {low} and <= {high}"
        else:
            text = f"{what} from {low} to {high}"
        return f"{text} ({self.note})" if self.note else text

    @property
    def bounds(self) -> tuple[float, float]:
        return (self.low, self.high)

    def convert(self, value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Refused
        if self.integer and not isinstance(value, int):
            raise _Refused
        if not self.integer:
            try:
                value = float(value)
            except OverflowError:  # an integer with hundreds of digits
                raise _Refused from None
            if not math.isfinite(value):
                raise _Refused
        # An int is compared as an int: float(10**400) would overflow.
        if value > self.high:
            raise _Refused
        if value < self.low or (self.above and value == self.low):
            raise _Refused
        checked: int | float = value
        return checked


@dataclass(frozen=True)
class Pair:
    """``[low, high]``: two numbers of ``item``, the first below the second."""

    item: Number

    def describe(self) -> str:
        return f"[low, high] with low < high, each {self.item.describe()}"

    def convert(self, value: Any) -> tuple[float, float]:
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise _Refused
        low, high = (self.item.convert(v) for v in value)
        if not low < high:
            raise _Refused
        return (low, high)


@dataclass(frozen=True)
class Choice:
    """One of a few words."""

    options: tuple[str, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(map(repr, self.options))

    def convert(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.options:
            raise _Refused
        return value


@dataclass(frozen=True)
class Text:
    """Printable text of at most ``max_length`` characters."""

    max_length: int = 4096
    what: str = "text"

    def describe(self) -> str:
        return (
            f"{self.what} (at most {self.max_length} characters, without NUL, line "
            "breaks or other control characters)"
        )

    def convert(self, value: Any) -> str:
        if (
            not isinstance(value, str)
            or not value
            or len(value) > self.max_length
            or not value.isprintable()
        ):
            raise _Refused
        return value


@dataclass(frozen=True)
class FilePath:
    """A file path (text), converted to :class:`~pathlib.Path`."""

    def describe(self) -> str:
        return Text(what="a file path").describe()

    def convert(self, value: Any) -> Path:
        if isinstance(value, Path):
            value = str(value)
        return Path(Text().convert(value))


Rule = Number | Pair | Choice | Text | FilePath


def seconds(high: float = DAY_S, note: str = "1 day") -> Number:
    """A duration: seconds > 0 and at most ``high``."""
    return Number(0.0, high, above=True, what="seconds", note=note)


class Schema:
    """The rules of every field of the dataclass ``cls``.

    Parameters
    ----------
    cls
        A dataclass.
    rules
        One rule per field.
    given
        Fields set by the program, never read from a file (a device's URL).

    Raises
    ------
    TypeError
        A field of ``cls`` has no rule, or a rule names no field (at import:
        a programming error, found by every test).
    """

    def __init__(
        self, cls: type[Any], rules: Mapping[str, Rule], *, given: Iterable[str] = ()
    ) -> None:
        names = {f.name for f in fields(cls)}
        self.given = frozenset(given)
        missing = sorted(names - set(rules) - self.given)
        extra = sorted(set(rules) - names)
        if missing or extra:
            raise TypeError(
                f"schema of {cls.__name__}: no rule for {missing or 'none'}, rules "
                f"for no field {extra or 'none'}"
            )
        self.cls = cls
        self.rules = dict(rules)

    def value(self, table: str, key: str, value: Any) -> Any:
        """``value`` of field ``key`` converted, or one ConfigError line."""
        rule = self.rules[key]
        try:
            return rule.convert(value)
        except _Refused:
            raise ConfigError(
                f"[{table}] {key}: got {shown(value)}; expected {rule.describe()}"
            ) from None

    def table(self, table: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """A TOML table as keyword arguments of the dataclass, each one checked."""
        unknown = sorted(str(k)[:60] for k in set(values) - set(self.rules))
        if unknown:
            raise ConfigError(
                f"[{table}]: unknown key(s) {', '.join(unknown)}; allowed: "
                f"{', '.join(sorted(self.rules))}"
            )
        return {key: self.value(table, key, raw) for key, raw in values.items()}

    def check(self, table: str, obj: Any) -> None:
        """Check every ruled field of the dataclass instance ``obj``."""
        for key in self.rules:
            self.value(table, key, getattr(obj, key))

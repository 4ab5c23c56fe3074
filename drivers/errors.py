"""The exception hierarchy shared by the drivers, the simulators and the sequencer.

Every message names the device, what was seen, what was expected and, where
known, what to do next.
"""

from __future__ import annotations

import math
import reprlib
from typing import Any


class _Shown(reprlib.Repr):
    """``reprlib`` that never asks Python to print a huge integer."""

    def repr_int(self, x: int, level: int) -> str:
        digits = math.floor(math.log10(abs(x))) + 1 if x else 1
        if digits > self.maxlong:
            return f"{'-' if x < 0 else ''}an integer of about {digits} digits"
        return repr(x)


_SHOWN = _Shown()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 2, 60, 60, 40
#: Longest path printed whole in a message; longer ones keep their two ends.
_PATH_SHOWN = 120


class MegaraDarkError(Exception):
    """Root of every error this suite raises on purpose."""


class ConfigError(MegaraDarkError):
    """A configuration value, option or input file is invalid."""


class ProtocolError(MegaraDarkError):
    """We or the device broke the wire grammar (unparseable or unexpected frame)."""


class DeviceError(MegaraDarkError):
    """The device reported a fault or ended in a state it should not be in."""


class DeviceTimeout(DeviceError):
    """The device did not answer, or did not finish a motion, in time."""


class SequenceError(MegaraDarkError):
    """The observing sequence cannot go on."""


def one_line_yaml_error(err: Exception) -> str:
    """A YAML parser error as one line: ``line 3, column 7: <problem>``.

    PyYAML's own messages span several lines with a caret drawing, which a
    one-line error report cannot carry.
    """
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def shown(value: Any) -> str:
    """``repr(value)`` cut short, in bounded work whatever ``value`` holds.

    A YAML alias bomb is a small file whose value expands to millions of
    items, and Python refuses to print an integer of more than 4300 digits:
    a plain ``repr`` in an error message would never finish, or raise.
    """
    return _SHOWN.repr(value)


def shown_path(path: object) -> str:
    """A user-named path for a one-line message: escaped, its middle cut if long."""
    text = str(path)
    if not text.isprintable():
        text = repr(text)[1:-1]
    if len(text) > _PATH_SHOWN:
        half = _PATH_SHOWN // 2
        text = f"{text[:half]}...{text[-half:]} ({len(text)} characters)"
    return text

"""The exception hierarchy shared by the drivers, the simulators and the sequencer.

Every message names the device, what was seen, what was expected and, where
known, what to do next.
"""

from __future__ import annotations


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

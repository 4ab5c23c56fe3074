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

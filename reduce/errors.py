"""The exception hierarchy of the reduction package.

``reduce`` stands alone (it runs offline on archived frames), so it has its
own root instead of sharing the drivers' one. Every message names the file or
setting, what was seen, what was expected and, where known, what to do.
"""

from __future__ import annotations


class ReductionError(Exception):
    """Root of every error the reduction raises on purpose."""


class InputError(ReductionError):
    """An input frame or file is unusable (wrong shape, type, header...).

    Parameters
    ----------
    source
        The file (or frame label) that is at fault.
    message
        What was seen, what was expected and what to do.
    """

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.detail = message


class SettingsError(ReductionError):
    """A reduction setting or threshold is invalid.

    Not :class:`drivers.errors.ConfigError` (the instrument configuration
    and the observing blocks): ``reduce`` imports none of the other packages.
    """

"""What a device said it is when it was identified: a typed record.

The sequencer records each device's identity in the run folder and marks the
frames of a run on simulated devices (``SIMULATE = T``). Which devices are
simulated is read from the CCD controller's own answer to ``SYSTEM`` (the
simulated Archon's ``BACKPLANE_ID`` spells "SIMULATE", see
:mod:`drivers.archon`), so it holds
however the simulators were reached: started by the run itself, or started by
hand (``megara-dark simulate --transport tcp``) and named in a ``[devices]``
table. The Alnitak protocol of the cover halves has no such word: a cover
half's identity is always ``simulated=False``, and the CCD's identity is what
marks a simulator set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, kw_only=True)
class DeviceIdentity:
    """One device as identified on its line.

    Attributes
    ----------
    device
        ``ccd``, ``cover_left`` or ``cover_right``.
    url
        The pyserial URL it was reached on.
    product
        What the device says it is (``STA-ARCHON-1``; ``ALNITAK-98`` for a cover
        half, Alnitak product 98).
    firmware
        Its firmware version as it reports it (the Archon's
        ``BACKPLANE_VERSION``; three digits for an Alnitak controller, ``213``).
    simulated
        The device said it is a simulator (only the CCD controller can).
    """

    device: str
    url: str
    product: str
    firmware: str
    simulated: bool

    def to_dict(self) -> dict[str, str | bool]:
        """The identity as a JSON-ready mapping (for the run folder)."""
        return asdict(self)
